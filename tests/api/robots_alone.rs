//! A server whose only accounts are robots: a store and no users. Without users credentials
//! are ignored (the caller is anonymous), but an access token's are the store's to check.

use std::path::Path;
use std::time::{Duration, Instant};

use regauth::store::StoreSettings;
use serde_json::Value;

use crate::helpers::{claims, spawn_app_with};

const BIN: &str = env!("CARGO_BIN_EXE_regauth");

/// `GET /token` for `repository:ci/app:pull,push` with Basic `user:password`:
/// (status, subject, granted actions).
async fn sign_in(address: &str, user: &str, password: &str) -> (u16, String, Vec<String>) {
    let response = reqwest::Client::new()
        .get(format!(
            "{address}/token?service=registry.test&scope=repository:ci/app:pull,push"
        ))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        return (status, String::new(), Vec::new());
    }
    let body: Value = response.json().await.unwrap();
    let claims = claims(body["token"].as_str().unwrap());
    let actions = claims["access"][0]["actions"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    (status, claims["sub"].as_str().unwrap().to_owned(), actions)
}

fn regauth(config: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("REGAUTH_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn without_users_a_robot_token_signs_in_and_a_password_stays_anonymous() {
    let app = spawn_app_with(|s| {
        s.token.services = vec!["registry.test".into()];
        let db = s.key.path.with_file_name("tokens.db");
        s.store = Some(StoreSettings {
            url: format!("sqlite:{}", db.display()),
            ..StoreSettings::default()
        });
    })
    .await;
    let config = app.dir.path().join("store.yaml");
    std::fs::write(
        &config,
        format!(
            "store:\n  url: \"sqlite:{}\"\n",
            app.dir.path().join("tokens.db").display()
        ),
    )
    .unwrap();
    let secret = regauth(
        &config,
        &[
            "token",
            "create",
            "--robot",
            "ci",
            "--name",
            "main",
            "--scope",
            "repository:ci/*:pull,push",
        ],
    );
    // Wait for the server's snapshot, not on sign-ins (failures count toward the limits).
    let store = app.store.as_ref().unwrap();
    let start = Instant::now();
    while store.snapshot().len() != 1 {
        assert!(start.elapsed() < Duration::from_secs(5), "token not loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The robot signs in as itself, with its scopes under the default rules.
    let (status, subject, actions) = sign_in(&app.address, "ci", &secret).await;
    assert_eq!((status, subject.as_str()), (200, "ci"));
    assert_eq!(actions, ["pull", "push"]);
    // Any other credentials are still ignored: the anonymous caller's pull.
    let (status, subject, actions) = sign_in(&app.address, "ci", "not-a-token").await;
    assert_eq!((status, subject.as_str()), (200, ""));
    assert_eq!(actions, ["pull"]);

    // Revoked, the token is refused (401), not taken for an anonymous caller.
    regauth(&config, &["token", "revoke", "main"]);
    let start = Instant::now();
    loop {
        let (status, subject, _) = sign_in(&app.address, "ci", &secret).await;
        if status == 401 {
            break;
        }
        assert_eq!(subject, "ci", "a revoked token must not turn anonymous");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still {status} 5 s after the revocation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
