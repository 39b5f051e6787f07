//! buildah (1.28 from Debian's `buildah`, vfs storage in the test's directory) against
//! registry 2.8 with regauth as its realm, asserting the token requests regauth received.

use std::time::Instant;

use crate::docker::{PASSWORD, alice_stack, scopes, seed_image};
use crate::recorder::Auth;
use crate::registry::{CmdOutput, DENIED_TEXT, TOOL_TIMEOUT, require_tool, run_with_input};
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

fn ok(stack: &Stack, out: &CmdOutput) {
    assert!(
        out.success,
        "{out}\n--- token requests ---\n{}\n{}",
        stack.recorder().dump(),
        stack.logs()
    );
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
    ok(&stack, &login);
    let requests = recorder.requests();
    assert!(
        requests.iter().any(|r| r.method == "GET"
            && r.auth == Auth::Basic("alice".into())
            && r.field("account") == Some("alice")
            && scopes(r).is_empty()
            && r.status == 200),
        "{}",
        recorder.dump()
    );

    // Pull and push with the stored credentials: GET with Basic every time.
    recorder.clear();
    let base = stack.registry.image_ref("alice/base", "v1");
    ok(
        &stack,
        &buildah(&stack, &["pull", "--tls-verify=false", &base], None),
    );
    let pushed = stack.registry.docker_ref("alice/built", "v1");
    ok(
        &stack,
        &buildah(
            &stack,
            &["push", "--tls-verify=false", &base, &pushed],
            None,
        ),
    );
    let requests = recorder.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.method, "GET", "{}", recorder.dump());
        assert_eq!(r.auth, Auth::Basic("alice".into()), "{}", recorder.dump());
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
            .any(|r| scopes(r).contains(&"repository:alice/built:pull,push".to_owned())),
        "{}",
        recorder.dump()
    );

    // Elsewhere: the registry's denial.
    let elsewhere = stack.registry.docker_ref("bob/app", "v1");
    let denied = buildah(
        &stack,
        &["push", "--tls-verify=false", &base, &elsewhere],
        None,
    );
    assert!(!denied.success, "{denied}");
    assert!(denied.stderr.contains(DENIED_TEXT), "{denied}");
    eprintln!("buildah scenario: {:.1} s", at.elapsed().as_secs_f64());
}
