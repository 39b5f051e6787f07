//! The `regauth` binary: keygen, startup errors, zero-config start.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::helpers::{start_serve, start_serve_logging};
use crate::support::{config_dir, write_config};

const BIN: &str = env!("CARGO_BIN_EXE_regauth");

#[test]
fn keygen_writes_a_private_key_and_a_certificate_and_prints_the_kid() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["es256", "rs256", "eddsa", "es512", "hs256"] {
        let out = dir.path().join(alg);
        let output = Command::new(BIN)
            .args(["keygen", "--refresh-secret", "--alg", alg, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{alg}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        let key = out.join("signing.key");
        for secret in [&key, &out.join("refresh.secret")] {
            let mode = std::fs::metadata(secret).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{alg}: {}", secret.display());
        }
        if alg == "hs256" {
            assert!(!out.join("signing.crt").exists());
            assert!(stdout.contains("key.algorithm: HS256"), "{stdout}");
        } else {
            assert!(
                std::fs::read_to_string(out.join("signing.crt"))
                    .unwrap()
                    .contains("BEGIN CERTIFICATE")
            );
            let kid_line = stdout
                .lines()
                .find(|l| l.starts_with("libtrust kid:"))
                .unwrap();
            let kid = kid_line.trim_start_matches("libtrust kid:").trim();
            let expected = crate::helpers::kid_of(&std::fs::read(&key).unwrap());
            assert_eq!(kid, expected);
        }
    }
}

#[test]
fn keygen_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let run = |force: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["keygen", "--out"]).arg(dir.path());
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    assert!(run(false).status.success());
    let second = run(false);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("--force"));
    assert!(run(true).status.success());
}

fn serve_fails_with(args: &[&str], envs: &[(&str, &str)], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .arg("serve")
        .args(args)
        .envs(envs.iter().copied())
        .env("REGAUTH_SERVER__LISTEN", "127.0.0.1:0")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
}

#[test]
fn a_mistyped_variable_stops_serve_and_check_and_is_named() {
    // One underscore where two belong: not a setting, so neither command may ignore it.
    let typo = [("REGAUTH_TOKEN_TTL_SECONDS", "10")];
    let hint = "did you mean REGAUTH_TOKEN__TTL_SECONDS?";
    serve_fails_with(&[], &typo, hint);
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .arg("check")
        .envs(typo)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(hint), "{stderr}");
}

#[test]
fn a_missing_key_file_is_a_startup_error_that_names_the_path() {
    serve_fails_with(
        &[],
        &[("REGAUTH_KEY__PATH", "/nonexistent/dir/k.pem")],
        "/nonexistent/dir/k.pem",
    );
}

#[test]
fn a_missing_key_names_its_cause_once_and_the_command_that_makes_one() {
    // A configuration file turns key generation off, so the key must exist.
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "{}\n").unwrap();
    for command in ["serve", "check", "bundle"] {
        let (ok, stdout, stderr) = run_in(dir.path(), &[command, "--config", "regauth.yaml"]);
        assert!(!ok, "{command}: {stdout}");
        let line = stderr
            .lines()
            .find(|l| l.contains("cannot read key file keys/signing.key"))
            .unwrap_or_else(|| panic!("{command}: {stderr}"));
        assert_eq!(line.matches("os error 2").count(), 1, "{command}: {line}");
        assert!(
            line.contains("regauth keygen --out DIR"),
            "{command}: {line}"
        );
    }
}

#[test]
fn bad_configuration_stops_the_start_with_a_message() {
    serve_fails_with(
        &[],
        &[("REGAUTH_TOKEN__TTL_SECONDS", "5")],
        "token.ttl_seconds",
    );
    serve_fails_with(&["--config", "/nonexistent.yaml"], &[], "/nonexistent.yaml");
    serve_fails_with(
        &[],
        &[
            ("REGAUTH_KEY__SOURCE", "env"),
            ("REGAUTH_KEY__ENV", "REGAUTH_TEST_NOPE"),
        ],
        "REGAUTH_TEST_NOPE",
    );
}

#[test]
fn an_environment_key_signs_tokens() {
    let generated = regauth::keys::generate::generate(regauth::keys::Algorithm::ES384).unwrap();
    let flattened = generated.key_pem.replace('\n', "\\n");
    let (mut child, addr) = start_serve(
        &[
            ("REGAUTH_KEY__SOURCE", "env"),
            ("REGAUTH_SIGNING_KEY", &flattened),
        ],
        None,
    );
    let body = http_get(&addr, "/token?service=s&scope=repository:a:pull");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(body.contains("\"token\""), "{body}");
    let token = body.split('"').nth(3).unwrap();
    assert_eq!(crate::helpers::header(token)["alg"], "ES384");
}

#[test]
fn a_first_start_without_configuration_generates_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start_serve(&[], Some(dir.path()));
    let body = http_get(&addr, "/readyz");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(body.contains("\"ready\""), "{body}");
    for (file, expected) in [
        ("keys/signing.key", 0o600),
        ("keys/refresh.secret", 0o600),
        ("keys/signing.crt", 0o644),
    ] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, expected, "{file}: {mode:o}");
    }
    let names: Vec<String> = std::fs::read_dir(dir.path().join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "no temporary file is left: {names:?}");
}

#[test]
fn keygen_never_writes_through_a_planted_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    // The temporary names the old writer used, and the target itself.
    for name in ["signing.tmp", "signing.key", "refresh.secret"] {
        std::os::unix::fs::symlink(&victim, keys.join(name)).unwrap();
    }
    let run = |force: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["keygen", "--refresh-secret", "--out"]).arg(&keys);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let refused = run(false);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    assert!(!keys.join("signing.crt").exists(), "nothing half written");

    let forced = run(true);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    let key = keys.join("signing.key");
    assert!(!std::fs::symlink_metadata(&key).unwrap().is_symlink());
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        std::fs::symlink_metadata(keys.join("refresh.secret"))
            .unwrap()
            .is_symlink(),
        "an existing refresh secret is kept, even with --force, and not written through"
    );
}

const X_ZERO: &str = include_str!("../fixtures/ec256-x-leading-zero.pem");
const Y_ZERO: &str = include_str!("../fixtures/ec256-y-leading-zero.pem");

#[test]
fn a_zero_led_key_in_thumbprint_mode_is_warned_about_at_start_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.key");
    std::fs::write(&key, X_ZERO).unwrap();
    let (mut child, _addr, log) = start_serve_logging(
        &[
            ("REGAUTH_KEY__PATH", key.to_str().unwrap()),
            ("REGAUTH_TOKEN__KID_FORMAT", "thumbprint"),
        ],
        None,
        &[],
    );
    let warning = log
        .before
        .iter()
        .find(|l| l.contains("registry 3.1.x"))
        .cloned();
    crate::helpers::replace_file(&key, Y_ZERO);
    let reloaded = log.wait_for("registry 3.1.x");
    child.kill().unwrap();
    child.wait().unwrap();
    let warning = warning.unwrap_or_else(|| panic!("no warning at start in {:?}", log.before));
    assert!(
        warning.contains("WARN") && warning.contains("x coordinate") && warning.contains("x5c"),
        "{warning}"
    );
    let reloaded = reloaded.expect("no warning after the reload");
    assert!(reloaded.contains("y coordinate"), "{reloaded}");
}

/// A minimal HTTP/1.1 GET, so these tests need no async runtime.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn hash_password_prints_a_bcrypt_hash_of_stdin() {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(["hash-password", "--cost", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).unwrap();
    let hash = hash.trim();
    assert!(hash.starts_with("$2y$04$"), "{hash}");
    assert!(bcrypt::verify("s3cret", hash).unwrap());
    assert!(
        !bcrypt::verify("s3cret\n", hash).unwrap(),
        "the newline is not part of it"
    );
}

fn run_in(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    run_in_env(dir, args, &[])
}

fn run_in_env(
    dir: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_passes_a_good_configuration_and_lists_each_problem_of_a_bad_one() {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let good = config_dir(&format!(
        "users:\n  alice: {{password: '{hash}'}}\nacl:\n  - match: {{account: alice}}\n    actions: ['*']\n"
    ));
    let (ok, stdout, stderr) = run_in(good.path(), &["check", "--config", "regauth.yaml"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("users: 1") && stdout.contains("rules: 1") && stdout.contains("key: ES256"),
        "{stdout}"
    );
    assert!(!stdout.contains("warning"), "{stdout}");
    let mixed = config_dir(&format!(
        "users:\n  alice: {{password: '{hash}'}}\n  bob: {{password: '{}'}}\n",
        bcrypt::hash("pw", 5).unwrap()
    ));
    let (ok, stdout, stderr) = run_in(mixed.path(), &["check", "--config", "regauth.yaml"]);
    assert!(ok, "a warning, not a failure: {stdout}{stderr}");
    assert!(
        stdout.contains("warning: the users' bcrypt hashes use costs [4, 5]"),
        "{stdout}"
    );

    let bad = config_dir("auth:\n  htpasswd: htpasswd\n");
    std::fs::write(bad.path().join("htpasswd"), "bob:{SHA}abc\n").unwrap();
    std::fs::write(bad.path().join("keys/signing.key"), "garbage").unwrap();
    let (ok, _, stderr) = run_in(bad.path(), &["check", "--config", "regauth.yaml"]);
    assert!(!ok);
    assert!(
        stderr.contains("line 1") && stderr.contains("not bcrypt"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: key: key file") && stderr.contains("no PEM private key"),
        "{stderr}"
    );
    assert!(stderr.contains("2 problem(s)"), "{stderr}");

    let broken_rule = config_dir("acl:\n  - match: {name: '/(/'}\n    actions: [pull]\n");
    let (ok, _, stderr) = run_in(broken_rule.path(), &["check", "--config", "regauth.yaml"]);
    assert!(!ok);
    assert!(stderr.contains("acl: rule 1"), "{stderr}");
}

#[test]
fn check_reads_an_environment_key_as_serve_does_including_a_flattened_pem() {
    let dir = config_dir("key:\n  source: env\n");
    let generated = regauth::keys::generate::generate(regauth::keys::Algorithm::ES384).unwrap();
    let flattened = generated.key_pem.trim_end().replace('\n', "\\n");
    assert!(!flattened.contains('\n'));
    let args = ["check", "--config", "regauth.yaml"];
    let (ok, stdout, stderr) =
        run_in_env(dir.path(), &args, &[("REGAUTH_SIGNING_KEY", &flattened)]);
    assert!(ok, "{stdout}{stderr}");
    let kid = crate::helpers::kid_of(generated.key_pem.as_bytes());
    assert!(
        stdout.contains(&format!("key: ES384 kid {kid}")),
        "{stdout}"
    );

    let (ok, _, stderr) = run_in_env(dir.path(), &args, &[("REGAUTH_SIGNING_KEY", "")]);
    assert!(!ok);
    assert!(
        stderr.contains("REGAUTH_SIGNING_KEY is unset or empty"),
        "{stderr}"
    );
}

#[test]
fn check_fails_for_a_zero_led_key_named_by_thumbprint_unless_tokens_carry_x5c() {
    let dir = config_dir("token:\n  kid_format: thumbprint\nkey:\n  path: zero.key\n");
    std::fs::write(dir.path().join("zero.key"), Y_ZERO).unwrap();
    let (ok, stdout, stderr) = run_in(dir.path(), &["check", "--config", "regauth.yaml"]);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("error: key: the key's y coordinate starts with a 0x00 byte")
            && stderr.contains("registry 3.1.x")
            && stderr.contains("x5c")
            && stderr.contains("jwks"),
        "{stderr}"
    );

    // The same key as the next key is reported too.
    write_config(
        dir.path(),
        "token:\n  kid_format: thumbprint\nkey:\n  next: zero.key\n",
    )
    .unwrap();
    let (ok, _, stderr) = run_in(dir.path(), &["check", "--config", "regauth.yaml"]);
    assert!(!ok);
    assert!(
        stderr.contains("error: next key: the key's y coordinate"),
        "{stderr}"
    );

    // Sent as x5c, the registry verifies the chain and never computes the thumbprint.
    let cert = regauth::keys::generate::self_signed_certificate(Y_ZERO).unwrap();
    std::fs::write(dir.path().join("zero.crt"), cert).unwrap();
    write_config(
        dir.path(),
        "token:\n  kid_format: thumbprint\nkey:\n  path: zero.key\n  certificate: zero.crt\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run_in(dir.path(), &["check", "--config", "regauth.yaml"]);
    assert!(ok, "{stdout}{stderr}");
}

#[test]
fn explain_refuses_what_the_server_would_refuse_with_the_servers_reason() {
    let dir = config_dir("token:\n  services: [registry.test]\n");
    let explain = |args: &[&str]| {
        let mut all = vec!["explain", "--config", "regauth.yaml"];
        all.extend_from_slice(args);
        run_in(dir.path(), &all)
    };
    let (ok, stdout, stderr) = explain(&["--scope", "repository:a/b:pull"]);
    assert!(ok, "the first service is the default: {stdout}{stderr}");
    let (ok, _, stderr) = explain(&["--service", "other", "--scope", "repository:a/b:pull"]);
    assert!(!ok);
    assert!(
        stderr.contains("the server would refuse this request") && stderr.contains("other"),
        "{stderr}"
    );
    // One scope more than a token request may carry.
    let names: Vec<String> = (0..=regauth::token::scope::MAX_SCOPES)
        .map(|i| format!("repository:a/r{i}:pull"))
        .collect();
    let mut args = Vec::new();
    for name in &names {
        args.extend(["--scope", name.as_str()]);
    }
    let (ok, _, stderr) = explain(&args);
    assert!(!ok);
    assert!(
        stderr.contains("the server would refuse this request"),
        "{stderr}"
    );
    args.truncate(2 * regauth::token::scope::MAX_SCOPES);
    let (ok, _, stderr) = explain(&args);
    assert!(ok, "{stderr}");
}

#[test]
fn explain_names_the_deciding_rule_per_scope() {
    let dir = config_dir(
        "users:\n  alice: {password: '$2y$04$Q0BM5JqJyp/ocGdwb0dGEeLxnSp0bn0ExqzKBCXjbk5MKYSRj3ZUS', groups: [dev]}\n\
         acl:\n  - match: {account: '/.+/', name: '${account}/**'}\n    actions: ['*']\n    comment: own namespace\n  \
         - match: {group: dev}\n    actions: [pull]\n",
    );
    let (ok, stdout, stderr) = run_in(
        dir.path(),
        &[
            "explain",
            "--config",
            "regauth.yaml",
            "--account",
            "alice",
            "--scope",
            "repository:alice/x:pull,push",
            "--scope",
            "repository:team/app:pull,push",
        ],
    );
    assert!(ok, "{stderr}");
    let expected = [
        "account \"alice\" (source: users, groups: [dev])",
        "repository:alice/x:pull,push",
        "granted: [pull,push]",
        "rule 1: match account=\"/.+/\" name=\"${account}/**\" -> [*] (own namespace)",
        "repository:team/app:pull,push",
        "granted: [pull]",
        "rule 2: match group=\"dev\" -> [pull]",
    ];
    let mut at = 0;
    for line in expected {
        let found = stdout[at..]
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} not in order in:\n{stdout}"));
        at += found + line.len();
    }
    let (ok, stdout, _) = run_in(
        dir.path(),
        &[
            "explain",
            "--config",
            "regauth.yaml",
            "--scope",
            "repository:alice/x:pull",
        ],
    );
    assert!(ok);
    assert!(
        stdout.contains("anonymous") && stdout.contains("no rule matched"),
        "{stdout}"
    );
}

#[test]
fn the_refresh_secret_is_found_beside_the_key_whatever_the_working_directory() {
    // keygen --refresh-secret --out DIR writes DIR/refresh.secret; a configuration that only
    // names key.path in DIR must find it there, not under ./keys of the working directory.
    let keys = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = run_in(
        keys.path(),
        &[
            "keygen",
            "--refresh-secret",
            "--out",
            keys.path().to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    let elsewhere = tempfile::tempdir().unwrap();
    let yaml = format!(
        "key:\n  path: {}\n",
        keys.path().join("signing.key").display()
    );
    std::fs::write(elsewhere.path().join("regauth.yaml"), yaml).unwrap();
    let (ok, stdout, stderr) = run_in(elsewhere.path(), &["check", "--config", "regauth.yaml"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("refresh tokens: on"), "{stdout}");

    std::fs::remove_file(keys.path().join("refresh.secret")).unwrap();
    let (ok, stdout, _) = run_in(elsewhere.path(), &["check", "--config", "regauth.yaml"]);
    assert!(ok);
    let expected = format!(
        "refresh tokens: off ({} does not exist;",
        keys.path().join("refresh.secret").display()
    );
    assert!(stdout.contains(&expected), "{stdout}");
}

#[test]
fn explain_agrees_with_the_server_when_no_identity_source_is_configured() {
    // Zero configuration: nobody can sign in, so the server ignores alice's credentials and
    // grants what anonymous callers get. explain must say the same.
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start_serve(&[], Some(dir.path()));
    let response = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            stream,
            "GET /token?service=registry&scope=repository:team/app:pull,push HTTP/1.1\r\n\
             Host: {addr}\r\nAuthorization: Basic YWxpY2U6eA==\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let served = crate::helpers::claims(json["token"].as_str().unwrap());
    assert_eq!(served["sub"], "", "{served}");
    let served_actions: Vec<String> = served["access"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();

    let (ok, stdout, stderr) = run_in(
        dir.path(),
        &[
            "explain",
            "--account",
            "alice",
            "--service",
            "registry",
            "--scope",
            "repository:team/app:pull,push",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("no identity source is configured"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("granted: [{}]", served_actions.join(","))),
        "server granted {served_actions:?}; explain said:\n{stdout}"
    );
}

#[test]
fn the_start_banner_names_the_bundle_by_an_absolute_path_and_marks_a_placeholder_service() {
    // A registry runs elsewhere: a path relative to regauth's working directory is useless
    // in its configuration, and a made-up service name must not look configured.
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _addr, log) = start_serve_logging(&[], Some(dir.path()), &[]);
    let mut lines = log.before.clone();
    if !lines.iter().any(|l| l.contains("rootcertbundle:")) {
        // The banner is one multi-line message: its lines arrive together.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while let Some(line) = log.wait_for("") {
            let done = line.contains("rootcertbundle:");
            lines.push(line);
            if done || std::time::Instant::now() > deadline {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let banner = lines.join("\n");
    let line = lines
        .iter()
        .find(|l| l.contains("rootcertbundle:"))
        .unwrap_or_else(|| panic!("no rootcertbundle in the banner:\n{banner}"));
    let bundle = line.split("rootcertbundle:").nth(1).unwrap().trim();
    assert!(std::path::Path::new(bundle).is_absolute(), "{line}");
    assert_eq!(
        std::path::Path::new(bundle).canonicalize().unwrap(),
        dir.path().canonicalize().unwrap().join("keys/signing.crt"),
        "{line}"
    );
    assert!(
        banner.contains("token.services is empty"),
        "the placeholder service is not marked:\n{banner}"
    );
}
