//! Claims plus a signing key make a compact JWS (`header.claims.signature`).
//!
//! The header is encoded once per key (see [`SigningKey::header_b64`]), so a token costs one
//! claims serialization and one signature.

use data_encoding::BASE64URL_NOPAD;

use crate::keys::SigningKey;
use crate::token::claims::Claims;

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The crypto library refused to sign.
    #[error(transparent)]
    Crypto(#[from] crate::keys::SignError),
}

/// Signs `claims` with `key` and returns the compact JWT.
pub fn sign(claims: &Claims, key: &SigningKey) -> Result<String, SigningError> {
    let payload = claims.to_json();
    let header = key.header_b64();
    let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 700);
    token.push_str(header);
    token.push('.');
    BASE64URL_NOPAD.encode_append(&payload, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    BASE64URL_NOPAD.encode_append(&signature, &mut token);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::keys::kid::PublicJwk;
    use crate::keys::{Algorithm, KeySpec, KidFormat, generate};
    use crate::token::claims::{AccessEntry, ClaimsBuilder};
    use crate::token::scope::ResourceScope;
    use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
    use data_encoding::BASE64URL_NOPAD;
    use jsonwebtoken as jwt;

    fn claims() -> Claims {
        let scope: ResourceScope = "repository:team/app:pull,push".parse().unwrap();
        ClaimsBuilder::new("regauth", 300)
            .build(
                &SystemClock,
                "",
                "registry.test",
                vec![AccessEntry::new(&scope, scope.actions.clone())],
            )
            .unwrap()
    }

    fn jwt_alg(alg: Algorithm) -> Option<jwt::Algorithm> {
        Some(match alg {
            Algorithm::HS256 => jwt::Algorithm::HS256,
            Algorithm::HS384 => jwt::Algorithm::HS384,
            Algorithm::HS512 => jwt::Algorithm::HS512,
            Algorithm::RS256 => jwt::Algorithm::RS256,
            Algorithm::RS384 => jwt::Algorithm::RS384,
            Algorithm::RS512 => jwt::Algorithm::RS512,
            Algorithm::PS256 => jwt::Algorithm::PS256,
            Algorithm::PS384 => jwt::Algorithm::PS384,
            Algorithm::PS512 => jwt::Algorithm::PS512,
            Algorithm::ES256 => jwt::Algorithm::ES256,
            Algorithm::ES384 => jwt::Algorithm::ES384,
            Algorithm::EdDSA => jwt::Algorithm::EdDSA,
            // jsonwebtoken has no ES512; that one is checked with aws-lc-rs directly.
            Algorithm::ES512 => return None,
        })
    }

    fn decoding_key(key: &SigningKey, secret_text: &str) -> jwt::DecodingKey {
        let b64 = |b: &[u8]| BASE64URL_NOPAD.encode(b);
        match key.public_key().map(|p| &p.jwk) {
            Some(PublicJwk::Ec { x, y, .. }) => {
                jwt::DecodingKey::from_ec_components(&b64(x), &b64(y)).unwrap()
            }
            Some(PublicJwk::Rsa { n, e }) => {
                jwt::DecodingKey::from_rsa_components(&b64(n), &b64(e)).unwrap()
            }
            Some(PublicJwk::Ed25519 { x }) => {
                jwt::DecodingKey::from_ed_components(&b64(x)).unwrap()
            }
            None => jwt::DecodingKey::from_base64_secret(secret_text.trim()).unwrap(),
        }
    }

    #[test]
    fn every_algorithm_signs_tokens_its_public_key_verifies() {
        for alg in Algorithm::ALL {
            // RSA keys come from a fixture: generating 4096-bit keys takes seconds.
            let generated = match alg.key_kind() {
                crate::keys::KeyKind::Rsa => generate::Generated {
                    key_pem: include_str!("../../tests/fixtures/rsa2048-pkcs1.pem").to_owned(),
                    cert_pem: None,
                },
                _ => generate::generate(alg).unwrap(),
            };
            let spec = KeySpec {
                algorithm: Some(alg),
                kid_format: KidFormat::Libtrust,
                ..KeySpec::default()
            };
            let key = SigningKey::from_bytes(generated.key_pem.as_bytes(), None, spec).unwrap();
            assert_eq!(key.algorithm(), alg);
            let claims = claims();
            let token = sign(&claims, &key).unwrap();
            let parts: Vec<&str> = token.split('.').collect();
            assert_eq!(parts.len(), 3, "{alg}");

            let header: serde_json::Value =
                serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[0].as_bytes()).unwrap())
                    .unwrap();
            assert_eq!(header["typ"], "JWT");
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["kid"].as_str(), key.kid(), "{alg}");

            match jwt_alg(alg) {
                Some(jalg) => {
                    let mut validation = jwt::Validation::new(jalg);
                    validation.set_audience(&["registry.test"]);
                    validation.set_issuer(&["regauth"]);
                    let decoded = jwt::decode::<serde_json::Value>(
                        &token,
                        &decoding_key(&key, &generated.key_pem),
                        &validation,
                    )
                    .unwrap_or_else(|e| panic!("{alg}: {e}"));
                    assert_eq!(
                        decoded.claims["access"][0]["actions"],
                        serde_json::json!(["pull", "push"])
                    );
                    assert_eq!(decoded.claims["jti"], claims.jti);
                }
                None => {
                    let Some(PublicJwk::Ec { x, y, .. }) = key.public_key().map(|p| &p.jwk) else {
                        panic!("ES512 key without EC public key");
                    };
                    let point = [&[4u8][..], x, y].concat();
                    let signature = BASE64URL_NOPAD.decode(parts[2].as_bytes()).unwrap();
                    assert_eq!(signature.len(), 132, "P-521 r||s");
                    let message = format!("{}.{}", parts[0], parts[1]);
                    UnparsedPublicKey::new(&sig::ECDSA_P521_SHA512_FIXED, point)
                        .verify(message.as_bytes(), &signature)
                        .unwrap();
                }
            }
        }
    }

    #[test]
    fn an_hs256_token_matches_a_known_answer_byte_for_byte() {
        // The expected token was computed outside regauth, with Python's json (compact
        // separators, the claims in their declared order), base64.urlsafe_b64encode with the
        // `=` padding stripped, and hmac.new(secret, header + "." + payload, hashlib.sha256)
        // over the secret bytes 0x00..=0x1f. So this pins regauth's own encoding: the header
        // text, the claims' JSON, unpadded base64url, and what exactly is signed.
        let secret_b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let spec = KeySpec {
            algorithm: Some(Algorithm::HS256),
            kid_format: KidFormat::None,
            ..KeySpec::default()
        };
        let key = SigningKey::from_bytes(secret_b64.as_bytes(), None, spec).unwrap();
        let scope: ResourceScope = "repository:team/app:pull,push".parse().unwrap();
        let claims = Claims {
            iss: "regauth".into(),
            sub: "alice".into(),
            aud: "registry.test".into(),
            exp: 1_800_000_300,
            nbf: 1_800_000_000,
            iat: 1_800_000_000,
            jti: "AAECAwQFBgcICQoLDA0ODxAR".into(),
            access: vec![AccessEntry::new(&scope, scope.actions.clone())],
        };
        assert_eq!(
            sign(&claims, &key).unwrap(),
            concat!(
                "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.",
                "eyJpc3MiOiJyZWdhdXRoIiwic3ViIjoiYWxpY2UiLCJhdWQiOiJyZWdpc3RyeS50ZXN0IiwiZXhwIjox",
                "ODAwMDAwMzAwLCJuYmYiOjE4MDAwMDAwMDAsImlhdCI6MTgwMDAwMDAwMCwianRpIjoiQUFFQ0F3UUZC",
                "Z2NJQ1FvTERBME9EeEFSIiwiYWNjZXNzIjpbeyJ0eXBlIjoicmVwb3NpdG9yeSIsIm5hbWUiOiJ0ZWFt",
                "L2FwcCIsImFjdGlvbnMiOlsicHVsbCIsInB1c2giXX1dfQ.",
                "Ko-Ytt_TMZBETsC7kG909xpscTWcqDpVA9Zxd3yWvic"
            )
        );
    }
}
