//! `key.*`: where the signing key comes from. [`crate::config`] composes this section into its
//! settings and checks it; [`super::load_from_settings`] and [`super::provider_from_settings`]
//! read it.

use std::path::PathBuf;

use serde::Deserialize;

/// Where keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum KeySource {
    /// A PEM file, watched and hot-reloaded.
    #[default]
    File,
    /// An environment variable, read at start.
    Env,
}

impl TryFrom<String> for KeySource {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let choices = [("file", KeySource::File), ("env", KeySource::Env)];
        crate::support::choice::one_of("key.source", &s, &choices)
    }
}

/// `key.*`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    /// `file` or `env`.
    pub source: KeySource,
    /// The key file, for `source: file`.
    pub path: PathBuf,
    /// A PEM chain (leaf first): sent as `x5c`, printed by `regauth bundle`, and in the JWKS.
    pub certificate: Option<PathBuf>,
    /// Whether tokens carry `key.certificate` as `x5c`; `false` keeps it for the bundle and
    /// the JWKS only (kid mode with a certificate on file).
    pub x5c: bool,
    /// The next key: published (JWKS, bundle), not yet signing. For `source: file`.
    pub next: Option<PathBuf>,
    /// The next key's certificate chain (leaf first), for the bundle and the JWKS.
    pub next_certificate: Option<PathBuf>,
    /// The variable holding the key, for `source: env`.
    pub env: String,
    /// Algorithm override (`RS384`, `PS256`, `HS256`, ...).
    pub algorithm: Option<String>,
    /// Seconds between backstop re-reads of the key file.
    pub poll_interval_seconds: u64,
}

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings {
            source: KeySource::File,
            path: PathBuf::from("keys/signing.key"),
            certificate: None,
            x5c: true,
            next: None,
            next_certificate: None,
            env: "REGAUTH_SIGNING_KEY".into(),
            algorithm: None,
            poll_interval_seconds: 30,
        }
    }
}
