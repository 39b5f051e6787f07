//! The JWS parts a key contributes to a token: the header, encoded once per key, and the
//! signature over `header.claims` (RFC 7515). [`crate::issue::signing`] puts the compact
//! token together from these two.

use aws_lc_rs::hmac;
use aws_lc_rs::signature;
use data_encoding::BASE64URL_NOPAD;
use serde::Serialize;

use super::super::algorithm::Algorithm;
use super::{KeyError, Secret, SigningKey};

#[derive(Serialize)]
struct Header<'a> {
    typ: &'static str,
    alg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x5c: Option<Vec<String>>,
}

/// Errors while signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the crypto library failed to sign")]
pub struct SignError;

/// The base64url of the JWT header a key's tokens carry.
pub(super) fn encode_header(
    alg: Algorithm,
    kid: Option<&str>,
    x5c: Option<Vec<String>>,
) -> Result<String, KeyError> {
    let header = Header {
        typ: "JWT",
        alg: alg.as_str(),
        kid,
        x5c,
    };
    let json = serde_json::to_vec(&header).map_err(|e| KeyError::Pem(e.to_string()))?;
    Ok(BASE64URL_NOPAD.encode(&json))
}

impl SigningKey {
    /// The base64url JWT header.
    pub fn header_b64(&self) -> &str {
        &self.header_b64
    }

    /// Signs `message` (the JWS signing input) and returns the raw JWS signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.secret {
            Secret::Ec(pair) => pair
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError),
            Secret::Rsa(pair) => {
                let padding: &dyn signature::RsaEncoding = match self.alg {
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(padding, &self.rng, message, &mut out)
                    .map_err(|_| SignError)?;
                Ok(out)
            }
            Secret::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Secret::Hmac(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
        }
    }
}
