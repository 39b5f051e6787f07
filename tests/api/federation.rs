//! Workload-token federation over HTTP: a Kubernetes-style service-account token as the
//! password (Basic and the OAuth2 password grant), keys from a JWKS served on loopback
//! over HTTP, or over HTTPS with a CA made in the test.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use jsonwebtoken::Algorithm;
use regauth::clock::ManualClock;
use regauth::config::Settings;
use regauth::identity::federation::IssuerSettings;
use regauth::policy::{OneOrMore, RuleSettings};
use serde_json::{Value, json};

use crate::helpers::{TestApp, claims, spawn_app_with_clock, user};
use crate::support::workload::{
    JwksServer, WorkloadKey, jwks_of, service_account_claims, unsigned_token, workload_key,
};
use crate::support::{key_dir, new_ca, tls_server_pair, write_config};

const ISS: &str = "https://kubernetes.default.svc.cluster.local";
const AUD: &str = "registry.test";
const BUILDER: &str = "system:serviceaccount:team-a:builder";
const SCOPES: &str = "scope=repository:team-a/app:pull,push&scope=repository:team-b/app:pull,push";

struct Federated {
    app: TestApp,
    jwks: JwksServer,
    clock: Arc<ManualClock>,
    rsa: WorkloadKey,
    ec: WorkloadKey,
}

fn federation() -> Option<OneOrMore> {
    Some(OneOrMore::One("federation".into()))
}

/// Namespace team-a's workloads may push to team-a/**; any other workload may pull, and so
/// may any signed-in person. Rules for workloads name their source.
fn team_rules(s: &mut Settings) {
    s.acl = Some(vec![
        RuleSettings::new(
            |m| {
                m.source = federation();
                m.account = Some("/system:serviceaccount:team-a:.+/".into());
                m.name = Some("team-a/**".into());
            },
            &["pull", "push"],
        ),
        RuleSettings::new(|m| m.source = federation(), &["pull"]),
        RuleSettings::new(|m| m.account = Some("/.+/".into()), &["pull"]),
    ]);
}

async fn federated(customize: impl FnOnce(&mut Settings, &str)) -> Federated {
    federated_with(None, customize).await
}

/// As [`federated`]; with `tls` (certificate PEM, key PEM) the JWKS is served over HTTPS.
async fn federated_with(
    tls: Option<(&str, &str)>,
    customize: impl FnOnce(&mut Settings, &str),
) -> Federated {
    let rsa = workload_key("rsa-1", Algorithm::RS256);
    let ec = workload_key("ec-1", Algorithm::ES256);
    let body = jwks_of(&[&rsa, &ec]);
    let jwks = match tls {
        Some((cert, key)) => JwksServer::start_tls(body, cert, key).await,
        None => JwksServer::start(body).await,
    };
    let now = Utc::now().timestamp();
    let clock = Arc::new(ManualClock::new(
        chrono::DateTime::from_timestamp(now, 0).unwrap(),
    ));
    let url = jwks.url.clone();
    let app = spawn_app_with_clock(
        |s| {
            s.token.services = vec![AUD.into()];
            s.users.insert("alice".into(), user("s3cret", &[]));
            let mut issuer = IssuerSettings::new(ISS, &[AUD]);
            issuer.jwks_url = Some(url.clone());
            s.federation = vec![issuer];
            team_rules(s);
            customize(s, &url);
        },
        clock.clone(),
    )
    .await;
    // The keys are fetched in the background at start (unless the URL is unreachable or its
    // certificate is not trusted).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while jwks.hits() + jwks.refused_handshakes() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Federated {
        app,
        jwks,
        clock,
        rsa,
        ec,
    }
}

impl Federated {
    fn now(&self) -> i64 {
        use regauth::clock::Clock;
        self.clock.now().timestamp()
    }

    /// A token for team-a's builder, issued now, valid for an hour.
    fn claims(&self) -> Value {
        service_account_claims(ISS, AUD, "team-a", "builder", self.now(), 3600)
    }

    async fn get(&self, user: &str, token: &str, extra: &str) -> reqwest::Response {
        self.app
            .client
            .get(format!(
                "{}/token?service={AUD}&{SCOPES}&account={user}{extra}",
                self.app.address
            ))
            .basic_auth(user, Some(token))
            .send()
            .await
            .unwrap()
    }

    async fn status(&self, token: &str) -> u16 {
        self.get("oidc", token, "").await.status().as_u16()
    }
}

fn access(body: &Value) -> Value {
    claims(body["token"].as_str().unwrap())["access"].clone()
}

#[tokio::test]
async fn a_service_account_token_as_basic_password_gets_its_namespaces_push_and_no_refresh_token() {
    let f = federated(|_, _| {}).await;
    for key in [&f.rsa, &f.ec] {
        let response = f
            .get("oidc", &key.sign(&f.claims()), "&offline_token=true")
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let token = claims(body["token"].as_str().unwrap());
        assert_eq!(token["sub"], BUILDER);
        assert_eq!(
            access(&body),
            json!([
                {"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]},
                {"type": "repository", "name": "team-b/app", "actions": ["pull"]},
            ])
        );
        assert!(
            body.get("refresh_token").is_none(),
            "no refresh token for a federated caller: {body}"
        );
    }
    // A password user still gets one, so refresh tokens are on in this server.
    let alice: Value = f
        .app
        .client
        .get(format!(
            "{}/token?service={AUD}&account=alice&offline_token=true",
            f.app.address
        ))
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(alice["refresh_token"].is_string(), "{alice}");
}

#[tokio::test]
async fn the_oauth2_password_grant_takes_the_token_with_oidc_or_the_account_as_user_name() {
    let f = federated(|_, _| {}).await;
    let token = f.ec.sign(&f.claims());
    for username in ["oidc", BUILDER] {
        let response = f
            .app
            .client
            .post(format!("{}/token", f.app.address))
            .form(&[
                ("grant_type", "password"),
                ("service", AUD),
                ("client_id", "containerd-client"),
                ("access_type", "offline"),
                (
                    "scope",
                    "repository:team-a/app:pull,push repository:team-b/app:push",
                ),
                ("username", username),
                ("password", &token),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{username}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["scope"], "repository:team-a/app:pull,push");
        assert_eq!(
            claims(body["access_token"].as_str().unwrap())["sub"],
            BUILDER
        );
        assert!(body.get("refresh_token").is_none(), "{body}");
    }
}

#[tokio::test]
async fn a_user_name_that_is_neither_oidc_nor_the_account_is_refused() {
    let f = federated(|_, _| {}).await;
    let token = f.rsa.sign(&f.claims());
    for user in ["alice", "system:serviceaccount:team-b:builder"] {
        let response = f
            .app
            .client
            .post(format!("{}/token", f.app.address))
            .form(&[
                ("grant_type", "password"),
                ("service", AUD),
                ("client_id", "c"),
                ("username", user),
                ("password", &token),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{user}");
    }
    assert_eq!(f.get("bob", &token, "").await.status(), 401);
}

#[tokio::test]
async fn expired_not_yet_valid_wrong_audience_and_too_long_lived_tokens_are_refused() {
    let f = federated(|s, _| {
        s.auth.cache_seconds = 0;
        // Six refusals in a row from one address would lock `oidc` out there.
        s.auth.limits.failures = 0;
        s.federation[0].max_lifetime_seconds = 7200;
    })
    .await;
    let now = f.now();
    let mut expired = f.claims();
    expired["iat"] = json!(now - 7000);
    expired["nbf"] = json!(now - 7000);
    expired["exp"] = json!(now - 61);
    let mut early = f.claims();
    early["nbf"] = json!(now + 120);
    early["iat"] = json!(now + 120);
    early["exp"] = json!(now + 1200);
    let mut audience = f.claims();
    audience["aud"] = json!(["https://kubernetes.default.svc"]);
    let mut long = f.claims();
    long["exp"] = json!(now + 7201);
    let mut no_exp = f.claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    for (what, claims) in [
        ("expired", expired),
        ("not yet valid", early),
        ("wrong audience", audience),
        ("too long-lived", long),
        ("no exp", no_exp),
    ] {
        assert_eq!(f.status(&f.rsa.sign(&claims)).await, 401, "{what}");
    }
    // The same token is good now and refused once the clock passes exp + leeway.
    let token = f.ec.sign(&f.claims());
    assert_eq!(f.status(&token).await, 200);
    f.clock.advance(TimeDelta::seconds(3600 + 61));
    assert_eq!(f.status(&token).await, 401);
}

#[tokio::test]
async fn unsigned_and_hmac_confusion_tokens_are_refused() {
    let f = federated(|_, _| {}).await;
    assert_eq!(f.status(&unsigned_token("rsa-1", &f.claims())).await, 401);
    assert_eq!(
        f.status(&f.rsa.hmac_with_public_key(&f.claims())).await,
        401
    );
    let body: Value = f
        .get("oidc", &f.rsa.hmac_with_public_key(&f.claims()), "")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED", "{body}");
}

#[tokio::test]
async fn a_token_from_an_unknown_issuer_is_a_wrong_password_and_counted_as_one() {
    let f = federated(|_, _| {}).await;
    let mut stranger = f.claims();
    stranger["iss"] = json!("https://other.example");
    assert_eq!(f.status(&f.rsa.sign(&stranger)).await, 401);
    let metrics = f.app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("regauth_auth_failures_total{reason=\"invalid_credentials\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        f.jwks.hits(),
        1,
        "an unknown issuer's token fetches nothing"
    );
}

#[tokio::test]
async fn a_made_up_kid_delays_a_rotated_key_by_seconds_and_refetches_stay_bounded() {
    let f = federated(|s, _| {
        s.auth.cache_seconds = 0;
        s.auth.limits.failures = 0;
    })
    .await;
    let gap = regauth::identity::federation::jwks::MIN_KID_REFETCH;
    assert!(gap <= TimeDelta::seconds(5), "a few seconds at most: {gap}");
    assert_eq!(f.jwks.hits(), 1, "the keys are fetched at start");
    assert_eq!(f.status(&f.rsa.sign(&f.claims())).await, 200);
    assert_eq!(f.status(&f.ec.sign(&f.claims())).await, 200);
    assert_eq!(f.jwks.hits(), 1, "known keys need no fetch");
    f.clock.advance(gap);

    // An attacker's made-up kid: one re-fetch, then a flood of them fetches nothing more.
    let attacker = workload_key("made-up", Algorithm::RS256);
    assert_eq!(f.status(&attacker.sign(&f.claims())).await, 401);
    assert_eq!(f.jwks.hits(), 2, "one re-fetch for the unknown kid");
    for n in 0..20 {
        let other = workload_key(&format!("made-up-{n}"), Algorithm::RS256);
        assert_eq!(f.status(&other.sign(&f.claims())).await, 401);
    }
    assert_eq!(
        f.jwks.hits(),
        2,
        "unknown kids within {gap} of a fetch fetch nothing"
    );

    // The issuer rotates right after: its new key works once the short gap has passed,
    // not a minute after the attacker's token.
    let rotated = workload_key("rsa-2", Algorithm::RS256);
    f.jwks.set(jwks_of(&[&f.rsa, &f.ec, &rotated]));
    assert_eq!(
        f.status(&rotated.sign(&f.claims())).await,
        401,
        "within {gap} of the attacker's fetch"
    );
    f.clock.advance(gap);
    assert_eq!(f.status(&rotated.sign(&f.claims())).await, 200);
    assert_eq!(f.jwks.hits(), 3);
    // Known now: no more fetches for it.
    assert_eq!(f.status(&rotated.sign(&f.claims())).await, 200);
    assert_eq!(f.jwks.hits(), 3);
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_jwks_endpoint_is_down() {
    let f = federated(|s, _| s.auth.cache_seconds = 0).await;
    assert_eq!(f.status(&f.rsa.sign(&f.claims())).await, 200);
    f.jwks.stop().await;
    // Past the keys' freshness: a re-fetch is tried, fails, and the known keys still verify.
    f.clock.advance(TimeDelta::minutes(20));
    assert_eq!(f.status(&f.ec.sign(&f.claims())).await, 200);
    assert_eq!(f.status(&f.rsa.sign(&f.claims())).await, 200);
    // An unknown kid is still just refused.
    let stranger = workload_key("rsa-9", Algorithm::RS256);
    assert_eq!(f.status(&stranger.sign(&f.claims())).await, 401);
}

#[tokio::test]
async fn an_issuer_whose_keys_were_never_fetched_answers_503_not_401() {
    let f = federated(|s, _| {
        // Nothing listens on the discard port of loopback.
        s.federation[0].jwks_url = Some("http://127.0.0.1:9/jwks".into());
    })
    .await;
    let response = f.get("oidc", &f.rsa.sign(&f.claims()), "").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    // A password user is unaffected.
    let alice = f
        .app
        .client
        .get(format!("{}/token?service={AUD}", f.app.address))
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(alice.status(), 200);
}

/// A test CA, a certificate for 127.0.0.1 it signed (PEM, key PEM), and the CA in a PEM file.
fn https_jwks_ca() -> (String, String, tempfile::TempDir) {
    let ca = new_ca("workload issuer test CA");
    let (cert, key) = tls_server_pair(&ca, "jwks server");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("issuer-ca.pem"), ca.pem()).unwrap();
    (cert, key, dir)
}

#[tokio::test]
async fn keys_fetched_over_https_from_a_server_signed_by_the_ca_file_verify_tokens() {
    let (cert, key, ca_dir) = https_jwks_ca();
    let ca_file = ca_dir.path().join("issuer-ca.pem");
    let f = federated_with(Some((&cert, &key)), |s, url| {
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        s.federation[0].ca_file = Some(ca_file);
    })
    .await;
    assert_eq!(
        f.jwks.hits(),
        1,
        "the keys were fetched over https at start"
    );
    assert_eq!(f.jwks.refused_handshakes(), 0);
    for key in [&f.rsa, &f.ec] {
        let response = f.get("oidc", &key.sign(&f.claims()), "").await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(claims(body["token"].as_str().unwrap())["sub"], BUILDER);
    }
}

#[tokio::test]
async fn https_keys_from_a_server_the_ca_file_or_web_roots_do_not_vouch_for_are_never_used() {
    let (cert, key, _ca_dir) = https_jwks_ca();
    let (_, _, other_dir) = https_jwks_ca();
    let other_ca = other_dir.path().join("issuer-ca.pem");
    for (what, ca_file) in [("web roots", None), ("another CA", Some(other_ca))] {
        let f = federated_with(Some((&cert, &key)), |s, _| {
            s.auth.cache_seconds = 0;
            s.federation[0].ca_file = ca_file;
        })
        .await;
        assert_eq!(f.jwks.refused_handshakes(), 1, "{what}: the start fetch");
        // Past the retry gap: the login tries again itself, and fails the same way.
        f.clock.advance(TimeDelta::seconds(11));
        let response = f.get("oidc", &f.rsa.sign(&f.claims()), "").await;
        assert_eq!(response.status(), 503, "{what}");
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("5"),
            "{what}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "{what}: {body}");
        assert!(
            !body.to_string().contains("127.0.0.1"),
            "{what}: the body names no source: {body}"
        );
        // The server counts the handshake when it reads the client's alert: poll for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while f.jwks.refused_handshakes() < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(f.jwks.refused_handshakes(), 2, "{what}: the login's fetch");
        assert_eq!(f.jwks.hits(), 0, "{what}: no request went through");
    }
}

#[tokio::test]
async fn a_cached_federated_login_never_outlives_the_tokens_expiry() {
    // The real clock here: the login cache keeps time with it.
    let rsa = workload_key("rsa-1", Algorithm::RS256);
    let jwks = JwksServer::start(jwks_of(&[&rsa])).await;
    let url = jwks.url.clone();
    let app = crate::helpers::spawn_app_with(|s| {
        s.token.services = vec![AUD.into()];
        s.auth.cache_seconds = 600;
        let mut issuer = IssuerSettings::new(ISS, &[AUD]);
        issuer.jwks_url = Some(url);
        issuer.leeway_seconds = 0;
        s.federation = vec![issuer];
    })
    .await;
    let now = Utc::now().timestamp();
    let token = rsa.sign(&service_account_claims(
        ISS,
        AUD,
        "team-a",
        "builder",
        now - 10,
        13,
    ));
    let get = || {
        app.client
            .get(format!("{}/token?service={AUD}", app.address))
            .basic_auth("oidc", Some(&token))
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(get().await.unwrap().status(), 200);
    assert!(
        app.logins.stats().cache_hits >= 1,
        "the second login came from the cache"
    );
    // The token expires 3 s after it was made; the cache would keep it 600 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let refused_at = loop {
        if get().await.unwrap().status() == 401 {
            break Utc::now().timestamp();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still accepted long after exp"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(refused_at >= now + 3, "refused before exp");
}

/// A directory with a key, `cluster-jwks.json` holding `key`, and a regauth.yaml trusting it.
fn cli_dir(key: &WorkloadKey, extra: &str) -> tempfile::TempDir {
    let dir = key_dir();
    std::fs::write(dir.path().join("cluster-jwks.json"), jwks_of(&[key])).unwrap();
    write_config(
        dir.path(),
        format!(
            "token:\n  services: [{AUD}]\nfederation:\n  - issuer: {ISS}\n    jwks_file: cluster-jwks.json\n    audiences: [{AUD}]\n{extra}\
             acl:\n  - match: {{source: federation, account: '/system:serviceaccount:team-a:.+/', name: 'team-a/**'}}\n    actions: [pull, push]\n    comment: team-a pushes\n"
        ),
    )
    .unwrap();
    dir
}

fn regauth_in(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_regauth"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_loads_the_issuers_keys_and_refuses_hmac_or_a_broken_jwks() {
    let key = workload_key("rsa-1", Algorithm::RS256);
    let good = cli_dir(&key, "");
    let (ok, stdout, stderr) = regauth_in(good.path(), &["check", "--config", "regauth.yaml"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(!stdout.contains("warning"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "federation issuer \"{ISS}\": 1 key(s) from cluster-jwks.json"
        )),
        "{stdout}"
    );
    let hmac = cli_dir(&key, "    algorithms: [RS256, HS256]\n");
    let (ok, _, stderr) = regauth_in(hmac.path(), &["check", "--config", "regauth.yaml"]);
    assert!(!ok);
    assert!(
        stderr.contains("federation: entry 0 (issuer")
            && stderr.contains("\"HS256\" is never accepted"),
        "{stderr}"
    );
    let broken = cli_dir(&key, "");
    std::fs::write(broken.path().join("cluster-jwks.json"), "{\"keys\": []}").unwrap();
    let (ok, _, stderr) = regauth_in(broken.path(), &["check", "--config", "regauth.yaml"]);
    assert!(!ok);
    assert!(
        stderr.contains("cluster-jwks.json has no usable signature key"),
        "{stderr}"
    );
}

#[test]
fn explain_verifies_a_token_file_and_names_its_issuer_or_why_it_is_refused() {
    let key = workload_key("rsa-1", Algorithm::RS256);
    let dir = cli_dir(&key, "");
    let now = Utc::now().timestamp();
    let write = |name: &str, claims: &Value| {
        std::fs::write(dir.path().join(name), format!("{}\n", key.sign(claims))).unwrap();
    };
    write(
        "good.jwt",
        &service_account_claims(ISS, AUD, "team-a", "builder", now, 600),
    );
    write(
        "expired.jwt",
        &service_account_claims(ISS, AUD, "team-a", "builder", now - 4000, 600),
    );
    let explain = |file: &str| {
        regauth_in(
            dir.path(),
            &[
                "explain",
                "--config",
                "regauth.yaml",
                "--token-file",
                file,
                "--scope",
                "repository:team-a/app:pull,push",
            ],
        )
    };
    let (ok, stdout, stderr) = explain("good.jwt");
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "account \"{BUILDER}\" (source: federation (issuer {ISS}), groups: [])"
        )) && stdout.contains("granted: [pull,push]")
            && stdout.contains(
                "by:      rule 1: match source=\"federation\" account=\"/system:serviceaccount:team-a:.+/\""
            )
            && stdout.contains("(team-a pushes)"),
        "{stdout}"
    );
    let (ok, _, stderr) = explain("expired.jwt");
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "workload token from {ISS} refused: the token expired at"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_oversized_jwks_is_not_read() {
    let rsa = workload_key("rsa-1", Algorithm::RS256);
    let padding = "x".repeat(300 * 1024);
    let big = JwksServer::start(format!(
        "{{\"keys\": [{}], \"padding\": \"{padding}\"}}",
        serde_json::to_string(&rsa.jwk).unwrap()
    ))
    .await;
    let url = big.url.clone();
    let app = crate::helpers::spawn_app_with(|s| {
        s.token.services = vec![AUD.into()];
        let mut issuer = IssuerSettings::new(ISS, &[AUD]);
        issuer.jwks_url = Some(url);
        s.federation = vec![issuer];
    })
    .await;
    let now = Utc::now().timestamp();
    let token = rsa.sign(&service_account_claims(
        ISS, AUD, "team-a", "builder", now, 600,
    ));
    let response = app
        .client
        .get(format!("{}/token?service={AUD}", app.address))
        .basic_auth("oidc", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503, "no key could be loaded");
    assert!(big.hits() >= 1);
}

/// The `access` granted to `user`:`password` (a person, or `oidc` with a token) for `scopes`.
async fn granted(app: &TestApp, user: &str, password: &str, scopes: &[&str]) -> Value {
    let query: String = scopes.iter().map(|s| format!("&scope={s}")).collect();
    let response = app
        .client
        .get(format!("{}/token?service={AUD}{query}", app.address))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{user}");
    access(&response.json().await.unwrap())
}

/// The action lists of `access`, in order, joined with `,`.
fn actions(access: &Value) -> Vec<String> {
    access
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

#[tokio::test]
async fn without_acl_a_workload_gets_nothing_while_people_and_anonymous_keep_the_defaults() {
    let f = federated(|s, _| s.acl = None).await;
    let scopes = [
        "repository:victim/app:pull,push",
        "repository:team-a/app:pull,push",
    ];
    let token = f.rsa.sign(&f.claims());
    assert_eq!(
        actions(&granted(&f.app, "oidc", &token, &scopes).await),
        ["", ""],
        "a verified workload token from a trusted issuer gets nothing from the default rules"
    );
    assert_eq!(
        actions(&granted(&f.app, "alice", "s3cret", &scopes).await),
        ["pull,push", "pull,push"]
    );
    let anonymous: Value = f
        .app
        .client
        .get(format!(
            "{}/token?service={AUD}&scope=repository:victim/app:pull,push",
            f.app.address
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(actions(&access(&anonymous)), ["pull"]);
}

#[tokio::test]
async fn a_workload_named_like_a_local_user_with_her_group_gets_none_of_her_grants() {
    let f = federated(|s, _| {
        s.users.insert("alice".into(), user("s3cret", &["release"]));
        s.federation[0].groups_claim = Some("groups".into());
        s.acl = Some(vec![
            RuleSettings::new(
                |m| {
                    m.account = Some("alice".into());
                    m.name = Some("alice/**".into());
                },
                &["*"],
            ),
            RuleSettings::new(
                |m| {
                    m.group = Some("release".into());
                    m.name = Some("prod/**".into());
                },
                &["pull", "push"],
            ),
            RuleSettings::new(
                |m| {
                    m.source = federation();
                    m.name = Some("ci/**".into());
                },
                &["pull"],
            ),
        ]);
    })
    .await;
    let mut claims = f.claims();
    claims["sub"] = json!("alice");
    claims["groups"] = json!(["release"]);
    let token = f.ec.sign(&claims);
    let scopes = [
        "repository:alice/app:pull,push",
        "repository:prod/app:pull,push",
        "repository:ci/cache:pull,push",
    ];
    for user_name in ["oidc", "alice"] {
        let workload = granted(&f.app, user_name, &token, &scopes).await;
        assert_eq!(actions(&workload), ["", "", "pull"], "as {user_name}");
    }
    assert_eq!(
        actions(&granted(&f.app, "alice", "s3cret", &scopes).await),
        ["pull,push", "pull,push", ""]
    );
}

#[tokio::test]
async fn required_claims_admit_matching_tokens_and_refuse_others_with_an_audited_counted_401() {
    let f = federated(|s, _| {
        s.auth.cache_seconds = 0;
        s.auth.limits.failures = 0;
        s.audit.enabled = true;
        s.audit.output = s.key.path.with_file_name("audit.log").display().to_string();
        s.federation[0].required_claims = [
            (
                "repository_owner".to_owned(),
                OneOrMore::One("octo-org".into()),
            ),
            (
                "ref".to_owned(),
                OneOrMore::More(vec!["refs/heads/main".into(), "refs/heads/release".into()]),
            ),
            (
                "environment".to_owned(),
                OneOrMore::One("/prod(-[a-z]+)?/".into()),
            ),
        ]
        .into();
    })
    .await;
    let good = || {
        let mut c = f.claims();
        c["repository_owner"] = json!("octo-org");
        c["ref"] = json!("refs/heads/main");
        c["environment"] = json!("prod-eu");
        c
    };
    let changed = |claim: &str, value: Value| {
        let mut c = good();
        if value.is_null() {
            c.as_object_mut().unwrap().remove(claim);
        } else {
            c[claim] = value;
        }
        c
    };
    let accepted = [
        ("all met", good()),
        (
            "the other listed ref",
            changed("ref", json!("refs/heads/release")),
        ),
        ("environment prod", changed("environment", json!("prod"))),
    ];
    for (what, claims) in &accepted {
        assert_eq!(f.status(&f.rsa.sign(claims)).await, 200, "{what}");
    }
    let refused = [
        (
            "another owner",
            changed("repository_owner", json!("evil-org")),
        ),
        ("owner missing", changed("repository_owner", Value::Null)),
        (
            "owner not a string",
            changed("repository_owner", json!(["octo-org"])),
        ),
        ("a ref not listed", changed("ref", json!("refs/heads/dev"))),
        (
            "regex is anchored",
            changed("environment", json!("preprod")),
        ),
        (
            "regex is anchored at the end",
            changed("environment", json!("prod-eu-x1")),
        ),
    ];
    for (what, claims) in &refused {
        let response = f.get("oidc", &f.rsa.sign(claims), "").await;
        assert_eq!(response.status(), 401, "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED", "{what}: {body}");
        assert!(!body.to_string().contains("evil-org"), "{body}");
    }
    let metrics = f.app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "regauth_auth_failures_total{{reason=\"invalid_credentials\"}} {}",
            refused.len()
        )),
        "{metrics}"
    );
    let lines = crate::audit::wait_for_lines(
        &f.app.dir.path().join("audit.log"),
        accepted.len() + refused.len(),
    );
    let outcomes: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["outcome"].as_str().unwrap(),
                l["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        outcomes[accepted.len()..],
        vec![("refused", "invalid_credentials"); refused.len()],
        "{lines:#?}"
    );
}

#[tokio::test]
async fn a_claim_variable_grants_exactly_that_repositorys_namespace_and_cannot_be_widened() {
    let f = federated(|s, _| {
        s.acl = Some(vec![RuleSettings::new(
            |m| {
                m.issuer = Some(ISS.into());
                m.name = Some("${claim.repository}/**".into());
            },
            &["pull", "push"],
        )]);
    })
    .await;
    let token = |repository: &str| {
        let mut c = f.claims();
        c["repository"] = json!(repository);
        f.rsa.sign(&c)
    };
    let scopes = [
        "repository:octo-org/app/a/b:push",
        "repository:octo-org/app/x:pull",
        "repository:octo-org/app:push",
        "repository:octo-org/app2/x:push",
        "repository:octo-org/other/x:push",
    ];
    assert_eq!(
        actions(&granted(&f.app, "oidc", &token("octo-org/app"), &scopes).await),
        ["push", "pull", "", "", ""]
    );
    // Values with glob or regex characters match only themselves (no repository is named so).
    for repository in [
        "octo-org/*",
        "octo-org/**",
        "*",
        "**",
        ".*",
        "octo-org/a.p",
        "octo-org/..",
    ] {
        assert_eq!(
            actions(&granted(&f.app, "oidc", &token(repository), &scopes).await),
            ["", "", "", "", ""],
            "repository claim {repository:?}"
        );
    }
    // No such claim: the rule does not match.
    assert_eq!(
        actions(&granted(&f.app, "oidc", &f.rsa.sign(&f.claims()), &scopes).await),
        ["", "", "", "", ""]
    );
}

/// A directory with a key, a JWKS file and a regauth.yaml trusting `issuer` with the `extra`
/// issuer settings and top-level `rest`.
fn warning_dir(key: &WorkloadKey, issuer: &str, extra: &str, rest: &str) -> tempfile::TempDir {
    let dir = cli_dir(key, "");
    write_config(
        dir.path(),
        format!(
            "server:\n  listen: 127.0.0.1:0\n  shutdown_delay_seconds: 0\ntoken:\n  services: [{AUD}]\n\
             federation:\n  - issuer: {issuer}\n    jwks_file: cluster-jwks.json\n    audiences: [{AUD}]\n{extra}{rest}"
        ),
    )
    .unwrap();
    dir
}

const NOTHING: &str = "federation is configured but no access rule names `source: federation` or an `issuer`: workloads would get nothing";
const GITHUB: &str = "https://token.actions.githubusercontent.com";

#[test]
fn check_warns_when_no_rule_names_federation_and_when_a_public_issuer_has_no_required_claims() {
    let key = workload_key("rsa-1", Algorithm::RS256);
    let shared = format!(
        "warning: federation issuer \"{GITHUB}\" is shared by many tenants (GitHub Actions"
    );
    let bare = warning_dir(&key, GITHUB, "", "");
    let (ok, stdout, stderr) = regauth_in(bare.path(), &["check", "--config", "regauth.yaml"]);
    assert!(ok, "warnings only: {stdout}{stderr}");
    assert!(stdout.contains(&format!("warning: {NOTHING}")), "{stdout}");
    assert!(stdout.contains(&shared), "{stdout}");
    let people_only = warning_dir(
        &key,
        ISS,
        "",
        "acl:\n  - match: {account: '/.+/'}\n    actions: [pull, push]\n",
    );
    let (_, stdout, _) = regauth_in(people_only.path(), &["check", "--config", "regauth.yaml"]);
    assert!(stdout.contains(NOTHING), "{stdout}");
    assert!(!stdout.contains("shared by many tenants"), "{stdout}");
    let conditioned = warning_dir(
        &key,
        GITHUB,
        "    required_claims: {repository_owner: octo-org}\n",
        &format!(
            "acl:\n  - match: {{issuer: '{GITHUB}', name: '${{claim.repository}}/**'}}\n    actions: [pull, push]\n"
        ),
    );
    let (ok, stdout, stderr) =
        regauth_in(conditioned.path(), &["check", "--config", "regauth.yaml"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(!stdout.contains("warning"), "{stdout}");
    let bad_regex = warning_dir(
        &key,
        GITHUB,
        "    required_claims: {repository_owner: '/(octo/'}\n",
        "",
    );
    let (ok, _, stderr) = regauth_in(bad_regex.path(), &["check", "--config", "regauth.yaml"]);
    assert!(!ok);
    assert!(
        stderr.contains("required_claims.repository_owner: regex \"/(octo/\""),
        "{stderr}"
    );
}

#[test]
fn the_start_banner_says_workloads_would_get_nothing() {
    let key = workload_key("rsa-1", Algorithm::RS256);
    let dir = warning_dir(&key, GITHUB, "", "");
    let (mut child, _addr, log) =
        crate::helpers::start_serve_logging(&[], Some(dir.path()), &["--config", "regauth.yaml"]);
    let nothing = log.wait_for("workloads would get nothing");
    let shared = log.wait_for("is shared by many tenants");
    child.kill().unwrap();
    child.wait().unwrap();
    let nothing = nothing.expect("the banner warns that workloads get nothing");
    assert!(nothing.contains("WARN"), "{nothing}");
    assert!(nothing.contains(NOTHING), "{nothing}");
    assert!(shared.is_some(), "the banner names the multi-tenant issuer");
}

// M2: garbage tokens count against their issuer, tokens whose signature verified against
// their subject, so neither locks out a valid token of another subject from one address
// (a node's SNAT address, a CI runner). Statuses only: what the token grants is up to the
// rules.
#[tokio::test]
async fn garbage_tokens_never_lock_out_a_valid_one_and_signed_failures_lock_out_only_their_subject()
{
    let f = federated(|s, _| {
        s.auth.cache_seconds = 0;
        s.auth.limits.failures = 3;
        s.auth.limits.backoff_seconds = 60;
    })
    .await;
    let now = f.now();
    let builder = f.claims();
    let deployer = service_account_claims(ISS, AUD, "team-a", "deployer", now, 3600);
    let stranger_key = workload_key("rsa-1", Algorithm::RS256);
    let garbage = [
        unsigned_token("rsa-1", &builder),
        stranger_key.sign(&builder),
        f.rsa.sign_as("no-such-kid", &builder),
        f.rsa.hmac_with_public_key(&deployer),
    ];
    let statuses = {
        let mut statuses = Vec::new();
        for token in &garbage {
            statuses.push(f.status(token).await);
        }
        statuses
    };
    assert_eq!(statuses, [401, 401, 401, 429], "garbage locks out garbage");
    assert_eq!(
        f.status(&f.rsa.sign(&builder)).await,
        200,
        "a token whose signature verifies is not held by the garbage budget"
    );
    assert_eq!(f.status(&f.ec.sign(&deployer)).await, 200);
    assert_eq!(
        f.status(&unsigned_token("rsa-1", &deployer)).await,
        429,
        "garbage stays locked out"
    );

    let mut expired = builder.clone();
    expired["iat"] = json!(now - 7000);
    expired["nbf"] = json!(now - 7000);
    expired["exp"] = json!(now - 3400);
    let mut audience = builder.clone();
    audience["aud"] = json!(["https://elsewhere.example"]);
    for token in [
        f.rsa.sign(&expired),
        f.ec.sign(&audience),
        f.rsa.sign(&expired),
    ] {
        assert_eq!(f.status(&token).await, 401);
    }
    assert_eq!(
        f.status(&f.rsa.sign(&builder)).await,
        429,
        "valid-signature failures lock out their subject"
    );
    assert_eq!(
        f.status(&f.rsa.sign(&deployer)).await,
        200,
        "and only their subject"
    );
}
