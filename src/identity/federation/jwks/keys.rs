//! Reading a JWK Set: which keys are usable public signature keys, and what each verifies.

use std::sync::Arc;

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::{JwksError, MAX_KEYS};

/// Smallest RSA modulus accepted.
const MIN_RSA_BITS: usize = 2048;

/// What kind of public key a JWK holds, which decides the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA: RS256/384/512, PS256/384/512.
    Rsa,
    /// EC P-256: ES256.
    P256,
    /// EC P-384: ES384.
    P384,
    /// Ed25519: EdDSA.
    Ed25519,
}

impl KeyKind {
    /// True when a token signed with `alg` can be verified with a key of this kind. This is
    /// what stops a token from choosing how its key is read (an HMAC `alg` never fits a
    /// public key; an ES384 token never fits a P-256 key).
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyKind::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyKind::P256, ES256)
                | (KeyKind::P384, ES384)
                | (KeyKind::Ed25519, EdDSA)
        )
    }
}

/// One usable public key.
pub struct PublicKey {
    /// `kid`, when the JWK has one.
    pub kid: Option<String>,
    /// The key's type.
    pub kind: KeyKind,
    /// The JWK's own `alg`, when it names one: tokens must then use exactly it.
    pub alg: Option<Algorithm>,
    /// The key, ready to verify.
    pub key: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// True when this key may verify a token with header `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// Parses a JWK Set, keeping the usable signature keys (at most [`MAX_KEYS`]).
pub fn parse(text: &[u8], from: &str) -> Result<Vec<Arc<PublicKey>>, JwksError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(text).map_err(|e| JwksError::Parse {
        from: from.to_owned(),
        reason: e.to_string(),
    })?;
    let mut keys = Vec::new();
    for (index, value) in set.keys.into_iter().enumerate() {
        if keys.len() == MAX_KEYS {
            log::warn!("JWKS from {from}: only the first {MAX_KEYS} usable keys are kept");
            break;
        }
        match usable(value) {
            Ok(key) => keys.push(Arc::new(key)),
            Err(why) => log::info!("JWKS from {from}: key {index} skipped: {why}"),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoKeys(from.to_owned()));
    }
    Ok(keys)
}

/// The key a JWK holds, or why it cannot verify tokens here.
fn usable(value: serde_json::Value) -> Result<PublicKey, String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("not a JWK: {e}"))?;
    let kid = jwk.common.key_id.clone();
    let named = kid
        .as_deref()
        .map(|k| format!("kid {k:?}: "))
        .unwrap_or_default();
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Err(format!("{named}an encryption key (use: enc)"));
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(alg) => Some(signature_algorithm(alg).ok_or_else(|| {
            format!("{named}alg {alg:?} is not a public-key signature algorithm")
        })?),
    };
    let bad = |e: jsonwebtoken::errors::Error| format!("{named}unusable key: {e}");
    let (kind, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let bits = BASE64URL_NOPAD
                .decode(rsa.n.as_bytes())
                .map(|n| significant_bits(&n))
                .map_err(|_| format!("{named}RSA modulus is not base64url"))?;
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "{named}RSA key of {bits} bits (at least {MIN_RSA_BITS})"
                ));
            }
            (
                KeyKind::Rsa,
                DecodingKey::from_rsa_components(&rsa.n, &rsa.e).map_err(bad)?,
            )
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let kind = match ec.curve {
                EllipticCurve::P256 => KeyKind::P256,
                EllipticCurve::P384 => KeyKind::P384,
                ref other => return Err(format!("{named}curve {other:?} is not supported")),
            };
            (
                kind,
                DecodingKey::from_ec_components(&ec.x, &ec.y).map_err(bad)?,
            )
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => (
            KeyKind::Ed25519,
            DecodingKey::from_ed_components(&okp.x).map_err(bad)?,
        ),
        AlgorithmParameters::OctetKey(_) => {
            return Err(format!(
                "{named}a symmetric (oct) key: a published secret proves nothing"
            ));
        }
        _ => return Err(format!("{named}unsupported key type")),
    };
    if let Some(alg) = alg
        && !kind.fits(alg)
    {
        return Err(format!("{named}alg {alg:?} does not fit a {kind:?} key"));
    }
    Ok(PublicKey {
        kid,
        kind,
        alg,
        key,
    })
}

fn signature_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Bits of a big-endian unsigned integer, leading zero bytes and bits not counted.
fn significant_bits(bytes: &[u8]) -> usize {
    let Some(first) = bytes.iter().position(|b| *b != 0) else {
        return 0;
    };
    (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize
}
