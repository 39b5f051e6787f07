//! The audit log over real HTTP: one JSON line per token decision, with who, what, which
//! rule and the outcome, never a password or a failed login's typed name; and reopening the
//! file for logrotate, in process and through SIGHUP to `regauth serve`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{TestApp, signal, spawn_app_with, start_serve_logging, user};
use crate::support::{key_dir, wait_for, write_config};

const PASSWORD: &str = "Right-Pw-3b9e";
const TYPED_AS_USER: &str = "Typed-As-User-8c1f";

/// An app writing its audit log to `audit.log` in its own temp dir.
async fn audited_app() -> (TestApp, PathBuf) {
    let app = spawn_app_with(move |s| {
        s.audit.enabled = true;
        s.audit.output = s.key.path.with_file_name("audit.log").display().to_string();
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
        s.users.insert("alice".into(), user(PASSWORD, &[]));
    })
    .await;
    let path = app.dir.path().join("audit.log");
    (app, path)
}

/// The lines of `path` once there are at least `count`, within a deadline.
pub fn wait_for_lines(path: &Path, count: usize) -> Vec<Value> {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    wait_for(
        Duration::from_secs(10),
        || {
            let lines: Vec<Value> = read()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            (lines.len() >= count).then_some(lines)
        },
        || {
            let text = read();
            format!(
                "{} of {count} audit lines in {}:\n{text}",
                text.lines().count(),
                path.display()
            )
        },
    )
}

#[tokio::test]
async fn each_token_decision_is_one_json_line_with_who_what_and_which_rule() {
    let (app, path) = audited_app().await;
    let response = app
        .client
        .get(format!(
            "{}/token?service=registry.test&scope=repository:alice/app:pull,push",
            app.address
        ))
        .basic_auth("alice", Some(PASSWORD))
        .header("X-Request-Id", "req-basic-1")
        .header("X-Forwarded-For", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    let claims = crate::helpers::claims(token);
    let header = crate::helpers::header(token);

    let line = &wait_for_lines(&path, 1)[0];
    assert_eq!(line["request_id"], "req-basic-1");
    assert_eq!(line["client_ip"], "203.0.113.7");
    assert_eq!(line["account"], "alice");
    assert_eq!(line["source"], "users");
    assert_eq!(line["service"], "registry.test");
    assert_eq!(line["grant_type"], "basic");
    assert_eq!(line["outcome"], "issued");
    assert_eq!(line["error"], Value::Null);
    assert_eq!(line["jti"], claims["jti"]);
    assert_eq!(line["kid"], header["kid"]);
    assert_eq!(
        line["scopes"][0]["requested"],
        "repository:alice/app:pull,push"
    );
    assert_eq!(line["scopes"][0]["granted"], "pull,push");
    let rule = line["scopes"][0]["rule"].as_str().unwrap();
    assert!(rule.contains("signed-in users may pull and push"), "{rule}");
    let time = line["time"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(time).unwrap();

    // Anonymous GET, then the OAuth2 password grant with a refresh token.
    app.get_token("service=registry.test&scope=repository:team/app:pull,push")
        .await;
    let oauth: Value = app
        .client
        .post(format!("{}/token", app.address))
        .form(&[
            ("grant_type", "password"),
            ("service", "registry.test"),
            ("client_id", "test"),
            ("access_type", "offline"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("scope", "repository:team/app:pull"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = oauth["refresh_token"].as_str().unwrap().to_owned();
    let status = app
        .client
        .post(format!("{}/token", app.address))
        .form(&[
            ("grant_type", "refresh_token"),
            ("service", "registry.test"),
            ("client_id", "test"),
            ("refresh_token", &refresh),
        ])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);

    let lines = wait_for_lines(&path, 4);
    assert_eq!(lines[1]["grant_type"], "anonymous");
    assert_eq!(lines[1]["account"], "");
    assert_eq!(lines[1]["source"], "");
    assert_eq!(lines[1]["scopes"][0]["granted"], "pull");
    assert_eq!(lines[2]["grant_type"], "password");
    assert_eq!(lines[2]["account"], "alice");
    assert_eq!(lines[3]["grant_type"], "refresh_token");
    assert_eq!(lines[3]["outcome"], "issued");
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert!(ids[1..].iter().all(|id| id.len() == 16), "{ids:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains(&refresh), "{text}");
}

#[tokio::test]
async fn a_failed_login_is_refused_without_the_typed_name_or_password() {
    let (app, path) = audited_app().await;
    let status = app
        .client
        .get(format!(
            "{}/token?service=registry.test&scope=repository:team/app:pull",
            app.address
        ))
        .basic_auth(TYPED_AS_USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let status = app
        .client
        .post(format!("{}/token", app.address))
        .form(&[
            ("grant_type", "password"),
            ("service", "registry.test"),
            ("client_id", "test"),
            ("username", "alice"),
            ("password", TYPED_AS_USER),
        ])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);

    let lines = wait_for_lines(&path, 2);
    for (line, grant_type) in lines.iter().zip(["basic", "password"]) {
        assert_eq!(line["outcome"], "refused", "{line}");
        assert_eq!(line["grant_type"], grant_type, "{line}");
        assert_eq!(line["account"], "", "{line}");
        assert_eq!(line["error"], "UNAUTHORIZED", "{line}");
        assert_eq!(line["reason"], "invalid_credentials", "{line}");
        assert_eq!(line["jti"], Value::Null, "{line}");
    }
    assert_eq!(
        lines[0]["scopes"][0]["requested"],
        "repository:team/app:pull"
    );
    assert_eq!(lines[0]["scopes"][0]["granted"], Value::Null);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(TYPED_AS_USER), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[tokio::test]
async fn a_reopen_after_logrotate_moves_the_file_starts_a_new_one() {
    let (app, path) = audited_app().await;
    app.get_token("service=registry.test").await;
    wait_for_lines(&path, 1);
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated).unwrap();
    app.get_token("service=registry.test").await;
    wait_for_lines(&rotated, 2);
    assert!(!path.exists());
    app.audit.as_ref().unwrap().reopen().unwrap();
    app.get_token("service=registry.test").await;
    assert_eq!(wait_for_lines(&path, 1).len(), 1);
    assert_eq!(wait_for_lines(&rotated, 2).len(), 2);
}

#[tokio::test]
async fn sighup_makes_regauth_serve_reopen_its_audit_file() {
    let dir = key_dir();
    write_config(
        dir.path(),
        "server:\n  listen: 127.0.0.1:0\nkey:\n  path: keys/signing.key\n\
         audit:\n  output: audit.log\n",
    )
    .unwrap();
    let (mut child, addr, log) =
        start_serve_logging(&[], Some(dir.path()), &["--config", "regauth.yaml"]);
    let address = format!("http://{addr}");
    let client = reqwest::Client::new();
    let get = || {
        client
            .get(format!("{address}/token?service=registry.test"))
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);
    let path = dir.path().join("audit.log");
    wait_for_lines(&path, 1);
    let rotated = dir.path().join("audit.log.1");
    std::fs::rename(&path, &rotated).unwrap();

    signal(&child, "HUP");
    // The reopen happens when the signal is handled: poll until the new file exists.
    wait_for(
        Duration::from_secs(10),
        || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "regauth exited on SIGHUP"
            );
            path.exists().then_some(())
        },
        || "no new audit file after SIGHUP".into(),
    );
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(wait_for_lines(&path, 1).len(), 1);
    assert_eq!(wait_for_lines(&rotated, 1).len(), 1);
    assert!(
        log.wait_for("audit file audit.log: reopened").is_some(),
        "the reopen is logged"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
