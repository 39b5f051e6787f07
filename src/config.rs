//! Settings: built-in defaults, then a YAML or TOML file, then `REGAUTH_<SECTION>__<KEY>`
//! environment variables; validated at load with messages that say what to fix.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::identity::federation::{self, IssuerSettings};
use crate::identity::{LdapSettings, LimitSettings, UserSettings};
use crate::keys::{Algorithm, KeySpec, KidFormat};
use crate::policy::{Acl, RuleSettings};
use crate::proxy::{ForwardedHeader, TrustedProxies};
use crate::scope::{Action, Actions};
use crate::watch::WatchOptions;

/// The refresh-token secret's file name when `auth.refresh_secret_file` is unset (as
/// `regauth keygen --refresh-secret` names it).
pub const REFRESH_SECRET_NAME: &str = "refresh.secret";
/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "REGAUTH";
/// Shortest token lifetime: clients treat anything shorter as 60 s.
pub const MIN_TTL_SECONDS: u32 = 60;
/// Longest token lifetime accepted.
pub const MAX_TTL_SECONDS: u32 = 86_400;
/// Longest refresh token lifetime accepted: a stolen refresh token works until it expires.
pub const MAX_REFRESH_TTL_SECONDS: u64 = 366 * 86_400;

/// All settings. `Debug` never shows a password hash: they are secrets (see `UserSettings`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The HTTP listener.
    pub server: ServerSettings,
    /// What tokens say and how long they live.
    pub token: TokenSettings,
    /// Where the signing key comes from.
    pub key: KeySettings,
    /// Defaults for callers when no `acl` is configured.
    pub access: AccessSettings,
    /// Users and their bcrypt password hashes and groups.
    pub users: BTreeMap<String, UserSettings>,
    /// Password file, password cache and refresh tokens.
    pub auth: AuthSettings,
    /// An LDAP directory users sign in against (absent: none).
    pub ldap: Option<LdapSettings>,
    /// Ordered access rules; the first match decides. Absent: the default rules.
    pub acl: Option<Vec<RuleSettings>>,
    /// Issuers whose workload tokens (JWTs) are accepted as passwords.
    pub federation: Vec<IssuerSettings>,
    /// The audit log of token decisions.
    pub audit: AuditSettings,
    /// The process log.
    pub log: LogSettings,
    /// Where access tokens, robots and logouts are kept (absent: no store).
    pub store: Option<crate::store::StoreSettings>,
}

/// `server.*`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port to listen on.
    pub listen: String,
    /// On SIGTERM or SIGINT: seconds `/readyz` answers 503 while the listener keeps serving,
    /// so load balancers stop sending new connections before it closes.
    pub shutdown_delay_seconds: u64,
    /// After the delay: seconds requests in flight get to finish before the process exits.
    pub shutdown_timeout_seconds: u64,
    /// A second address for `/metrics`, `/readyz` and `/healthz`; when set, the main listener
    /// no longer serves `/metrics` and `/readyz`.
    pub admin_listen: Option<String>,
    /// Reverse proxies (CIDR ranges or addresses) whose `client_ip_header` names the client.
    /// Empty: the TCP peer is the client and forwarding headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// `x-forwarded-for` or `forwarded`: the header the trusted proxies append to.
    pub client_ip_header: ForwardedHeader,
    /// HTTPS for the main listener (see [`crate::tls`]); the admin listener stays HTTP.
    pub tls: TlsSettings,
}

/// `server.tls.*`: both files, or neither (plain HTTP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub certificate: Option<PathBuf>,
    /// PEM private key of the leaf certificate.
    pub key: Option<PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:5001".into(),
            shutdown_delay_seconds: 5,
            shutdown_timeout_seconds: 30,
            admin_listen: None,
            trusted_proxies: Vec::new(),
            client_ip_header: ForwardedHeader::default(),
            tls: TlsSettings::default(),
        }
    }
}

/// `token.*`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// `iss`; must equal the registry's `auth.token.issuer`.
    pub issuer: String,
    /// Token lifetime in seconds, at least 60.
    pub ttl_seconds: u32,
    /// Which `kid` the header carries.
    pub kid_format: KidFormat,
    /// Services tokens may be issued for; empty means any.
    pub services: Vec<String>,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            issuer: "regauth".into(),
            ttl_seconds: 300,
            kid_format: KidFormat::Libtrust,
            services: Vec::new(),
        }
    }
}

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
        match s.to_ascii_lowercase().as_str() {
            "file" => Ok(KeySource::File),
            "env" => Ok(KeySource::Env),
            _ => Err(format!("key.source {s:?} is not one of: file, env")),
        }
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

/// `access.*`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSettings {
    /// Actions anonymous callers get on repositories under the default rules (`["pull"]`
    /// when unset). Only meaningful without `acl`.
    pub anonymous: Option<Vec<String>>,
}

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
    /// environment key; see [`Validated::refresh_secret_file`].
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

/// `log.*`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` or `json`; the level comes from `RUST_LOG`.
    pub format: crate::logging::LogFormat,
}

/// `audit.*`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// One JSON line per token decision.
    pub enabled: bool,
    /// `stderr`, `stdout`, or a file path (appended to, reopened on SIGHUP).
    pub output: String,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: true,
            output: "stderr".into(),
        }
    }
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
        Duration::from_secs(self.settings.key.poll_interval_seconds)
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
            kid_format: self.settings.token.kid_format,
            x5c: self.settings.key.x5c,
        }
    }

    /// The refresh-token secret's file: `auth.refresh_secret_file`, else `refresh.secret` in
    /// the directory of `key.path` (a file key), else `keys/refresh.secret`.
    pub fn refresh_secret_file(&self) -> PathBuf {
        let settings = &self.settings;
        match (&settings.auth.refresh_secret_file, settings.key.source) {
            (Some(path), _) => path.clone(),
            (None, KeySource::File) => settings.key.path.with_file_name(REFRESH_SECRET_NAME),
            (None, KeySource::Env) => Path::new("keys").join(REFRESH_SECRET_NAME),
        }
    }

    /// How long a replaced key stays published: every token it signed must expire first,
    /// and registries allow 60 s of clock leeway.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.settings.token.ttl_seconds) + 60)
    }
}

/// Settings checked and converted into the types the service uses.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The settings as loaded.
    pub settings: Settings,
    /// `server.listen` parsed.
    pub listen: SocketAddr,
    /// `server.admin_listen` parsed.
    pub admin_listen: Option<SocketAddr>,
    /// `key.algorithm` parsed.
    pub algorithm: Option<Algorithm>,
    /// The access rules, compiled (the default rules when `acl` is absent).
    pub acl: Acl,
    /// `server.trusted_proxies` parsed.
    pub proxies: TrustedProxies,
    /// `server.tls`: the certificate and key files, when HTTPS is on.
    pub tls: Option<crate::tls::TlsFiles>,
    /// True when neither a config file nor `REGAUTH_KEY__*` variables were given, so a missing
    /// default key may be generated.
    pub zero_config: bool,
}

impl Settings {
    /// Loads defaults, then `file`, then the `REGAUTH_<SECTION>__<KEY>` variables in `env`.
    ///
    /// Only variables with a `__` after the prefix are read, so `REGAUTH_SIGNING_KEY` (the
    /// default home of an env key) is never mistaken for a setting.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            let format = match path.extension().and_then(|e| e.to_str()) {
                Some("yaml" | "yml") => config::FileFormat::Yaml,
                Some("toml") => config::FileFormat::Toml,
                _ => return Err(ConfigError::Format(path.to_path_buf())),
            };
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            builder = builder.add_source(config::File::from_str(&text, format));
        }
        let overrides: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| is_setting_var(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("access.anonymous")
                .with_list_parse_key("token.services")
                .with_list_parse_key("server.trusted_proxies")
                .try_parsing(true)
                .source(Some(overrides)),
        );
        let built = builder
            .build()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        built
            .try_deserialize::<Settings>()
            .map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Checks every value and returns what the service needs.
    pub fn validate(self, zero_config: bool) -> Result<Validated, ConfigError> {
        self.check_duration_bounds()?;
        let listen: SocketAddr = self.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!(
                    "{:?} is not an address and port such as 127.0.0.1:5001 or [::]:5001",
                    self.server.listen
                ),
            )
        })?;
        let admin_listen = match &self.server.admin_listen {
            None => None,
            Some(text) => {
                let addr: SocketAddr = text.parse().map_err(|_| {
                    invalid(
                        "server.admin_listen",
                        format!("{text:?} is not an address and port such as 127.0.0.1:9090"),
                    )
                })?;
                if addr == listen && addr.port() != 0 {
                    return Err(invalid(
                        "server.admin_listen",
                        "must differ from server.listen (or leave it out to serve everything there)",
                    ));
                }
                Some(addr)
            }
        };
        if self.token.issuer.trim().is_empty() {
            return Err(invalid(
                "token.issuer",
                "must not be empty; set it to the registry's auth.token.issuer",
            ));
        }
        let ttl = self.token.ttl_seconds;
        if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&ttl) {
            return Err(invalid(
                "token.ttl_seconds",
                format!(
                    "{ttl} is out of range; use {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS} (clients treat shorter tokens as 60 s)"
                ),
            ));
        }
        if let Some(bad) = self.token.services.iter().find(|s| s.trim().is_empty()) {
            return Err(invalid(
                "token.services",
                format!("{bad:?} is not a service name"),
            ));
        }
        let algorithm = match &self.key.algorithm {
            None => None,
            Some(a) => Some(
                a.parse::<Algorithm>()
                    .map_err(|e| invalid("key.algorithm", e.to_string()))?,
            ),
        };
        if self.key.source == KeySource::Env && self.key.env.trim().is_empty() {
            return Err(invalid(
                "key.env",
                "must name the environment variable that holds the key",
            ));
        }
        if self.key.source == KeySource::File && self.key.path.as_os_str().is_empty() {
            return Err(invalid("key.path", "must name the key file"));
        }
        match &self.key.next {
            Some(_) if self.key.source != KeySource::File => {
                return Err(invalid(
                    "key.next",
                    "needs key.source: file (an environment key cannot be swapped without a restart)",
                ));
            }
            Some(next) if *next == self.key.path => {
                return Err(invalid(
                    "key.next",
                    "must be another file than key.path; the next key becomes current when moved over key.path",
                ));
            }
            None if self.key.next_certificate.is_some() => {
                return Err(invalid(
                    "key.next_certificate",
                    "is set without key.next; name the next key's file too",
                ));
            }
            _ => {}
        }
        if self.key.poll_interval_seconds == 0 {
            return Err(invalid("key.poll_interval_seconds", "must be at least 1"));
        }
        let acl = match (&self.acl, &self.access.anonymous) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "access.anonymous",
                    "applies only without acl; add a rule with `match: {account: \"\"}` instead",
                ));
            }
            (Some(rules), None) => Acl::compile(rules).map_err(|e| ConfigError::Invalid {
                key: "acl",
                message: e.to_string(),
            })?,
            (None, anonymous) => {
                let default = vec!["pull".to_owned()];
                let actions = anonymous
                    .as_ref()
                    .unwrap_or(&default)
                    .iter()
                    .map(|a| {
                        a.parse::<Action>().map_err(|reason| {
                            invalid("access.anonymous", format!("{a:?}: {reason}"))
                        })
                    })
                    .collect::<Result<Actions, _>>()?;
                Acl::default_rules(&actions)
            }
        };
        if self.server.shutdown_timeout_seconds == 0 {
            return Err(invalid(
                "server.shutdown_timeout_seconds",
                "must be at least 1 so requests in flight can finish",
            ));
        }
        if self.auth.check_queue == 0 {
            return Err(invalid(
                "auth.check_queue",
                "must be at least 1; it bounds the password checks waiting for a worker",
            ));
        }
        let limits = &self.auth.limits;
        if limits.failures > 0 {
            if limits.window_seconds == 0 || limits.backoff_seconds == 0 || limits.max_entries == 0
            {
                return Err(invalid(
                    "auth.limits",
                    "window_seconds, backoff_seconds and max_entries must be at least 1 (set failures: 0 to turn the limits off)",
                ));
            }
            if limits.max_backoff_seconds < limits.backoff_seconds {
                return Err(invalid(
                    "auth.limits.max_backoff_seconds",
                    "must be at least backoff_seconds",
                ));
            }
        }
        if !(60..=MAX_REFRESH_TTL_SECONDS).contains(&self.auth.refresh_ttl_seconds) {
            return Err(invalid(
                "auth.refresh_ttl_seconds",
                format!("must be at least 60 and at most {MAX_REFRESH_TTL_SECONDS} (a year)"),
            ));
        }
        let proxies =
            TrustedProxies::parse(&self.server.trusted_proxies, self.server.client_ip_header)
                .map_err(|e| invalid("server.trusted_proxies", e.to_string()))?;
        if self.audit.enabled && self.audit.output.trim().is_empty() {
            return Err(invalid(
                "audit.output",
                "must be stderr, stdout or a file path (or set audit.enabled: false)",
            ));
        }
        if let Some(ldap) = &self.ldap {
            ldap.validate().map_err(|e| invalid(e.key, e.message))?;
        }
        if let Some(name) = self.users.keys().find(|n| n.is_empty() || n.contains(':')) {
            return Err(invalid(
                "users",
                format!("{name:?} is not a user name (it must be non-empty and without ':')"),
            ));
        }
        federation::validate(&self.federation).map_err(|e| ConfigError::Invalid {
            key: "federation",
            message: e.to_string(),
        })?;
        if let Some(store) = &self.store {
            store
                .validate()
                .map_err(|(key, message)| invalid(key, message))?;
        }
        let tls = self.server.tls.validate()?;
        Ok(Validated {
            settings: self,
            listen,
            admin_listen,
            algorithm,
            acl,
            proxies,
            tls,
            zero_config,
        })
    }
}

/// A day, in seconds.
const DAY: u64 = 86_400;

/// The largest value of each duration setting not bounded elsewhere (`token.ttl_seconds`,
/// `auth.refresh_ttl_seconds` and the federation ones have their own checks). Larger values
/// are mistakes, and far larger ones would overflow the caches and timers they feed.
pub const DURATION_BOUNDS: [(&str, u64); 9] = [
    ("server.shutdown_delay_seconds", 3_600),
    ("server.shutdown_timeout_seconds", 3_600),
    ("key.poll_interval_seconds", DAY),
    ("auth.cache_seconds", DAY),
    ("auth.limits.window_seconds", DAY),
    ("auth.limits.backoff_seconds", DAY),
    ("auth.limits.max_backoff_seconds", DAY),
    ("ldap.timeout_seconds", 300),
    ("ldap.outage_grace_seconds", 7 * DAY),
];

impl Settings {
    /// The duration settings with their values, in the order of [`DURATION_BOUNDS`].
    fn durations(&self) -> [u64; 9] {
        let ldap = self.ldap.as_ref();
        [
            self.server.shutdown_delay_seconds,
            self.server.shutdown_timeout_seconds,
            self.key.poll_interval_seconds,
            self.auth.cache_seconds,
            self.auth.limits.window_seconds,
            self.auth.limits.backoff_seconds,
            self.auth.limits.max_backoff_seconds,
            ldap.map_or(0, |l| l.timeout_seconds),
            ldap.map_or(0, |l| l.outage_grace_seconds),
        ]
    }

    /// Every duration within [`DURATION_BOUNDS`]; the error names the setting.
    fn check_duration_bounds(&self) -> Result<(), ConfigError> {
        for ((key, max), value) in DURATION_BOUNDS.iter().zip(self.durations()) {
            if value > *max {
                return Err(invalid(
                    key,
                    format!("{value} is more than the {max} seconds allowed"),
                ));
            }
        }
        Ok(())
    }
}

impl TlsSettings {
    fn validate(&self) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
        let empty = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str().is_empty());
        if empty(&self.certificate) || empty(&self.key) {
            return Err(invalid("server.tls", "certificate and key must name files"));
        }
        match (&self.certificate, &self.key) {
            (None, None) => Ok(None),
            (Some(certificate), Some(key)) => Ok(Some(crate::tls::TlsFiles {
                certificate: certificate.clone(),
                key: key.clone(),
            })),
            (Some(_), None) => Err(invalid(
                "server.tls.key",
                "is missing: server.tls.certificate is set, and HTTPS needs the certificate's private key too (or set neither for plain HTTP)",
            )),
            (None, Some(_)) => Err(invalid(
                "server.tls.certificate",
                "is missing: server.tls.key is set, and HTTPS needs the certificate chain too (or set neither for plain HTTP)",
            )),
        }
    }
}

/// `REGAUTH_` variables that are not settings but are read all the same (besides the one
/// `key.env` names).
pub const NOT_SETTINGS: &[&str] = &["REGAUTH_CONFIG", "REGAUTH_SIGNING_KEY"];

/// The top-level sections, as variables spell them.
const SECTIONS: &[&str] = &[
    "SERVER",
    "TOKEN",
    "KEY",
    "ACCESS",
    "USERS",
    "AUTH",
    "LDAP",
    "ACL",
    "FEDERATION",
    "AUDIT",
    "LOG",
    "STORE",
];

/// Every `REGAUTH_` variable must be a setting (`REGAUTH_<SECTION>__<KEY>`, which the loader
/// checks against the known keys), one of [`NOT_SETTINGS`], or the variable `key.env` names:
/// a mistyped setting must stop the start, not be ignored.
fn check_variables(settings: &Settings, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let mut names: Vec<&String> = env.keys().collect();
    names.sort();
    for name in names {
        let Some(rest) = name.strip_prefix("REGAUTH_") else {
            continue;
        };
        if is_setting_var(name)
            || NOT_SETTINGS.contains(&name.as_str())
            || *name == settings.key.env
        {
            continue;
        }
        let hint = SECTIONS
            .iter()
            .find_map(|section| {
                rest.strip_prefix(section)
                    .and_then(|key| key.strip_prefix('_'))
                    .filter(|key| !key.is_empty())
                    .map(|key| format!(" (did you mean REGAUTH_{section}__{key}?)"))
            })
            .unwrap_or_default();
        return Err(ConfigError::UnknownVariable {
            name: name.clone(),
            hint,
        });
    }
    Ok(())
}

/// True for `REGAUTH_<SECTION>__<KEY>` names.
fn is_setting_var(name: &str) -> bool {
    name.strip_prefix("REGAUTH_")
        .is_some_and(|rest| rest.contains("__"))
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
    check_variables(&settings, env)?;
    settings.validate(zero_config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(ext: &str, text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_load_without_file_or_env() {
        let v = load_with_env(None, &HashMap::new()).unwrap();
        assert_eq!(v.settings.server, ServerSettings::default());
        assert_eq!(v.settings.auth, AuthSettings::default());
        assert!(v.settings.users.is_empty() && v.settings.acl.is_none());
        assert_eq!(v.listen.to_string(), "127.0.0.1:5001");
        assert_eq!(v.settings.token.ttl_seconds, 300);
        // Anonymous callers, signed-in people, and robots (issue 18: within their scopes).
        assert_eq!(v.acl.len(), 3, "the three default rules");
        assert!(v.settings.store.is_none(), "no store unless configured");
        assert!(v.zero_config);
    }

    #[test]
    fn yaml_then_env_override_in_that_order() {
        let f = file(
            ".yaml",
            "server:\n  listen: 127.0.0.1:7000\ntoken:\n  issuer: from-file\n  ttl_seconds: 120\n",
        );
        let v = load_with_env(
            Some(f.path()),
            &env(&[
                ("REGAUTH_TOKEN__ISSUER", "from-env"),
                ("REGAUTH_ACCESS__ANONYMOUS", "pull,push"),
                ("REGAUTH_TOKEN__SERVICES", "a.test,b.test"),
                ("REGAUTH_SIGNING_KEY", "not a setting"),
            ]),
        )
        .unwrap();
        assert_eq!(v.listen.port(), 7000);
        assert_eq!(v.settings.token.issuer, "from-env");
        assert_eq!(v.settings.token.ttl_seconds, 120);
        assert_eq!(
            v.settings.access.anonymous.as_deref(),
            Some(&["pull".to_owned(), "push".to_owned()][..])
        );
        assert_eq!(v.settings.token.services, ["a.test", "b.test"]);
        assert!(!v.zero_config);
    }

    #[test]
    fn trusted_proxies_load_from_file_and_environment() {
        let f = file(
            ".yaml",
            "server:\n  trusted_proxies: [10.0.0.0/8]\n  client_ip_header: Forwarded\n",
        );
        let v = load_with_env(Some(f.path()), &HashMap::new()).unwrap();
        assert!(v.proxies.trusts("10.9.8.7".parse().unwrap()));
        assert_eq!(
            v.settings.server.client_ip_header,
            ForwardedHeader::Forwarded
        );
        let v = load_with_env(
            None,
            &env(&[("REGAUTH_SERVER__TRUSTED_PROXIES", "192.0.2.1,fd00::/8")]),
        )
        .unwrap();
        assert!(v.proxies.trusts("fd00::5".parse().unwrap()));
        assert!(!v.proxies.trusts("10.9.8.7".parse().unwrap()));
        assert!(Settings::default().server.trusted_proxies.is_empty());
    }

    #[test]
    fn tls_files_load_from_file_and_environment_and_default_to_plain_http() {
        let f = file(
            ".yaml",
            "server:\n  tls:\n    certificate: tls/server.crt\n    key: tls/server.key\n",
        );
        let v = load_with_env(Some(f.path()), &HashMap::new()).unwrap();
        let files = v.tls.unwrap();
        assert_eq!(files.certificate, PathBuf::from("tls/server.crt"));
        assert_eq!(files.key, PathBuf::from("tls/server.key"));
        let v = load_with_env(
            None,
            &env(&[
                ("REGAUTH_SERVER__TLS__CERTIFICATE", "/t/c.pem"),
                ("REGAUTH_SERVER__TLS__KEY", "/t/k.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(v.tls.unwrap().key, PathBuf::from("/t/k.pem"));
        assert!(load_with_env(None, &HashMap::new()).unwrap().tls.is_none());
    }

    #[test]
    fn toml_files_load() {
        let f = file(
            ".toml",
            "[token]\nkid_format = \"thumbprint\"\n[key]\nalgorithm = \"PS256\"\n",
        );
        let v = load_with_env(Some(f.path()), &HashMap::new()).unwrap();
        assert_eq!(v.settings.token.kid_format, KidFormat::Thumbprint);
        assert_eq!(v.algorithm, Some(Algorithm::PS256));
    }

    #[test]
    fn users_and_rules_load_with_names_kept_as_written() {
        let f = file(
            ".yaml",
            "users:\n  Alice.Smith:\n    password: $2y$04$x\n    groups: [Dev]\n\
             acl:\n  - match: {account: Alice.Smith, name: '${account}/**'}\n    actions: ['*']\n  - match: {account: ''}\n    actions: [pull]\n",
        );
        let v = load_with_env(Some(f.path()), &HashMap::new()).unwrap();
        assert!(
            v.settings.users.contains_key("Alice.Smith"),
            "{:?}",
            v.settings.users.keys()
        );
        assert_eq!(v.settings.users["Alice.Smith"].groups, ["Dev"]);
        assert_eq!(v.acl.len(), 2);
    }

    #[test]
    fn next_key_settings_load_from_file_and_environment() {
        let f = file(
            ".yaml",
            "key:\n  path: k/signing.key\n  next: k/next.key\n  x5c: false\n",
        );
        let v = load_with_env(
            Some(f.path()),
            &env(&[("REGAUTH_KEY__NEXT_CERTIFICATE", "k/next.crt")]),
        )
        .unwrap();
        assert_eq!(v.settings.key.next, Some(PathBuf::from("k/next.key")));
        assert_eq!(
            v.settings.key.next_certificate,
            Some(PathBuf::from("k/next.crt"))
        );
        assert!(!v.settings.key.x5c);
        assert!(Settings::default().key.x5c, "x5c is sent by default");
    }

    #[test]
    fn a_key_variable_turns_off_zero_config() {
        let v = load_with_env(None, &env(&[("REGAUTH_KEY__PATH", "/x/k.pem")])).unwrap();
        assert!(!v.zero_config);
        assert_eq!(v.settings.key.path, PathBuf::from("/x/k.pem"));
    }

    #[test]
    fn federation_issuers_load_with_their_defaults() {
        let f = file(
            ".yaml",
            "federation:\n  - issuer: https://kubernetes.default.svc\n    jwks_file: /etc/regauth/jwks.json\n    audiences: [registry.test]\n\
             \x20 - issuer: https://token.actions.githubusercontent.com\n    jwks_url: https://token.actions.githubusercontent.com/.well-known/jwks\n    audiences: [a, b]\n    account_claim: repository_owner\n    groups_claim: groups\n    algorithms: [RS256]\n    leeway_seconds: 5\n    max_lifetime_seconds: 900\n",
        );
        let v = load_with_env(Some(f.path()), &HashMap::new()).unwrap();
        let [k8s, github] = v.settings.federation.as_slice() else {
            panic!("two issuers: {:?}", v.settings.federation);
        };
        let mut expected =
            IssuerSettings::new("https://kubernetes.default.svc", &["registry.test"]);
        expected.jwks_file = Some(PathBuf::from("/etc/regauth/jwks.json"));
        assert_eq!(k8s, &expected);
        assert_eq!(k8s.algorithms, ["RS256", "ES256"]);
        assert_eq!((k8s.leeway_seconds, k8s.max_lifetime_seconds), (60, 86_400));
        assert_eq!(k8s.account_claim, "sub");
        assert_eq!(github.account_claim, "repository_owner");
        assert_eq!(github.groups_claim.as_deref(), Some("groups"));
        assert_eq!(
            (github.leeway_seconds, github.max_lifetime_seconds),
            (5, 900)
        );
        assert!(Settings::default().federation.is_empty());
    }

    /// (YAML, environment, expected text of the error)
    type BadCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

    #[test]
    fn bad_configurations_say_what_to_fix() {
        let cases: &[BadCase] = &[
            ("token:\n  ttl: 5\n", &[], "unknown field `ttl`"),
            ("tokens: {}\n", &[], "unknown field `tokens`"),
            (
                "token:\n  ttl_seconds: 30\n",
                &[],
                "token.ttl_seconds: 30 is out of range",
            ),
            ("token:\n  ttl_seconds: lots\n", &[], "ttl_seconds"),
            ("server:\n  listen: localhost\n", &[], "server.listen"),
            (
                "server:\n  admin_listen: metrics\n",
                &[],
                "server.admin_listen: \"metrics\" is not an address",
            ),
            (
                "server:\n  listen: 127.0.0.1:5001\n",
                &[("REGAUTH_SERVER__ADMIN_LISTEN", "127.0.0.1:5001")],
                "server.admin_listen: must differ from server.listen",
            ),
            ("token:\n  issuer: ' '\n", &[], "token.issuer"),
            (
                "server:\n  tls:\n    certificate: tls/server.crt\n",
                &[],
                "server.tls.key: is missing: server.tls.certificate is set",
            ),
            (
                "",
                &[("REGAUTH_SERVER__TLS__KEY", "tls/server.key")],
                "server.tls.certificate: is missing: server.tls.key is set",
            ),
            (
                "server:\n  tls:\n    cert: tls/server.crt\n",
                &[],
                "unknown field `cert`",
            ),
            (
                "key:\n  algorithm: ES257\n",
                &[],
                "key.algorithm: unknown algorithm",
            ),
            (
                "key:\n  source: vault\n",
                &[],
                "key.source \"vault\" is not one of: file, env",
            ),
            (
                "token:\n  kid_format: x\n",
                &[],
                "token.kid_format \"x\" is not one of: libtrust, thumbprint, none",
            ),
            (
                "access:\n  anonymous: [Pull]\n",
                &[],
                "access.anonymous: \"Pull\"",
            ),
            ("key:\n  source: env\n  env: ''\n", &[], "key.env"),
            (
                "key:\n  path: k\n  next: k\n",
                &[],
                "key.next: must be another file than key.path",
            ),
            (
                "key:\n  source: env\n  next: n.key\n",
                &[],
                "key.next: needs key.source: file",
            ),
            (
                "key:\n  next_certificate: n.crt\n",
                &[],
                "key.next_certificate: is set without key.next",
            ),
            (
                "key:\n  poll_interval_seconds: 0\n",
                &[],
                "key.poll_interval_seconds",
            ),
            (
                "token:\n  services: [registry.test, ' ']\n",
                &[],
                "token.services: \" \" is not a service name",
            ),
            (
                "key:\n  path: ''\n",
                &[],
                "key.path: must name the key file",
            ),
            (
                "acl: []\naccess:\n  anonymous: [pull]\n",
                &[],
                "access.anonymous: applies only without acl",
            ),
            (
                "auth:\n  refresh_ttl_seconds: 59\n",
                &[],
                "auth.refresh_ttl_seconds: must be at least 60",
            ),
            (
                "auth:\n  refresh_ttl_seconds: 40000000\n",
                &[],
                "auth.refresh_ttl_seconds: must be at least 60 and at most 31622400",
            ),
            (
                "server:\n  shutdown_timeout_seconds: 0\n",
                &[],
                "server.shutdown_timeout_seconds: must be at least 1",
            ),
            (
                "auth:\n  check_queue: 0\n",
                &[],
                "auth.check_queue: must be at least 1",
            ),
            (
                "auth:\n  limits:\n    window_seconds: 0\n",
                &[],
                "auth.limits: window_seconds, backoff_seconds and max_entries must be at least 1",
            ),
            (
                "auth:\n  limits:\n    backoff_seconds: 10\n    max_backoff_seconds: 5\n",
                &[],
                "auth.limits.max_backoff_seconds: must be at least backoff_seconds",
            ),
            (
                "server:\n  trusted_proxies: [10.0.0.0/8, proxy.internal]\n",
                &[],
                "server.trusted_proxies: \"proxy.internal\" is not a CIDR range",
            ),
            (
                "server:\n  client_ip_header: x-real-ip\n",
                &[],
                "server.client_ip_header \"x-real-ip\" is not one of",
            ),
            (
                "log:\n  format: xml\n",
                &[],
                "log.format \"xml\" is not one of: text, json",
            ),
            (
                "audit:\n  output: ''\n",
                &[],
                "audit.output: must be stderr, stdout or a file path",
            ),
            (
                "users:\n  'ci:bot': {}\n",
                &[],
                "users: \"ci:bot\" is not a user name",
            ),
            ("users:\n  '': {}\n", &[], "users: \"\" is not a user name"),
            (
                "federation:\n  - issuer: https://ci.example\n    jwks_url: https://ci.example/keys\n    audiences: []\n",
                &[],
                "federation: entry 0 (issuer \"https://ci.example\"): audiences must list at least one",
            ),
            (
                "federation:\n  - issuer: https://ci.example\n    jwks_file: k.json\n    audiences: [r]\n    algorithms: [HS256]\n",
                &[],
                "\"HS256\" is never accepted",
            ),
            (
                "federation:\n  - issuer: x\n    jwks_file: k.json\n    audience: [r]\n",
                &[],
                "unknown field `audience`",
            ),
            (
                "{}\n",
                &[("REGAUTH_TOKEN__TTL_SECONDS", "10")],
                "token.ttl_seconds",
            ),
            (
                "{}\n",
                &[("REGAUTH_TOKEN__NOPE", "1")],
                "unknown field `nope`",
            ),
        ];
        for (yaml, vars, expected) in cases {
            let f = file(".yaml", yaml);
            let err = load_with_env(Some(f.path()), &env(vars))
                .expect_err(yaml)
                .to_string();
            assert!(err.contains(expected), "{yaml:?}: {err}");
        }
    }

    /// The environment that sets the duration setting `key` to `value` (with what the
    /// setting needs beside it to be valid).
    fn duration_env(key: &str, value: u64) -> HashMap<String, String> {
        let var = format!("REGAUTH_{}", key.replace('.', "__").to_uppercase());
        let mut vars = HashMap::from([(var, value.to_string())]);
        if key.starts_with("ldap.") {
            vars.insert("REGAUTH_LDAP__URL".into(), "ldap://127.0.0.1:389".into());
            vars.insert("REGAUTH_LDAP__BASE_DN".into(), "dc=example,dc=org".into());
        }
        if key == "auth.limits.backoff_seconds" {
            vars.insert(
                "REGAUTH_AUTH__LIMITS__MAX_BACKOFF_SECONDS".into(),
                value.to_string(),
            );
        }
        vars
    }

    #[test]
    fn every_duration_is_bounded_and_the_error_names_it() {
        for (key, max) in DURATION_BOUNDS {
            let at_max = duration_env(key, max);
            load_with_env(None, &at_max)
                .unwrap_or_else(|e| panic!("{at_max:?}: the largest value is refused: {e}"));
            let over = duration_env(key, max + 1);
            let err = load_with_env(None, &over)
                .map(|_| ())
                .expect_err(key)
                .to_string();
            let expected = format!("{key}: {} is more than the {max} seconds allowed", max + 1);
            assert!(err.contains(&expected), "{over:?}: {err}");
        }
    }

    #[test]
    fn an_absurd_duration_is_an_error_at_load_not_a_panic_at_start() {
        let f = file(
            ".yaml",
            "auth:\n  cache_seconds: 18446744073709551615\n  limits:\n    window_seconds: 18446744073709551615\n",
        );
        let err = load_with_env(Some(f.path()), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth.cache_seconds: 18446744073709551615 is more than"),
            "{err}"
        );
        let err = load_with_env(
            None,
            &env(&[("REGAUTH_KEY__POLL_INTERVAL_SECONDS", "100000000000")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("key.poll_interval_seconds: 100000000000 is more than"),
            "{err}"
        );
    }

    #[test]
    fn missing_or_unknown_kind_of_file_is_named() {
        let err = load_with_env(
            Some(Path::new("/nonexistent/regauth.yaml")),
            &HashMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/regauth.yaml"), "{err}");
        let err = load_with_env(Some(Path::new("regauth.json")), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains(".yaml, .yml or .toml"), "{err}");
    }

    #[test]
    fn a_regauth_variable_that_is_no_setting_stops_the_load_and_is_named() {
        // (variables, the error must contain, or None when the load succeeds)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            (
                &[("REGAUTH_TOKEN_TTL_SECONDS", "10")],
                Some(
                    "REGAUTH_TOKEN_TTL_SECONDS is not a setting (did you mean REGAUTH_TOKEN__TTL_SECONDS?)",
                ),
            ),
            (
                &[("REGAUTH_SERVER_LISTEN", "0.0.0.0:5001")],
                Some("did you mean REGAUTH_SERVER__LISTEN?"),
            ),
            (
                &[("REGAUTH_NOTHING", "1")],
                Some("REGAUTH_NOTHING is not a setting;"),
            ),
            (&[("REGAUTH_TOKEN__TTL_SECONDS", "120")], None),
            (&[("REGAUTH_CONFIG", "/etc/regauth/regauth.yaml")], None),
            (&[("REGAUTH_SIGNING_KEY", "pem")], None),
            // The variable key.env names is the key, not a setting.
            (
                &[
                    ("REGAUTH_KEY__ENV", "REGAUTH_MY_KEY"),
                    ("REGAUTH_MY_KEY", "pem"),
                ],
                None,
            ),
            (&[("OTHER_TOKEN_TTL", "1"), ("REGAUTHX", "1")], None),
        ];
        for (vars, expected) in cases {
            let result = load_with_env(None, &env(vars));
            match expected {
                None => assert!(result.is_ok(), "{vars:?}: {:?}", result.err()),
                Some(text) => {
                    let err = result.expect_err(text).to_string();
                    assert!(err.contains(text), "{vars:?}: {err}");
                }
            }
        }
    }

    #[test]
    fn the_refresh_secret_defaults_to_the_key_directory() {
        let with = |yaml: &str| {
            let f = file(".yaml", yaml);
            load_with_env(Some(f.path()), &HashMap::new())
                .unwrap()
                .refresh_secret_file()
        };
        assert_eq!(
            with("key:\n  path: /etc/regauth/keys/signing.key\n"),
            PathBuf::from("/etc/regauth/keys/refresh.secret")
        );
        assert_eq!(with("{}"), PathBuf::from("keys/refresh.secret"));
        assert_eq!(
            with("key:\n  path: /k/signing.key\nauth:\n  refresh_secret_file: /s/r.secret\n"),
            PathBuf::from("/s/r.secret")
        );
        assert_eq!(
            with("key:\n  source: env\n  path: /k/signing.key\n"),
            PathBuf::from("keys/refresh.secret")
        );
    }
}
