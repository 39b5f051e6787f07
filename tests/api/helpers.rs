//! Spawning regauth on a free port with a fresh key, and reading what it answers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use data_encoding::BASE64URL_NOPAD;
use regauth::clock::Clock;
use regauth::config::{Settings, Validated};
use regauth::identity::UserDirectory;
use regauth::keys::{Algorithm, KeyProvider, generate};
use regauth::server::Application;
use serde_json::Value;
use tempfile::TempDir;

pub use crate::support::{kid_of, new_key, replace_file};

pub struct TestApp {
    pub address: String,
    /// `server.admin_listen`'s address, when set.
    pub admin_address: Option<String>,
    pub client: reqwest::Client,
    pub dir: TempDir,
    pub keys: Arc<dyn KeyProvider>,
    pub users: Arc<UserDirectory>,
    pub key_path: PathBuf,
    pub logins: Arc<regauth::identity::Logins>,
    pub shutdown: Arc<regauth::server::shutdown::Shutdown>,
    pub audit: Option<Arc<regauth::telemetry::audit::AuditLog>>,
    /// What SIGHUP re-reads.
    pub reload: Arc<regauth::server::hangup::Reload>,
    /// The token store, when `store` is configured.
    pub store: Option<Arc<regauth::store::Store>>,
}

/// Settings for a test app: port 0, an ES256 key in a temp dir.
pub fn test_settings(dir: &Path) -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.key.path = dir.join("signing.key");
    settings.auth.refresh_secret_file = Some(dir.join("refresh.secret"));
    // Tests that read the audit log turn it on with a file of their own.
    settings.audit.enabled = false;
    settings
}

/// `server.admin_listen` on a free port: `/readyz` there shows the key, certificate and
/// reload details that the main listener's `/readyz` leaves out.
pub fn with_admin(settings: &mut Settings) {
    settings.server.admin_listen = Some("127.0.0.1:0".into());
}

/// A `users:` entry with a cheap bcrypt hash (cost 4) of `password`.
pub fn user(password: &str, groups: &[&str]) -> regauth::identity::UserSettings {
    regauth::identity::UserSettings {
        password: Some(bcrypt::hash(password, 4).expect("bcrypt").into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// An app with user alice (password `s3cret`) that issues tokens for `registry.test` only.
pub async fn app_with_alice(customize: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.users.insert("alice".into(), user("s3cret", &[]));
        s.token.services = vec!["registry.test".into()];
        customize(s);
    })
    .await
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_clock(customize, Arc::new(regauth::clock::SystemClock)).await
}

/// With `TEST_LOG` set, the in-process servers log through env_logger's test writer (shown
/// for failing tests, or all with `--nocapture`); the level comes from `RUST_LOG`, default
/// `info`. Without it, tests log nothing.
fn init_test_log() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ =
                env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
                    .is_test(true)
                    .try_init();
        }
    });
}

pub async fn spawn_app_with_clock(
    customize: impl FnOnce(&mut Settings),
    clock: Arc<dyn Clock>,
) -> TestApp {
    init_test_log();
    let dir = tempfile::tempdir().expect("temp dir");
    generate::write(dir.path(), Algorithm::ES256, false).expect("keygen");
    regauth::issue::refresh::write_secret(&dir.path().join("refresh.secret"))
        .expect("refresh secret");
    let mut settings = test_settings(dir.path());
    customize(&mut settings);
    let key_path = settings.key.path.clone();
    let config: Validated = settings.validate(false).expect("valid settings");
    let app = Application::build_with_clock(config, clock).expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let admin_address = app
        .admin_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    let keys = app.keys();
    let logins = app.logins();
    let shutdown = app.shutdown();
    let audit = app.audit();
    let reload = app.reload();
    let store = app.store();
    let users = Arc::clone(logins.users());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        admin_address,
        client: reqwest::Client::new(),
        dir,
        keys,
        users,
        key_path,
        logins,
        shutdown,
        audit,
        reload,
        store,
    }
}

impl TestApp {
    /// `GET /token` with a raw query string.
    pub async fn get_token(&self, query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/token?{query}", self.address))
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request")
    }

    /// `GET /readyz` on the admin listener, with the details (spawn with [`with_admin`]).
    pub async fn readyz_details(&self) -> reqwest::Response {
        let admin = self
            .admin_address
            .as_ref()
            .expect("the details are on server.admin_listen: spawn with helpers::with_admin");
        self.client
            .get(format!("{admin}/readyz"))
            .send()
            .await
            .expect("request")
    }

    /// A token for `repository:team/app:pull`, as a JWT string.
    pub async fn pull_token(&self) -> String {
        let response = self
            .get_token("service=registry.test&scope=repository:team/app:pull")
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Polls for a token until its kid satisfies `pred` or the deadline passes.
    pub async fn wait_for_kid(
        &self,
        deadline: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let start = Instant::now();
        loop {
            let kid = header(&self.pull_token().await)["kid"]
                .as_str()
                .map(str::to_owned);
            if let Some(k) = &kid
                && pred(k)
            {
                return kid;
            }
            if start.elapsed() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The decoded JWT header.
pub fn header(token: &str) -> Value {
    part(token, 0)
}

/// The decoded JWT claims.
pub fn claims(token: &str) -> Value {
    part(token, 1)
}

fn part(token: &str, index: usize) -> Value {
    let segment = token.split('.').nth(index).expect("JWT segment");
    serde_json::from_slice(
        &BASE64URL_NOPAD
            .decode(segment.as_bytes())
            .expect("base64url"),
    )
    .expect("json")
}

/// Starts `regauth serve` on port 0 and returns it with its address, read from the log.
pub fn start_serve(
    envs: &[(&str, &str)],
    cwd: Option<&std::path::Path>,
) -> (std::process::Child, String) {
    let (child, addr, _log) = start_serve_logging(envs, cwd, &[]);
    (child, addr)
}

/// [`start_serve`], also returning the log: the lines up to the address, then a channel
/// with the lines that follow.
pub fn start_serve_logging(
    envs: &[(&str, &str)],
    cwd: Option<&std::path::Path>,
    args: &[&str],
) -> (std::process::Child, String, ServeLog) {
    let scratch = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_regauth"))
        .arg("serve")
        .args(args)
        .env_remove("REGAUTH_CONFIG")
        .env("REGAUTH_SERVER__LISTEN", "127.0.0.1:0")
        .envs(envs.iter().copied())
        .current_dir(cwd.unwrap_or(scratch.path()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut before = Vec::new();
    let addr = loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            break None;
        };
        if let Some(addr) = line.split("listening on ").nth(1) {
            // A text line ends after the address; a JSON one (`log.format: json`) closes
            // the string.
            let addr = addr.trim().split('"').next().unwrap_or_default();
            break Some(addr.to_owned());
        }
        before.push(line);
    };
    let Some(addr) = addr else {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("regauth did not log its address: {before:?}");
    };
    (child, addr, ServeLog { before, rx })
}

/// What a server started by [`start_serve_logging`] logs.
pub struct ServeLog {
    /// The lines before `listening on`.
    pub before: Vec<String>,
    rx: std::sync::mpsc::Receiver<String>,
}

impl ServeLog {
    /// The first later line containing `needle`, waiting at most 20 s for it.
    pub fn wait_for(&self, needle: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Ok(line) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    }

    /// Every later line, until the process closes its log (it exited) or 30 s pass.
    pub fn rest(self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = Vec::new();
        while let Ok(line) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            lines.push(line);
        }
        lines
    }
}

/// Sends `signal` (`TERM`, `HUP`...) to a child process.
pub fn signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} failed");
}
