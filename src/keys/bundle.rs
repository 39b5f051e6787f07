//! The certificates a registry must trust (`auth.token.rootcertbundle`) for tokens signed by
//! the published keys.
//!
//! - Tokens without `x5c` (kid mode) are matched by `kid` against the bundle's certificates,
//!   so the bundle needs each key's own certificate: the first of its chain.
//! - Tokens with `x5c` are verified up the chain to a certificate in the bundle, so the
//!   bundle needs the chain's anchor: its last certificate (the root, or the topmost
//!   intermediate when the root is left out). A one-certificate chain is a self-signed leaf
//!   that anchors itself.

use super::SigningKey;

/// Why no bundle can be made. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// An HMAC secret: registries cannot verify its tokens, and it has no certificate.
    #[error(
        "{role} is an HMAC secret: it has no certificate and registries cannot verify its tokens"
    )]
    Secret {
        /// Which key, e.g. `the signing key (key.path)`.
        role: String,
    },
    /// A key without a certificate.
    #[error("{role} has no certificate: set {setting} to its certificate chain (leaf first)")]
    NoCertificate {
        /// Which key.
        role: String,
        /// The setting that names its certificate.
        setting: &'static str,
    },
}

/// A published key and how to name it in messages.
#[derive(Debug, Clone, Copy)]
pub struct BundleKey<'a> {
    /// e.g. `the signing key (key.path)`.
    pub role: &'a str,
    /// The setting naming its certificate, e.g. `key.certificate`.
    pub setting: &'static str,
    /// The key.
    pub key: &'a SigningKey,
}

/// The DER certificates to trust for `keys`, each once, in order. `x5c` says whether tokens
/// carry the chain. Fails rather than giving a partial bundle.
pub fn trust_anchors(keys: &[BundleKey<'_>], x5c: bool) -> Result<Vec<Vec<u8>>, BundleError> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for k in keys {
        if k.key.public_key().is_none() {
            return Err(BundleError::Secret {
                role: k.role.to_owned(),
            });
        }
        let chain = k
            .key
            .certificate()
            .map(|c| c.chain_der.as_slice())
            .unwrap_or_default();
        let anchor = if x5c { chain.last() } else { chain.first() };
        let Some(anchor) = anchor else {
            return Err(BundleError::NoCertificate {
                role: k.role.to_owned(),
                setting: k.setting,
            });
        };
        if !out.contains(anchor) {
            out.push(anchor.clone());
        }
    }
    Ok(out)
}

/// DER certificates as concatenated PEM blocks.
pub fn to_pem(certificates: &[Vec<u8>]) -> String {
    certificates
        .iter()
        .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keys::{Algorithm, KeySpec, generate};
    use crate::test_support;

    fn self_signed() -> Arc<SigningKey> {
        test_support::key_with(Algorithm::ES256, KeySpec::default(), true)
    }

    /// A leaf key with the chain leaf, CA.
    fn under_ca() -> (SigningKey, Vec<u8>) {
        let ca = test_support::new_ca();
        let g = generate::generate(Algorithm::ES256).unwrap();
        let chain = format!(
            "{}{}",
            test_support::leaf_certificate(&ca, &g.key_pem),
            ca.pem()
        );
        let key = SigningKey::from_bytes(
            g.key_pem.as_bytes(),
            Some(chain.as_bytes()),
            KeySpec::default(),
        )
        .unwrap();
        (key, ca.der().to_vec())
    }

    fn entry<'a>(role: &'a str, key: &'a SigningKey) -> BundleKey<'a> {
        BundleKey {
            role,
            setting: "key.certificate",
            key,
        }
    }

    #[test]
    fn kid_mode_trusts_each_keys_own_certificate() {
        let (a, b) = (self_signed(), self_signed());
        let anchors = trust_anchors(&[entry("current", &a), entry("next", &b)], false).unwrap();
        assert_eq!(
            anchors,
            [
                a.certificate().unwrap().chain_der[0].clone(),
                b.certificate().unwrap().chain_der[0].clone()
            ]
        );
        let pem = to_pem(&anchors);
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    }

    #[test]
    fn x5c_mode_trusts_the_chains_last_certificate_once() {
        let (a, ca) = under_ca();
        let anchors = trust_anchors(&[entry("current", &a)], true).unwrap();
        assert_eq!(anchors, std::slice::from_ref(&ca));
        // Without x5c the same key is found by kid: its leaf.
        let by_kid = trust_anchors(&[entry("current", &a)], false).unwrap();
        assert_eq!(by_kid, [a.certificate().unwrap().chain_der[0].clone()]);
        // A one-certificate chain anchors itself.
        let s = self_signed();
        let own = trust_anchors(&[entry("current", &s)], true).unwrap();
        assert_eq!(own, [s.certificate().unwrap().chain_der[0].clone()]);
        // The same key twice gives one certificate.
        assert_eq!(
            trust_anchors(&[entry("a", &a), entry("b", &a)], true)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_key_without_certificate_or_a_secret_gives_no_partial_bundle() {
        let good = self_signed();
        let err = trust_anchors(
            &[
                entry("current", &good),
                BundleKey {
                    role: "the next key (key.next)",
                    setting: "key.next_certificate",
                    key: &test_support::key(Algorithm::ES256),
                },
            ],
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the next key (key.next) has no certificate: set key.next_certificate to its certificate chain (leaf first)"
        );
        let err = trust_anchors(
            &[entry("current", &test_support::key(Algorithm::HS256))],
            false,
        )
        .unwrap_err();
        assert!(matches!(err, BundleError::Secret { .. }), "{err}");
    }
}
