//! `regauth doctor --registry URL` against a running `regauth serve` and a running registry
//! 2.8: a right pairing passes the round trip, and each mistake planted in the registry's
//! configuration is found in the files and confirmed by the registry's own answer.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use regauth::keys::{Algorithm, generate};

use crate::registry::{Registry, RegistryOptions, require_registry};
use crate::stack::{ISSUER, Regauth, SERVICE};

/// regauth (anonymous pull, issuer [`ISSUER`], service [`SERVICE`]) and a registry started
/// with `issuer`, `service` and `bundle`.
struct Pair {
    dir: tempfile::TempDir,
    config: PathBuf,
    regauth: Regauth,
    registry: Registry,
}

impl Pair {
    fn start(issuer: &str, service: &str, bundle_of: &str) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        generate::write(&keys, Algorithm::ES256, false).unwrap();
        generate::write(&dir.path().join("other"), Algorithm::ES256, false).unwrap();
        let config = dir.path().join("regauth.yaml");
        let alice = bcrypt::hash("s3cret", 4).unwrap();
        let yaml = |listen: &str| {
            format!(
                "server:\n  listen: {listen}\ntoken:\n  issuer: {ISSUER}\n  services: [{SERVICE}]\n\
                 key:\n  path: {}\nusers:\n  alice:\n    password: \"{}\"\n",
                keys.join("signing.key").display(),
                alice
            )
        };
        fs::write(&config, yaml("127.0.0.1:0")).unwrap();
        let regauth = Regauth::start(&config, &dir.path().join("regauth.log"));
        // What the running server listens on, as an operator's file would say it.
        fs::write(&config, yaml(&regauth.addr.to_string())).unwrap();
        let bundle = dir.path().join("bundle.pem");
        fs::copy(dir.path().join(bundle_of).join("signing.crt"), &bundle).unwrap();
        let registry = Registry::start(&RegistryOptions {
            port: 0,
            dir: dir.path().join("registry"),
            realm: format!("http://{}/token", regauth.addr),
            service: service.into(),
            issuer: issuer.into(),
            root_cert_bundle: bundle,
        })
        .expect("registry starts");
        Pair {
            dir,
            config,
            regauth,
            registry,
        }
    }

    /// `regauth doctor --registry URL`: (exit code, stdout, the finding codes).
    fn doctor(&self) -> (i32, String, Vec<String>) {
        self.doctor_as(None)
    }

    /// [`Pair::doctor`], signed in as `alice` with `password` when given.
    fn doctor_as(&self, password: Option<&str>) -> (i32, String, Vec<String>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_regauth"))
            .arg("doctor")
            .arg("--config")
            .arg(&self.config)
            .arg("--registry-config")
            .arg(&self.registry.config_path)
            .args(["--registry", &self.registry.url()])
            .env_remove("REGAUTH_CONFIG")
            .env_remove("REGISTRY_AUTH_TOKEN_ISSUER")
            .env_remove("REGISTRY_AUTH_TOKEN_SERVICE")
            .env_remove("REGISTRY_AUTH_TOKEN_REALM")
            .env_remove("REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE")
            .args(password.map_or(&[][..], |_| &["--user", "alice", "--password-stdin"][..]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(
            &mut stdin,
            format!("{}\n", password.unwrap_or("")).as_bytes(),
        )
        .unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        let codes = stdout
            .lines()
            .filter(|l| l.starts_with("error ") || l.starts_with("warning "))
            .map(|l| l.split(':').next().unwrap().to_owned())
            .collect();
        let stdout = format!(
            "{stdout}--- stderr ---\n{}--- regauth log ---\n{}\n--- registry log ---\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.regauth.log(),
            self.registry.log()
        );
        (output.status.code().unwrap_or(-1), stdout, codes)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn bundle_of(dir: &Path) -> String {
    fs::read_to_string(dir.join("signing.crt")).unwrap()
}

#[test]
fn doctor_round_trip_passes_against_a_right_registry_2_8() {
    if !require_registry() {
        return;
    }
    let pair = Pair::start(ISSUER, SERVICE, "keys");
    let (code, out, codes) = pair.doctor();
    assert_eq!(code, 0, "{out}");
    assert!(codes.is_empty(), "{out}");
    assert!(
        out.contains("401 with a Bearer challenge")
            && out.contains("a token from the realm anonymously")
            && out.contains("with the token: 200, the registry accepts it"),
        "{out}"
    );
}

#[test]
fn doctor_round_trip_signs_in_with_a_password_from_stdin() {
    if !require_registry() {
        return;
    }
    let pair = Pair::start(ISSUER, SERVICE, "keys");
    let (code, out, _) = pair.doctor_as(Some("s3cret"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("a token from the realm as \"alice\""), "{out}");
    let (code, out, codes) = pair.doctor_as(Some("Qx7-not-alices"));
    assert_eq!(code, 1, "{out}");
    assert_eq!(codes, ["error token-refused"], "{out}");
    assert!(out.contains("refused a token as \"alice\""), "{out}");
    assert!(
        !out.contains("Qx7-not-alices"),
        "the password is never printed: {out}"
    );
}

#[test]
fn doctor_explains_a_registry_that_trusts_another_key_and_one_not_restarted() {
    if !require_registry() {
        return;
    }
    let pair = Pair::start(ISSUER, SERVICE, "other");
    let (code, out, codes) = pair.doctor();
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        codes,
        ["error bundle-missing-key", "error registry-refuses-token"],
        "{out}"
    );
    assert!(out.contains("invalid_token"), "{out}");
    assert!(
        out.contains("fix the errors above (bundle-missing-key)"),
        "{out}"
    );
    // The registry's own reason, which doctor explained.
    assert!(pair.registry.log().contains("untrusted key"), "{out}");

    // The bundle file fixed but the registry not restarted: the files agree, the registry
    // still refuses, and doctor says why.
    fs::write(pair.path("bundle.pem"), bundle_of(&pair.path("keys"))).unwrap();
    let (code, out, codes) = pair.doctor();
    assert_eq!(code, 1, "{out}");
    assert_eq!(codes, ["error registry-refuses-token"], "{out}");
    assert!(
        out.contains("reads its bundle and jwks file only at start"),
        "{out}"
    );
}

#[test]
fn doctor_finds_a_wrong_issuer_that_registry_2_8_refuses() {
    if !require_registry() {
        return;
    }
    let pair = Pair::start("someone-else", SERVICE, "keys");
    let (code, out, codes) = pair.doctor();
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        codes,
        ["error issuer-mismatch", "error registry-refuses-token"],
        "{out}"
    );
}

#[test]
fn doctor_finds_a_service_regauth_refuses_tokens_for() {
    if !require_registry() {
        return;
    }
    let pair = Pair::start(ISSUER, "other.test", "keys");
    let (code, out, codes) = pair.doctor();
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        codes,
        ["error service-not-allowed", "error token-refused"],
        "{out}"
    );
    assert!(out.contains("other.test"), "{out}");
}
