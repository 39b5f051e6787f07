//! Fixtures for the unit tests: keys made on the spot, and certificates under a CA.

use std::sync::Arc;

use crate::keys::{Algorithm, KeySpec, SigningKey, generate};

/// A new key of `alg`, loaded with the default spec and no certificate.
pub(crate) fn key(alg: Algorithm) -> Arc<SigningKey> {
    key_with(alg, KeySpec::default(), false)
}

/// A new key of `alg` loaded with `spec` (its algorithm set to `alg`), with keygen's
/// self-signed certificate when `with_cert`.
pub(crate) fn key_with(alg: Algorithm, spec: KeySpec, with_cert: bool) -> Arc<SigningKey> {
    let generated = generate::generate(alg).unwrap();
    let spec = KeySpec {
        algorithm: Some(alg),
        ..spec
    };
    let cert = generated.cert_pem.filter(|_| with_cert);
    Arc::new(
        SigningKey::from_bytes(
            generated.key_pem.as_bytes(),
            cert.as_deref().map(str::as_bytes),
            spec,
        )
        .unwrap(),
    )
}

/// A CA that may sign certificates, as an operator's PKI would have.
pub(crate) fn new_ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    rcgen::CertifiedIssuer::self_signed(params, ca_key).unwrap()
}

/// A certificate for the key in `key_pem`, signed by `ca`, as PEM.
pub(crate) fn leaf_certificate(
    ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
    key_pem: &str,
) -> String {
    let leaf_key = rcgen::KeyPair::from_pem(key_pem).unwrap();
    rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .signed_by(&leaf_key, ca)
        .unwrap()
        .pem()
}
