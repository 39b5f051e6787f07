//! Turning key files into a ready-to-sign [`SigningKey`]: PEM parsing (PKCS#8, SEC1, PKCS#1),
//! HMAC secrets, the certificate chain for `x5c`, and the precomputed JWT header.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use chrono::{DateTime, Utc};
use data_encoding::{BASE64, BASE64_NOPAD, BASE64URL, BASE64URL_NOPAD};
use serde::Serialize;

use super::algorithm::{Algorithm, Curve, KeyKind};
use super::kid::{self, KidFormat, PublicJwk};

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
    Ec(EcdsaKeyPair),
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

/// What to build a key into.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Algorithm override; `None` picks the key's natural algorithm (RS256 for RSA).
    pub algorithm: Option<Algorithm>,
    /// Which `kid` to put in the header.
    pub kid_format: KidFormat,
    /// Whether the header carries the certificate chain as `x5c` (default: yes). Without it
    /// the certificate is kept for the registry's bundle and the JWKS only.
    pub x5c: bool,
}

impl Default for KeySpec {
    fn default() -> Self {
        KeySpec {
            algorithm: None,
            kid_format: KidFormat::default(),
            x5c: true,
        }
    }
}

/// A signing key ready to use: parsed private key, algorithm, ids and the encoded JWT header.
pub struct SigningKey {
    alg: Algorithm,
    kid: Option<String>,
    /// The libtrust id and thumbprint are both kept for display, whatever the header carries.
    libtrust_kid: Option<String>,
    thumbprint: Option<String>,
    secret: Secret,
    public: Option<PublicKeyInfo>,
    certificate: Option<CertificateInfo>,
    /// base64url of the JWT header, computed once per key.
    header_b64: String,
    /// Whether the header carries the certificate chain (`x5c`).
    sends_x5c: bool,
    /// SHA-256 over the key and certificate bytes it was loaded from.
    fingerprint: [u8; 32],
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("x5c", &self.certificate.is_some())
            .finish_non_exhaustive()
    }
}

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

impl SigningKey {
    /// Builds a key from a key file's bytes and, optionally, a PEM certificate chain.
    pub fn from_bytes(
        key: &[u8],
        certificate: Option<&[u8]>,
        spec: KeySpec,
    ) -> Result<SigningKey, KeyError> {
        let certificate_pem = certificate;
        let text = String::from_utf8_lossy(key);
        let (secret, alg, public) = if text.contains("-----BEGIN") {
            parse_pem_key(key, spec.algorithm)?
        } else {
            match spec.algorithm {
                Some(alg) if alg.is_hmac() => parse_hmac_secret(&text, alg)?,
                _ => return Err(KeyError::NoPrivateKey),
            }
        };
        let certificate = match certificate {
            None => None,
            Some(_) if public.is_none() => return Err(KeyError::CertificateWithSecret),
            Some(pem) => Some(parse_chain(pem, public.as_ref())?),
        };
        let libtrust_kid = public.as_ref().map(|p| kid::libtrust(&p.spki_der));
        let thumbprint = public.as_ref().map(|p| kid::thumbprint(&p.jwk));
        let kid = match (spec.kid_format, &secret) {
            (KidFormat::None, _) => None,
            (_, Secret::Hmac(_)) => Some(kid::hmac_id(&decoded_secret(&text))),
            (KidFormat::Libtrust, _) => libtrust_kid.clone(),
            (KidFormat::Thumbprint, _) => thumbprint.clone(),
        };
        let header = Header {
            typ: "JWT",
            alg: alg.as_str(),
            kid: kid.as_deref(),
            x5c: certificate
                .as_ref()
                .filter(|_| spec.x5c)
                .map(|c| c.chain_der.iter().map(|d| BASE64.encode(d)).collect()),
        };
        let sends_x5c = header.x5c.is_some();
        let header_json = serde_json::to_vec(&header).map_err(|e| KeyError::Pem(e.to_string()))?;
        let fingerprint = content_digest(key, certificate_pem);
        Ok(SigningKey {
            alg,
            kid,
            libtrust_kid,
            thumbprint,
            secret,
            public,
            certificate,
            header_b64: BASE64URL_NOPAD.encode(&header_json),
            sends_x5c,
            fingerprint,
            rng: SystemRandom::new(),
        })
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The `kid` the header carries, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The libtrust key ID of an asymmetric key, whatever the header carries.
    pub fn libtrust_kid(&self) -> Option<&str> {
        self.libtrust_kid.as_deref()
    }

    /// The id verifiers select this key by: the header `kid`, else the thumbprint (with
    /// `kid_format: none`). `None` only for an HMAC secret without a kid.
    pub fn published_id(&self) -> Option<&str> {
        self.kid().or(self.thumbprint())
    }

    /// The RFC 7638 thumbprint of an asymmetric key, whatever the header carries.
    pub fn thumbprint(&self) -> Option<&str> {
        self.thumbprint.as_deref()
    }

    /// Why registry 3.1.x will refuse every token this key signs, if it will: the tokens
    /// name the key by its thumbprint alone (no `x5c`), and one of its EC coordinates starts
    /// with a 0x00 byte, which that registry drops (see [`kid::unpadded_thumbprint_problem`]).
    pub fn registry_thumbprint_problem(&self) -> Option<String> {
        let by_thumbprint = self.kid.is_some() && self.kid == self.thumbprint;
        if !by_thumbprint || self.sends_x5c {
            return None;
        }
        let coordinate = self.public.as_ref()?.jwk.zero_led_coordinate()?;
        Some(kid::unpadded_thumbprint_problem(coordinate))
    }

    /// Whether tokens carry the certificate chain as `x5c` (a certificate is configured and
    /// `key.x5c` is on).
    pub fn sends_x5c(&self) -> bool {
        self.sends_x5c
    }

    /// The public key, for asymmetric keys.
    pub fn public_key(&self) -> Option<&PublicKeyInfo> {
        self.public.as_ref()
    }

    /// The certificate chain sent as `x5c`, if configured.
    pub fn certificate(&self) -> Option<&CertificateInfo> {
        self.certificate.as_ref()
    }

    /// The base64url JWT header.
    pub fn header_b64(&self) -> &str {
        &self.header_b64
    }

    /// `content_digest` of the bytes the key was loaded from (SHA-256 over the key and
    /// certificate bytes).
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// A short label for logs: algorithm and kid (never key material).
    pub fn label(&self) -> String {
        match (&self.kid, &self.thumbprint) {
            (Some(kid), _) => format!("{} kid {kid}", self.alg),
            (None, Some(t)) => format!("{} thumbprint {t}", self.alg),
            (None, None) => self.alg.to_string(),
        }
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

pub use crate::fs::digest::content_digest;

fn ec_signing_alg(curve: Curve) -> &'static signature::EcdsaSigningAlgorithm {
    match curve {
        Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
    }
}

type Parsed = (Secret, Algorithm, Option<PublicKeyInfo>);

fn parse_pem_key(bytes: &[u8], requested: Option<Algorithm>) -> Result<Parsed, KeyError> {
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
            Some((Secret::Ec(pair), curve.algorithm(), Some(public)))
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
        (Secret::Ec(_), KeyKind::Ec(_)) => alg == natural,
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

fn decoded_secret(text: &str) -> Vec<u8> {
    let trimmed = text.trim().as_bytes();
    [&BASE64, &BASE64_NOPAD, &BASE64URL, &BASE64URL_NOPAD]
        .into_iter()
        .find_map(|enc| enc.decode(trimmed).ok())
        .unwrap_or_default()
}

fn parse_hmac_secret(text: &str, alg: Algorithm) -> Result<Parsed, KeyError> {
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

fn parse_chain(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate;

    const RSA_PKCS1: &[u8] = include_bytes!("../../tests/fixtures/rsa2048-pkcs1.pem");
    const RSA_1024: &[u8] = include_bytes!("../../tests/fixtures/rsa1024.pem");
    const EC256_SEC1: &[u8] = include_bytes!("../../tests/fixtures/ec256-sec1.pem");
    const EC384_SEC1: &[u8] = include_bytes!("../../tests/fixtures/ec384-sec1.pem");
    const ED25519: &[u8] = include_bytes!("../../tests/fixtures/ed25519.pem");
    const X25519: &[u8] = include_bytes!("../../tests/fixtures/x25519.pem");
    const SECP256K1: &[u8] = include_bytes!("../../tests/fixtures/secp256k1.pem");
    const ENCRYPTED: &[u8] = include_bytes!("../../tests/fixtures/ec256-encrypted.pem");
    const X_ZERO: &str = include_str!("../../tests/fixtures/ec256-x-leading-zero.pem");
    const Y_ZERO: &str = include_str!("../../tests/fixtures/ec256-y-leading-zero.pem");

    fn load(bytes: &[u8], alg: Option<Algorithm>) -> Result<SigningKey, KeyError> {
        SigningKey::from_bytes(
            bytes,
            None,
            KeySpec {
                algorithm: alg,
                kid_format: KidFormat::Libtrust,
                x5c: true,
            },
        )
    }

    #[test]
    fn pem_formats_load_with_their_natural_algorithm() {
        let cases: &[(&[u8], Algorithm)] = &[
            (RSA_PKCS1, Algorithm::RS256),
            (EC256_SEC1, Algorithm::ES256),
            (EC384_SEC1, Algorithm::ES384),
            (ED25519, Algorithm::EdDSA),
        ];
        for (bytes, alg) in cases {
            let key = load(bytes, None).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(key.algorithm(), *alg);
            let kid = key.kid().unwrap();
            assert_eq!(kid.len(), 59, "libtrust kid is 12 groups of 4: {kid}");
            assert_eq!(kid.matches(':').count(), 11);
        }
    }

    #[test]
    fn rsa_keys_take_any_rsa_algorithm_by_configuration() {
        for alg in [
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            assert_eq!(load(RSA_PKCS1, Some(alg)).unwrap().algorithm(), alg);
        }
    }

    #[test]
    fn unusable_keys_are_refused_with_a_clear_reason() {
        let cases: &[(&[u8], Option<Algorithm>, &str)] = &[
            (RSA_1024, None, "at least 2048 bits"),
            (X25519, None, "not a supported key"),
            (SECP256K1, None, "not a supported key"),
            (ENCRYPTED, None, "encrypted private keys are not supported"),
            (b"", None, "no PEM private key found"),
            (b"garbage", None, "no PEM private key found"),
            (
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                None,
                "not a supported key",
            ),
            (
                b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
                None,
                "PEM text is malformed",
            ),
            (
                EC256_SEC1,
                Some(Algorithm::ES384),
                "does not fit an EC P-256 key",
            ),
            (
                EC256_SEC1,
                Some(Algorithm::RS256),
                "does not fit an EC P-256 key",
            ),
            (RSA_PKCS1, Some(Algorithm::ES256), "does not fit an RSA key"),
            (
                ED25519,
                Some(Algorithm::HS256),
                "does not fit an Ed25519 key",
            ),
            (b"c2hvcnQ=", Some(Algorithm::HS256), "at least 32 bytes"),
            (
                b"not base64 at all!",
                Some(Algorithm::HS256),
                "must be base64",
            ),
        ];
        for (bytes, alg, expected) in cases {
            let err = load(bytes, *alg).expect_err(expected).to_string();
            assert!(err.contains(expected), "{expected}: got {err}");
        }
        let two = [EC256_SEC1, ED25519].concat();
        assert_eq!(load(&two, None).unwrap_err(), KeyError::SeveralKeys);
    }

    #[test]
    fn hmac_secrets_need_an_explicit_algorithm_and_never_publish_a_public_key() {
        let secret = generate::generate(Algorithm::HS256).unwrap().key_pem;
        assert_eq!(
            load(secret.as_bytes(), None).unwrap_err(),
            KeyError::NoPrivateKey
        );
        let key = load(secret.as_bytes(), Some(Algorithm::HS512)).unwrap();
        assert_eq!(key.algorithm(), Algorithm::HS512);
        assert!(key.public_key().is_none());
        assert!(key.kid().unwrap().starts_with("hmac-"));
        assert!(
            !format!("{key:?}").contains(secret.trim()),
            "Debug must not show the secret"
        );
    }

    #[test]
    fn kid_format_picks_the_header_kid() {
        let spec = |kid_format| KeySpec {
            algorithm: None,
            kid_format,
            x5c: true,
        };
        let lib = SigningKey::from_bytes(EC256_SEC1, None, spec(KidFormat::Libtrust)).unwrap();
        let thumb = SigningKey::from_bytes(EC256_SEC1, None, spec(KidFormat::Thumbprint)).unwrap();
        let none = SigningKey::from_bytes(EC256_SEC1, None, spec(KidFormat::None)).unwrap();
        assert_eq!(lib.kid(), lib.libtrust_kid());
        assert_eq!(thumb.kid(), thumb.thumbprint());
        assert_eq!(none.kid(), None);
        assert_ne!(lib.kid(), thumb.kid());
        let header = |k: &SigningKey| {
            String::from_utf8(BASE64URL_NOPAD.decode(k.header_b64().as_bytes()).unwrap()).unwrap()
        };
        assert_eq!(header(&none), r#"{"typ":"JWT","alg":"ES256"}"#);
    }

    #[test]
    fn a_matching_certificate_adds_x5c_and_a_foreign_one_is_refused() {
        let generated = generate::generate(Algorithm::ES256).unwrap();
        let cert = generated.cert_pem.unwrap();
        let key = SigningKey::from_bytes(
            generated.key_pem.as_bytes(),
            Some(cert.as_bytes()),
            KeySpec::default(),
        )
        .unwrap();
        let info = key.certificate().unwrap();
        assert_eq!(info.chain_der.len(), 1);
        let header: serde_json::Value =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(key.header_b64().as_bytes()).unwrap())
                .unwrap();
        let x5c = header["x5c"][0].as_str().unwrap();
        assert_eq!(
            BASE64.decode(x5c.as_bytes()).unwrap(),
            info.chain_der[0],
            "x5c is standard base64 DER"
        );
        assert!(info.not_after > Utc::now());

        let other = generate::generate(Algorithm::ES256)
            .unwrap()
            .cert_pem
            .unwrap();
        let err = SigningKey::from_bytes(
            generated.key_pem.as_bytes(),
            Some(other.as_bytes()),
            KeySpec::default(),
        )
        .unwrap_err();
        assert_eq!(err, KeyError::CertificateMismatch);
        let err = SigningKey::from_bytes(
            generated.key_pem.as_bytes(),
            Some(b"no cert"),
            KeySpec::default(),
        )
        .unwrap_err();
        assert_eq!(err, KeyError::NoCertificate);
    }

    #[test]
    fn without_x5c_the_certificate_is_kept_but_not_sent() {
        let generated = generate::generate(Algorithm::ES256).unwrap();
        let spec = KeySpec {
            x5c: false,
            ..KeySpec::default()
        };
        let key = SigningKey::from_bytes(
            generated.key_pem.as_bytes(),
            generated.cert_pem.as_deref().map(str::as_bytes),
            spec,
        )
        .unwrap();
        assert!(key.certificate().is_some());
        let header: serde_json::Value =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(key.header_b64().as_bytes()).unwrap())
                .unwrap();
        assert!(header.get("x5c").is_none(), "{header}");
        assert_eq!(header["kid"], key.kid().unwrap());
    }

    #[test]
    fn a_zero_led_ec_key_named_by_thumbprint_alone_is_reported_for_registry_3_1() {
        let spec = |kid_format, x5c| KeySpec {
            algorithm: None,
            kid_format,
            x5c,
        };
        for (pem, coordinate) in [(X_ZERO, "x"), (Y_ZERO, "y")] {
            let cert = generate::self_signed_certificate(pem).unwrap();
            let problem = |cert: Option<&str>, kid_format, x5c| {
                SigningKey::from_bytes(
                    pem.as_bytes(),
                    cert.map(str::as_bytes),
                    spec(kid_format, x5c),
                )
                .unwrap()
                .registry_thumbprint_problem()
            };
            let text = problem(None, KidFormat::Thumbprint, true).unwrap();
            assert!(
                text.contains(&format!("{coordinate} coordinate")) && text.contains("x5c"),
                "{text}"
            );
            assert!(
                problem(Some(&cert), KidFormat::Thumbprint, false).is_some(),
                "a certificate that is not sent does not help"
            );
            assert_eq!(problem(Some(&cert), KidFormat::Thumbprint, true), None);
            assert_eq!(problem(None, KidFormat::Libtrust, true), None);
            assert_eq!(problem(None, KidFormat::None, true), None);
        }
        let fine = load(EC256_SEC1, None).unwrap();
        assert_eq!(fine.registry_thumbprint_problem(), None);
        let fine = SigningKey::from_bytes(EC256_SEC1, None, spec(KidFormat::Thumbprint, true));
        assert_eq!(fine.unwrap().registry_thumbprint_problem(), None);
    }
}
