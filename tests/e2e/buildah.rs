//! buildah (1.28 from Debian's `buildah`, vfs storage in the test's directory) against
//! registry 2.8 with regauth as its realm, asserting the token requests regauth received.

use std::time::Instant;

use crate::clients::{PASSWORD, alice_stack, assert_denied, assert_ok, seed_image};
use crate::recorder::Auth;
use crate::registry::{CmdOutput, TOOL_TIMEOUT, require_tool, run_with_input};
use crate::stack::{Stack, tools_present};

/// `buildah` with its own storage and the stack's auth file.
fn buildah(stack: &Stack, args: &[&str], input: Option<&str>) -> CmdOutput {
    let dir = &stack.clients.dir;
    let root = dir.join("buildah-root").to_string_lossy().into_owned();
    let runroot = dir.join("buildah-runroot").to_string_lossy().into_owned();
    let mut all = vec![
        "--root",
        &root,
        "--runroot",
        &runroot,
        "--storage-driver",
        "vfs",
    ];
    all.extend_from_slice(args);
    let auth_file = stack.clients.auth_file.to_string_lossy().into_owned();
    run_with_input(
        "buildah",
        &all,
        &[("REGISTRY_AUTH_FILE", &auth_file)],
        input.map(str::as_bytes),
        TOOL_TIMEOUT,
    )
    .expect("buildah runs")
}

#[test]
fn buildah_logs_in_pulls_and_pushes_with_basic_and_is_denied_elsewhere() {
    if !tools_present(&["skopeo"]) || !require_tool("buildah") {
        return;
    }
    let at = Instant::now();
    let stack = alice_stack(true);
    let recorder = stack.recorder();
    seed_image(&stack, "alice/base", "buildah");
    let host = stack.registry.host();

    // Login: GET with Basic and no scope (containers/image never asks for a refresh token).
    recorder.clear();
    let login = buildah(
        &stack,
        &[
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "--password-stdin",
            &host,
        ],
        Some(PASSWORD),
    );
    assert_ok(&stack, &login, "");
    recorder.assert_some(
        "buildah's login: a GET with alice's Basic and account, no scope, answered 200",
        |r| {
            r.is_get_with(&Auth::Basic("alice".into()))
                && r.field("account") == Some("alice")
                && r.scopes().is_empty()
                && r.status == 200
        },
    );

    // Pull and push with the stored credentials: GET with Basic every time.
    recorder.clear();
    let base = stack.registry.image_ref("alice/base", "v1");
    let pull = buildah(&stack, &["pull", "--tls-verify=false", &base], None);
    assert_ok(&stack, &pull, "");
    let pushed = stack.registry.docker_ref("alice/built", "v1");
    let push = buildah(
        &stack,
        &["push", "--tls-verify=false", &base, &pushed],
        None,
    );
    assert_ok(&stack, &push, "");
    recorder.assert_every("a GET with alice's Basic, answered 200", |r| {
        r.is_get_with(&Auth::Basic("alice".into())) && r.status == 200
    });
    recorder.assert_some("a pull of alice/base", |r| {
        r.asks_exactly(&["repository:alice/base:pull"])
    });
    recorder.assert_some("a push to alice/built", |r| {
        r.asks_for("repository:alice/built:pull,push")
    });

    // Elsewhere: the registry's denial.
    let elsewhere = stack.registry.docker_ref("bob/app", "v1");
    let denied = buildah(
        &stack,
        &["push", "--tls-verify=false", &base, &elsewhere],
        None,
    );
    assert_denied(&denied, "");
    eprintln!("buildah scenario: {:.1} s", at.elapsed().as_secs_f64());
}
