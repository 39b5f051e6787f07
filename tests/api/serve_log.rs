//! What `regauth serve` writes to its log while people sign in: never a password, at any
//! log level.

use std::process::Child;

use crate::helpers::{ServeLog, signal, start_serve_logging};
use crate::support::{key_dir, write_config};

const RIGHT: &str = "Right-Pw-7f3a";
const WRONG: &str = "Wrong-Pw-91c2";
/// What a person types in the user name field by mistake: their password.
const TYPED_AS_USER: &str = "Typed-As-User-55d0";

/// `regauth serve` on a free port with user alice (password [`RIGHT`]) and everything logged.
struct Serve {
    child: Child,
    address: String,
    log: ServeLog,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        Serve::start_with("")
    }

    /// With `extra` (top-level YAML sections) appended to the config.
    fn start_with(extra: &str) -> Serve {
        let dir = key_dir();
        let hash = bcrypt::hash(RIGHT, 4).unwrap();
        write_config(
            dir.path(),
            format!(
                "server:\n  listen: 127.0.0.1:0\n  shutdown_delay_seconds: 0\n\
                 key:\n  path: keys/signing.key\n\
                 users:\n  alice:\n    password: '{hash}'\n{extra}"
            ),
        )
        .unwrap();
        let (child, addr, log) = start_serve_logging(
            &[("RUST_LOG", "trace")],
            Some(dir.path()),
            &["--config", "regauth.yaml"],
        );
        Serve {
            child,
            address: format!("http://{addr}"),
            log,
            _dir: dir,
        }
    }

    /// Stops the server with SIGTERM (so the audit lines it holds are written) and returns
    /// everything it logged.
    fn stop(mut self) -> String {
        signal(&self.child, "TERM");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                self.child.kill().unwrap();
                panic!("regauth did not exit on SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut lines = std::mem::take(&mut self.log.before);
        lines.extend(self.log.rest());
        lines.join("\n")
    }
}

async fn basic(serve: &Serve, client: &reqwest::Client, query: &str, user: &str, pw: &str) -> u16 {
    client
        .get(format!("{}/token?{query}", serve.address))
        .basic_auth(user, Some(pw))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn password_grant(serve: &Serve, client: &reqwest::Client, user: &str, pw: &str) -> u16 {
    client
        .post(format!("{}/token", serve.address))
        .form(&[
            ("grant_type", "password"),
            ("service", "registry.test"),
            ("client_id", "docker"),
            ("access_type", "offline"),
            ("username", user),
            ("password", pw),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn right_and_wrong_passwords_never_reach_the_log() {
    let serve = Serve::start();
    let client = reqwest::Client::new();
    let q = "service=registry.test&scope=repository:alice/app:pull,push";
    assert_eq!(basic(&serve, &client, q, "alice", RIGHT).await, 200);
    assert_eq!(basic(&serve, &client, q, "alice", WRONG).await, 401);
    assert_eq!(password_grant(&serve, &client, "alice", RIGHT).await, 200);
    assert_eq!(password_grant(&serve, &client, "alice", WRONG).await, 401);
    // A Basic value with no `:` at all, as a broken client might send the bare password.
    let bare = client
        .get(format!("{}/token?{q}", serve.address))
        .header(
            "Authorization",
            format!("Basic {}", data_encoding::BASE64.encode(WRONG.as_bytes())),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);
    let log = serve.stop();
    assert!(
        log.contains("authentication failed"),
        "the failures are logged:\n{log}"
    );
    for secret in [RIGHT, WRONG] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
}

// The access log's request line carries docker's `account=<name>` query; http::request_line
// redacts its value.
#[tokio::test]
async fn a_password_typed_as_the_user_name_never_reaches_the_log() {
    let serve = Serve::start();
    let client = reqwest::Client::new();
    // docker login sends the user name twice: as `account=` and in the Basic header.
    let q = format!(
        "account={TYPED_AS_USER}&client_id=docker&offline_token=true&service=registry.test"
    );
    assert_eq!(basic(&serve, &client, &q, TYPED_AS_USER, RIGHT).await, 401);
    assert_eq!(
        password_grant(&serve, &client, TYPED_AS_USER, RIGHT).await,
        401
    );
    let log = serve.stop();
    for secret in [TYPED_AS_USER, RIGHT] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
}

// The default audit sink is stderr, beside the log: one id ties the error, access and audit
// lines of a request together.
#[tokio::test]
async fn a_request_id_ties_the_error_access_and_audit_lines_together() {
    let serve = Serve::start();
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/token?service=registry.test", serve.address))
        .basic_auth("alice", Some(WRONG))
        .header("X-Request-Id", "trace-5e1d")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-request-id"], "trace-5e1d");
    let log = serve.stop();
    let tagged: Vec<&str> = log.lines().filter(|l| l.contains("trace-5e1d")).collect();
    let failed = tagged
        .iter()
        .find(|l| l.contains("authentication failed"))
        .unwrap_or_else(|| panic!("error line with the id:\n{log}"));
    assert!(failed.ends_with("request_id=trace-5e1d"), "{failed}");
    assert!(
        tagged
            .iter()
            .any(|l| l.contains("\"GET /token?service=registry.test HTTP/1.1\" 401")),
        "access line with the id:\n{log}"
    );
    let audit: serde_json::Value = tagged
        .iter()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("audit line with the id:\n{log}"));
    assert_eq!(audit["outcome"], "refused");
    assert_eq!(audit["request_id"], "trace-5e1d");
    assert_eq!(audit["client_ip"], "127.0.0.1");
}

#[tokio::test]
async fn with_log_format_json_every_line_is_a_json_object() {
    let serve = Serve::start_with("log:\n  format: json\n");
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/token?service=registry.test", serve.address))
        .basic_auth("alice", Some(WRONG))
        .header("X-Request-Id", "trace-77aa")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let log = serve.stop();
    let mut failed = None;
    for line in log.lines().skip_while(|l| !l.starts_with('{')) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{log}"));
        if value["message"]
            .as_str()
            .is_some_and(|m| m.contains("authentication failed"))
        {
            failed = Some(value);
        }
    }
    let failed = failed.unwrap_or_else(|| panic!("no failed-login record:\n{log}"));
    assert_eq!(failed["level"], "INFO");
    assert_eq!(failed["request_id"], "trace-77aa");
    assert!(!log.contains(WRONG));
}

// Behind a reverse proxy missing from server.trusted_proxies every client shares the proxy's
// budget: serve says so once. With ldap.allow_plaintext it warns about passwords in clear.
#[tokio::test]
async fn serve_warns_once_about_an_untrusted_forwarder_and_about_plaintext_ldap() {
    let serve = Serve::start_with(
        "ldap:\n  url: ldap://directory.example:389\n  base_dn: dc=example,dc=org\n  \
         allow_plaintext: true\n",
    );
    let client = reqwest::Client::new();
    for header in ["x-forwarded-for", "forwarded", "x-forwarded-for"] {
        let value = if header == "forwarded" {
            "for=192.0.2.7"
        } else {
            "192.0.2.7"
        };
        let response = client
            .get(format!("{}/token?service=registry.test", serve.address))
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let log = serve.stop();
    let warned = log
        .lines()
        .filter(|l| l.contains("is not in server.trusted_proxies"))
        .count();
    assert_eq!(warned, 1, "{log}");
    assert!(
        log.contains("share one brute-force budget"),
        "the warning says why it matters:\n{log}"
    );
    assert!(
        log.contains("ldap.allow_plaintext is set"),
        "plaintext LDAP is warned about:\n{log}"
    );
}
