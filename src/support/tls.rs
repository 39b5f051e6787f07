//! The rustls setup every TLS endpoint shares: the aws-lc-rs crypto provider (the library
//! that signs tokens), client configurations, and trust roots from a PEM CA file or from
//! the system.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// The crypto provider: aws-lc-rs, as for signing, with rustls' default cipher suites and
/// key exchange groups.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client configuration that trusts `roots`, with [`provider`] and rustls' safe protocol
/// versions (TLS 1.2 and 1.3), without client certificates.
pub fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, String> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The PEM certificates in a CA file (`ca_file` settings). The error says why, never naming
/// the path (callers do, with their setting's name).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok(certs)
}

/// A root store holding `certs`; a certificate rustls cannot use is an error.
pub fn roots(certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("unusable certificate: {e}"))?;
    }
    Ok(roots)
}

/// The system's trust roots (`SSL_CERT_FILE`, `SSL_CERT_DIR` or the platform store). None at
/// all is an error that says what the store reported, so a missing store (the `FROM
/// scratch` image) is a start error rather than a failure at every handshake.
pub fn system_roots() -> Result<RootCertStore, String> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        return Err(match loaded.errors.first() {
            Some(e) => format!("no usable certificate: {e}"),
            None => "no certificate found".to_owned(),
        });
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_pem_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "no certificate here\n").unwrap();
        assert_eq!(
            read_ca_file(&path),
            Err("no PEM certificate in the file".to_owned())
        );
        assert!(read_ca_file(&dir.path().join("missing.pem")).is_err());
        let ca = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.test".into()])
            .unwrap()
            .self_signed(&ca)
            .unwrap();
        std::fs::write(&path, cert.pem()).unwrap();
        let certs = read_ca_file(&path).unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(roots(certs).unwrap().len(), 1);
    }
}
