//! Turning key files into a ready-to-sign [`SigningKey`]: PEM parsing (PKCS#8, SEC1, PKCS#1)
//! and HMAC secrets ([`pem`]), the certificate chain for `x5c` ([`certificate`]), the key
//! itself ([`signing_key`]) and the JWS it signs: the precomputed header and the signature
//! ([`jws`]).

mod certificate;
mod jws;
mod pem;
mod signing_key;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};

use super::algorithm::{Algorithm, Curve};
use super::kid::PublicJwk;

pub use crate::fs::pair::content_digest;
pub use certificate::CertificateInfo;
pub use jws::SignError;
pub use signing_key::{KeySpec, SigningKey};

/// Shortest HMAC secret accepted, in bytes (256 bits).
pub const MIN_HMAC_SECRET: usize = 32;

/// Why key material could not be used. Never carries key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key holds no PEM private key and is not an HMAC secret.
    #[error(
        "no PEM private key found (expected a PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block; an HMAC secret needs key.algorithm HS256, HS384 or HS512)"
    )]
    NoPrivateKey,
    /// The PEM text could not be read.
    #[error("the PEM text is malformed: {0}")]
    Pem(String),
    /// More than one private key block.
    #[error("more than one private key block; keep one key per file")]
    SeveralKeys,
    /// An encrypted PKCS#8 key.
    #[error("encrypted private keys are not supported; store it unencrypted with mode 0600")]
    Encrypted,
    /// The DER inside the PEM block is not a key of a supported kind.
    #[error(
        "the {0} block is not a supported key (EC P-256/P-384/P-521, RSA 2048-8192 bits, Ed25519)"
    )]
    Unsupported(&'static str),
    /// An RSA key below 2048 bits.
    #[error("RSA keys must have at least 2048 bits")]
    RsaTooSmall,
    /// The configured algorithm does not fit the key.
    #[error("key.algorithm {alg} does not fit {found}")]
    AlgorithmMismatch {
        /// The configured algorithm.
        alg: Algorithm,
        /// What the key is.
        found: &'static str,
    },
    /// An HMAC secret that is not base64.
    #[error("the HMAC secret must be base64 (standard or URL-safe)")]
    SecretNotBase64,
    /// An HMAC secret that is too short.
    #[error("the HMAC secret must decode to at least {MIN_HMAC_SECRET} bytes")]
    SecretTooShort,
    /// A certificate chain with an HMAC secret.
    #[error("a certificate cannot go with an HMAC secret")]
    CertificateWithSecret,
    /// No certificate in the certificate file.
    #[error("the certificate file holds no CERTIFICATE block")]
    NoCertificate,
    /// A certificate that cannot be parsed.
    #[error("certificate {index} of the chain cannot be parsed: {reason}")]
    BadCertificate {
        /// Position in the chain, 0 for the leaf.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// The leaf certificate is for another key.
    #[error("the leaf certificate's public key does not match the signing key")]
    CertificateMismatch,
}

/// The private half, parsed once.
enum Secret {
    /// The pair signs into DER; the curve sizes JWS's `r || s` (see `jws.rs`).
    Ec(EcdsaKeyPair, Curve),
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Hmac(Box<hmac::Key>),
}

/// The public half of an asymmetric key.
#[derive(Debug, Clone)]
pub struct PublicKeyInfo {
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// JWK parameters.
    pub jwk: PublicJwk,
}

#[cfg(test)]
mod tests;
