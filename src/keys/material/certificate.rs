//! The certificate chain a key may come with: parsed, checked against the key, and sent as
//! `x5c`.

use chrono::{DateTime, Utc};
use data_encoding::BASE64;

use super::{KeyError, PublicKeyInfo};

/// The leaf certificate's facts that operators care about.
#[derive(Debug, Clone)]
pub struct CertificateInfo {
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Certificates in the chain, leaf first, DER.
    pub chain_der: Vec<Vec<u8>>,
}

impl CertificateInfo {
    /// The chain as `x5c` values: standard base64 (with padding) of each DER, leaf first.
    pub fn x5c(&self) -> Vec<String> {
        self.chain_der.iter().map(|d| BASE64.encode(d)).collect()
    }
}

pub(super) fn parse_chain(
    pem_bytes: &[u8],
    public: Option<&PublicKeyInfo>,
) -> Result<CertificateInfo, KeyError> {
    let blocks = pem::parse_many(pem_bytes).map_err(|e| KeyError::Pem(e.to_string()))?;
    let chain_der: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect();
    if chain_der.is_empty() {
        return Err(KeyError::NoCertificate);
    }
    let mut not_after = DateTime::<Utc>::default();
    for (index, der) in chain_der.iter().enumerate() {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| KeyError::BadCertificate {
                index,
                reason: e.to_string(),
            })?;
        if index == 0 {
            // The leaf must be the signing key's certificate.
            if Some(cert.tbs_certificate.subject_pki.raw) != public.map(|p| p.spki_der.as_slice()) {
                return Err(KeyError::CertificateMismatch);
            }
            not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
                .unwrap_or_default();
        }
    }
    Ok(CertificateInfo {
        not_after,
        chain_der,
    })
}
