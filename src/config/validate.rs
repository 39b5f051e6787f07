//! Checking [`Settings`] into [`Validated`]: one function per section, each returning the
//! typed values its section yields, with messages that name the setting and say what to fix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::{
    ConfigError, MAX_REFRESH_TTL_SECONDS, MAX_TTL_SECONDS, MIN_TTL_SECONDS, Settings, Validated,
    invalid,
};
use crate::identity::federation::{self, IssuerSettings};
use crate::identity::{AuthSettings, LdapSettings, UserSettings};
use crate::issue::TokenSettings;
use crate::keys::{Algorithm, KeySettings, KeySource};
use crate::policy::{AccessSettings, Acl, RuleSettings};
use crate::server::proxy::TrustedProxies;
use crate::server::settings::{ServerSettings, TlsSettings};
use crate::server::tls::TlsFiles;
use crate::store::StoreSettings;
use crate::telemetry::audit::AuditSettings;
use crate::token::scope::{Action, Actions};

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
    /// Checks every value and returns what the service needs.
    pub fn validate(self, zero_config: bool) -> Result<Validated, ConfigError> {
        check_duration_bounds(&self)?;
        let server = server(&self.server)?;
        let token = token(self.token)?;
        let (key, algorithm) = key(self.key)?;
        let (acl, default_rules) = rules(self.acl.as_deref(), &self.access)?;
        let auth = auth(self.auth)?;
        let audit = audit(self.audit)?;
        let ldap = ldap(self.ldap)?;
        let users = users(self.users)?;
        let federation = federation(self.federation)?;
        let tls = tls(&self.server.tls)?;
        let store = store(self.store)?;
        Ok(Validated {
            listen: server.listen,
            admin_listen: server.admin_listen,
            proxies: server.proxies,
            trusted_proxies: self.server.trusted_proxies,
            shutdown_delay: server.shutdown_delay,
            shutdown_timeout: server.shutdown_timeout,
            tls,
            token,
            key,
            algorithm,
            acl,
            default_rules,
            users,
            auth,
            ldap,
            federation,
            audit,
            log_format: self.log.format,
            store,
            zero_config,
        })
    }

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
}

/// Every duration within [`DURATION_BOUNDS`]; the error names the setting.
fn check_duration_bounds(settings: &Settings) -> Result<(), ConfigError> {
    for ((key, max), value) in DURATION_BOUNDS.iter().zip(settings.durations()) {
        if value > *max {
            return Err(invalid(
                key,
                format!("{value} is more than the {max} seconds allowed"),
            ));
        }
    }
    Ok(())
}

/// `server.*` (but `server.tls`, see [`tls`]), checked.
struct Server {
    listen: SocketAddr,
    admin_listen: Option<SocketAddr>,
    proxies: TrustedProxies,
    shutdown_delay: Duration,
    shutdown_timeout: Duration,
}

fn server(server: &ServerSettings) -> Result<Server, ConfigError> {
    let listen: SocketAddr = server.listen.parse().map_err(|_| {
        invalid(
            "server.listen",
            format!(
                "{:?} is not an address and port such as 127.0.0.1:5001 or [::]:5001",
                server.listen
            ),
        )
    })?;
    let admin_listen = match &server.admin_listen {
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
    if server.shutdown_timeout_seconds == 0 {
        return Err(invalid(
            "server.shutdown_timeout_seconds",
            "must be at least 1 so requests in flight can finish",
        ));
    }
    let proxies = TrustedProxies::parse(&server.trusted_proxies, server.client_ip_header)
        .map_err(|e| invalid("server.trusted_proxies", e.to_string()))?;
    Ok(Server {
        listen,
        admin_listen,
        proxies,
        shutdown_delay: Duration::from_secs(server.shutdown_delay_seconds),
        shutdown_timeout: Duration::from_secs(server.shutdown_timeout_seconds),
    })
}

/// `server.tls.*`: the certificate and key files, when HTTPS is on.
fn tls(tls: &TlsSettings) -> Result<Option<TlsFiles>, ConfigError> {
    let empty =
        |p: &Option<std::path::PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str().is_empty());
    if empty(&tls.certificate) || empty(&tls.key) {
        return Err(invalid("server.tls", "certificate and key must name files"));
    }
    match (&tls.certificate, &tls.key) {
        (None, None) => Ok(None),
        (Some(certificate), Some(key)) => Ok(Some(TlsFiles {
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

fn token(token: TokenSettings) -> Result<TokenSettings, ConfigError> {
    if token.issuer.trim().is_empty() {
        return Err(invalid(
            "token.issuer",
            "must not be empty; set it to the registry's auth.token.issuer",
        ));
    }
    let ttl = token.ttl_seconds;
    if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&ttl) {
        return Err(invalid(
            "token.ttl_seconds",
            format!(
                "{ttl} is out of range; use {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS} (clients treat shorter tokens as 60 s)"
            ),
        ));
    }
    if let Some(bad) = token.services.iter().find(|s| s.trim().is_empty()) {
        return Err(invalid(
            "token.services",
            format!("{bad:?} is not a service name"),
        ));
    }
    Ok(token)
}

/// `key.*`, and `key.algorithm` parsed.
fn key(key: KeySettings) -> Result<(KeySettings, Option<Algorithm>), ConfigError> {
    let algorithm = match &key.algorithm {
        None => None,
        Some(a) => Some(
            a.parse::<Algorithm>()
                .map_err(|e| invalid("key.algorithm", e.to_string()))?,
        ),
    };
    if key.source == KeySource::Env && key.env.trim().is_empty() {
        return Err(invalid(
            "key.env",
            "must name the environment variable that holds the key",
        ));
    }
    if key.source == KeySource::File && key.path.as_os_str().is_empty() {
        return Err(invalid("key.path", "must name the key file"));
    }
    match &key.next {
        Some(_) if key.source != KeySource::File => {
            return Err(invalid(
                "key.next",
                "needs key.source: file (an environment key cannot be swapped without a restart)",
            ));
        }
        Some(next) if *next == key.path => {
            return Err(invalid(
                "key.next",
                "must be another file than key.path; the next key becomes current when moved over key.path",
            ));
        }
        None if key.next_certificate.is_some() => {
            return Err(invalid(
                "key.next_certificate",
                "is set without key.next; name the next key's file too",
            ));
        }
        _ => {}
    }
    if key.poll_interval_seconds == 0 {
        return Err(invalid("key.poll_interval_seconds", "must be at least 1"));
    }
    Ok((key, algorithm))
}

/// `acl` and `access.*`: the compiled rules, and the actions anonymous callers get when the
/// default rules apply (`None` when `acl` lists the rules).
fn rules(
    acl: Option<&[RuleSettings]>,
    access: &AccessSettings,
) -> Result<(Acl, Option<Actions>), ConfigError> {
    match (acl, &access.anonymous) {
        (Some(_), Some(_)) => Err(invalid(
            "access.anonymous",
            "applies only without acl; add a rule with `match: {account: \"\"}` instead",
        )),
        (Some(rules), None) => {
            let acl = Acl::compile(rules).map_err(|e| ConfigError::Invalid {
                key: "acl",
                message: e.to_string(),
            })?;
            Ok((acl, None))
        }
        (None, anonymous) => {
            let default = vec!["pull".to_owned()];
            let actions = anonymous
                .as_ref()
                .unwrap_or(&default)
                .iter()
                .map(|a| {
                    a.parse::<Action>()
                        .map_err(|reason| invalid("access.anonymous", format!("{a:?}: {reason}")))
                })
                .collect::<Result<Actions, _>>()?;
            Ok((Acl::default_rules(&actions), Some(actions)))
        }
    }
}

fn auth(auth: AuthSettings) -> Result<AuthSettings, ConfigError> {
    if auth.check_queue == 0 {
        return Err(invalid(
            "auth.check_queue",
            "must be at least 1; it bounds the password checks waiting for a worker",
        ));
    }
    let limits = &auth.limits;
    if limits.failures > 0 {
        if limits.window_seconds == 0 || limits.backoff_seconds == 0 || limits.max_entries == 0 {
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
    if !(60..=MAX_REFRESH_TTL_SECONDS).contains(&auth.refresh_ttl_seconds) {
        return Err(invalid(
            "auth.refresh_ttl_seconds",
            format!("must be at least 60 and at most {MAX_REFRESH_TTL_SECONDS} (a year)"),
        ));
    }
    Ok(auth)
}

fn audit(audit: AuditSettings) -> Result<AuditSettings, ConfigError> {
    if audit.enabled && audit.output.trim().is_empty() {
        return Err(invalid(
            "audit.output",
            "must be stderr, stdout or a file path (or set audit.enabled: false)",
        ));
    }
    Ok(audit)
}

fn ldap(ldap: Option<LdapSettings>) -> Result<Option<LdapSettings>, ConfigError> {
    if let Some(ldap) = &ldap {
        ldap.validate().map_err(|e| invalid(e.key, e.message))?;
    }
    Ok(ldap)
}

fn users(
    users: BTreeMap<String, UserSettings>,
) -> Result<BTreeMap<String, UserSettings>, ConfigError> {
    if let Some(name) = users.keys().find(|n| n.is_empty() || n.contains(':')) {
        return Err(invalid(
            "users",
            format!("{name:?} is not a user name (it must be non-empty and without ':')"),
        ));
    }
    Ok(users)
}

fn federation(issuers: Vec<IssuerSettings>) -> Result<Vec<IssuerSettings>, ConfigError> {
    federation::validate(&issuers).map_err(|e| ConfigError::Invalid {
        key: "federation",
        message: e.to_string(),
    })?;
    Ok(issuers)
}

fn store(store: Option<StoreSettings>) -> Result<Option<StoreSettings>, ConfigError> {
    if let Some(store) = &store {
        store
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
    }
    Ok(store)
}
