//! Settings: built-in defaults, then a YAML or TOML file, then `REGAUTH_<SECTION>__<KEY>`
//! environment variables; validated at load with messages that say what to fix.
//!
//! Each section's type belongs to the module that uses it (`server.*` to
//! [`crate::server::settings`], `token.*` to [`crate::issue`], `key.*` to [`crate::keys`],
//! `auth.*` to [`crate::identity`], `access.*` and `acl` to [`crate::policy`], `audit.*` and
//! `log.*` to [`crate::telemetry`], ...). This module composes them into [`Settings`]
//! (`settings.rs`), reads the `REGAUTH_` variables (`env.rs`), and checks each section into
//! the typed values of [`Validated`], one function per section (`validate.rs`). Only the roots
//! (the server and the command line) read it.

mod env;
mod settings;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fs::watch::WatchOptions;
use crate::identity::federation::IssuerSettings;
use crate::identity::{AuthSettings, LdapSettings, UserSettings};
use crate::issue::TokenSettings;
use crate::keys::{Algorithm, KeySettings, KeySource, KeySpec, ReloadOptions};
use crate::policy::Acl;
use crate::server::proxy::TrustedProxies;
use crate::server::tls::TlsFiles;
use crate::store::StoreSettings;
use crate::telemetry::audit::AuditSettings;
use crate::telemetry::logging::LogFormat;
use crate::token::scope::Actions;

pub use env::{ENV_PREFIX, NOT_SETTINGS};
pub use settings::Settings;
pub use validate::DURATION_BOUNDS;

/// The refresh-token secret's file name when `auth.refresh_secret_file` is unset (as
/// `regauth keygen --refresh-secret` names it).
pub const REFRESH_SECRET_NAME: &str = "refresh.secret";
/// Shortest token lifetime: clients treat anything shorter as 60 s.
pub const MIN_TTL_SECONDS: u32 = 60;
/// Longest token lifetime accepted.
pub const MAX_TTL_SECONDS: u32 = 86_400;
/// Longest refresh token lifetime accepted: a stolen refresh token works until it expires.
pub const MAX_REFRESH_TTL_SECONDS: u64 = 366 * 86_400;

/// Settings checked and converted into the types the service uses: every section, validated
/// (see [`Settings::validate`]).
#[derive(Debug, Clone)]
pub struct Validated {
    /// `server.listen` parsed.
    pub listen: SocketAddr,
    /// `server.admin_listen` parsed.
    pub admin_listen: Option<SocketAddr>,
    /// `server.trusted_proxies` and `server.client_ip_header` parsed.
    pub proxies: TrustedProxies,
    /// `server.trusted_proxies` as written (each one a valid range or address), for the log.
    pub trusted_proxies: Vec<String>,
    /// `server.shutdown_delay_seconds`.
    pub shutdown_delay: Duration,
    /// `server.shutdown_timeout_seconds` (at least a second).
    pub shutdown_timeout: Duration,
    /// `server.tls`: the certificate and key files, when HTTPS is on.
    pub tls: Option<TlsFiles>,
    /// `token.*`: a non-empty issuer, a lifetime in range, non-blank service names.
    pub token: TokenSettings,
    /// `key.*`: a consistent source, path, next key and poll interval.
    pub key: KeySettings,
    /// `key.algorithm` parsed.
    pub algorithm: Option<Algorithm>,
    /// The access rules, compiled (the default rules when `acl` is absent).
    pub acl: Acl,
    /// When `acl` is absent: the default rules apply, and this is what anonymous callers get
    /// (`access.anonymous`, `pull` by default). `None` when `acl` lists the rules.
    pub default_rules: Option<Actions>,
    /// `users`, with valid names.
    pub users: BTreeMap<String, UserSettings>,
    /// `auth.*`: the password file, cache, workers, limits and refresh tokens.
    pub auth: AuthSettings,
    /// `ldap`, checked (absent: no directory).
    pub ldap: Option<LdapSettings>,
    /// `federation`, checked.
    pub federation: Vec<IssuerSettings>,
    /// `audit.*`, with an output when on.
    pub audit: AuditSettings,
    /// `log.format`.
    pub log_format: LogFormat,
    /// `store.*`, checked (absent: no store; token, robot and logout commands need one).
    pub store: Option<StoreSettings>,
    /// True when neither a config file nor `REGAUTH_KEY__*` variables were given, so a missing
    /// default key may be generated.
    pub zero_config: bool,
}

/// A configuration that cannot be used. The message says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file does not exist or cannot be read.
    #[error("cannot read config file {path}: {reason}")]
    File {
        /// The path given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file extension does not say its format.
    #[error("config file {0} must end in .yaml, .yml or .toml")]
    Format(PathBuf),
    /// Syntax errors, unknown keys, wrong types.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A `REGAUTH_` variable that names no setting (a typo such as one `_` where `__` belongs).
    #[error(
        "invalid configuration: environment variable {name} is not a setting{hint}; settings are REGAUTH_<SECTION>__<KEY> (two underscores after the section), and the other REGAUTH_ variables regauth reads are {}",
        NOT_SETTINGS.join(", ")
    )]
    UnknownVariable {
        /// The variable's name.
        name: String,
        /// A suggestion, when the name looks like a setting with one `_` too few.
        hint: String,
    },
    /// A value out of range or of the wrong form.
    #[error("invalid configuration: {key}: {message}")]
    Invalid {
        /// The setting, e.g. `token.ttl_seconds`.
        key: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl Validated {
    /// `key.poll_interval_seconds` as a duration: the backstop re-read of watched files.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.key.poll_interval_seconds)
    }

    /// How watched files (keys, htpasswd, TLS pair) are watched: the default pacing with
    /// `key.poll_interval_seconds` as the backstop.
    pub fn watch_options(&self) -> WatchOptions {
        WatchOptions {
            poll_interval: self.poll_interval(),
            ..WatchOptions::default()
        }
    }

    /// How keys are built: algorithm override, `kid` format, `x5c` or not.
    pub fn key_spec(&self) -> KeySpec {
        KeySpec {
            algorithm: self.algorithm,
            kid_format: self.token.kid_format,
            x5c: self.key.x5c,
        }
    }

    /// How the key files are watched and how long a replaced key stays published.
    pub fn key_reload(&self) -> ReloadOptions {
        ReloadOptions {
            watch: self.watch_options(),
            retain: self.retention(),
            ..ReloadOptions::default()
        }
    }

    /// The refresh-token secret's file: `auth.refresh_secret_file`, else `refresh.secret` in
    /// the directory of `key.path` (a file key), else `keys/refresh.secret`.
    pub fn refresh_secret_file(&self) -> PathBuf {
        match (&self.auth.refresh_secret_file, self.key.source) {
            (Some(path), _) => path.clone(),
            (None, KeySource::File) => self.key.path.with_file_name(REFRESH_SECRET_NAME),
            (None, KeySource::Env) => Path::new("keys").join(REFRESH_SECRET_NAME),
        }
    }

    /// How long a replaced key stays published: every token it signed must expire first,
    /// and registries allow 60 s of clock leeway.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.token.ttl_seconds) + 60)
    }
}

/// Loads and validates settings from `file` and the process environment.
pub fn load(file: Option<&Path>) -> Result<Validated, ConfigError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    load_with_env(file, &env)
}

/// [`load`] with an explicit environment, for tests.
pub fn load_with_env(
    file: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<Validated, ConfigError> {
    let zero_config = file.is_none() && !env.keys().any(|k| k.starts_with("REGAUTH_KEY__"));
    let settings = Settings::load(file, env)?;
    env::check_variables(&settings.key.env, env)?;
    settings.validate(zero_config)
}

#[cfg(test)]
mod tests;
