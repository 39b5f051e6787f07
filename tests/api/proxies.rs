//! `server.trusted_proxies` over real HTTP: the forwarded address is what `ip` rules and
//! the login limits see, and only when the peer is trusted; request ids come back.

use regauth::policy::RuleSettings;
use serde_json::Value;

use crate::helpers::{TestApp, claims, spawn_app_with, user};

/// An app where anonymous callers may pull only from 10.1.0.0/16, with `trusted` proxies.
async fn app_trusting(trusted: &[&str]) -> TestApp {
    let trusted: Vec<String> = trusted.iter().map(|t| t.to_string()).collect();
    spawn_app_with(move |s| {
        s.server.trusted_proxies = trusted;
        s.acl = Some(vec![RuleSettings::new(
            |m| m.ip = Some("10.1.0.0/16".into()),
            &["pull"],
        )]);
    })
    .await
}

/// The actions granted on `team/app` to an anonymous caller forwarding `xff`.
async fn granted(app: &TestApp, xff: &str) -> Value {
    let response = app
        .client
        .get(format!(
            "{}/token?service=registry.test&scope=repository:team/app:pull",
            app.address
        ))
        .header("X-Forwarded-For", xff)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    claims(body["token"].as_str().unwrap())["access"][0]["actions"].clone()
}

#[tokio::test]
async fn an_ip_rule_matches_the_address_a_trusted_proxy_forwards() {
    let app = app_trusting(&["127.0.0.1/32"]).await;
    assert_eq!(granted(&app, "10.1.2.3").await, serde_json::json!(["pull"]));
    // A spoofed entry on the left changes nothing: the proxy appended the real client.
    assert_eq!(
        granted(&app, "10.1.2.3, 192.0.2.9").await,
        serde_json::json!([])
    );
    assert_eq!(granted(&app, "192.0.2.9").await, serde_json::json!([]));
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    for trusted in [&[][..], &["10.0.0.0/8"][..]] {
        let app = app_trusting(trusted).await;
        assert_eq!(
            granted(&app, "10.1.2.3").await,
            serde_json::json!([]),
            "{trusted:?}"
        );
    }
}

#[tokio::test]
async fn login_limits_key_on_the_forwarded_address() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
        s.users.insert("alice".into(), user("right", &[]));
        s.auth.limits.failures = 2;
        s.auth.limits.backoff_seconds = 60;
    })
    .await;
    let login = |xff: &'static str, pw: &'static str| {
        let app = &app;
        async move {
            app.client
                .get(format!("{}/token?service=registry.test", app.address))
                .basic_auth("alice", Some(pw))
                .header("X-Forwarded-For", xff)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(login("10.1.2.3", "wrong").await, 401);
    assert_eq!(login("10.1.2.3", "wrong").await, 401);
    assert_eq!(login("10.1.2.3", "right").await, 429, "locked out");
    // Another client behind the same proxy is not.
    assert_eq!(login("10.9.9.9", "wrong").await, 401);
    assert_eq!(login("10.9.9.9", "right").await, 200);
}

#[tokio::test]
async fn ipv6_clients_in_one_64_share_a_login_budget() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
        s.users.insert("alice".into(), user("right", &[]));
        s.auth.limits.failures = 2;
        s.auth.limits.backoff_seconds = 60;
    })
    .await;
    let login = |xff: &'static str, pw: &'static str| {
        let app = &app;
        async move {
            app.client
                .get(format!("{}/token?service=registry.test", app.address))
                .basic_auth("alice", Some(pw))
                .header("X-Forwarded-For", xff)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Two addresses of one /64: one client, one budget.
    assert_eq!(login("2001:db8:7:1::a", "wrong").await, 401);
    assert_eq!(login("2001:db8:7:1:ffff::b", "wrong").await, 401);
    assert_eq!(
        login("2001:db8:7:1:1234:5678:9abc:def0", "right").await,
        429,
        "the whole /64 is locked out"
    );
    // The next /64 is another client.
    assert_eq!(login("2001:db8:7:2::a", "right").await, 200);
}

#[tokio::test]
async fn every_response_carries_a_request_id_the_callers_when_valid() {
    let app = spawn_app_with(|_| {}).await;
    let id_of = |path: &'static str, sent: Option<&'static str>| {
        let app = &app;
        async move {
            let mut request = app.client.get(format!("{}{path}", app.address));
            if let Some(id) = sent {
                request = request.header("X-Request-Id", id);
            }
            let response = request.send().await.unwrap();
            response
                .headers()
                .get("x-request-id")
                .map(|v| v.to_str().unwrap().to_owned())
        }
    };
    let token = "/token?service=registry.test";
    assert_eq!(
        id_of(token, Some("trace-42.a:b_c")).await.as_deref(),
        Some("trace-42.a:b_c")
    );
    assert_eq!(
        id_of("/nope", Some("trace-43")).await.as_deref(),
        Some("trace-43")
    );
    let a = id_of(token, None).await.expect("generated");
    let b = id_of("/healthz", None).await.expect("generated");
    assert_ne!(a, b);
    assert_eq!(a.len(), 16);
    let long = Box::leak("x".repeat(129).into_boxed_str());
    for bad in ["has space", "a\"b", long] {
        let got = id_of(token, Some(bad)).await.expect("generated");
        assert_ne!(got, bad);
        assert_eq!(got.len(), 16, "{got}");
    }
}
