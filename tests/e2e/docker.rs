//! docker (dockerd 20.10 from Debian's `docker.io`) against registry 2.8 with regauth as its
//! realm. Each scenario asserts the token requests regauth received, through the recorder.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;

use crate::daemons::{Dockerd, docker_present, dockerd};
use crate::oci;
use crate::recorder::{Auth, TokenRequest};
use crate::registry::{CmdOutput, DENIED_TEXT};
use crate::stack::{Stack, StackOptions, tools_present};

pub const PASSWORD: &str = "s3cret";

/// alice may do anything under `alice/`; anonymous callers may pull.
pub fn alice_stack(refresh_tokens: bool) -> Stack {
    Stack::start(alice_options(refresh_tokens))
}

/// The options of [`alice_stack`].
pub fn alice_options(refresh_tokens: bool) -> StackOptions<'static> {
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    StackOptions {
        access_yaml: Some(format!(
            "users:\n  alice: {{password: '{hash}'}}\n\
             acl:\n  - match: {{account: '/.+/', name: '${{account}}/**'}}\n    actions: ['*']\n  \
             - match: {{account: ''}}\n    actions: [pull]\n"
        )),
        refresh_tokens,
        record_token_requests: true,
        ..StackOptions::default()
    }
}

/// Pushes a fresh OCI image to `repo:v1` with skopeo as alice; returns its manifest digest.
pub fn seed_image(stack: &Stack, repo: &str, seed: &str) -> String {
    let image =
        oci::write_image(&stack.dir.path().join(format!("img-{seed}")), "v1", seed).expect("image");
    let out = stack
        .clients
        .skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &format!("alice:{PASSWORD}"),
            &image.skopeo_ref(),
            &stack.registry.docker_ref(repo, "v1"),
        ])
        .unwrap();
    assert!(out.success, "{out}\n{}", stack.logs());
    image.manifest_digest
}

/// One docker client configuration (`DOCKER_CONFIG`) talking to one dockerd.
struct Client<'a> {
    stack: &'a Stack,
    daemon: &'a Dockerd,
    config: PathBuf,
}

impl Client<'_> {
    fn run(&self, args: &[&str]) -> CmdOutput {
        self.daemon.docker_in(&self.config, args, None)
    }

    fn login(&self, password: &str) -> CmdOutput {
        self.daemon.docker_in(
            &self.config,
            &[
                "login",
                &self.stack.registry.host(),
                "-u",
                "alice",
                "--password-stdin",
            ],
            Some(password),
        )
    }

    fn image(&self, repo: &str, tag: &str) -> String {
        self.stack.registry.image_ref(repo, tag)
    }

    /// `auths[<registry>]` of this client's config.json.
    fn stored(&self) -> Value {
        let text = fs::read_to_string(self.config.join("config.json")).unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        json["auths"][self.stack.registry.host()].clone()
    }

    fn config_text(&self) -> String {
        fs::read_to_string(self.config.join("config.json")).unwrap_or_default()
    }

    /// Fails with every log when `out` failed.
    fn ok(&self, out: &CmdOutput) {
        assert!(
            out.success,
            "{out}\n--- token requests ---\n{}\n{}\n--- dockerd (tail) ---\n{}",
            self.stack.recorder().dump(),
            self.stack.logs(),
            tail(&self.daemon.log(), 30)
        );
    }

    /// Pushes `source` as `repo:tag`: `docker tag` then `docker push`.
    fn push(&self, source: &str, repo: &str, tag: &str) -> CmdOutput {
        let target = self.image(repo, tag);
        let tagged = self.run(&["tag", source, &target]);
        self.ok(&tagged);
        self.run(&["push", &target])
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The scopes of a token request (space-separated in a POST, repeated in a GET), each with
/// its actions sorted: docker asks for `push,pull`, skopeo for `pull,push`.
pub fn scopes(r: &TokenRequest) -> Vec<String> {
    r.fields("scope")
        .iter()
        .flat_map(|s| s.split(' '))
        .filter(|s| !s.is_empty())
        .map(|scope| match scope.rsplit_once(':') {
            Some((resource, actions)) => {
                let mut actions: Vec<&str> = actions.split(',').collect();
                actions.sort_unstable();
                format!("{resource}:{}", actions.join(","))
            }
            None => scope.to_owned(),
        })
        .collect()
}

fn took(what: &str, at: Instant) {
    eprintln!("{what}: {:.1} s", at.elapsed().as_secs_f64());
}

#[test]
fn docker_login_stores_an_identity_token_and_pulls_and_pushes_with_refresh_grants() {
    if !tools_present(&["skopeo"]) || !docker_present() {
        return;
    }
    let at = Instant::now();
    let stack = alice_stack(true);
    let daemon = dockerd();
    let recorder = stack.recorder();
    seed_image(&stack, "alice/base", "docker-refresh");
    let client = Client {
        stack: &stack,
        daemon,
        config: stack.dir.path().join("docker-config"),
    };
    let host = stack.registry.host();

    // Login: GET with Basic, asking for an offline token; the answer carries a refresh token.
    recorder.clear();
    let login = client.login(PASSWORD);
    client.ok(&login);
    let requests = recorder.requests();
    let login_request = requests
        .iter()
        .find(|r| r.auth == Auth::Basic("alice".into()))
        .unwrap_or_else(|| panic!("no Basic request:\n{}", recorder.dump()));
    assert_eq!(login_request.method, "GET", "{}", recorder.dump());
    assert_eq!(login_request.field("account"), Some("alice"));
    assert_eq!(login_request.field("client_id"), Some("docker"));
    assert_eq!(login_request.field("offline_token"), Some("true"));
    assert!(scopes(login_request).is_empty(), "{}", recorder.dump());
    assert_eq!(login_request.status, 200);
    assert!(login_request.answered_refresh_token, "{}", recorder.dump());

    // What docker stored is the refresh token, not the password.
    let stored = client.stored();
    let identity_token = stored["identitytoken"]
        .as_str()
        .unwrap_or_else(|| panic!("no identitytoken in {}", client.config_text()))
        .to_owned();
    assert!(!identity_token.is_empty());
    assert!(
        !client.config_text().contains(PASSWORD),
        "the password was stored"
    );

    // Pull: refresh grants carrying that stored token, never Basic again.
    recorder.clear();
    let base = client.image("alice/base", "v1");
    let pull = client.run(&["pull", &base]);
    client.ok(&pull);
    let requests = recorder.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.method, "POST", "{}", recorder.dump());
        assert_eq!(r.grant_type(), Some("refresh_token"), "{}", r.summary());
        assert_eq!(r.refresh_token(), Some(identity_token.as_str()));
        assert_eq!(r.field("client_id"), Some("docker"));
        assert_eq!(r.field("service"), Some(crate::stack::SERVICE));
        assert_eq!(r.auth, Auth::None);
        assert_eq!(r.status, 200);
    }
    assert!(
        requests
            .iter()
            .any(|r| scopes(r) == ["repository:alice/base:pull"]),
        "{}",
        recorder.dump()
    );

    // Push a new tag into alice's namespace: the push scope, space-joined with the mount
    // source when docker asks for both in one grant.
    recorder.clear();
    let push = client.push(&base, "alice/app", "v2");
    client.ok(&push);
    let requests = recorder.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.grant_type() == Some("refresh_token")
                && r.refresh_token() == Some(identity_token.as_str())),
        "{}",
        recorder.dump()
    );
    // The blob is mounted from alice/base: both scopes in one form field, space-joined.
    assert!(
        requests.iter().any(|r| scopes(r)
            == [
                "repository:alice/app:pull,push",
                "repository:alice/base:pull"
            ]
            && r.fields("scope").len() == 1),
        "{}",
        recorder.dump()
    );

    // An image loaded from an archive, pushed into alice's namespace.
    let layout =
        oci::write_image(&stack.dir.path().join("img-archive"), "v1", "archive").expect("image");
    let archive = stack.dir.path().join("loaded.tar");
    let out = stack
        .clients
        .skopeo(&[
            "copy",
            &layout.skopeo_ref(),
            &format!("docker-archive:{}:e2e/loaded:v1", archive.display()),
        ])
        .unwrap();
    assert!(out.success, "{out}");
    let load = client.run(&["load", "-i", &archive.to_string_lossy()]);
    client.ok(&load);
    let push = client.push("e2e/loaded:v1", "alice/loaded", "v1");
    client.ok(&push);

    // Elsewhere: regauth grants nothing, the registry says denied.
    recorder.clear();
    let denied = client.push(&base, "bob/app", "v1");
    assert!(!denied.success, "{denied}");
    assert!(denied.stderr.contains(DENIED_TEXT), "{denied}");
    let requests = recorder.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.grant_type() == Some("refresh_token")
                && scopes(r).contains(&"repository:bob/app:pull,push".to_owned())
                && r.status == 200),
        "{}",
        recorder.dump()
    );

    // A wrong password fails the login (in a fresh configuration, so alice's stays).
    recorder.clear();
    let other = Client {
        config: stack.dir.path().join("docker-config-wrong"),
        ..client
    };
    let wrong = other.login("wrong");
    assert!(!wrong.success, "{wrong}");
    assert!(
        wrong
            .stderr
            .contains("unauthorized: authentication failed: invalid username or password"),
        "{wrong}"
    );
    let requests = recorder.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.auth == Auth::Basic("alice".into()) && r.status == 401),
        "{}",
        recorder.dump()
    );
    assert!(other.stored().is_null(), "{}", other.config_text());
    let client = Client {
        config: stack.dir.path().join("docker-config"),
        ..other
    };

    // Logout: the stored token is gone; anonymous pulls work, pushes are denied.
    client.ok(&client.run(&["logout", &host]));
    assert!(client.stored().is_null(), "{}", client.config_text());
    client.ok(&client.run(&["rmi", &base]));
    recorder.clear();
    let pull = client.run(&["pull", &base]);
    client.ok(&pull);
    let push = client.push(&base, "alice/app", "v3");
    assert!(!push.success, "{push}");
    assert!(push.stderr.contains(DENIED_TEXT), "{push}");
    for r in &recorder.requests() {
        assert_eq!(r.method, "GET", "{}", recorder.dump());
        assert_eq!(r.auth, Auth::None, "{}", recorder.dump());
        assert_eq!(r.field("account"), None);
    }
    eprintln!("docker, wrong password: {}", wrong.stderr.trim());
    eprintln!("docker, denied push: {}", denied.stderr.trim());
    took("docker with refresh tokens", at);
}

#[test]
fn docker_without_refresh_tokens_sends_basic_on_every_token_request() {
    if !tools_present(&["skopeo"]) || !docker_present() {
        return;
    }
    let at = Instant::now();
    let stack = alice_stack(false);
    let daemon = dockerd();
    let recorder = stack.recorder();
    seed_image(&stack, "alice/base", "docker-basic");
    let client = Client {
        stack: &stack,
        daemon,
        config: stack.dir.path().join("docker-config"),
    };

    recorder.clear();
    let login = client.login(PASSWORD);
    client.ok(&login);
    let stored = client.stored();
    assert!(
        stored.get("identitytoken").is_none() && stored["auth"].is_string(),
        "{}",
        client.config_text()
    );
    let base = client.image("alice/base", "v1");
    client.ok(&client.run(&["pull", &base]));
    client.ok(&client.push(&base, "alice/app", "v2"));
    let requests = recorder.requests();
    assert!(requests.len() >= 3, "{}", recorder.dump());
    for r in &requests {
        assert_eq!(r.method, "GET", "{}", recorder.dump());
        assert_eq!(r.auth, Auth::Basic("alice".into()), "{}", recorder.dump());
        assert_eq!(r.field("account"), Some("alice"));
        assert!(!r.answered_refresh_token, "{}", r.summary());
        assert_eq!(r.status, 200, "{}", r.summary());
    }
    assert!(
        requests
            .iter()
            .any(|r| scopes(r) == ["repository:alice/base:pull"]),
        "{}",
        recorder.dump()
    );
    assert!(
        requests
            .iter()
            .any(|r| scopes(r).contains(&"repository:alice/app:pull,push".to_owned())),
        "{}",
        recorder.dump()
    );
    took("docker without refresh tokens", at);
}

#[test]
fn docker_gets_a_fresh_token_with_the_same_refresh_token_after_the_first_expired() {
    if !tools_present(&["skopeo"]) || !docker_present() {
        return;
    }
    let at = Instant::now();
    let stack = Stack::start(StackOptions {
        ttl_seconds: 60,
        ..alice_options(true)
    });
    let daemon = dockerd();
    let recorder = stack.recorder();
    seed_image(&stack, "alice/base", "docker-ttl");
    let client = Client {
        stack: &stack,
        daemon,
        config: stack.dir.path().join("docker-config"),
    };
    client.ok(&client.login(PASSWORD));
    let identity_token = client.stored()["identitytoken"]
        .as_str()
        .unwrap_or_else(|| panic!("no identitytoken in {}", client.config_text()))
        .to_owned();
    let base = client.image("alice/base", "v1");

    recorder.clear();
    client.ok(&client.run(&["pull", &base]));
    let first = recorder
        .requests()
        .iter()
        .find_map(|r| r.issued.clone())
        .unwrap_or_else(|| panic!("no token issued:\n{}", recorder.dump()));
    assert_eq!(first.exp - first.iat, 60);

    // Wait out the first token's lifetime (bounded: the lifetime is 60 s).
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let wait = (first.exp + 1 - now()).clamp(0, 70) as u64;
    std::thread::sleep(std::time::Duration::from_secs(wait));
    assert!(now() > first.exp);

    client.ok(&client.run(&["rmi", &base]));
    recorder.clear();
    client.ok(&client.run(&["pull", &base]));
    let requests = recorder.requests();
    let fresh = requests
        .iter()
        .find(|r| r.issued.is_some())
        .unwrap_or_else(|| panic!("no token issued:\n{}", recorder.dump()));
    assert_eq!(
        fresh.grant_type(),
        Some("refresh_token"),
        "{}",
        fresh.summary()
    );
    assert_eq!(fresh.refresh_token(), Some(identity_token.as_str()));
    let issued = fresh.issued.clone().unwrap();
    assert_ne!(issued.jti, first.jti);
    assert!(issued.iat >= first.exp, "{issued:?} vs {first:?}");
    took("docker past a token's lifetime", at);
}
