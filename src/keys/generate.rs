//! New signing keys and their self-signed certificates (`regauth keygen`, first start).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use chrono::{Datelike, Utc};
use data_encoding::BASE64;

use super::{Algorithm, KeyKind, KeySpec, SigningKey};

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
            let pair = EcdsaKeyPair::generate(sign_alg).map_err(|_| GenerateError::Crypto)?;
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

/// Paths written by [`write`].
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

/// Generates a key for `alg` and writes `DIR/signing.key` (0600) and `DIR/signing.crt`.
pub fn write(dir: &Path, alg: Algorithm, force: bool) -> Result<Written, GenerateError> {
    let key_path = dir.join(KEY_FILE);
    let cert_path = dir.join(CERT_FILE);
    if !force {
        for path in [&key_path, &cert_path] {
            if path.exists() {
                return Err(GenerateError::Exists(path.clone()));
            }
        }
    }
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
    write_file(&key_path, generated.key_pem.as_bytes(), 0o600)?;
    let certificate = match &generated.cert_pem {
        Some(cert) => {
            write_file(&cert_path, cert.as_bytes(), 0o644)?;
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

/// Writes through a temporary file and a rename, so a watcher never sees half a key.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), GenerateError> {
    let io = |source| GenerateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    // A leftover temporary file would keep its old mode; start from none.
    let _ = fs::remove_file(&tmp);
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}
