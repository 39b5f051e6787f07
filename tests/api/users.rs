//! Signing in with Basic credentials on GET /token, and the htpasswd file.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, claims, spawn_app_with, user, with_admin};

async fn app_with_alice() -> TestApp {
    spawn_app_with(|s| {
        s.users.insert("alice".into(), user("s3cret", &["dev"]));
    })
    .await
}

async fn get_with(app: &TestApp, query: &str, user: &str, password: &str) -> reqwest::Response {
    app.client
        .get(format!("{}/token?{query}", app.address))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_signed_in_user_gets_a_token_in_their_name_with_push() {
    let app = app_with_alice().await;
    let response = get_with(
        &app,
        "account=alice&scope=repository%3Ateam%2Fapp%3Apull%2Cpush&service=registry.test",
        "alice",
        "s3cret",
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let c = claims(body["token"].as_str().unwrap());
    assert_eq!(c["sub"], "alice");
    assert_eq!(
        c["access"],
        json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]),
        "the default rules let users pull and push"
    );
    assert!(
        body.get("refresh_token").is_none(),
        "no offline_token asked"
    );
}

#[tokio::test]
async fn wrong_password_unknown_user_malformed_header_and_wrong_account_look_the_same() {
    let app = app_with_alice().await;
    let mut answers = Vec::new();
    let attempts: Vec<reqwest::RequestBuilder> = vec![
        app.client
            .get(format!("{}/token?service=s", app.address))
            .basic_auth("alice", Some("nope")),
        app.client
            .get(format!("{}/token?service=s", app.address))
            .basic_auth("mallory", Some("s3cret")),
        app.client
            .get(format!("{}/token?service=s", app.address))
            .header("Authorization", "Basic !!"),
        app.client
            .get(format!("{}/token?service=s&account=bob", app.address))
            .basic_auth("alice", Some("s3cret")),
    ];
    for attempt in attempts {
        let response = attempt.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Basic realm="regauth""#
        );
        assert_eq!(response.headers()["content-type"], "application/json");
        answers.push(response.text().await.unwrap());
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:#?}");
    assert!(answers[0].contains("UNAUTHORIZED"));
    assert!(!answers[0].contains("s3cret") && !answers[0].contains("mallory"));
}

#[tokio::test]
async fn docker_login_with_offline_token_gets_a_refresh_token_and_anonymous_does_not() {
    let app = app_with_alice().await;
    let body: Value = get_with(
        &app,
        "account=alice&client_id=docker&offline_token=true&service=registry.test",
        "alice",
        "s3cret",
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rt2."));
    let anon: Value = app
        .get_token("client_id=docker&offline_token=true&service=registry.test")
        .await
        .json()
        .await
        .unwrap();
    assert!(anon.get("refresh_token").is_none());
}

#[tokio::test]
async fn htpasswd_users_can_sign_in_and_changes_apply_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("bob:{}\n", bcrypt::hash("pw1", 4).unwrap()),
    )
    .unwrap();
    let path = htpasswd.clone();
    let app = spawn_app_with(move |s| {
        with_admin(s);
        s.auth.htpasswd = Some(path);
    })
    .await;
    assert_eq!(
        get_with(&app, "service=s", "bob", "pw1").await.status(),
        200
    );
    assert_eq!(
        get_with(&app, "service=s", "carol", "pw2").await.status(),
        401
    );

    // Replace the file by a rename: carol arrives, bob leaves.
    let staged = dir.path().join("htpasswd.new");
    std::fs::write(
        &staged,
        format!("carol:{}\n", bcrypt::hash("pw2", 4).unwrap()),
    )
    .unwrap();
    std::fs::rename(&staged, &htpasswd).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_with(&app, "service=s", "carol", "pw2").await.status() != 200 {
        assert!(Instant::now() < deadline, "carol never became valid");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get_with(&app, "service=s", "bob", "pw1").await.status(),
        401
    );

    // A broken file keeps carol, once the watch has seen it and refused it.
    let failed_before = app.users.reload_status().failed_reloads;
    std::fs::write(&htpasswd, "carol:{SHA}abc\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.users.reload_status().failed_reloads == failed_before {
        assert!(
            Instant::now() < deadline,
            "the broken file was never reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = app.users.reload_status();
    assert!(
        status.last_error.as_deref().unwrap().contains("line 1"),
        "{status:?}"
    );
    // /readyz shows it, and stays ready: the last good users still sign in.
    let ready = app.readyz_details().await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    let reported = &body["htpasswd"];
    assert_eq!(reported["path"], htpasswd.display().to_string());
    assert!(reported["failed_reloads"].as_u64().unwrap() > failed_before);
    assert!(
        reported["last_reload_error"]
            .as_str()
            .unwrap()
            .contains("line 1"),
        "{body}"
    );
    assert!(reported["last_reload"].is_string());
    assert_eq!(
        get_with(&app, "service=s", "carol", "pw2").await.status(),
        200
    );
}

#[tokio::test]
async fn without_users_credentials_are_ignored_and_the_caller_is_anonymous() {
    let app = spawn_app_with(|_| {}).await;
    let response = get_with(
        &app,
        "service=s&scope=repository:a:pull,push",
        "alice",
        "whatever",
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let c = claims(body["token"].as_str().unwrap());
    assert_eq!(c["sub"], "");
    assert_eq!(c["access"][0]["actions"], json!(["pull"]));
}
