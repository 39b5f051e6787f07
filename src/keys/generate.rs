//! New signing keys and their self-signed certificates (`regauth keygen`, first start).

use std::fs;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use chrono::{Datelike, Utc};
use data_encoding::BASE64;

use super::{Algorithm, KeyKind, KeySpec, SigningKey};
use crate::fs::atomic_file::{self, Existing, WriteError};

/// Key file name inside the output directory.
pub const KEY_FILE: &str = "signing.key";
/// Certificate file name inside the output directory.
pub const CERT_FILE: &str = "signing.crt";

/// Errors generating or writing a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// The crypto library failed.
    #[error("key generation failed")]
    Crypto,
    /// The certificate could not be made.
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    /// A file exists and `--force` was not given.
    #[error("{0} exists; pass --force to overwrite it")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The freshly generated key did not load (a bug).
    #[error("the generated key does not load: {0}")]
    Load(#[from] super::KeyError),
}

/// A generated key: the key file's text and, for asymmetric keys, a self-signed certificate.
pub struct Generated {
    /// PKCS#8 PEM, or a base64 HMAC secret.
    pub key_pem: String,
    /// Self-signed certificate PEM for a registry's `rootcertbundle`.
    pub cert_pem: Option<String>,
}

/// Generates a key for `alg` (RSA keys are 2048 bits... 3072 for RS384/PS384, 4096 for *512).
pub fn generate(alg: Algorithm) -> Result<Generated, GenerateError> {
    let pkcs8: Vec<u8> = match alg.key_kind() {
        KeyKind::Hmac => {
            let mut secret = [0u8; 32];
            aws_lc_rs::rand::fill(&mut secret).map_err(|_| GenerateError::Crypto)?;
            return Ok(Generated {
                key_pem: format!("{}\n", BASE64.encode(&secret)),
                cert_pem: None,
            });
        }
        KeyKind::Ec(curve) => {
            let sign_alg = match curve {
                super::Curve::P256 => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                super::Curve::P384 => &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                super::Curve::P521 => &aws_lc_rs::signature::ECDSA_P521_SHA512_FIXED_SIGNING,
            };
            let pair = ec_pair_without_zero_led_coordinate(sign_alg)?;
            pair.to_pkcs8v1()
                .map_err(|_| GenerateError::Crypto)?
                .as_ref()
                .to_vec()
        }
        KeyKind::Rsa => {
            let size = match alg {
                Algorithm::RS384 | Algorithm::PS384 => KeySize::Rsa3072,
                Algorithm::RS512 | Algorithm::PS512 => KeySize::Rsa4096,
                _ => KeySize::Rsa2048,
            };
            let pair = RsaKeyPair::generate(size).map_err(|_| GenerateError::Crypto)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der =
                pair.as_der().map_err(|_| GenerateError::Crypto)?;
            der.as_ref().to_vec()
        }
        KeyKind::Ed25519 => {
            let pair = Ed25519KeyPair::generate().map_err(|_| GenerateError::Crypto)?;
            pair.to_pkcs8v1()
                .map_err(|_| GenerateError::Crypto)?
                .as_ref()
                .to_vec()
        }
    };
    let key_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8));
    let cert_pem = self_signed_certificate(&key_pem)?;
    Ok(Generated {
        key_pem,
        cert_pem: Some(cert_pem),
    })
}

/// How many EC keys to try before giving up on one without a 0x00-led coordinate: a P-521
/// key has one in 3 of 4 draws, so 200 draws all failing is a broken random source.
const EC_ATTEMPTS: usize = 200;

/// A new EC key whose public `x` and `y` both start with a non-zero byte, so every verifier
/// computes the same thumbprint for it (registry 3.1.x drops leading zeros, see
/// [`super::kid::unpadded_thumbprint_problem`]). P-256 keys are redrawn about 1 time in 128
/// (x or y: 2 × 1/256).
fn ec_pair_without_zero_led_coordinate(
    alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm,
) -> Result<EcdsaKeyPair, GenerateError> {
    for _ in 0..EC_ATTEMPTS {
        let pair = EcdsaKeyPair::generate(alg).map_err(|_| GenerateError::Crypto)?;
        // Uncompressed point: 0x04, then x and y of equal length.
        let point = pair.public_key().as_ref();
        let coordinate = point.len().saturating_sub(1) / 2;
        let x_first = point.get(1);
        let y_first = point.get(1 + coordinate);
        if x_first.is_some_and(|b| *b != 0) && y_first.is_some_and(|b| *b != 0) {
            return Ok(pair);
        }
    }
    Err(GenerateError::Crypto)
}

/// A self-signed certificate for the key in `key_pem`, valid from yesterday for ten years.
pub fn self_signed_certificate(key_pem: &str) -> Result<String, GenerateError> {
    let key =
        rcgen::KeyPair::from_pem(key_pem).map_err(|e| GenerateError::Certificate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "regauth token signing key");
    let year = Utc::now().year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    let cert = params
        .self_signed(&key)
        .map_err(|e| GenerateError::Certificate(e.to_string()))?;
    Ok(cert.pem())
}

/// Paths written by [`write()`].
#[derive(Debug, Clone)]
pub struct Written {
    /// The key file (mode 0600).
    pub key: PathBuf,
    /// The certificate, for asymmetric keys.
    pub certificate: Option<PathBuf>,
    /// The loaded key, to report its ids.
    pub libtrust_kid: Option<String>,
    /// RFC 7638 thumbprint.
    pub thumbprint: Option<String>,
}

/// Generates a key for `alg` and writes `DIR/signing.key` (0600) and `DIR/signing.crt`
/// through [`atomic_file`]: without `force` an existing file (or symlink) at either name is
/// left alone and reported; with it, both are replaced, a symlink by a file.
pub fn write(dir: &Path, alg: Algorithm, force: bool) -> Result<Written, GenerateError> {
    let key_path = dir.join(KEY_FILE);
    let cert_path = dir.join(CERT_FILE);
    let existing = if force {
        Existing::Replace
    } else {
        // Only to fail before a slow RSA generation; the no-clobber rename is the guard.
        for path in [&key_path, &cert_path] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(GenerateError::Exists(path.clone()));
            }
        }
        Existing::Keep
    };
    let generated = generate(alg)?;
    let spec = KeySpec {
        algorithm: Some(alg),
        ..KeySpec::default()
    };
    let loaded = SigningKey::from_bytes(
        generated.key_pem.as_bytes(),
        generated.cert_pem.as_deref().map(str::as_bytes),
        spec,
    )?;
    fs::create_dir_all(dir).map_err(|source| GenerateError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    atomic_file::write(&key_path, generated.key_pem.as_bytes(), 0o600, existing)?;
    let certificate = match &generated.cert_pem {
        Some(cert) => {
            if let Err(e) = atomic_file::write(&cert_path, cert.as_bytes(), 0o644, existing) {
                // Half a pair is worse than none: take back the key this call just wrote
                // (without `force` it cannot have replaced anything).
                if existing == Existing::Keep {
                    let _ = fs::remove_file(&key_path);
                }
                return Err(e.into());
            }
            Some(cert_path)
        }
        None => None,
    };
    Ok(Written {
        key: key_path,
        certificate,
        libtrust_kid: loaded.libtrust_kid().map(str::to_owned),
        thumbprint: loaded.thumbprint().map(str::to_owned),
    })
}

impl From<WriteError> for GenerateError {
    fn from(e: WriteError) -> GenerateError {
        match e {
            WriteError::Exists(path) => GenerateError::Exists(path),
            WriteError::Io { path, source } => GenerateError::Io { path, source },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the redraw, 500 P-256 keys hold a 0x00-led coordinate with probability
    /// 1 - (63/64)^500 > 99.9 %, and 30 P-521 keys with probability 1 - (1/4)^30.
    #[test]
    fn generated_ec_keys_never_have_a_zero_led_coordinate() {
        for (alg, count) in [(Algorithm::ES256, 500), (Algorithm::ES512, 30)] {
            for _ in 0..count {
                let pem = generate(alg).unwrap().key_pem;
                let key = SigningKey::from_bytes(pem.as_bytes(), None, KeySpec::default()).unwrap();
                let jwk = &key.public_key().unwrap().jwk;
                assert_eq!(jwk.zero_led_coordinate(), None, "{alg}");
            }
        }
    }
}
