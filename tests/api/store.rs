//! Access tokens and robots on the store, over real sockets: SQLite in a temp dir and a real
//! PostgreSQL started by the test ([`crate::support::postgres`]). Tokens are made with the
//! `regauth token` command line, as operators make them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regauth::config::Settings;
use regauth::policy::{OneOrMore, RuleSettings};
use regauth::store::StoreSettings;
use serde_json::Value;

use crate::helpers::{TestApp, app_with_alice, claims};
use crate::support::postgres::Postgres;

const BIN: &str = env!("CARGO_BIN_EXE_regauth");
/// Every replica must see a change within this (the bound).
const SEEN_WITHIN: Duration = Duration::from_secs(5);

/// `store.url` pointing at `tokens.db` beside the test app's key.
pub(crate) fn sqlite_store(s: &mut Settings) {
    let path = s.key.path.with_file_name("tokens.db");
    s.store = Some(StoreSettings {
        url: format!("sqlite:{}", path.display()),
        ..StoreSettings::default()
    });
}

fn postgres_store(url: String) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.store = Some(StoreSettings {
            url,
            ..StoreSettings::default()
        })
    }
}

/// A settings file for the command line with the app's `store.url`.
pub(crate) fn config_file(app: &TestApp, url: &str) -> PathBuf {
    let path = app.dir.path().join("store.yaml");
    std::fs::write(&path, format!("store:\n  url: \"{url}\"\n")).unwrap();
    path
}

pub(crate) fn store_url(app: &TestApp) -> String {
    format!("sqlite:{}", app.dir.path().join("tokens.db").display())
}

/// Runs `regauth ARGS --config CONFIG`: (success, stdout, stderr).
fn regauth(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("REGAUTH_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `regauth token create ...`: the secret it prints.
pub(crate) fn create(config: &Path, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = regauth(config, &all);
    assert!(ok, "token create failed: {stderr}");
    let secret = stdout.trim().to_owned();
    assert!(
        secret.starts_with("rgat_") && secret.len() == 64,
        "{stdout}"
    );
    assert!(!stderr.contains(&secret), "the secret must not be logged");
    secret
}

fn revoke(config: &Path, key: &str) {
    let (ok, _, stderr) = regauth(config, &["token", "revoke", key]);
    assert!(ok, "token revoke failed: {stderr}");
}

pub(crate) async fn sign_in(
    address: &str,
    user: &str,
    password: &str,
    scope: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!(
            "{address}/token?service=registry.test&scope={scope}"
        ))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
}

async fn post_password(
    address: &str,
    user: &str,
    password: &str,
    scope: &str,
    offline: bool,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "password"),
        ("service", "registry.test"),
        ("client_id", "test"),
        ("scope", scope),
        ("username", user),
        ("password", password),
    ];
    if offline {
        form.push(("access_type", "offline"));
    }
    reqwest::Client::new()
        .post(format!("{address}/token"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// The actions granted by a `GET /token` answer for its first scope.
pub(crate) async fn granted(response: reqwest::Response) -> Vec<String> {
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let access = &claims(body["token"].as_str().unwrap())["access"];
    access
        .as_array()
        .unwrap()
        .first()
        .map(|a| {
            a["actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the server at `address` holds `n` active tokens (its `/metrics` says so), so
/// that the sign-ins that follow are not refused, and counted as failed logins, before the
/// server's next read of the store.
pub(crate) async fn wait_active(address: &str, n: usize) {
    let needle = format!("regauth_access_tokens_active {n}\n");
    let start = Instant::now();
    loop {
        let metrics = reqwest::get(format!("{address}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains(&needle) {
            return;
        }
        assert!(
            start.elapsed() < SEEN_WITHIN,
            "{address}: not {n} active tokens after {SEEN_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `GET /token` as `user`/`password` until it answers `status`; the time it took.
async fn until_status(
    address: &str,
    user: &str,
    password: &str,
    status: u16,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let got = sign_in(address, user, password, "repository:alice/app:pull")
            .await
            .status()
            .as_u16();
        if got == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{address}: still {got} after {within:?}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_sqlite_token_signs_in_with_get_and_post_within_its_scopes_until_revoked() {
    let app = app_with_alice(sqlite_store).await;
    let db = app.dir.path().join("tokens.db");
    assert!(!db.exists(), "no file before the first token");
    let config = config_file(&app, &store_url(&app));
    let secret = create(
        &config,
        &[
            "--user",
            "alice",
            "--name",
            "laptop",
            "--scope",
            "repository:alice/*:pull",
        ],
    );
    assert!(db.exists());
    // The server notices the new file at its next poll.
    wait_active(&app.address, 1).await;
    until_status(&app.address, "alice", &secret, 200, SEEN_WITHIN).await;

    // The rules give alice pull and push; the token only pull, and only on alice/*.
    let get = sign_in(
        &app.address,
        "alice",
        &secret,
        "repository:alice/app:pull,push",
    )
    .await;
    assert_eq!(granted(get).await, ["pull"]);
    let other = sign_in(&app.address, "alice", &secret, "repository:bob/app:pull").await;
    assert!(granted(other).await.is_empty());
    let post = post_password(
        &app.address,
        "alice",
        &secret,
        "repository:alice/app:pull,push",
        true,
    )
    .await;
    assert_eq!(post.status(), 200);
    let body: Value = post.json().await.unwrap();
    assert_eq!(body["scope"], "repository:alice/app:pull");
    // A token sign-in gets no refresh token: revoking the token must be enough.
    assert!(body.get("refresh_token").is_none(), "{body}");
    // The password still signs in, with its own rights.
    let password = sign_in(
        &app.address,
        "alice",
        "s3cret",
        "repository:alice/app:pull,push",
    )
    .await;
    assert_eq!(granted(password).await, ["pull", "push"]);

    // Someone else's name with alice's token: refused.
    assert_eq!(
        sign_in(&app.address, "bob", &secret, "repository:alice/app:pull")
            .await
            .status(),
        401
    );

    // Listed without the secret; last use recorded in a batch.
    let start = Instant::now();
    let listed = loop {
        let (ok, stdout, stderr) = regauth(&config, &["token", "list", "--json"]);
        assert!(ok, "{stderr}");
        assert!(!stdout.contains(&secret));
        let listed: Value = serde_json::from_str(&stdout).unwrap();
        if !listed[0]["last_used"].is_null() {
            break listed;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{listed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(listed[0]["name"], "laptop");
    assert_eq!(listed[0]["owner"], "alice");
    assert_eq!(listed[0]["kind"], "user");
    assert_eq!(listed[0]["scopes"][0], "repository:alice/*:pull");
    assert!(listed[0]["expires"].is_null());

    revoke(&config, "laptop");
    until_status(&app.address, "alice", &secret, 401, SEEN_WITHIN).await;
    let post = post_password(
        &app.address,
        "alice",
        &secret,
        "repository:alice/app:pull",
        false,
    )
    .await;
    assert_eq!(post.status(), 401);
    let store = app.store.as_ref().unwrap();
    assert!(store.snapshot().is_empty());
}

#[tokio::test]
async fn an_expiring_token_stops_at_its_expiry_and_wrong_tokens_lock_out_like_passwords() {
    let app = app_with_alice(sqlite_store).await;
    let config = config_file(&app, &store_url(&app));
    let short = create(
        &config,
        &[
            "--user",
            "alice",
            "--name",
            "short",
            "--scope",
            "repository:alice/*:pull",
            "--expires",
            "6s",
        ],
    );
    let listed = regauth(&config, &["token", "list", "--json"]).1;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let created =
        chrono::DateTime::parse_from_rfc3339(listed[0]["created"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(listed[0]["expires"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_seconds(), 6);
    wait_active(&app.address, 1).await;
    until_status(&app.address, "alice", &short, 200, SEEN_WITHIN).await;
    until_status(&app.address, "alice", &short, 401, Duration::from_secs(10)).await;
    // Refused from the second it expires on (the server's clock is the system's).
    assert!(chrono::Utc::now().timestamp() >= expires.timestamp());

    // Well-formed tokens nobody owns: 401, counted like wrong passwords against the name
    // (5 allowed by default), then 429 for that name, token or not.
    for _ in 0..5 {
        let forged = regauth::store::secret::generate().unwrap();
        assert_eq!(
            sign_in(&app.address, "bob", &forged, "repository:bob/app:pull")
                .await
                .status(),
            401
        );
    }
    let forged = regauth::store::secret::generate().unwrap();
    let limited = sign_in(&app.address, "bob", &forged, "repository:bob/app:pull").await;
    assert_eq!(limited.status(), 429);
    // No password check ran for the token-shaped passwords: they never reach bcrypt.
    assert_eq!(app.logins.stats().checks, 0);
}

fn rule(fill: impl FnOnce(&mut regauth::policy::MatchSettings), actions: &[&str]) -> RuleSettings {
    RuleSettings::new(fill, actions)
}

#[tokio::test]
async fn a_token_never_gets_more_than_its_owner_and_rules_can_tell_tokens_and_robots_apart() {
    let app = app_with_alice(|s| {
        sqlite_store(s);
        s.acl = Some(vec![
            // Token sign-ins never touch prod/, whatever alice may do with her password.
            rule(
                |m| {
                    m.source = Some(OneOrMore::One("tokens".into()));
                    m.name = Some("prod/**".into());
                },
                &[],
            ),
            rule(
                |m| {
                    m.account = Some("alice".into());
                    m.name = Some("alice/*".into());
                },
                &["pull"],
            ),
            rule(|m| m.account = Some("alice".into()), &["pull", "push"]),
            rule(
                |m| {
                    m.source = Some(OneOrMore::One("robot".into()));
                    m.account = Some("ci".into());
                    m.name = Some("team/*".into());
                },
                &["pull"],
            ),
        ]);
    })
    .await;
    let config = config_file(&app, &store_url(&app));
    let token = create(
        &config,
        &[
            "--user",
            "alice",
            "--name",
            "wide",
            "--scope",
            "repository:**:pull,push",
        ],
    );
    let robot = create(
        &config,
        &[
            "--robot",
            "ci",
            "--name",
            "main",
            "--scope",
            "repository:team/*:pull,push",
        ],
    );
    // A robot of another name, which no rule names.
    let stray = create(
        &config,
        &[
            "--robot",
            "stray",
            "--name",
            "x",
            "--scope",
            "repository:**:*",
        ],
    );
    wait_active(&app.address, 3).await;
    until_status(&app.address, "alice", &token, 200, SEEN_WITHIN).await;
    let a = &app.address;
    // alice's own rule allows pull only on alice/*: so does her token.
    assert_eq!(
        granted(sign_in(a, "alice", &token, "repository:alice/app:pull,push").await).await,
        ["pull"]
    );
    // prod/ through her password, not through a token.
    assert_eq!(
        granted(sign_in(a, "alice", "s3cret", "repository:prod/app:pull,push").await).await,
        ["pull", "push"]
    );
    assert!(
        granted(sign_in(a, "alice", &token, "repository:prod/app:pull").await)
            .await
            .is_empty()
    );
    // The robot: its scopes (pull, push) ∩ the rule naming it (pull).
    assert_eq!(
        granted(sign_in(a, "ci", &robot, "repository:team/app:pull,push").await).await,
        ["pull"]
    );
    assert!(
        granted(sign_in(a, "ci", &robot, "repository:alice/app:pull").await)
            .await
            .is_empty()
    );
    // No rule names the stray robot: rules for people never match robots.
    assert!(
        granted(sign_in(a, "stray", &stray, "repository:alice/app:pull").await)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn without_rules_a_robot_gets_its_scopes_and_a_removed_owner_loses_every_token() {
    let app = app_with_alice(sqlite_store).await;
    let config = config_file(&app, &store_url(&app));
    let robot = create(
        &config,
        &[
            "--robot",
            "ci",
            "--name",
            "main",
            "--scope",
            "repository:team/*:pull",
        ],
    );
    // A token for a user no source knows: refused.
    let ghost = create(
        &config,
        &[
            "--user",
            "ghost",
            "--name",
            "x",
            "--scope",
            "repository:**:pull",
        ],
    );
    wait_active(&app.address, 2).await;
    until_status(&app.address, "ci", &robot, 200, SEEN_WITHIN).await;
    assert_eq!(
        granted(sign_in(&app.address, "ci", &robot, "repository:team/app:pull,push").await).await,
        ["pull"]
    );
    assert_eq!(
        sign_in(&app.address, "ghost", &ghost, "repository:x:pull")
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn the_commands_need_a_store_and_check_their_input() {
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("none.yaml");
    std::fs::write(&none, "log:\n  format: text\n").unwrap();
    for args in [
        vec!["token", "list"],
        vec!["token", "revoke", "x"],
        vec!["logout", "alice"],
        vec!["store", "migrate"],
        vec![
            "token",
            "create",
            "--user",
            "a",
            "--name",
            "n",
            "--scope",
            "repository:a:pull",
        ],
    ] {
        let (ok, _, stderr) = regauth(&none, &args);
        assert!(!ok, "{args:?}");
        assert!(stderr.contains("set store.url"), "{args:?}: {stderr}");
    }
    let config = dir.path().join("store.yaml");
    let db = dir.path().join("t.db");
    std::fs::write(&config, format!("store:\n  url: sqlite:{}\n", db.display())).unwrap();
    for (args, expected) in [
        (
            vec!["--user", "a", "--name", "n", "--scope", "repository:a"],
            "TYPE:NAME:ACTIONS",
        ),
        (
            vec![
                "--user",
                "a",
                "--name",
                "n",
                "--scope",
                "repository:a:pull",
                "--expires",
                "3y",
            ],
            "--expires",
        ),
        (
            vec![
                "--user",
                "a:b",
                "--name",
                "n",
                "--scope",
                "repository:a:pull",
            ],
            "cannot own tokens",
        ),
    ] {
        let mut all = vec!["token", "create"];
        all.extend_from_slice(&args);
        let (ok, _, stderr) = regauth(&config, &all);
        assert!(!ok && stderr.contains(expected), "{args:?}: {stderr}");
    }
    let args = ["--user", "a", "--name", "n", "--scope", "repository:a:pull"];
    create(&config, &args);
    let mut again = vec!["token", "create"];
    again.extend_from_slice(&args);
    let (ok, _, stderr) = regauth(&config, &again);
    assert!(
        !ok && stderr.contains("already has a token named n"),
        "{stderr}"
    );
    let (ok, _, stderr) = regauth(&config, &["token", "revoke", "nothing"]);
    assert!(!ok && stderr.contains("no token"), "{stderr}");
    let (ok, stdout, _) = regauth(&config, &["store", "migrate"]);
    assert!(ok && stdout.contains("schema version 1"), "{stdout}");
}

fn settings_with_store(dir: &Path, url: &str) -> regauth::config::Validated {
    let mut settings = crate::helpers::test_settings(dir);
    if !settings.key.path.exists() {
        regauth::keys::generate::write(dir, regauth::keys::Algorithm::ES256, false).unwrap();
    }
    settings.store = Some(StoreSettings {
        url: url.into(),
        ..StoreSettings::default()
    });
    settings.validate(false).unwrap()
}

#[tokio::test]
async fn a_newer_schema_or_a_corrupt_database_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let config = dir.path().join("store.yaml");
    std::fs::write(&config, format!("store:\n  url: sqlite:{}\n", db.display())).unwrap();
    let (ok, _, stderr) = regauth(&config, &["store", "migrate"]);
    assert!(ok, "{stderr}");
    // A later regauth applied migration 2.
    {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .connect()
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (2, 'future', true, x'00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let url = format!("sqlite:{}", db.display());
    let error = regauth::server::Application::build(settings_with_store(dir.path(), &url))
        .err()
        .expect("a newer schema is refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("schema version 2, newer than this regauth knows (1)"),
        "{message}"
    );
    let (ok, _, stderr) = regauth(&config, &["token", "list"]);
    assert!(
        !ok && stderr.contains("newer than this regauth"),
        "{stderr}"
    );

    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![0x5a; 8192]).unwrap();
    let url = format!("sqlite:{}", corrupt.display());
    let error = regauth::server::Application::build(settings_with_store(dir.path(), &url))
        .err()
        .expect("a corrupt database is refused");
    let message = format!("{error:#}");
    assert!(message.contains("not a usable database"), "{message}");
}

#[tokio::test]
async fn logout_revokes_the_refresh_tokens_issued_so_far() {
    let app = app_with_alice(sqlite_store).await;
    let config = config_file(&app, &store_url(&app));
    let offline = post_password(
        &app.address,
        "alice",
        "s3cret",
        "repository:alice/app:pull",
        true,
    )
    .await;
    assert_eq!(offline.status(), 200);
    let body: Value = offline.json().await.unwrap();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let refresh_grant = || {
        reqwest::Client::new()
            .post(format!("{}/token", app.address))
            .form(&[
                ("grant_type", "refresh_token"),
                ("service", "registry.test"),
                ("client_id", "test"),
                ("scope", "repository:alice/app:pull"),
                ("refresh_token", refresh.as_str()),
            ])
            .send()
    };
    assert_eq!(refresh_grant().await.unwrap().status(), 200);
    let (ok, stdout, stderr) = regauth(&config, &["logout", "alice"]);
    assert!(ok && stdout.contains("alice"), "{stderr}");
    let start = Instant::now();
    loop {
        let status = refresh_grant().await.unwrap().status();
        if status == 401 {
            break;
        }
        assert!(start.elapsed() < SEEN_WITHIN, "refresh still {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A password sign-in after the logout still works (in a later second: the logout
    // covers every refresh token issued up to and including its second).
    assert_eq!(
        sign_in(&app.address, "alice", "s3cret", "repository:alice/app:pull")
            .await
            .status(),
        200
    );
}

/// Two `regauth serve` processes sharing one PostgreSQL: a token revoked through one is
/// refused by both within 5 s.
#[tokio::test]
async fn two_replicas_on_one_postgresql_see_a_revocation_within_five_seconds() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    regauth::keys::generate::write(dir.path(), regauth::keys::Algorithm::ES256, false).unwrap();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let config = dir.path().join("regauth.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: 127.0.0.1:0\nkey:\n  path: {}\ntoken:\n  services: [registry.test]\n\
             users:\n  alice:\n    password: \"{hash}\"\nstore:\n  url: \"{}\"\naudit:\n  enabled: false\n",
            dir.path().join("signing.key").display(),
            pg.url()
        ),
    )
    .unwrap();
    let config_arg = config.display().to_string();
    // Killed when the test ends, also when an assertion fails first.
    let (one, a1) = crate::helpers::start_serve(&[("REGAUTH_CONFIG", &config_arg)], None);
    let _one = Replica(one);
    let (two, a2) = crate::helpers::start_serve(&[("REGAUTH_CONFIG", &config_arg)], None);
    let _two = Replica(two);
    let (a1, a2) = (format!("http://{a1}"), format!("http://{a2}"));
    let secret = create(
        &config,
        &[
            "--user",
            "alice",
            "--name",
            "ci",
            "--scope",
            "repository:alice/*:pull",
        ],
    );
    wait_active(&a1, 1).await;
    wait_active(&a2, 1).await;
    until_status(&a1, "alice", &secret, 200, SEEN_WITHIN).await;
    until_status(&a2, "alice", &secret, 200, SEEN_WITHIN).await;
    let post = post_password(&a2, "alice", &secret, "repository:alice/app:pull", false).await;
    assert_eq!(post.status(), 200);
    revoke(&config, "ci");
    let revoked_at = Instant::now();
    until_status(&a1, "alice", &secret, 401, SEEN_WITHIN).await;
    until_status(&a2, "alice", &secret, 401, SEEN_WITHIN).await;
    assert!(revoked_at.elapsed() < SEEN_WITHIN);
}

/// A `regauth serve` process, killed and reaped on drop.
struct Replica(std::process::Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// PostgreSQL stopped under load: token sign-ins answer 503 with Retry-After (never 401,
/// never counted), passwords keep working, and the store's return needs no restart.
#[tokio::test]
async fn postgresql_down_under_load_is_a_503_for_tokens_only_and_recovers_by_itself() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let app = app_with_alice(postgres_store(pg.url())).await;
    let config = config_file(&app, &pg.url());
    let secret = create(
        &config,
        &[
            "--user",
            "alice",
            "--name",
            "ci",
            "--scope",
            "repository:alice/*:pull",
        ],
    );
    wait_active(&app.address, 1).await;
    until_status(&app.address, "alice", &secret, 200, SEEN_WITHIN).await;

    // Load: four clients signing in with the token in a loop, counting answers.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let counts = std::sync::Arc::new(std::sync::Mutex::new(
        std::collections::BTreeMap::<u16, u64>::new(),
    ));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, counts) = (stop.clone(), counts.clone());
        let (address, secret) = (app.address.clone(), secret.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = sign_in(&address, "alice", &secret, "repository:alice/app:pull")
                    .await
                    .status()
                    .as_u16();
                *counts.lock().unwrap().entry(status).or_default() += 1;
            }
        }));
    }
    pg.stop();
    // Within the staleness bound (5 s) plus a poll, token sign-ins turn 503.
    until_status(&app.address, "alice", &secret, 503, Duration::from_secs(15)).await;
    let down = sign_in(&app.address, "alice", &secret, "repository:alice/app:pull").await;
    assert_eq!(down.status(), 503);
    assert!(down.headers().get("retry-after").is_some());
    // More 503s than the lockout allows failures: none counted (no 429 for the password).
    for _ in 0..6 {
        assert_eq!(
            sign_in(&app.address, "alice", &secret, "repository:alice/app:pull")
                .await
                .status(),
            503
        );
    }
    // Passwords do not need the store.
    assert_eq!(
        sign_in(&app.address, "alice", "s3cret", "repository:alice/app:pull")
            .await
            .status(),
        200
    );
    pg.run();
    until_status(&app.address, "alice", &secret, 200, Duration::from_secs(15)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let counts = counts.lock().unwrap().clone();
    assert!(counts.get(&503).is_some_and(|n| *n > 0), "{counts:?}");
    assert!(
        !counts.contains_key(&401),
        "a store outage is never a 401: {counts:?}"
    );
    assert!(
        !counts.contains_key(&429),
        "never counted as failed logins: {counts:?}"
    );
}

async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    user: Option<(&str, &str)>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, format!("{}/api/v1/tokens{path}", app.address));
    if let Some((user, password)) = user {
        request = request.basic_auth(user, Some(password));
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn users_manage_their_own_tokens_over_http_and_tokens_cannot_mint_tokens() {
    use reqwest::Method;
    let plain = app_with_alice(|_| {}).await;
    let (status, body) = api(&plain, Method::GET, "", Some(("alice", "s3cret")), None).await;
    assert_eq!(status, 404, "no store: {body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("store.url")
    );

    let app = app_with_alice(|s| {
        sqlite_store(s);
        s.users
            .insert("bob".into(), crate::helpers::user("hunter2", &[]));
    })
    .await;
    let alice = Some(("alice", "s3cret"));
    let laptop = serde_json::json!({
        "name": "laptop", "scopes": ["repository:alice/*:pull"], "expires": "1d"
    });
    let (status, _) = api(&app, Method::POST, "", None, Some(laptop.clone())).await;
    assert_eq!(status, 401);
    let (status, created) = api(&app, Method::POST, "", alice, Some(laptop.clone())).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(created["owner"], "alice");
    assert_eq!(created["kind"], "user");
    assert!(!created["expires"].is_null());
    // The creating server sees its token at once.
    assert_eq!(
        granted(
            sign_in(
                &app.address,
                "alice",
                &secret,
                "repository:alice/app:pull,push"
            )
            .await
        )
        .await,
        ["pull"]
    );
    let (status, body) = api(&app, Method::POST, "", alice, Some(laptop)).await;
    assert_eq!(status, 409, "{body}");
    for bad in [
        serde_json::json!({"name": "x", "scopes": ["nonsense"]}),
        serde_json::json!({"name": "x", "scopes": ["repository:a:pull"], "expires": "forever"}),
        serde_json::json!({"name": "x"}),
    ] {
        let (status, body) = api(&app, Method::POST, "", alice, Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["errors"][0]["code"], "INVALID_REQUEST");
    }
    // A token cannot manage tokens, not even list them.
    let (status, _) = api(&app, Method::GET, "", Some(("alice", &secret)), None).await;
    assert_eq!(status, 403);

    let (status, listed) = api(&app, Method::GET, "", alice, None).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret));
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    // bob sees none of alice's tokens and cannot revoke them.
    let bob = Some(("bob", "hunter2"));
    let (_, listed) = api(&app, Method::GET, "", bob, None).await;
    assert_eq!(listed, serde_json::json!([]));
    let (status, _) = api(&app, Method::DELETE, &format!("/{id}"), bob, None).await;
    assert_eq!(status, 404);
    let (status, _) = api(&app, Method::DELETE, "/laptop", alice, None).await;
    assert_eq!(status, 204);
    assert_eq!(
        sign_in(&app.address, "alice", &secret, "repository:alice/app:pull")
            .await
            .status(),
        401
    );
    let (status, _) = api(&app, Method::DELETE, "/laptop", alice, None).await;
    assert_eq!(status, 404);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "regauth_access_tokens_created_total 1",
        "regauth_access_tokens_revoked_total 1",
        "regauth_access_token_uses_total 2",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
}
