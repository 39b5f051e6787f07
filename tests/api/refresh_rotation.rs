//! Rotating the refresh secret: key ids in refresh tokens, `regauth refresh-secret
//! add|rotate|retire`, and servers that take the new file on SIGHUP (its reload, called here
//! directly as the SIGHUP handler does) without logging anyone out.

use std::path::Path;

use aws_lc_rs::hmac;
use data_encoding::{BASE64, BASE64URL_NOPAD};
use regauth::config::Settings;

use crate::helpers::{TestApp, spawn_app_with, user};

fn with_alice(s: &mut Settings) {
    s.users.insert("alice".into(), user("s3cret", &[]));
}

async fn post(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(format!("{}/token", app.address))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// docker login's form: a refresh token for alice.
async fn login(app: &TestApp) -> String {
    let response = post(
        app,
        &[
            ("grant_type", "password"),
            ("service", "registry.test"),
            ("client_id", "docker"),
            ("access_type", "offline"),
            ("username", "alice"),
            ("password", "s3cret"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["refresh_token"].as_str().unwrap().to_owned()
}

/// A refresh grant with `token`: its status, headers' `www-authenticate` and body.
async fn refresh(app: &TestApp, token: &str) -> (u16, Option<String>, String) {
    let response = post(
        app,
        &[
            ("grant_type", "refresh_token"),
            ("service", "registry.test"),
            ("client_id", "docker"),
            ("scope", "repository:alice/app:pull"),
            ("refresh_token", token),
        ],
    )
    .await;
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, challenge, response.text().await.unwrap())
}

/// What any invalid refresh token gets.
async fn refused(app: &TestApp) -> (u16, Option<String>, String) {
    let answer = refresh(app, "garbage").await;
    assert_eq!(answer.0, 401, "{answer:?}");
    answer
}

/// The key id of an `rt2.` refresh token.
fn kid(token: &str) -> &str {
    let rest = token.strip_prefix("rt2.").expect("an rt2 token");
    rest.split('.').next().unwrap()
}

/// `regauth refresh-secret ACTION` for `secret`; its stdout. Panics unless it succeeds.
fn refresh_secret(dir: &Path, secret: &Path, action: &str) -> String {
    let config = dir.join("refresh-cli.yaml");
    std::fs::write(
        &config,
        format!(
            "key:\n  path: {}\nauth:\n  refresh_secret_file: {}\n",
            dir.join("signing.key").display(),
            secret.display()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_regauth"))
        .args(["refresh-secret", action, "--config"])
        .arg(&config)
        .env_remove("REGAUTH_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{action}: {stdout}{stderr}");
    stdout
}

/// What SIGHUP does, on `app`; the phrase about the refresh secret.
async fn sighup(app: &TestApp) -> String {
    let reload = std::sync::Arc::clone(&app.reload);
    let done = tokio::task::spawn_blocking(move || reload.reread())
        .await
        .unwrap();
    done.split("; ")
        .find(|p| p.starts_with("refresh secret"))
        .unwrap_or_else(|| panic!("SIGHUP did not re-read the refresh secret: {done}"))
        .to_owned()
}

#[tokio::test]
async fn a_rotation_keeps_earlier_refresh_tokens_until_the_previous_secret_is_retired() {
    let app = spawn_app_with(with_alice).await;
    let dir = app.dir.path();
    let secret = dir.join("refresh.secret");
    let invalid = refused(&app).await;

    let before = login(&app).await;
    let old_kid = kid(&before).to_owned();
    let shown = refresh_secret(dir, &secret, "show");
    assert!(
        shown.contains(&format!("{old_kid} current")),
        "the token names the current secret: {shown}"
    );
    let secret_text = std::fs::read_to_string(&secret).unwrap();
    assert!(!shown.contains(secret_text.trim()), "{shown}");

    let rotated = refresh_secret(dir, &secret, "rotate");
    assert!(
        rotated.contains(&format!("{old_kid} previous: accepted until")),
        "{rotated}"
    );
    let reloaded = sighup(&app).await;
    assert!(reloaded.contains("reloaded"), "{reloaded}");

    // The token from before the rotation still works, and is returned unchanged.
    let (status, _, body) = refresh(&app, &before).await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["refresh_token"], before.as_str());
    // New tokens carry the new secret's id.
    let after = login(&app).await;
    let new_kid = kid(&after).to_owned();
    assert_ne!(new_kid, old_kid);
    assert!(rotated.contains(&format!("{new_kid} current")), "{rotated}");
    assert_eq!(refresh(&app, &after).await.0, 200);

    // Retired: the earlier token is refused exactly like any invalid one; the new one works.
    let retired = refresh_secret(dir, &secret, "retire");
    assert!(!retired.contains(&old_kid), "{retired}");
    assert!(sighup(&app).await.contains("reloaded"));
    assert_eq!(refresh(&app, &before).await, invalid);
    assert_eq!(refresh(&app, &after).await.0, 200);
}

/// An `rt1.` refresh token as regauth wrote them before key ids: HMAC-SHA256 under the secret
/// over `rt1.<payload>`, the payload binding the password hash through the same HMAC.
fn rt1_token(secret_file: &Path, user: &str, password_hash: &str) -> String {
    let text = std::fs::read_to_string(secret_file).unwrap();
    let secret = BASE64.decode(text.trim().as_bytes()).unwrap();
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
    let pwv = hmac::sign(&key, format!("pwv:{password_hash}").as_bytes());
    let now = chrono::Utc::now().timestamp();
    let payload = serde_json::json!({
        "sub": user,
        "aud": "registry.test",
        "iat": now,
        "exp": now + 3600,
        "pwv": BASE64URL_NOPAD.encode(&pwv.as_ref()[..12]),
    });
    let mut token = String::from("rt1.");
    BASE64URL_NOPAD.encode_append(&serde_json::to_vec(&payload).unwrap(), &mut token);
    let tag = hmac::sign(&key, token.as_bytes());
    token.push('.');
    BASE64URL_NOPAD.encode_append(tag.as_ref(), &mut token);
    token
}

#[tokio::test]
async fn an_rt1_refresh_token_from_before_the_upgrade_keeps_working_through_a_rotation() {
    let app = spawn_app_with(with_alice).await;
    let dir = app.dir.path();
    let secret = dir.join("refresh.secret");
    let invalid = refused(&app).await;
    let hash = app
        .users
        .lookup("alice")
        .unwrap()
        .password_hash()
        .to_owned();
    let old = rt1_token(&secret, "alice", &hash);

    let (status, _, body) = refresh(&app, &old).await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["refresh_token"], old.as_str(), "returned unchanged");

    refresh_secret(dir, &secret, "rotate");
    sighup(&app).await;
    assert_eq!(
        refresh(&app, &old).await.0,
        200,
        "accepted under the previous secret"
    );

    refresh_secret(dir, &secret, "retire");
    sighup(&app).await;
    assert_eq!(refresh(&app, &old).await, invalid);
}

#[tokio::test]
async fn a_tampered_key_id_is_refused_like_any_invalid_refresh_token() {
    let app = spawn_app_with(with_alice).await;
    let dir = app.dir.path();
    let secret = dir.join("refresh.secret");
    let invalid = refused(&app).await;
    let token = login(&app).await;
    let real = kid(&token).to_owned();
    // Another accepted secret's id (a `next` one), an unknown one, and none.
    let added = refresh_secret(dir, &secret, "add");
    sighup(&app).await;
    let next = added
        .lines()
        .find(|l| l.contains("next:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    for other in [next.as_str(), "AAAAAAAA", ""] {
        let tampered = token.replacen(&real, other, 1);
        assert_eq!(refresh(&app, &tampered).await, invalid, "{tampered}");
    }
    assert_eq!(refresh(&app, &token).await.0, 200);
}

#[tokio::test]
async fn replicas_stage_the_new_secret_first_so_none_refuses_a_token_another_issued() {
    // Replicas share the users (one htpasswd file, so one password hash) and the secret file.
    let users = tempfile::tempdir().unwrap();
    let htpasswd = users.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}\n", bcrypt::hash("s3cret", 4).unwrap()),
    )
    .unwrap();
    let h1 = htpasswd.clone();
    let first = spawn_app_with(move |s| s.auth.htpasswd = Some(h1)).await;
    let dir = first.dir.path();
    let secret = dir.join("refresh.secret");
    let shared = secret.clone();
    let second = spawn_app_with(move |s| {
        s.auth.htpasswd = Some(htpasswd);
        s.auth.refresh_secret_file = Some(shared);
    })
    .await;
    let before = login(&second).await;

    // 1. add, and every replica re-reads: all accept the new secret, none signs with it.
    refresh_secret(dir, &secret, "add");
    for app in [&first, &second] {
        assert!(sighup(app).await.contains("reloaded"));
        assert_eq!(kid(&login(app).await), kid(&before));
    }
    // 2. rotate; the first replica has re-read, the second not yet.
    refresh_secret(dir, &secret, "rotate");
    sighup(&first).await;
    let after = login(&first).await;
    assert_ne!(kid(&after), kid(&before));
    assert_eq!(
        refresh(&second, &after).await.0,
        200,
        "a replica that has not re-read yet accepts the new id"
    );
    assert_eq!(refresh(&first, &before).await.0, 200);
    sighup(&second).await;
    assert_eq!(refresh(&second, &before).await.0, 200);
    assert_eq!(kid(&login(&second).await), kid(&after));
}

#[tokio::test]
async fn a_secret_file_that_cannot_be_used_is_refused_by_sighup_and_the_secrets_stay() {
    let app = spawn_app_with(with_alice).await;
    let secret = app.dir.path().join("refresh.secret");
    let token = login(&app).await;
    let good = std::fs::read_to_string(&secret).unwrap();
    let other = BASE64.encode(&[9u8; 32]);
    for (text, expected) in [
        ("not base64\n".to_owned(), "line 1: a secret must be base64"),
        (
            // A previous secret kept longer than refresh tokens live (90 days).
            format!(
                "{other}\n{} previous until 2999-01-01T00:00:00Z\n",
                good.trim()
            ),
            "more than auth.refresh_ttl_seconds",
        ),
    ] {
        std::fs::write(&secret, &text).unwrap();
        let phrase = sighup(&app).await;
        assert!(
            phrase.contains("not usable") && phrase.contains(expected),
            "{phrase}"
        );
        assert!(
            !phrase.contains(good.trim()) && !phrase.contains(&other),
            "{phrase}"
        );
        assert_eq!(refresh(&app, &token).await.0, 200);
        assert_eq!(kid(&login(&app).await), kid(&token));
    }
}

#[test]
fn the_commands_say_what_is_missing_or_wrong_and_never_print_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("refresh.secret");
    let config = dir.path().join("regauth.yaml");
    std::fs::write(
        &config,
        format!(
            "key:\n  path: {}\nauth:\n  refresh_secret_file: {}\n",
            dir.path().join("signing.key").display(),
            secret.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_regauth"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_remove("REGAUTH_CONFIG")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    let (ok, text) = run(&["refresh-secret", "rotate"]);
    assert!(!ok && text.contains("does not exist"), "{text}");
    assert!(!secret.exists(), "rotate does not create a file");

    let current = BASE64.encode(&[1u8; 32]);
    let previous = BASE64.encode(&[2u8; 32]);
    std::fs::write(
        &secret,
        format!("{current}\n{previous} previous until 2999-01-01T00:00:00Z\n"),
    )
    .unwrap();
    for args in [&["refresh-secret", "add"][..], &["check"][..]] {
        let (ok, text) = run(args);
        assert!(!ok, "{args:?}: {text}");
        assert!(
            text.contains("line 2: the previous secret")
                && text.contains("more than auth.refresh_ttl_seconds"),
            "{args:?}: {text}"
        );
        assert!(
            !text.contains(&current) && !text.contains(&previous),
            "{text}"
        );
    }

    std::fs::write(&secret, format!("{current}\n")).unwrap();
    let (ok, text) = run(&["check"]);
    let kid = regauth::issue::refresh::secrets::kid_of(&[1u8; 32]);
    assert!(
        text.contains(&format!("refresh tokens: on ({kid} current")),
        "{ok} {text}"
    );
}
