//! Signing keys: where they come from ([`KeyProvider`] and its file and environment
//! implementations), what they are ([`SigningKey`]), and how they are named (`kid`).

mod algorithm;
mod env;
mod file;
pub mod generate;
pub mod kid;
mod material;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use algorithm::{Algorithm, Curve, KeyKind, UnknownAlgorithm};
pub use env::EnvKeyProvider;
pub use file::{FileKeyProvider, WatchOptions};
pub use kid::KidFormat;
pub use material::{
    CertificateInfo, KeyError, KeySpec, MIN_HMAC_SECRET, PublicKeyInfo, SignError, SigningKey,
};

/// A source of signing keys.
///
/// Handlers ask for the current key on every request; implementations swap keys in
/// atomically, so a request sees either the old key or the new one, never a mix.
pub trait KeyProvider: Send + Sync + 'static {
    /// The key that signs new tokens.
    fn signing_key(&self) -> Arc<SigningKey>;

    /// The keys verifiers should trust now. The signing key is always among them.
    fn published_keys(&self) -> Vec<Arc<SigningKey>> {
        vec![self.signing_key()]
    }

    /// Reload bookkeeping, for health and metrics.
    fn status(&self) -> KeyStatus;
}

/// What a provider reports about its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// Where the key comes from, e.g. `file keys/signing.key`.
    pub source: String,
    /// When the current key was loaded.
    pub loaded_at: DateTime<Utc>,
    /// When a reload last replaced the key.
    pub last_reload: Option<DateTime<Utc>>,
    /// Reloads that found new content that could not be used.
    pub failed_reloads: u64,
    /// Why the last failed reload failed (never key material).
    pub last_error: Option<String>,
}

/// Errors starting a key provider.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// A file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// `key file` or `certificate file`.
        what: &'static str,
        /// The path as configured.
        path: String,
        /// The I/O error.
        source: std::io::Error,
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
