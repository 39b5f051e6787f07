//! docker (dockerd 20.10 from Debian's `docker.io`) against registry 2.8 with regauth as its
//! realm. Each scenario asserts the token requests regauth received, through the recorder.

use std::time::Instant;

use crate::clients::{
    Docker, PASSWORD, alice_options, alice_stack, assert_bad_login, assert_denied, seed_image,
};
use crate::daemons::{docker_present, dockerd};
use crate::recorder::Auth;
use crate::stack::{SERVICE, Stack, StackOptions, tools_present};

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
    let client = Docker::new(&stack, daemon, "docker-config", "alice");
    let host = stack.registry.host();

    // Login: GET with Basic, asking for an offline token; the answer carries a refresh token.
    recorder.clear();
    let login = client.login(PASSWORD);
    client.ok(&login);
    recorder.assert_some(
        "docker's login: a GET with alice's Basic for an offline token and no scope, \
         answered 200 with a refresh token",
        |r| {
            r.is_get_with(&Auth::Basic("alice".into()))
                && r.field("account") == Some("alice")
                && r.field("client_id") == Some("docker")
                && r.field("offline_token") == Some("true")
                && r.scopes().is_empty()
                && r.status == 200
                && r.answered_refresh_token
        },
    );

    // What docker stored is the refresh token, not the password.
    let identity_token = client.identity_token();
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
    recorder.assert_every(
        "a refresh grant from docker with the stored token for the service, answered 200",
        |r| {
            r.is_refresh_grant(&identity_token)
                && r.field("client_id") == Some("docker")
                && r.field("service") == Some(SERVICE)
                && r.status == 200
        },
    );
    recorder.assert_some("a pull of alice/base", |r| {
        r.asks_exactly(&["repository:alice/base:pull"])
    });

    // Push a new tag into alice's namespace: the push scope, space-joined with the mount
    // source when docker asks for both in one grant.
    recorder.clear();
    let push = client.push(&base, "alice/app", "v2");
    client.ok(&push);
    recorder.assert_every("a refresh grant with the stored token", |r| {
        r.is_refresh_grant(&identity_token)
    });
    // The blob is mounted from alice/base: both scopes in one form field, space-joined.
    recorder.assert_some(
        "one grant for alice/app and the mount source alice/base in one form field",
        |r| {
            r.asks_exactly(&[
                "repository:alice/app:pull,push",
                "repository:alice/base:pull",
            ]) && r.fields("scope").len() == 1
        },
    );

    // An image loaded from an archive, pushed into alice's namespace.
    client.load("archive", "e2e/loaded:v1");
    let push = client.push("e2e/loaded:v1", "alice/loaded", "v1");
    client.ok(&push);

    // Elsewhere: regauth grants nothing, the registry says denied.
    recorder.clear();
    let denied = client.push(&base, "bob/app", "v1");
    assert_denied(&denied, "");
    recorder.assert_some("a refresh grant for bob/app, answered 200", |r| {
        r.grant_type() == Some("refresh_token")
            && r.asks_for("repository:bob/app:pull,push")
            && r.status == 200
    });

    // A wrong password fails the login (in a fresh configuration, so alice's stays).
    recorder.clear();
    let other = Docker::new(&stack, daemon, "docker-config-wrong", "alice");
    let wrong = other.login("wrong");
    assert_bad_login(&wrong);
    recorder.assert_some("alice's Basic, refused with 401", |r| {
        r.auth == Auth::Basic("alice".into()) && r.status == 401
    });
    assert!(other.stored().is_null(), "{}", other.config_text());

    // Logout: the stored token is gone; anonymous pulls work, pushes are denied.
    client.ok(&client.run(&["logout", &host]));
    assert!(client.stored().is_null(), "{}", client.config_text());
    client.ok(&client.run(&["rmi", &base]));
    recorder.clear();
    let pull = client.run(&["pull", &base]);
    client.ok(&pull);
    let push = client.push(&base, "alice/app", "v3");
    assert_denied(&push, "");
    recorder.assert_every("an anonymous GET", |r| r.is_anonymous_get());
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
    let client = Docker::new(&stack, daemon, "docker-config", "alice");

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
    let requests = recorder.assert_every(
        "a GET with alice's Basic and account, answered 200 without a refresh token",
        |r| {
            r.is_get_with(&Auth::Basic("alice".into()))
                && r.field("account") == Some("alice")
                && !r.answered_refresh_token
                && r.status == 200
        },
    );
    assert!(requests.len() >= 3, "{}", recorder.dump());
    recorder.assert_some("a pull of alice/base", |r| {
        r.asks_exactly(&["repository:alice/base:pull"])
    });
    recorder.assert_some("a push to alice/app", |r| {
        r.asks_for("repository:alice/app:pull,push")
    });
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
    let client = Docker::new(&stack, daemon, "docker-config", "alice");
    client.ok(&client.login(PASSWORD));
    let identity_token = client.identity_token();
    let base = client.image("alice/base", "v1");

    recorder.clear();
    client.ok(&client.run(&["pull", &base]));
    let first = recorder
        .assert_some("a request answered with a token", |r| r.issued.is_some())
        .issued
        .unwrap();
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
    let fresh = recorder.assert_some("a request answered with a token", |r| r.issued.is_some());
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
