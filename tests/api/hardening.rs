//! Abuse as an attacker would try it: bad requests cost no password check, logins are
//! coalesced and limited, every refusal is JSON with the right status.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::Value;

use crate::helpers::{TestApp, app_with_alice};

/// A client whose requests come from `ip` (any 127.x address is loopback).
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .build()
        .unwrap()
}

async fn json_error(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "status {status}"
    );
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["errors"][0]["code"].as_str().unwrap().to_owned(),
    )
}

/// Sends raw bytes and returns the whole answer (the request must ask to close).
async fn raw(app: &TestApp, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), read).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_bad_service_or_scope_is_refused_before_any_password_is_checked() {
    let app = app_with_alice(|_| {}).await;
    for query in [
        "service=other.test&scope=repository:a:pull",
        "service=registry.test&scope=repository:A B:pull",
        "service=registry.test",
    ] {
        let scopes: String = if query.ends_with("registry.test") {
            (0..100)
                .map(|i| format!("&scope=repository:r{i}:pull"))
                .collect()
        } else {
            String::new()
        };
        let response = app
            .client
            .get(format!("{}/token?{query}{scopes}", app.address))
            .basic_auth("alice", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(json_error(response).await.0, 400, "{query}");
    }
    assert_eq!(app.logins.stats().checks, 0, "no bcrypt for a bad request");
}

#[tokio::test]
async fn thirty_two_concurrent_first_logins_run_one_password_check() {
    let app = app_with_alice(|_| {}).await;
    let requests = (0..32).map(|_| {
        app.client
            .get(format!(
                "{}/token?service=registry.test&scope=repository:alice/app:push",
                app.address
            ))
            .basic_auth("alice", Some("s3cret"))
            .send()
    });
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    assert_eq!(app.logins.stats().checks, 1, "{:?}", app.logins.stats());
}

#[tokio::test]
async fn repeated_failures_from_one_address_get_429_without_locking_the_user_out_elsewhere() {
    let app = app_with_alice(|s| {
        s.auth.limits.failures = 3;
        s.auth.limits.backoff_seconds = 30;
    })
    .await;
    let attacker = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let url = format!("{}/token?service=registry.test", app.address);
    for _ in 0..3 {
        let r = attacker
            .get(&url)
            .basic_auth("alice", Some("guess"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let checks = app.logins.stats().checks;
    // Locked out, the right password included (else the lockout would be an oracle).
    for password in ["guess", "s3cret"] {
        let r = attacker
            .get(&url)
            .basic_auth("alice", Some(password))
            .send()
            .await
            .unwrap();
        let retry_after: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&retry_after), "{retry_after}");
        assert_eq!(json_error(r).await, (429, "TOO_MANY_REQUESTS".into()));
    }
    let r = attacker
        .post(format!("{}/token", app.address))
        .form(&[
            ("grant_type", "password"),
            ("service", "registry.test"),
            ("client_id", "test"),
            ("username", "alice"),
            ("password", "s3cret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "the password grant is limited the same way"
    );
    assert_eq!(
        app.logins.stats().checks,
        checks,
        "a locked-out attempt runs no bcrypt"
    );
    // The same user from another address signs in.
    let r = client_from(Ipv4Addr::new(127, 0, 0, 3))
        .get(&url)
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn bodies_the_token_endpoint_does_not_take_are_json_errors() {
    let app = app_with_alice(|_| {}).await;
    let url = format!("{}/token", app.address);
    let form =
        "grant_type=password&service=registry.test&client_id=t&username=alice&password=s3cret";
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body("{}"),
            415,
        ),
        (app.client.post(&url).body(form), 415),
        (
            app.client
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("content-encoding", "gzip")
                .body(form),
            415,
        ),
        (
            app.client
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("{form}&pad={}", "x".repeat(70 * 1024))),
            413,
        ),
        (
            app.client
                .post(&url)
                .header(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                )
                .body("grant_type=password&%%%"),
            400,
        ),
    ];
    for (request, status) in cases {
        assert_eq!(json_error(request.send().await.unwrap()).await.0, status);
    }
    let ok = app
        .client
        .post(&url)
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "a charset parameter is fine");
}

#[tokio::test]
async fn a_broken_chunked_body_or_an_oversized_chunked_body_is_a_json_error() {
    let app = app_with_alice(|_| {}).await;
    let head = "POST /token HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
                Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n";
    let broken = raw(
        &app,
        format!("{head}5\r\ngrant\r\nZZ\r\nnot a chunk\r\n").as_bytes(),
    )
    .await;
    assert!(broken.starts_with("HTTP/1.1 400"), "{broken}");
    assert!(broken.contains("application/json"), "{broken}");
    assert!(
        !broken.contains("PayloadError") && !broken.contains("Error("),
        "{broken}"
    );

    let mut big = head.to_owned();
    for _ in 0..70 {
        big.push_str(&format!("400\r\n{}\r\n", "a".repeat(1024)));
    }
    big.push_str("0\r\n\r\n");
    let answer = raw(&app, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("PAYLOAD_TOO_LARGE"), "{answer}");
}

#[tokio::test]
async fn other_methods_on_every_endpoint_are_json_405s_naming_the_allowed_ones() {
    let app = app_with_alice(|_| {}).await;
    for (path, allowed) in [
        ("/readyz", "GET"),
        ("/healthz", "GET"),
        ("/.well-known/jwks.json", "GET"),
        ("/token", "GET, POST"),
    ] {
        let r = app
            .client
            .delete(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["allow"], allowed, "{path}");
        assert_eq!(json_error(r).await, (405, "UNSUPPORTED".into()), "{path}");
    }
}

#[tokio::test]
async fn two_authorization_headers_are_refused_as_ambiguous() {
    let app = app_with_alice(|_| {}).await;
    let basic = |u: &str, p: &str| {
        use data_encoding::BASE64;
        format!("Basic {}", BASE64.encode(format!("{u}:{p}").as_bytes()))
    };
    let answer = raw(
        &app,
        format!(
            "GET /token?service=registry.test HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
             Authorization: {}\r\nAuthorization: {}\r\n\r\n",
            basic("alice", "s3cret"),
            basic("mallory", "x")
        )
        .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("Authorization header must appear at most once"),
        "{answer}"
    );
    assert_eq!(app.logins.stats().checks, 0);
}
