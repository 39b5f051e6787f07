//! Private keys from PEM (PKCS#8, SEC1, PKCS#1) and HMAC secrets from base64 text.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use data_encoding::{BASE64, BASE64_NOPAD, BASE64URL, BASE64URL_NOPAD};

use super::super::algorithm::{Algorithm, Curve, KeyKind};
use super::super::kid::PublicJwk;
use super::{KeyError, MIN_HMAC_SECRET, PublicKeyInfo, Secret};

/// The DER-signing algorithms: [`SigningKey::sign`](super::SigningKey::sign) turns the DER
/// signature into JWS's fixed-size `r || s` itself (see `jws.rs`).
fn ec_signing_alg(curve: Curve) -> &'static signature::EcdsaSigningAlgorithm {
    match curve {
        Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        Curve::P521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
    }
}

pub(super) type Parsed = (Secret, Algorithm, Option<PublicKeyInfo>);

pub(super) fn parse_pem_key(
    bytes: &[u8],
    requested: Option<Algorithm>,
) -> Result<Parsed, KeyError> {
    let blocks = pem::parse_many(bytes).map_err(|e| KeyError::Pem(e.to_string()))?;
    let mut keys = blocks.iter().filter(|b| b.tag().ends_with("PRIVATE KEY"));
    let block = keys.next().ok_or(KeyError::NoPrivateKey)?;
    if keys.next().is_some() {
        return Err(KeyError::SeveralKeys);
    }
    let der = block.contents();
    let parsed = match block.tag() {
        "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
        "EC PRIVATE KEY" => parse_ec(der).ok_or(KeyError::Unsupported("EC PRIVATE KEY"))?,
        "RSA PRIVATE KEY" => {
            let pair = RsaKeyPair::from_der(der).map_err(|e| rsa_error(e, "RSA PRIVATE KEY"))?;
            rsa_parsed(pair)?
        }
        "PRIVATE KEY" => {
            if let Some(parsed) = parse_ec(der) {
                parsed
            } else if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
                rsa_parsed(pair)?
            } else if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                let x = pair.public_key().as_ref().to_vec();
                let spki = pair
                    .public_key()
                    .as_der()
                    .map_err(|_| KeyError::Unsupported("PRIVATE KEY"))?;
                let public = PublicKeyInfo {
                    spki_der: spki.as_ref().to_vec(),
                    jwk: PublicJwk::Ed25519 { x },
                };
                (Secret::Ed25519(pair), Algorithm::EdDSA, Some(public))
            } else {
                // Tell a small RSA key apart from an unknown one.
                return Err(match RsaKeyPair::from_pkcs8(der) {
                    Err(e) => rsa_error(e, "PRIVATE KEY"),
                    Ok(_) => KeyError::Unsupported("PRIVATE KEY"),
                });
            }
        }
        _ => return Err(KeyError::Unsupported("private key")),
    };
    choose_algorithm(parsed, requested)
}

fn rsa_error(e: aws_lc_rs::error::KeyRejected, tag: &'static str) -> KeyError {
    if e.description_() == "TooSmall" {
        KeyError::RsaTooSmall
    } else {
        KeyError::Unsupported(tag)
    }
}

fn parse_ec(der: &[u8]) -> Option<Parsed> {
    [Curve::P256, Curve::P384, Curve::P521]
        .into_iter()
        .find_map(|curve| {
            let pair = EcdsaKeyPair::from_private_key_der(ec_signing_alg(curve), der).ok()?;
            let point = pair.public_key().as_ref().to_vec();
            let spki = pair.public_key().as_der().ok()?;
            // Uncompressed point: 0x04 || x || y.
            let coords = point.get(1..)?;
            let (x, y) = coords.split_at(coords.len() / 2);
            let public = PublicKeyInfo {
                spki_der: spki.as_ref().to_vec(),
                jwk: PublicJwk::Ec {
                    curve,
                    x: x.to_vec(),
                    y: y.to_vec(),
                },
            };
            Some((Secret::Ec(pair, curve), curve.algorithm(), Some(public)))
        })
}

fn rsa_parsed(pair: RsaKeyPair) -> Result<Parsed, KeyError> {
    if pair.public_modulus_len() < 256 {
        return Err(KeyError::RsaTooSmall);
    }
    let public = pair.public_key();
    let spki = public
        .as_der()
        .map_err(|_| KeyError::Unsupported("RSA key"))?;
    let info = PublicKeyInfo {
        spki_der: spki.as_ref().to_vec(),
        jwk: PublicJwk::Rsa {
            n: public.modulus().big_endian_without_leading_zero().to_vec(),
            e: public.exponent().big_endian_without_leading_zero().to_vec(),
        },
    };
    Ok((Secret::Rsa(pair), Algorithm::RS256, Some(info)))
}

fn choose_algorithm(parsed: Parsed, requested: Option<Algorithm>) -> Result<Parsed, KeyError> {
    let (secret, natural, public) = parsed;
    let Some(alg) = requested else {
        return Ok((secret, natural, public));
    };
    let fits = match (&secret, alg.key_kind()) {
        (Secret::Rsa(_), KeyKind::Rsa) => true,
        (Secret::Ec(..), KeyKind::Ec(_)) => alg == natural,
        (Secret::Ed25519(_), KeyKind::Ed25519) => true,
        _ => false,
    };
    if !fits {
        let found = match natural {
            Algorithm::ES256 => "an EC P-256 key (ES256)",
            Algorithm::ES384 => "an EC P-384 key (ES384)",
            Algorithm::ES512 => "an EC P-521 key (ES512)",
            Algorithm::EdDSA => "an Ed25519 key (EdDSA)",
            _ => "an RSA key (RS256, RS384, RS512, PS256, PS384, PS512)",
        };
        return Err(KeyError::AlgorithmMismatch { alg, found });
    }
    Ok((secret, alg, public))
}

pub(super) fn decoded_secret(text: &str) -> Vec<u8> {
    let trimmed = text.trim().as_bytes();
    [&BASE64, &BASE64_NOPAD, &BASE64URL, &BASE64URL_NOPAD]
        .into_iter()
        .find_map(|enc| enc.decode(trimmed).ok())
        .unwrap_or_default()
}

pub(super) fn parse_hmac_secret(text: &str, alg: Algorithm) -> Result<Parsed, KeyError> {
    let secret = decoded_secret(text);
    if secret.is_empty() {
        return Err(KeyError::SecretNotBase64);
    }
    if secret.len() < MIN_HMAC_SECRET {
        return Err(KeyError::SecretTooShort);
    }
    let hmac_alg = match alg {
        Algorithm::HS384 => hmac::HMAC_SHA384,
        Algorithm::HS512 => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    };
    Ok((
        Secret::Hmac(Box::new(hmac::Key::new(hmac_alg, &secret))),
        alg,
        None,
    ))
}
