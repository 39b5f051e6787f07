//! Issue 18 end to end: an operator makes a robot with `regauth token create` (SQLite store
//! in the test's temp dir), `docker login` with the robot's name and secret pushes to the
//! robot's scope and is denied outside it, and after `regauth token revoke` a fresh login
//! with the same secret fails within the 5 s bound, as does a push with the credential docker
//! stored before. dockerd is the test binary's shared one ([`crate::daemons::dockerd`]); the
//! image reaches it with `docker load` from an archive skopeo writes, so no other account is
//! needed and anonymous callers get nothing.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::clients::{Docker, assert_bad_login, assert_denied, digest_of};
use crate::daemons::{docker_present, dockerd};
use crate::recorder::Auth;
use crate::stack::{Stack, StackOptions, tools_present};
use crate::support::wait_for;

/// The bound: every replica refuses a revoked token within this.
const SEEN_WITHIN: Duration = Duration::from_secs(5);
/// How long the server may take to read a store file created after it started.
const LOADED_WITHIN: Duration = Duration::from_secs(10);
const ROBOT: &str = "ci";
const TOKEN_NAME: &str = "pipeline";
/// The local name the loaded image gets (this scenario's own).
const LOADED: &str = "e2e/robot-token:v1";

/// `regauth ARGS --config CONFIG` (the operator's command line).
fn regauth(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_regauth"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("REGAUTH_CONFIG")
        .output()
        .expect("regauth runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The audit file's lines.
fn audit_lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Polls `pred` over the audit file until it holds (lines reach the file up to 100 ms late).
fn audit_until(path: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(
        Duration::from_secs(5),
        || audit_lines(path).into_iter().find(|l| pred(l)),
        || {
            format!(
                "no audit line {what} in:\n{}",
                fs::read_to_string(path).unwrap_or_default()
            )
        },
    )
}

/// A decision's granted actions, sorted (docker asks for `push,pull`).
fn actions(granted: &Value) -> Vec<&str> {
    let mut all: Vec<&str> = granted
        .as_str()
        .unwrap_or_default()
        .split(',')
        .filter(|a| !a.is_empty())
        .collect();
    all.sort_unstable();
    all
}

/// The first scope decision of an audit line for `name`.
fn decision<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["scopes"].as_array()?.iter().find(|s| {
        s["requested"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("repository:{name}:")))
    })
}

#[test]
fn a_robot_token_pushes_with_docker_within_its_scope_and_fails_soon_after_revocation() {
    if !tools_present(&["skopeo"]) || !docker_present() {
        return;
    }
    let at = Instant::now();
    // The store and the audit log live in a temp dir of the test's (the stack's own is made
    // by Stack::start, after its settings are written).
    let state = tempfile::tempdir().expect("temp dir");
    let db = state.path().join("regauth.db");
    let audit = state.path().join("audit.log");
    let stack = Stack::start(StackOptions {
        // No users, default rules, anonymous callers get nothing: only the robot may push.
        access_yaml: Some(format!(
            "access:\n  anonymous: []\nstore:\n  url: \"sqlite:{}\"\naudit:\n  output: {}\n",
            db.display(),
            audit.display()
        )),
        record_token_requests: true,
        ..StackOptions::default()
    });
    let config = stack.dir.path().join("regauth.yaml");
    let daemon = dockerd();
    let recorder = stack.recorder();

    // The operator makes the robot; the secret alone goes to stdout.
    let scope = "repository:ci/*:pull,push";
    let (ok, stdout, stderr) = regauth(
        &config,
        &[
            "token", "create", "--robot", ROBOT, "--name", TOKEN_NAME, "--scope", scope,
        ],
    );
    assert!(ok, "token create failed: {stderr}");
    let secret = stdout.trim().to_owned();
    assert!(secret.starts_with("rgat_"), "not a token: {stdout}");
    assert!(!stderr.contains(&secret), "the secret was logged: {stderr}");
    assert!(db.exists(), "the store file is made by the first token");

    // The server reads the new store file at its next poll; waiting on its gauge costs no
    // failed sign-in (those count toward the brute-force limits).
    let gauge = || stack.regauth.get("/metrics").body_text();
    wait_for(
        LOADED_WITHIN,
        || {
            gauge()
                .contains("regauth_access_tokens_active 1")
                .then_some(())
        },
        || {
            format!(
                "the server did not load the token:\n{}\n{}",
                gauge(),
                stack.logs()
            )
        },
    );

    // An image in dockerd under a local name of this scenario's.
    let robot = Docker::new(&stack, daemon, "docker-config", ROBOT);
    robot.load("robot-token", LOADED);

    // docker login: GET with Basic as the robot; no refresh token, so docker stores the
    // name and secret themselves.
    recorder.clear();
    let login = robot.login(&secret);
    robot.ok(&login);
    recorder.assert_some(
        "the robot's Basic, answered 200 without a refresh token",
        |r| r.auth == Auth::Basic(ROBOT.into()) && r.status == 200 && !r.answered_refresh_token,
    );
    let stored = robot.stored();
    assert!(
        stored["auth"].is_string() && stored.get("identitytoken").is_none(),
        "{stored}"
    );

    // Push within the scope: every token request is the robot's Basic, answered 200.
    recorder.clear();
    let push = robot.push(LOADED, "ci/app", "v1");
    robot.ok(&push);
    recorder.assert_some("a push to ci/app", |r| {
        r.asks_for("repository:ci/app:pull,push")
    });
    recorder.assert_every("the robot's Basic, answered 200", |r| {
        r.auth == Auth::Basic(ROBOT.into()) && r.status == 200
    });
    let granted = audit_until(&audit, "granting the robot ci/app", |l| {
        l["account"] == ROBOT
            && l["outcome"] == "issued"
            && decision(l, "ci/app").is_some_and(|d| actions(&d["granted"]) == ["pull", "push"])
    });
    assert_eq!(granted["source"], "robot", "{granted}");
    // What docker pushed is in the registry: skopeo reads it with the credential docker
    // stored at login.
    let pushed_digest = push
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in {push}"))
        .to_owned();
    let auth_file = robot.config.join("config.json");
    let inspect = stack
        .clients
        .skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--authfile",
            &auth_file.to_string_lossy(),
            &stack.registry.docker_ref("ci/app", "v1"),
        ])
        .unwrap();
    assert!(inspect.success, "{inspect}\n{}", stack.logs());
    assert_eq!(digest_of(&inspect), pushed_digest);

    // Outside its scope: regauth grants nothing (a 200 with no actions), the registry denies.
    recorder.clear();
    let denied = robot.push(LOADED, "other/app", "v1");
    assert_denied(&denied, "");
    recorder.assert_some("the robot's Basic for other/app, answered 200", |r| {
        r.auth == Auth::Basic(ROBOT.into())
            && r.asks_for("repository:other/app:pull,push")
            && r.status == 200
    });
    let refused_scope = audit_until(&audit, "for the robot's other/app", |l| {
        l["account"] == ROBOT && decision(l, "other/app").is_some()
    });
    assert_eq!(
        decision(&refused_scope, "other/app").unwrap()["granted"],
        "",
        "{refused_scope}"
    );

    // Revoke; from then on a fresh login with the same secret must fail within the bound.
    let (ok, stdout, stderr) = regauth(&config, &["token", "revoke", TOKEN_NAME]);
    assert!(ok, "token revoke failed: {stderr}");
    assert!(
        stdout.contains(&format!("revoked token {TOKEN_NAME} (id ")) && stdout.contains(ROBOT),
        "{stdout}"
    );
    let revoked_at = Instant::now();
    let mut attempts = 0;
    let (refused, fresh) = loop {
        attempts += 1;
        let fresh = Docker::new(
            &stack,
            daemon,
            &format!("docker-config-after-{attempts}"),
            ROBOT,
        );
        let out = fresh.login(&secret);
        if !out.success {
            break (out, fresh);
        }
        assert!(
            revoked_at.elapsed() < SEEN_WITHIN,
            "a login with the revoked token still succeeds {:?} after the revocation ({attempts} attempts)\n{}",
            revoked_at.elapsed(),
            stack.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let seen_after = revoked_at.elapsed();
    assert_bad_login(&refused);
    assert!(fresh.stored().is_null(), "a failed login stored something");

    // The credential docker stored before the revocation stops working at its next token
    // request (a token sign-in never got a refresh token to fall back on).
    recorder.clear();
    let stale = robot.push(LOADED, "ci/app", "v2");
    assert_bad_login(&stale);
    recorder.assert_some("the robot's Basic, refused with 401", |r| {
        r.auth == Auth::Basic(ROBOT.into()) && r.status == 401
    });
    recorder.assert_every("refused, or anonymous", |r| {
        r.status != 200 || r.auth == Auth::None
    });

    // Why, in the audit log: a refused basic sign-in for invalid credentials (the name is
    // left out of failed logins), and the server counted the refusals.
    let why = audit_until(&audit, "refusing the revoked token", |l| {
        l["outcome"] == "refused" && l["grant_type"] == "basic"
    });
    assert_eq!(why["reason"], "invalid_credentials", "{why}");
    assert_eq!(why["account"], "", "{why}");
    let metrics = stack.regauth.get("/metrics").body_text();
    assert!(
        metrics.contains("regauth_access_tokens_active 0"),
        "{metrics}"
    );
    let log = stack.regauth.log() + &fs::read_to_string(&audit).unwrap_or_default();
    assert!(!log.contains(&secret), "the secret reached a log");

    eprintln!(
        "robot token: a fresh login failed {seen_after:?} after the revocation ({attempts} attempts); docker said: {}",
        refused.stderr.trim()
    );
    eprintln!(
        "robot token: docker's push with the stored credential said: {}",
        stale.stderr.trim()
    );
    eprintln!("robot token scenario: {:.1} s", at.elapsed().as_secs_f64());
}
