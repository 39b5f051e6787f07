//! Fixtures shared by the integration suites (`tests/api`, `tests/e2e`): certificates made
//! with rcgen, key files, and the file layouts operators and Kubernetes produce.
//!
//! Each suite includes this file with `#[path = "../support/mod.rs"] mod support;`.

// Each suite uses only part of this file.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use regauth::keys::{Algorithm, KeySpec, SigningKey, generate};

/// A CA certificate named `name` that may sign certificates: what an operator's own PKI
/// would hand regauth for `x5c`.
pub fn new_ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ca key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    rcgen::CertifiedIssuer::self_signed(params, ca_key).expect("ca")
}

/// A fresh ES256 key and a certificate for it named `name`, signed by `ca`:
/// (certificate PEM, key PEM).
pub fn leaf_signed_by(
    ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
    name: &str,
) -> (String, String) {
    let generated = generate::generate(Algorithm::ES256).expect("leaf key");
    let leaf_key = rcgen::KeyPair::from_pem(&generated.key_pem).expect("leaf key parses");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&leaf_key, ca).expect("leaf cert");
    (cert.pem(), generated.key_pem)
}

/// A TLS server certificate for `localhost` and 127.0.0.1 named `name`, with a fresh P-256
/// key, signed by `ca`: (certificate PEM, key PEM).
pub fn tls_server_pair(
    ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
    name: &str,
) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("tls key");
    (tls_server_cert(ca, name, &key), key.serialize_pem())
}

/// A TLS server certificate as [`tls_server_pair`] makes, for the existing key `key_pem`:
/// the certificate PEM.
pub fn tls_server_cert_for(
    ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
    name: &str,
    key_pem: &str,
) -> String {
    let key = rcgen::KeyPair::from_pem(key_pem).expect("tls key parses");
    tls_server_cert(ca, name, &key)
}

fn tls_server_cert(
    ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
    name: &str,
    key: &rcgen::KeyPair,
) -> String {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.signed_by(key, ca).expect("tls cert").pem()
}

/// The DER of every CERTIFICATE block in `pem_text`, in order.
pub fn certificates_der(pem_text: &(impl AsRef<[u8]> + ?Sized)) -> Vec<Vec<u8>> {
    pem::parse_many(pem_text.as_ref())
        .expect("pem")
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect()
}

/// The libtrust kid of a key file.
pub fn kid_of(key_pem: &[u8]) -> String {
    SigningKey::from_bytes(key_pem, None, KeySpec::default())
        .expect("key loads")
        .kid()
        .expect("kid")
        .to_owned()
}

/// A new ES256 key as PEM text, with its libtrust kid.
pub fn new_key() -> (String, String) {
    let generated = generate::generate(Algorithm::ES256).expect("keygen");
    let kid = kid_of(generated.key_pem.as_bytes());
    (generated.key_pem, kid)
}

/// Writes `text` to `path` through a rename, as operators and keygen do.
pub fn replace_file(path: &Path, text: &str) {
    let staged = path.with_extension("staged");
    fs::write(&staged, text).expect("write");
    fs::rename(&staged, path).expect("rename");
}

/// Lays out `dir` as the kubelet mounts a Secret, or swaps it to new content: `files`
/// (name, content) go to a new directory `..<generation>`, the `..data` symlink is swapped to
/// it in one rename, and each name in `dir` is a symlink through `..data` (made once).
pub fn k8s_swap(dir: &Path, generation: &str, files: &[(&str, &str)]) {
    let real = format!("..{generation}");
    fs::create_dir_all(dir.join(&real)).expect("mkdir");
    for (name, content) in files {
        fs::write(dir.join(&real).join(name), content).expect("write");
    }
    let tmp = dir.join("..data_tmp");
    symlink(&real, &tmp).expect("symlink");
    fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for (name, _) in files {
        if fs::symlink_metadata(dir.join(name)).is_err() {
            symlink(format!("..data/{name}"), dir.join(name)).expect("symlink");
        }
    }
}
pub mod dirs;
pub mod postgres;
pub mod workload;

// Each suite uses only part of these (the e2e suite none yet).
#[allow(unused_imports)]
pub use dirs::{config_dir, free_port, key_dir, write_config};

/// How often [`wait_for`] asks again.
pub const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Polls `probe` until it returns `Some`, and returns that. At `within`, fails with what
/// `failure` says (called only then: it may read logs). The way to wait for a file, a
/// reload or a count without a fixed sleep.
pub fn wait_for<T>(
    within: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
    failure: impl FnOnce() -> String,
) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(found) = probe() {
            return found;
        }
        if started.elapsed() >= within {
            panic!("{} (waited {within:?})", failure());
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// [`wait_for`] for async tests: awaits `probe` every `every` (without blocking the runtime)
/// until it gives a value, and panics with `failure()` after `within`. `every` is the
/// caller's: a probe that signs in counts against the brute-force limits when it fails.
pub async fn wait_for_async<T>(
    within: std::time::Duration,
    every: std::time::Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
    failure: impl FnOnce() -> String,
) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        if started.elapsed() >= within {
            panic!("{} (waited {within:?})", failure());
        }
        tokio::time::sleep(every).await;
    }
}

/// True under CI: `CI` set to anything but "", "0" or "false" (any case). A missing outside
/// program is then a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")))
}

/// A test cannot run here because `why`: under CI that is a failure (this panics); otherwise
/// it says so on stderr and returns false, for `if !... { return; }`.
pub fn skip_or_fail(why: &str) -> bool {
    assert!(
        !in_ci(),
        "{why}; CI is set, so this is a failure, not a skip"
    );
    eprintln!("{why}; skipping test");
    false
}
