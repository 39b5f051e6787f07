//! `GET /.well-known/jwks.json`: the published keys, their shape, the cache header, and how
//! the set follows `key.next` and key replacements.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use jsonwebtoken as jwt;
use regauth::clock::ManualClock;
use regauth::keys::{Algorithm, KidFormat, generate};
use serde_json::Value;

use crate::helpers::{
    TestApp, header, kid_of, new_key, replace_file, spawn_app, spawn_app_with,
    spawn_app_with_clock, with_admin,
};

const DEADLINE: Duration = Duration::from_secs(10);

async fn jwks(app: &TestApp) -> Value {
    let response = app.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn kids(set: &Value) -> Vec<String> {
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls the JWKS until its kids are `expected`, in order.
async fn wait_for_kids(app: &TestApp, expected: &[&str]) {
    let start = Instant::now();
    loop {
        let now = kids(&jwks(app).await);
        if now == expected {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "JWKS kids {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_jwks_publishes_the_signing_key_with_a_cache_header_and_verifies_its_tokens() {
    let app = spawn_app().await;
    let response = app.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["cache-control"].to_str().unwrap(),
        "public, max-age=60"
    );
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let set: Value = response.json().await.unwrap();
    let key = &set["keys"][0];
    assert_eq!(set["keys"].as_array().unwrap().len(), 1);
    assert_eq!(key["kid"], app.keys.signing_key().kid().unwrap());
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (
            &Value::from("EC"),
            &Value::from("P-256"),
            &Value::from("ES256"),
            &Value::from("sig")
        )
    );
    assert!(key.get("d").is_none(), "no private member");

    // A verifier that knows only the JWKS accepts the token, selecting the key by kid.
    let set: jwt::jwk::JwkSet = serde_json::from_value(set).unwrap();
    let token = app.pull_token().await;
    let kid = header(&token)["kid"].as_str().unwrap().to_owned();
    let jwk = set.find(&kid).expect("the token's kid is in the JWKS");
    let mut validation = jwt::Validation::new(jwt::Algorithm::ES256);
    validation.set_audience(&["registry.test"]);
    validation.set_issuer(&["regauth"]);
    jwt::decode::<Value>(
        &token,
        &jwt::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .expect("token verifies with the published key");
}

#[tokio::test]
async fn a_next_key_is_published_when_written_and_unpublished_when_removed() {
    let app = spawn_app_with(|s| {
        with_admin(s);
        s.key.next = Some(s.key.path.with_file_name("next.key"));
    })
    .await;
    let current = app.keys.signing_key().kid().unwrap().to_owned();
    let next_path = app.dir.path().join("next.key");
    let ready: Value = app.readyz_details().await.json().await.unwrap();
    assert_eq!(
        ready["status"], "ready",
        "a missing next key is not an error"
    );
    assert!(
        ready["next_key_error"]
            .as_str()
            .unwrap()
            .contains("no next key")
    );
    wait_for_kids(&app, &[&current]).await;

    let (pem, next_kid) = new_key();
    replace_file(&next_path, &pem);
    wait_for_kids(&app, &[&current, &next_kid]).await;
    assert_eq!(header(&app.pull_token().await)["kid"], current.as_str());
    let ready: Value = app.readyz_details().await.json().await.unwrap();
    assert_eq!(ready["next_kid"], next_kid.as_str());
    assert_eq!(ready["next_key_error"], Value::Null);

    // A broken next key changes nothing for signing and keeps the last good one published.
    replace_file(&next_path, "garbage");
    let start = Instant::now();
    loop {
        let ready: Value = app.readyz_details().await.json().await.unwrap();
        if ready["next_key_error"].is_string() {
            assert_eq!(ready["status"], "ready");
            assert_eq!(ready["failed_reloads"], 0);
            break;
        }
        assert!(start.elapsed() < DEADLINE, "broken next key not noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(kids(&jwks(&app).await), [current.clone(), next_kid.clone()]);

    std::fs::remove_file(&next_path).unwrap();
    wait_for_kids(&app, &[&current]).await;
}

#[tokio::test]
async fn a_replaced_key_stays_published_for_ttl_plus_60_seconds_then_is_dropped() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let app = spawn_app_with_clock(
        |s| {
            with_admin(s);
            s.token.ttl_seconds = 60;
        },
        Arc::clone(&clock) as Arc<dyn regauth::clock::Clock>,
    )
    .await;
    let old = app.keys.signing_key().kid().unwrap().to_owned();
    let (pem, new) = new_key();
    replace_file(&app.key_path, &pem);
    wait_for_kids(&app, &[&new, &old]).await;
    let ready: Value = app.readyz_details().await.json().await.unwrap();
    assert_eq!(ready["retired_keys"], 1);
    assert_eq!(ready["kid"], new.as_str());

    clock.advance(TimeDelta::seconds(119));
    assert_eq!(kids(&jwks(&app).await), [new.clone(), old.clone()]);
    clock.advance(TimeDelta::seconds(1));
    assert_eq!(kids(&jwks(&app).await), std::slice::from_ref(&new));
    let ready: Value = app.readyz_details().await.json().await.unwrap();
    assert_eq!(ready["retired_keys"], 0);
    assert_eq!(ready["key_age_seconds"], 120);
}

#[tokio::test]
async fn the_next_key_moved_over_the_signing_key_signs_and_the_old_one_is_retired() {
    let app = spawn_app_with(|s| s.key.next = Some(s.key.path.with_file_name("next.key"))).await;
    let old = app.keys.signing_key().kid().unwrap().to_owned();
    let next_path = app.dir.path().join("next.key");
    let (pem, next_kid) = new_key();
    replace_file(&next_path, &pem);
    wait_for_kids(&app, &[&old, &next_kid]).await;

    std::fs::rename(&next_path, &app.key_path).unwrap();
    wait_for_kids(&app, &[&next_kid, &old]).await;
    let seen = app.wait_for_kid(DEADLINE, |k| k == next_kid).await;
    assert_eq!(seen.as_deref(), Some(next_kid.as_str()));
}

#[tokio::test]
async fn kid_format_none_gives_each_jwk_its_thumbprint_as_kid() {
    let app = spawn_app_with(|s| s.token.kid_format = KidFormat::None).await;
    let set = jwks(&app).await;
    let thumbprint = app.keys.signing_key().thumbprint().unwrap().to_owned();
    assert_eq!(kids(&set), [thumbprint]);
    assert!(header(&app.pull_token().await).get("kid").is_none());
}

#[tokio::test]
async fn hmac_secrets_are_never_published() {
    let dir = tempfile::tempdir().unwrap();
    let secret = generate::generate(Algorithm::HS256).unwrap().key_pem;
    let path = dir.path().join("secret");
    std::fs::write(&path, &secret).unwrap();
    let app = spawn_app_with(|s| {
        s.key.path = path.clone();
        s.key.algorithm = Some("HS256".into());
    })
    .await;
    let response = app.get("/.well-known/jwks.json").await;
    let text = response.text().await.unwrap();
    assert_eq!(text, r#"{"keys":[]}"#);
    assert!(!text.contains(secret.trim()));
}

#[tokio::test]
async fn a_next_key_with_its_certificate_publishes_x5c() {
    let next_dir = tempfile::tempdir().unwrap();
    let written = generate::write(next_dir.path(), Algorithm::ES256, false).unwrap();
    let cert = written.certificate.clone().unwrap();
    let app = spawn_app_with(|s| {
        s.key.next = Some(written.key.clone());
        s.key.next_certificate = Some(cert.clone());
    })
    .await;
    let next_kid = kid_of(&std::fs::read(&written.key).unwrap());
    let set = jwks(&app).await;
    assert_eq!(set["keys"][1]["kid"], next_kid.as_str());
    let x5c = set["keys"][1]["x5c"][0].as_str().unwrap();
    let der = pem::parse(std::fs::read(&cert).unwrap()).unwrap();
    assert_eq!(
        data_encoding::BASE64.decode(x5c.as_bytes()).unwrap(),
        der.contents()
    );
    assert!(set["keys"][0].get("x5c").is_none());
}
