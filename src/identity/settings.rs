//! `auth.*`: the password file, the password cache and workers, the brute-force limits, and
//! the refresh tokens' secret and lifetime. [`crate::config`] composes this section into its
//! settings and checks it.

use std::path::PathBuf;

use serde::Deserialize;

use super::LimitSettings;

/// `auth.*`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// An htpasswd file (bcrypt lines), watched and hot-reloaded.
    pub htpasswd: Option<PathBuf>,
    /// Seconds a successful password check is remembered; 0 turns the cache off.
    pub cache_seconds: u64,
    /// The secret refresh tokens are signed with (base64, at least 32 bytes). Refresh tokens
    /// are issued only while this file exists. Unset: `refresh.secret` beside `key.path`
    /// (where `regauth keygen --refresh-secret` writes it), or `keys/refresh.secret` for an
    /// environment key (see `config::Validated::refresh_secret_file`).
    pub refresh_secret_file: Option<PathBuf>,
    /// Refresh token lifetime in seconds.
    pub refresh_ttl_seconds: u64,
    /// Password checks (bcrypt) that run at once; 0 means one per CPU core.
    pub check_workers: usize,
    /// Password checks that may wait for a worker; past that a request gets 503.
    pub check_queue: usize,
    /// Brute-force limits.
    pub limits: LimitSettings,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            htpasswd: None,
            cache_seconds: 60,
            refresh_secret_file: None,
            refresh_ttl_seconds: 90 * 86_400,
            check_workers: 0,
            check_queue: 32,
            limits: LimitSettings::default(),
        }
    }
}
