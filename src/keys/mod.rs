//! Signing keys: where they come from ([`KeyProvider`] and its file and environment
//! implementations), what they are ([`SigningKey`]), and how they are named (`kid`).

mod algorithm;
pub mod bundle;
mod env;
mod file;
pub mod generate;
pub mod jwks;
pub mod keyset;
pub mod kid;
mod load;
mod material;
pub mod metrics;
mod settings;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use algorithm::{Algorithm, Curve, KeyKind, UnknownAlgorithm};
pub use env::EnvKeyProvider;
pub use file::{FileKeyProvider, KeyFiles, ReloadOptions, load_key_file};
pub use kid::KidFormat;
pub use load::{
    LoadedKey, LoadedKeys, NextKey, certificate_beside, load_from_settings, provider_from_settings,
};
pub use material::{
    CertificateInfo, KeyError, KeySpec, MIN_HMAC_SECRET, PublicKeyInfo, SignError, SigningKey,
    content_digest,
};
pub use settings::{KeySettings, KeySource};

/// A source of signing keys.
///
/// Handlers ask for the current key on every request; implementations swap keys in
/// atomically, so a request sees either the old key or the new one, never a mix.
pub trait KeyProvider: Send + Sync + 'static {
    /// The key that signs new tokens.
    fn signing_key(&self) -> Arc<SigningKey>;

    /// The keys verifiers should trust now: the signing key first, then the next key and the
    /// recently replaced ones. HMAC keys may be among them; publishing (JWKS, bundle) skips
    /// them.
    fn published_keys(&self) -> Vec<Arc<SigningKey>> {
        vec![self.signing_key()]
    }

    /// Reload bookkeeping, for health and metrics.
    fn status(&self) -> KeyStatus;

    /// Re-reads the key files now, as the file watch does (SIGHUP), and says in one phrase
    /// what was read and the outcome; `None` when the keys come from no file.
    fn reread(&self) -> Option<String> {
        None
    }
}

/// What a provider reports about its keys (for `/readyz` and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// Where the key comes from, e.g. `file keys/signing.key`.
    pub source: String,
    /// The signing key's `kid` as tokens carry it (`None` with `kid_format: none`).
    pub kid: Option<String>,
    /// When the current key was loaded; its age is `now - loaded_at`.
    pub loaded_at: DateTime<Utc>,
    /// When a reload last replaced the key (the last successful reload).
    pub last_reload: Option<DateTime<Utc>>,
    /// Reloads that found new content that could not be used.
    pub failed_reloads: u64,
    /// Why the last failed reload failed (never key material).
    pub last_error: Option<String>,
    /// The next key's `kid` (or thumbprint), when one is configured and loaded.
    pub next_kid: Option<String>,
    /// Why the configured next key is not loaded or not up to date (never key material).
    pub next_error: Option<String>,
    /// Replaced keys still published.
    pub retired: usize,
    /// When the files were last checked (after a file event, or at a poll).
    pub last_check: Option<DateTime<Utc>>,
    /// Why the key file (or its certificate) cannot be read now, while the last good key
    /// keeps signing, e.g. `cannot read key file keys/signing.key: No such file or directory`.
    pub key_file_error: Option<String>,
    /// Since when [`KeyStatus::key_file_error`] holds.
    pub key_file_missing_since: Option<DateTime<Utc>>,
    /// Reloads that panicked (caught; reloading goes on).
    pub reload_panics: u64,
    /// Watched directories watched again after being re-created (or created after the start).
    pub watch_rearmed: u64,
    /// Why some watched directory is not watched now (only the poll sees its files).
    pub watch_problem: Option<String>,
    /// Key and certificate pairs that did not match and were read once more (a rotation
    /// seen halfway).
    pub pair_retries: u64,
}

impl KeyStatus {
    /// A status for a key just loaded from `source` at `now`.
    pub fn new(source: String, key: &SigningKey, now: DateTime<Utc>) -> KeyStatus {
        KeyStatus {
            source,
            kid: key.kid().map(str::to_owned),
            loaded_at: now,
            last_reload: None,
            failed_reloads: 0,
            last_error: None,
            next_kid: None,
            next_error: None,
            retired: 0,
            last_check: None,
            key_file_error: None,
            key_file_missing_since: None,
            reload_panics: 0,
            watch_rearmed: 0,
            watch_problem: None,
            pair_retries: 0,
        }
    }

    /// How long the signing key has been in use at `now`.
    pub fn key_age(&self, now: DateTime<Utc>) -> chrono::Duration {
        now.signed_duration_since(self.loaded_at)
    }
}

/// Logs a warning when registry 3.1.x will refuse every token `key` signs (see
/// [`SigningKey::registry_thumbprint_problem`]); `role` names the key, e.g. `signing key
/// from file keys/signing.key`.
fn warn_registry_thumbprint(key: &SigningKey, role: &str) {
    if let Some(problem) = key.registry_thumbprint_problem() {
        log::warn!("{role} ({}): {problem}", key.label());
    }
}

/// Reads an optional certificate chain file.
fn read_certificate(path: Option<&std::path::Path>) -> Result<Option<Vec<u8>>, ProviderError> {
    path.map(|path| {
        std::fs::read(path).map_err(|error| ProviderError::Read {
            what: FileKind::Certificate,
            path: path.display().to_string(),
            error,
        })
    })
    .transpose()
}

/// Which of a key's files an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The private key.
    Key,
    /// Its certificate chain.
    Certificate,
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Key => "key file",
            FileKind::Certificate => "certificate file",
        })
    }
}

/// What to do about a key file that does not exist: make one.
fn missing_key_hint(what: FileKind, error: &std::io::Error) -> &'static str {
    match (what, error.kind()) {
        (FileKind::Key, std::io::ErrorKind::NotFound) => {
            " (create a key and its certificate with `regauth keygen --out DIR`, and point key.path at DIR/signing.key)"
        }
        _ => "",
    }
}

/// Errors starting a key provider.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// A file could not be read. The I/O error is part of the message, not a separate
    /// source, so `{:#}` chains print it once.
    #[error("cannot read {what} {path}: {error}{}", missing_key_hint(*what, error))]
    Read {
        /// Which file.
        what: FileKind,
        /// The path as configured.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The environment variable is unset or empty.
    #[error("environment variable {0} is unset or empty")]
    EnvMissing(String),
    /// The key material is unusable.
    #[error("{source_desc}: {error}")]
    Key {
        /// Where the key came from.
        source_desc: String,
        /// What is wrong with it.
        error: KeyError,
    },
}
