//! POST /token: the OAuth2 password and refresh-token grants, as containerd, docker and
//! podman use them.

use regauth::config::Settings;
use regauth::identity::UserSettings;
use regauth::policy::RuleSettings;
use serde_json::{Value, json};

use crate::helpers::{TestApp, claims, spawn_app_with, user};

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

/// docker login's OAuth2 form: alice's password grant asking for offline access.
async fn offline_login(app: &TestApp, service: &str) -> Value {
    post(
        app,
        &[
            ("grant_type", "password"),
            ("service", service),
            ("client_id", "docker"),
            ("access_type", "offline"),
            ("username", "alice"),
            ("password", "s3cret"),
        ],
    )
    .await
    .json()
    .await
    .unwrap()
}

async fn refresh_token(app: &TestApp) -> String {
    let body = offline_login(app, "registry.test").await;
    body["refresh_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn containerd_password_grant_gets_an_access_token_with_the_granted_scope() {
    let app = spawn_app_with(with_alice).await;
    let response = post(
        &app,
        &[
            ("grant_type", "password"),
            ("service", "registry.test"),
            ("client_id", "containerd-client"),
            (
                "scope",
                "repository:team/app:pull,push repository:team/lib:pull",
            ),
            ("username", "alice"),
            ("password", "s3cret"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["scope"],
        "repository:team/app:pull,push repository:team/lib:pull"
    );
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        body.get("refresh_token").is_none(),
        "no access_type=offline"
    );
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], "registry.test");
}

#[tokio::test]
async fn a_wrong_password_on_post_is_a_401_so_containerd_falls_back() {
    let app = spawn_app_with(with_alice).await;
    let response = post(
        &app,
        &[
            ("grant_type", "password"),
            ("service", "s"),
            ("client_id", "c"),
            ("username", "alice"),
            ("password", "wrong"),
        ],
    )
    .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
}

#[tokio::test]
async fn docker_refresh_grant_returns_the_same_refresh_token_and_grants_the_asked_scope() {
    let app = spawn_app_with(with_alice).await;
    let refresh = refresh_token(&app).await;
    for _ in 0..2 {
        // docker: space-joined scope, no fallback to GET.
        let body: Value = post(
            &app,
            &[
                ("grant_type", "refresh_token"),
                ("service", "registry.test"),
                ("client_id", "docker"),
                ("refresh_token", &refresh),
                ("scope", "repository:team/app:pull,push"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(
            body["refresh_token"],
            refresh.as_str(),
            "refresh tokens do not rotate"
        );
        let c = claims(body["access_token"].as_str().unwrap());
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["access"][0]["actions"], json!(["pull", "push"]));
    }
    // podman/skopeo: repeated scope fields.
    let body: Value = post(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("service", "registry.test"),
            ("client_id", "podman"),
            ("refresh_token", &refresh),
            ("scope", "repository:a/b:pull"),
            ("scope", "repository:c/d:push"),
        ],
    )
    .await
    .json()
    .await
    .unwrap();
    let access = claims(body["access_token"].as_str().unwrap())["access"].clone();
    assert_eq!(access.as_array().unwrap().len(), 2);
}

/// A refresh grant for `scope` on `app`: the access it got.
async fn refreshed_access(app: &TestApp, refresh: &str, scope: &str) -> Value {
    let response = post(
        app,
        &[
            ("grant_type", "refresh_token"),
            ("service", "registry.test"),
            ("client_id", "docker"),
            ("refresh_token", refresh),
            ("scope", scope),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    claims(body["access_token"].as_str().unwrap())["access"].clone()
}

#[tokio::test]
async fn a_refresh_is_decided_by_the_rules_and_groups_in_force_when_it_is_presented() {
    // Rules are not hot-reloaded, but refresh tokens are stateless: an instance started later
    // with the same refresh secret and the same password hash accepts the token, so
    // instances with other rules stand for a rule change between login and refresh.
    let alice = user("s3cret", &[]);
    let a = alice.clone();
    let login = spawn_app_with(move |s| {
        s.users.insert("alice".into(), a);
        s.acl = Some(vec![RuleSettings::new(
            |m| m.name = Some("team/**".into()),
            &["pull"],
        )]);
    })
    .await;
    let refresh = refresh_token(&login).await;
    let scope = "repository:team/app:pull,push,delete";
    let pull_only = json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}]);
    assert_eq!(refreshed_access(&login, &refresh, scope).await, pull_only);

    let secret = login.dir.path().join("refresh.secret");
    let with_rules = |acl: Vec<RuleSettings>, user: UserSettings| {
        let secret = secret.clone();
        spawn_app_with(move |s| {
            s.users.insert("alice".into(), user);
            s.auth.refresh_secret_file = Some(secret);
            s.acl = Some(acl);
        })
    };

    // Wider rules: push is granted now.
    let wider = with_rules(
        vec![RuleSettings::new(
            |m| m.name = Some("team/**".into()),
            &["pull", "push"],
        )],
        alice.clone(),
    )
    .await;
    assert_eq!(
        refreshed_access(&wider, &refresh, scope).await,
        json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}])
    );

    // Narrower rules: nothing on team/**.
    let narrower = with_rules(
        vec![
            RuleSettings::new(|m| m.name = Some("team/**".into()), &[]),
            RuleSettings::new(|_| {}, &["pull"]),
        ],
        alice.clone(),
    )
    .await;
    assert_eq!(
        refreshed_access(&narrower, &refresh, scope).await,
        json!([{"type": "repository", "name": "team/app", "actions": []}])
    );

    // Same rules, but alice joined a group since she signed in: the group's rule applies.
    let release = UserSettings {
        groups: vec!["release".into()],
        ..alice.clone()
    };
    let grouped = with_rules(
        vec![
            RuleSettings::new(|m| m.group = Some("release".into()), &["*"]),
            RuleSettings::new(|m| m.name = Some("team/**".into()), &["pull"]),
        ],
        release,
    )
    .await;
    assert_eq!(
        refreshed_access(&grouped, &refresh, scope).await,
        json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push", "delete"]}])
    );
}

#[tokio::test]
async fn a_new_password_or_another_service_refuses_a_refresh_token() {
    let first = spawn_app_with(with_alice).await;
    let refresh = refresh_token(&first).await;
    let other_service = post(
        &first,
        &[
            ("grant_type", "refresh_token"),
            ("service", "other.test"),
            ("client_id", "docker"),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!(other_service.status(), 401);

    // A second instance with the same refresh secret, where alice has a new password hash.
    let secret = first.dir.path().join("refresh.secret");
    let second = spawn_app_with(move |s| {
        s.users.insert("alice".into(), user("n3w-password", &[]));
        s.auth.refresh_secret_file = Some(secret);
    })
    .await;
    let response = post(
        &second,
        &[
            ("grant_type", "refresh_token"),
            ("service", "registry.test"),
            ("client_id", "docker"),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!(
        response.status(),
        401,
        "a password change revokes refresh tokens"
    );
}

#[tokio::test]
async fn a_refresh_token_survives_a_restart_when_users_and_secret_are_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}\n", bcrypt::hash("s3cret", 4).unwrap()),
    )
    .unwrap();
    let h1 = htpasswd.clone();
    let first = spawn_app_with(move |s| s.auth.htpasswd = Some(h1)).await;
    let refresh = refresh_token(&first).await;
    let secret = first.dir.path().join("refresh.secret");
    let h2 = htpasswd.clone();
    // Another instance (a restart, or a replica): same users and refresh secret, but its
    // own signing key.
    let second = spawn_app_with(move |s| {
        s.auth.htpasswd = Some(h2);
        s.auth.refresh_secret_file = Some(secret);
    })
    .await;
    assert_ne!(
        first.keys.signing_key().kid(),
        second.keys.signing_key().kid()
    );
    let form = [
        ("grant_type", "refresh_token"),
        ("service", "registry.test"),
        ("client_id", "docker"),
        ("refresh_token", refresh.as_str()),
    ];
    assert_eq!(
        post(&second, &form).await.status(),
        200,
        "another instance with the same secret accepts it"
    );

    // Removing the user revokes it.
    std::fs::write(&htpasswd, "# nobody\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while post(&second, &form).await.status() != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "refresh still accepted after the user was removed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn malformed_oauth_requests_name_what_is_wrong() {
    let app = spawn_app_with(with_alice).await;
    let cases: &[(&[(&str, &str)], u16, &str)] = &[
        (
            &[
                ("grant_type", "password"),
                ("service", "s"),
                ("username", "alice"),
                ("password", "s3cret"),
            ],
            400,
            "client_id",
        ),
        (&[("service", "s"), ("client_id", "c")], 400, "grant_type"),
        (
            &[("grant_type", "password"), ("client_id", "c")],
            400,
            "service",
        ),
        (
            &[
                ("grant_type", "password"),
                ("service", "s"),
                ("client_id", "c"),
            ],
            400,
            "username",
        ),
        (
            &[
                ("grant_type", "client_credentials"),
                ("service", "s"),
                ("client_id", "c"),
            ],
            400,
            "client_credentials",
        ),
        (
            &[
                ("grant_type", "refresh_token"),
                ("service", "s"),
                ("client_id", "c"),
            ],
            400,
            "refresh_token",
        ),
        (
            &[
                ("grant_type", "refresh_token"),
                ("service", "s"),
                ("client_id", "c"),
                ("refresh_token", "garbage"),
            ],
            401,
            "sign in again",
        ),
    ];
    for (form, status, needle) in cases {
        let response = post(&app, form).await;
        assert_eq!(response.status().as_u16(), *status, "{form:?}");
        let body = response.text().await.unwrap();
        assert!(body.contains(needle), "{form:?}: {body}");
    }
}

#[tokio::test]
async fn without_a_refresh_secret_no_refresh_tokens_are_issued() {
    let app = spawn_app_with(|s| {
        with_alice(s);
        s.auth.refresh_secret_file = Some(s.key.path.with_file_name("missing.secret"));
    })
    .await;
    let body = offline_login(&app, "s").await;
    assert!(body.get("refresh_token").is_none());
    let response = post(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("service", "s"),
            ("client_id", "docker"),
            ("refresh_token", "rt1.x.y"),
        ],
    )
    .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn post_token_refuses_a_service_outside_the_allow_list() {
    let app = spawn_app_with(|s| {
        with_alice(s);
        s.token.services = vec!["registry.test".into()];
    })
    .await;
    let grant = |service: &'static str| {
        [
            ("grant_type", "password"),
            ("service", service),
            ("client_id", "docker"),
            ("username", "alice"),
            ("password", "s3cret"),
            ("scope", "repository:team/app:pull"),
        ]
    };
    let response = post(&app, &grant("other.test")).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "INVALID_REQUEST");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("other.test"),
        "{body}"
    );
    assert_eq!(post(&app, &grant("registry.test")).await.status(), 200);
}
