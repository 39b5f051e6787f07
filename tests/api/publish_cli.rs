//! `regauth bundle`, `regauth jwks` and `regauth public-key`: what a registry and a JWKS verifier should trust,
//! computed from the settings without a server.

use std::path::Path;
use std::process::{Command, Output};

use regauth::keys::{Algorithm, generate};
use serde_json::Value;

use crate::support::{certificates_der, leaf_signed_by, new_ca};

const BIN: &str = env!("CARGO_BIN_EXE_regauth");

fn run(command: &str, config: &Path) -> Output {
    run_with(&[command], config)
}

/// An HS256 secret and a config signing with it; returns the config and the secret.
fn hmac_config(dir: &Path) -> (std::path::PathBuf, String) {
    let secret = generate::generate(Algorithm::HS256).unwrap().key_pem;
    std::fs::write(dir.join("secret"), &secret).unwrap();
    let config = dir.join("regauth.yaml");
    std::fs::write(
        &config,
        format!(
            "key:\n  path: {}/secret\n  algorithm: HS256\n",
            dir.display()
        ),
    )
    .unwrap();
    (config, secret)
}

/// keys/signing.{key,crt} and keys/next.{key,crt}, and a kid-mode config naming all four.
fn kid_mode(dir: &Path) -> std::path::PathBuf {
    let keys = dir.join("keys");
    generate::write(&keys, Algorithm::ES256, false).unwrap();
    let staging = dir.join("staging");
    let next = generate::write(&staging, Algorithm::ES256, false).unwrap();
    std::fs::rename(&next.key, keys.join("next.key")).unwrap();
    std::fs::rename(next.certificate.unwrap(), keys.join("next.crt")).unwrap();
    let config = dir.join("regauth.yaml");
    std::fs::write(
        &config,
        format!(
            "key:\n  path: {k}/signing.key\n  certificate: {k}/signing.crt\n  x5c: false\n  \
             next: {k}/next.key\n  next_certificate: {k}/next.crt\n",
            k = keys.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn bundle_prints_the_current_and_next_certificates_in_kid_mode() {
    let dir = tempfile::tempdir().unwrap();
    let config = kid_mode(dir.path());
    let out = run("bundle", &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = dir.path().join("keys");
    let expected: Vec<Vec<u8>> = ["signing.crt", "next.crt"]
        .iter()
        .flat_map(|f| certificates_der(&std::fs::read(keys.join(f)).unwrap()))
        .collect();
    assert_eq!(certificates_der(&out.stdout), expected);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the next key (key.next"), "{stderr}");
}

#[test]
fn bundle_prints_the_ca_when_an_x5c_chain_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("regauth test CA");
    let (leaf, leaf_key) = leaf_signed_by(&ca, "regauth test signer");
    std::fs::write(dir.path().join("signing.key"), &leaf_key).unwrap();
    std::fs::write(dir.path().join("chain.pem"), format!("{leaf}{}", ca.pem())).unwrap();
    let config = dir.path().join("regauth.toml");
    std::fs::write(
        &config,
        format!(
            "[token]\nkid_format = \"none\"\n[key]\npath = \"{d}/signing.key\"\ncertificate = \"{d}/chain.pem\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let out = run("bundle", &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(certificates_der(&out.stdout), [ca.der().to_vec()]);
}

#[test]
fn bundle_fails_and_prints_nothing_when_a_key_has_no_certificate_or_the_next_key_is_broken_but_not_when_it_is_gone()
 {
    let dir = tempfile::tempdir().unwrap();
    let config = kid_mode(dir.path());
    let keys = dir.path().join("keys");
    let text = std::fs::read_to_string(&config).unwrap();

    let no_next_cert = dir.path().join("no-next-cert.yaml");
    std::fs::write(
        &no_next_cert,
        text.lines()
            .filter(|l| !l.contains("next_certificate"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    // Without the setting, the certificate beside the key (next.key -> next.crt) is found.
    let out = run("bundle", &no_next_cert);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(certificates_der(&out.stdout).len(), 2);
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(notes.contains("beside it"), "{notes}");
    // Tokens carry no x5c for a certificate the settings do not name: the registry finds the
    // key by kid, and the note must not say otherwise.
    let beside = notes
        .lines()
        .find(|l| l.contains("beside it"))
        .unwrap_or_default();
    assert!(beside.contains("found by kid"), "{beside}");
    assert!(!beside.contains("sent as x5c"), "{beside}");
    // With no certificate anywhere, nothing is printed.
    std::fs::rename(keys.join("next.crt"), keys.join("next.crt.away")).unwrap();
    let out = run("bundle", &no_next_cert);
    std::fs::rename(keys.join("next.crt.away"), keys.join("next.crt")).unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no partial bundle");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("has no certificate: set key.next_certificate"),
        "{stderr}"
    );

    // Right after a promotion the next key is gone: that is no next key, not an error.
    let current_cert = certificates_der(&std::fs::read(keys.join("signing.crt")).unwrap());
    std::fs::remove_file(keys.join("next.key")).unwrap();
    let out = run("bundle", &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(certificates_der(&out.stdout), current_cert);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));

    std::fs::write(keys.join("next.key"), "broken").unwrap();
    let out = run("bundle", &config);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key.next is configured but cannot be used"),
        "{stderr}"
    );
}

#[test]
fn jwks_prints_the_signing_and_next_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = kid_mode(dir.path());
    let out = run("jwks", &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = dir.path().join("keys");
    let kids: Vec<&str> = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        [
            crate::helpers::kid_of(&std::fs::read(keys.join("signing.key")).unwrap()),
            crate::helpers::kid_of(&std::fs::read(keys.join("next.key")).unwrap()),
        ]
    );
    assert!(set["keys"][0]["x5c"].is_array(), "certificates go along");
    // What a jsonwebtoken verifier reads.
    let parsed: jsonwebtoken::jwk::JwkSet = serde_json::from_value(set).unwrap();
    assert_eq!(parsed.keys.len(), 2);
}

#[test]
fn jwks_of_an_hmac_key_is_empty_and_says_why_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let (config, secret) = hmac_config(dir.path());
    let out = run("jwks", &config);
    assert!(out.status.success());
    let set: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(set["keys"].as_array().unwrap().len(), 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HMAC secret"), "{stderr}");
    assert!(
        !stderr.contains(secret.trim())
            && !String::from_utf8_lossy(&out.stdout).contains(secret.trim())
    );
    let out = run("bundle", &config);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HMAC secret"));
}

/// `regauth jwks` and the server's `GET /.well-known/jwks.json` for the same settings: the
/// same keys, ids and `x5c` presence, with and without configured certificates.
#[tokio::test]
async fn regauth_jwks_prints_what_the_server_publishes() {
    for configured in [false, true] {
        let app = crate::helpers::spawn_app_with(|s| {
            let dir = s.key.path.parent().unwrap().to_path_buf();
            // keygen's layout: next.key with next.crt beside it.
            let staging = dir.join("staging");
            let next = generate::write(&staging, Algorithm::ES256, false).unwrap();
            std::fs::rename(&next.key, dir.join("next.key")).unwrap();
            std::fs::rename(next.certificate.unwrap(), dir.join("next.crt")).unwrap();
            s.key.next = Some(dir.join("next.key"));
            if configured {
                s.key.certificate = Some(dir.join("signing.crt"));
                s.key.next_certificate = Some(dir.join("next.crt"));
                s.key.x5c = false;
            }
        })
        .await;
        let dir = app.dir.path();
        let mut yaml = format!(
            "key:\n  path: {d}/signing.key\n  next: {d}/next.key\n",
            d = dir.display()
        );
        if configured {
            yaml += &format!(
                "  certificate: {d}/signing.crt\n  next_certificate: {d}/next.crt\n  x5c: false\n",
                d = dir.display()
            );
        }
        let config = dir.join("regauth.yaml");
        std::fs::write(&config, yaml).unwrap();
        let out = run("jwks", &config);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
        let served: Value = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(cli, served, "configured certificates: {configured}");
        assert_eq!(served["keys"].as_array().unwrap().len(), 2);
        for key in served["keys"].as_array().unwrap() {
            assert_eq!(key["x5c"].is_array(), configured, "{key}");
        }
    }
}

fn run_with(args: &[&str], config: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("REGAUTH_CONFIG")
        .output()
        .unwrap()
}

/// A token signed with `key_pem` verifies with `public_pem`.
fn verifies(key_pem: &[u8], public_pem: &[u8]) -> bool {
    use jsonwebtoken::{Algorithm as Alg, DecodingKey, EncodingKey, Header, Validation};
    let claims = serde_json::json!({"sub": "alice", "exp": 4_000_000_000u64});
    let token = jsonwebtoken::encode(
        &Header::new(Alg::ES256),
        &claims,
        &EncodingKey::from_ec_pem(key_pem).unwrap(),
    )
    .unwrap();
    let mut validation = Validation::new(Alg::ES256);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(
        &token,
        &DecodingKey::from_ec_pem(public_pem).unwrap(),
        &validation,
    )
    .is_ok()
}

#[test]
fn public_key_prints_the_pem_public_key_of_the_signing_or_the_next_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = kid_mode(dir.path());
    let keys = dir.path().join("keys");
    let signing = std::fs::read(keys.join("signing.key")).unwrap();
    let next = std::fs::read(keys.join("next.key")).unwrap();

    let out = run("public-key", &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(text.starts_with("-----BEGIN PUBLIC KEY-----"), "{text}");
    assert!(!text.contains("PRIVATE"));
    assert!(verifies(&signing, &out.stdout), "the signing key's half");
    assert!(!verifies(&next, &out.stdout));

    let out = run_with(&["public-key", "--next"], &config);
    assert!(out.status.success());
    assert!(verifies(&next, &out.stdout), "the next key's half");
    assert!(!verifies(&signing, &out.stdout));
}

#[test]
fn public_key_refuses_an_hmac_secret_and_a_next_key_that_is_not_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (config, secret) = hmac_config(dir.path());
    let out = run("public-key", &config);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HMAC secret"), "{stderr}");
    assert!(
        !stderr.contains(secret.trim()),
        "the secret is never printed"
    );

    let out = run_with(&["public-key", "--next"], &config);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key.next is not configured"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bundle_says_a_certificate_found_beside_the_key_is_matched_by_kid_not_sent_as_x5c() {
    // keygen's layout with the default x5c: true, and no key.certificate: the certificate is
    // found beside the key for the bundle, but tokens do not carry it.
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    generate::write(&keys, Algorithm::ES256, false).unwrap();
    let config = dir.path().join("regauth.yaml");
    std::fs::write(
        &config,
        format!("key:\n  path: {}/signing.key\n", keys.display()),
    )
    .unwrap();
    let out = run("bundle", &config);
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{notes}");
    assert_eq!(certificates_der(&out.stdout).len(), 1);
    let note = notes
        .lines()
        .find(|l| l.contains("beside it"))
        .unwrap_or_else(|| panic!("{notes}"));
    assert!(note.contains("found by kid"), "{note}");
    assert!(!note.contains("x5c"), "{note}");
}
