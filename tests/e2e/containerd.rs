//! containerd (1.6 from Debian's `containerd`, driven with `ctr`) against registry 2.8 with
//! regauth as its realm, asserting the token requests regauth received.

use std::time::Instant;

use crate::clients::{PASSWORD, alice_stack, assert_ok, seed_image};
use crate::daemons::{Ctr, containerd, containerd_present};
use crate::recorder::Auth;
use crate::registry::CmdOutput;
use crate::stack::{SERVICE, Stack, tools_present};

/// Fails with every log (containerd's tail too) when `out` failed.
fn ok(stack: &Stack, daemon: &Ctr, out: &CmdOutput) {
    assert_ok(
        stack,
        out,
        &format!("--- containerd (tail) ---\n{}", daemon.log()),
    );
}

#[test]
fn containerd_pulls_anonymously_and_with_a_password_grant_and_pushes_only_where_allowed() {
    if !tools_present(&["skopeo"]) || !containerd_present() {
        return;
    }
    let at = Instant::now();
    let stack = alice_stack(true);
    let daemon = containerd().namespace("pull-push");
    let recorder = stack.recorder();
    seed_image(&stack, "alice/base", "containerd");
    let base = stack.registry.image_ref("alice/base", "v1");
    let user = format!("alice:{PASSWORD}");

    // Anonymous: GET without credentials.
    recorder.clear();
    ok(
        &stack,
        &daemon,
        &daemon.ctr(&["images", "pull", "--plain-http", &base]),
    );
    recorder.assert_every(
        "a GET without credentials for alice/base, answered 200",
        |r| {
            r.is_get_with(&Auth::None)
                && r.asks_exactly(&["repository:alice/base:pull"])
                && r.status == 200
        },
    );

    // With --user: the OAuth2 password grant, POSTed.
    ok(&stack, &daemon, &daemon.ctr(&["images", "rm", &base]));
    recorder.clear();
    ok(
        &stack,
        &daemon,
        &daemon.ctr(&["images", "pull", "--plain-http", "--user", &user, &base]),
    );
    recorder.assert_every(
        "containerd's password grant as alice for alice/base, answered 200",
        |r| {
            r.is_grant("password")
                && r.field("username") == Some("alice")
                && r.field("client_id") == Some("containerd-client")
                && r.field("service") == Some(SERVICE)
                && r.asks_exactly(&["repository:alice/base:pull"])
                && r.status == 200
        },
    );

    // Push into alice's namespace: the layer is mounted from alice/base, so one grant asks
    // for both repositories, space-joined in a single form field, sorted, and with the
    // pushed repository's pull scope repeated beside its pull,push scope.
    let new = stack.registry.image_ref("alice/new", "v1");
    ok(
        &stack,
        &daemon,
        &daemon.ctr(&["images", "tag", &base, &new]),
    );
    recorder.clear();
    ok(
        &stack,
        &daemon,
        &daemon.ctr(&["images", "push", "--plain-http", "--user", &user, &new]),
    );
    recorder.assert_every("a password grant, answered 200", |r| {
        r.is_grant("password") && r.status == 200
    });
    recorder.assert_some(
        "one grant for alice/new and the mount source alice/base in one form field",
        |r| {
            r.asks_exactly(&[
                "repository:alice/base:pull",
                "repository:alice/new:pull",
                "repository:alice/new:pull,push",
            ]) && r.fields("scope").len() == 1
        },
    );
    assert!(
        stack.registry.log().contains("mount=sha256"),
        "no mount request reached the registry"
    );

    // A wrong password: the POST is refused, containerd retries the same as GET with Basic
    // (and no `account`), which is refused too.
    ok(&stack, &daemon, &daemon.ctr(&["images", "rm", &base]));
    recorder.clear();
    let wrong = daemon.ctr(&[
        "images",
        "pull",
        "--plain-http",
        "--user",
        "alice:wrong",
        &base,
    ]);
    assert!(!wrong.success, "{wrong}");
    assert!(
        wrong.stderr.contains("401") || wrong.stderr.contains("unauthorized"),
        "{wrong}"
    );
    let requests = recorder.requests();
    let post = requests
        .iter()
        .position(|r| r.grant_type() == Some("password") && r.status == 401)
        .unwrap_or_else(|| panic!("no refused POST:\n{}", recorder.dump()));
    assert!(
        requests[post..].iter().any(|r| r.method == "GET"
            && r.auth == Auth::Basic("alice".into())
            && r.field("account").is_none()
            && r.asks_exactly(&["repository:alice/base:pull"])
            && r.status == 401),
        "{}",
        recorder.dump()
    );

    // A push regauth does not grant: the token is issued without the action, the registry
    // refuses the upload.
    let elsewhere = stack.registry.image_ref("bob/app", "v1");
    ok(
        &stack,
        &daemon,
        &daemon.ctr(&["images", "tag", &new, &elsewhere]),
    );
    recorder.clear();
    let denied = daemon.ctr(&[
        "images",
        "push",
        "--plain-http",
        "--user",
        &user,
        &elsewhere,
    ]);
    assert!(!denied.success, "{denied}");
    assert!(
        denied
            .stderr
            .contains("server message: insufficient_scope: authorization failed"),
        "{denied}"
    );
    recorder.assert_some("a password grant for bob/app, answered 200", |r| {
        r.is_grant("password") && r.asks_for("repository:bob/app:pull,push") && r.status == 200
    });
    eprintln!("containerd, wrong password: {}", wrong.stderr.trim());
    eprintln!("containerd, denied push: {}", denied.stderr.trim());
    eprintln!("containerd scenario: {:.1} s", at.elapsed().as_secs_f64());
}
