//! Liveness and readiness.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_reports_the_loaded_key() {
    let app = spawn_app().await;
    let response = app.get("/readyz").await;
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
}
