//! `regauth doctor` over the binary: a right pairing passes, and each mistake planted in
//! regauth's or the registry's configuration is found and named with its fix. The live round
//! trip against a running registry 2.8 is in tests/e2e/doctor.rs.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use regauth::keys::{Algorithm, generate};

const BIN: &str = env!("CARGO_BIN_EXE_regauth");

/// regauth and a registry 2.8 configuration that agree: issuer `regauth-test`, service
/// `registry.test`, realm `http://127.0.0.1:5001/token`, the key's own certificate as the
/// bundle.
struct Pairing {
    dir: tempfile::TempDir,
    issuer: String,
    services: String,
    kid_format: String,
    realm: String,
    service: String,
    registry_issuer: String,
    bundle: PathBuf,
    extra_regauth: String,
    extra_registry: String,
}

impl Pairing {
    fn new() -> Pairing {
        let dir = tempfile::tempdir().unwrap();
        generate::write(&dir.path().join("keys"), Algorithm::ES256, false).unwrap();
        let bundle = dir.path().join("keys/signing.crt");
        Pairing {
            dir,
            issuer: "regauth-test".into(),
            services: "[registry.test]".into(),
            kid_format: "libtrust".into(),
            realm: "http://127.0.0.1:5001/token".into(),
            service: "registry.test".into(),
            registry_issuer: "regauth-test".into(),
            bundle,
            extra_regauth: String::new(),
            extra_registry: String::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes both files and runs `regauth doctor` with `args` and `envs`: (exit code, stdout,
    /// stderr).
    fn doctor(&self, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
        let config = self.path("regauth.yaml");
        std::fs::write(
            &config,
            format!(
                "server:\n  listen: 127.0.0.1:5001\ntoken:\n  issuer: {}\n  services: {}\n  \
                 kid_format: {}\nkey:\n  path: {}\n{}",
                self.issuer,
                self.services,
                self.kid_format,
                self.path("keys/signing.key").display(),
                self.extra_regauth
            ),
        )
        .unwrap();
        let registry = self.path("config.yml");
        std::fs::write(
            &registry,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n\
                 auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    \
                 rootcertbundle: {}\n{}",
                self.realm,
                self.service,
                self.registry_issuer,
                self.bundle.display(),
                self.extra_registry
            ),
        )
        .unwrap();
        let mut all = vec![
            "doctor",
            "--config",
            config.to_str().unwrap(),
            "--registry-config",
            registry.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        run(&all, envs)
    }
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("REGAUTH_CONFIG");
    // The registry's own overrides (REGISTRY_AUTH_TOKEN_*) must come from the test alone.
    for (var, _) in std::env::vars().filter(|(k, _)| k.starts_with("REGISTRY_")) {
        cmd.env_remove(var);
    }
    let output = cmd
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// The finding codes of a text report, as `severity code`.
fn findings(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("error ") || l.starts_with("warning "))
        .map(|l| l.split(':').next().unwrap().to_owned())
        .collect()
}

/// Plants one mistake, and expects exactly `expected` findings, each line with a fix.
fn finds(pairing: &Pairing, envs: &[(&str, &str)], expected: &[&str]) -> String {
    let (code, stdout, stderr) = pairing.doctor(&[], envs);
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(findings(&stdout), expected, "{stdout}");
    for line in stdout.lines().filter(|l| l.starts_with("error ")) {
        assert!(line.contains(" -> fix: "), "{line}");
    }
    stdout
}

#[test]
fn a_right_pairing_passes_and_says_what_it_checked() {
    let (code, stdout, stderr) = Pairing::new().doctor(&[], &[]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(findings(&stdout).is_empty(), "{stdout}");
    for checked in [
        "ok: issuer \"regauth-test\"",
        "ok: service \"registry.test\"",
        "ok: realm \"http://127.0.0.1:5001/token\" reaches server.listen 127.0.0.1:5001",
        "matches a certificate of the bundle",
        "note: assuming registry 2.8",
    ] {
        assert!(stdout.contains(checked), "{checked:?} in:\n{stdout}");
    }
    assert!(
        stdout
            .trim_end()
            .ends_with("the registry accepts regauth's tokens"),
        "{stdout}"
    );
}

#[test]
fn a_wrong_issuer_is_named_with_both_values() {
    let mut p = Pairing::new();
    p.registry_issuer = "auth.example.com".into();
    let out = finds(&p, &[], &["error issuer-mismatch"]);
    assert!(
        out.contains("the registry wants iss \"auth.example.com\"")
            && out.contains("regauth signs iss \"regauth-test\""),
        "{out}"
    );
}

#[test]
fn an_issuer_from_the_registrys_environment_overrides_a_right_file() {
    let p = Pairing::new();
    let out = finds(
        &p,
        &[("REGISTRY_AUTH_TOKEN_ISSUER", "from-env")],
        &["error issuer-mismatch"],
    );
    assert!(
        out.contains("\"from-env\" (REGISTRY_AUTH_TOKEN_ISSUER)")
            && out.contains("set REGISTRY_AUTH_TOKEN_ISSUER="),
        "{out}"
    );
}

#[test]
fn a_service_regauth_does_not_issue_for_is_named() {
    let mut p = Pairing::new();
    p.service = "registry.example.com".into();
    let out = finds(&p, &[], &["error service-not-allowed"]);
    assert!(
        out.contains("add \"registry.example.com\" to token.services"),
        "{out}"
    );
    // With token.services empty every service is allowed.
    p.services = "[]".into();
    assert_eq!(p.doctor(&[], &[]).0, 0);
}

#[test]
fn a_bundle_with_another_key_is_found_and_the_fix_names_regauth_bundle() {
    let mut p = Pairing::new();
    generate::write(&p.path("other"), Algorithm::ES256, false).unwrap();
    p.bundle = p.path("other/signing.crt");
    let out = finds(&p, &[], &["error bundle-missing-key"]);
    let config = p.path("regauth.yaml");
    assert!(
        out.contains(&format!(
            "regauth bundle --config {} > {}",
            config.display(),
            p.bundle.display()
        )),
        "{out}"
    );
    // A bundle file that is not there.
    p.bundle = p.path("nowhere.pem");
    finds(&p, &[], &["error bundle-missing"]);
}

#[test]
fn an_expired_certificate_in_the_bundle_is_an_error() {
    let mut p = Pairing::new();
    let key_pem = std::fs::read_to_string(p.path("keys/signing.key")).unwrap();
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    p.bundle = p.path("expired.pem");
    std::fs::write(&p.bundle, cert.pem()).unwrap();
    let out = finds(&p, &[], &["error certificate-expired"]);
    assert!(out.contains("expired on 2021-01-01"), "{out}");
}

#[test]
fn a_realm_pointing_elsewhere_is_found() {
    let mut p = Pairing::new();
    p.realm = "http://127.0.0.1:5999/token".into();
    let out = finds(&p, &[], &["error realm-elsewhere"]);
    assert!(
        out.contains("port 5999, but regauth listens on 127.0.0.1:5001"),
        "{out}"
    );
    p.realm = "http://127.0.0.1:5001/auth".into();
    finds(&p, &[], &["error realm-path"]);
}

#[test]
fn a_next_key_missing_from_the_bundle_is_a_warning_until_it_is_published() {
    let mut p = Pairing::new();
    generate::write(&p.path("next"), Algorithm::ES256, false).unwrap();
    p.extra_regauth = format!(
        "  next: {}\n  next_certificate: {}\n",
        p.path("next/signing.key").display(),
        p.path("next/signing.crt").display()
    );
    let out = finds(&p, &[], &["warning next-key-unpublished"]);
    assert!(out.contains("before moving it over key.path"), "{out}");
    // Published the way the fix says: regauth bundle, both certificates.
    let bundle = run(
        &[
            "bundle",
            "--config",
            p.path("regauth.yaml").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(bundle.0, 0, "{}", bundle.2);
    p.bundle = p.path("bundle.pem");
    std::fs::write(&p.bundle, bundle.1).unwrap();
    let (code, stdout, _) = p.doctor(&[], &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("(ready for the rotation)"), "{stdout}");
}

#[test]
fn registry_3_needs_a_thumbprint_kid_or_a_jwks_file_with_the_kid() {
    let mut p = Pairing::new();
    let out = finds_with(&p, &["--registry-version", "3.1"], &["error kid-format"]);
    assert!(out.contains("token.kid_format: thumbprint"), "{out}");
    // A jwks file from regauth jwks carries the kid tokens carry: accepted as it is.
    let jwks = run(
        &["jwks", "--config", p.path("regauth.yaml").to_str().unwrap()],
        &[],
    );
    std::fs::write(p.path("jwks.json"), jwks.1).unwrap();
    p.extra_registry = format!("    jwks: {}\n", p.path("jwks.json").display());
    let (code, stdout, _) = p.doctor(&[], &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("assuming registry 3.1+"), "{stdout}");
    // Or the thumbprint, matched against the bundle.
    p.extra_registry.clear();
    p.kid_format = "thumbprint".into();
    let (code, stdout, _) = p.doctor(&["--registry-version", "3.1"], &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("(thumbprint) matches a certificate of the bundle"),
        "{stdout}"
    );
    // ... which registry 2.8 does not look up.
    finds_with(&p, &["--registry-version", "2.8"], &["error kid-format"]);
}

fn finds_with(pairing: &Pairing, args: &[&str], expected: &[&str]) -> String {
    let (code, stdout, stderr) = pairing.doctor(args, &[]);
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(findings(&stdout), expected, "{stdout}");
    stdout
}

#[test]
fn json_output_carries_codes_severities_and_fixes() {
    let mut p = Pairing::new();
    p.registry_issuer = "other".into();
    let (code, stdout, _) = p.doctor(&["--json"], &[]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["findings"][0]["code"], "issuer-mismatch");
    assert_eq!(report["findings"][0]["severity"], "error");
    assert!(
        report["findings"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("token.issuer")
    );
}

#[test]
fn unreadable_configurations_are_usage_errors() {
    let p = Pairing::new();
    p.doctor(&[], &[]);
    let config = p.path("regauth.yaml");
    let (code, _, stderr) = run(
        &[
            "doctor",
            "--config",
            config.to_str().unwrap(),
            "--registry-config",
            "/nonexistent/config.yml",
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("/nonexistent/config.yml"), "{stderr}");
    let (code, _, stderr) = run(
        &[
            "doctor",
            "--registry-config",
            p.path("config.yml").to_str().unwrap(),
        ],
        &[("REGAUTH_TOKEN__TTL_SECONDS", "5")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("token.ttl_seconds"), "{stderr}");
    let (code, _, _) = run(&["doctor"], &[]);
    assert_eq!(code, 2, "--registry-config is required");
}

#[test]
fn x5c_tokens_need_their_chains_issuer_in_the_bundle() {
    let mut p = Pairing::new();
    let ca = crate::support::new_ca("doctor test CA");
    let (leaf, key) = crate::support::leaf_signed_by(&ca, "doctor test signer");
    std::fs::write(p.path("keys/signing.key"), key).unwrap();
    std::fs::write(p.path("keys/leaf.crt"), leaf).unwrap();
    std::fs::write(p.path("ca.pem"), ca.pem()).unwrap();
    p.kid_format = "none".into();
    p.extra_regauth = format!("  certificate: {}\n", p.path("keys/leaf.crt").display());
    p.bundle = p.path("ca.pem");
    let (code, stdout, _) = p.doctor(&[], &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("tokens carry x5c"), "{stdout}");
    // Another CA, even of the same name: the leaf's signature is not its, so the chain ends
    // nowhere the registry trusts.
    let other = crate::support::new_ca("doctor test CA");
    std::fs::write(p.path("other-ca.pem"), other.pem()).unwrap();
    p.bundle = p.path("other-ca.pem");
    finds(&p, &[], &["error bundle-missing-key"]);
}

#[test]
fn registry_3_1_and_an_ec_key_with_a_zero_led_coordinate_is_the_padding_quirk() {
    let mut p = Pairing::new();
    let key_pem = include_str!("../fixtures/ec256-x-leading-zero.pem");
    std::fs::write(p.path("keys/signing.key"), key_pem).unwrap();
    let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    p.bundle = p.path("zero-led.pem");
    std::fs::write(&p.bundle, cert.pem()).unwrap();
    p.kid_format = "thumbprint".into();
    let out = finds_with(
        &p,
        &["--registry-version", "3.1.1"],
        &["error kid-ec-padding"],
    );
    assert!(
        out.contains("x coordinate starts with a 0x00 byte"),
        "{out}"
    );
    // Registry 3.0 has its own P-256 bug; 2.8 wants the libtrust kid.
    finds_with(&p, &["--registry-version", "3.0.0"], &["error kid-format"]);
}
