//! Liveness and readiness.

use std::sync::Arc;

use chrono::TimeDelta;
use regauth::clock::{Clock, ManualClock};
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with, spawn_app_with_clock, with_admin};

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_on_the_main_listener_says_ready_and_nothing_else() {
    let app = spawn_app().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    // No path, kid or reload state for every client that can reach the token endpoint.
    assert_eq!(body, json!({"status": "ready"}));
}

#[tokio::test]
async fn readyz_on_the_admin_listener_reports_the_loaded_key() {
    let app = spawn_app_with(with_admin).await;
    let response = app.readyz_details().await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["alg"], "ES256");
    assert_eq!(body["kid"], app.keys.signing_key().kid().unwrap());
    assert_eq!(body["failed_reloads"], 0);
    assert_eq!(
        body["thumbprint"],
        app.keys.signing_key().thumbprint().unwrap()
    );
    assert!(body["source"].as_str().unwrap().starts_with("file "));
    // Reload health: checked at the start, nothing wrong.
    assert_eq!(body["last_check"], body["key_loaded_at"]);
    for field in ["key_file_error", "key_file_missing_since", "watch_problem"] {
        assert!(body[field].is_null(), "{field}: {body}");
    }
    assert_eq!(body["reload_panics"], 0);
    assert_eq!(body["watch_rearmed"], 0);
    assert_eq!(body["pair_retries"], 0);
}

#[tokio::test]
async fn readyz_answers_503_once_the_signing_certificate_has_expired() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let app = spawn_app_with_clock(
        |s| s.key.certificate = Some(s.key.path.with_extension("crt")),
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .await;
    let not_after = app
        .keys
        .signing_key()
        .certificate()
        .expect("the certificate is loaded")
        .not_after;

    clock.set(not_after - TimeDelta::seconds(1));
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ready");

    clock.set(not_after + TimeDelta::seconds(1));
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"status": "certificate expired"}));
    assert_eq!(app.get("/healthz").await.status(), 200, "still alive");
}

#[tokio::test]
async fn the_admin_readyz_answers_503_with_the_key_once_its_certificate_has_expired() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let app = spawn_app_with_clock(
        |s| {
            with_admin(s);
            s.key.certificate = Some(s.key.path.with_extension("crt"));
        },
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .await;
    let not_after = app.keys.signing_key().certificate().unwrap().not_after;
    clock.set(not_after + TimeDelta::seconds(1));
    let response = app.readyz_details().await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "certificate expired");
    assert_eq!(body["kid"], app.keys.signing_key().kid().unwrap());
}
