//! The `ldap` identity source: users in an LDAP directory (OpenLDAP, Active Directory).
//!
//! A login searches the user with the service account (`bind_dn`), binds as the entry it
//! found with the given password, then collects the user's groups (a group search, or an
//! attribute of the user's entry). Empty passwords are refused before anything is sent: an
//! LDAP bind with a DN and no password is an "unauthenticated bind" that many servers accept.
//!
//! The user name is escaped per RFC 4515 before it goes into a filter, so `*)(uid=*` matches
//! nobody. Exactly one entry must match; more is refused (and logged) as a wrong password.
//!
//! Calls block. One login has one deadline, `timeout_seconds`, for everything it does:
//! waiting for one of the source's `pool_size` check slots (see [`super::Logins`]), the
//! connection pool, connect and StartTLS, the service bind, the user search, the user bind,
//! the group search, and the retry on a broken pooled connection. Connections are kept in a
//! pool of at most `pool_size`. A directory that cannot be reached or does not answer in time
//! makes the source unavailable (503), never a wrong password.
//!
//! Safe by default: `ldap://` to a host that is not loopback without `start_tls` is refused
//! unless `allow_plaintext` is set (every user's password would cross the network in clear),
//! and TLS without `ca_file` needs trust roots from the system: none is a start error.
//!
//! Names match as the directory matches them (`uid` is caseIgnoreMatch): the brute-force
//! limits fold case and spaces ([`fold_name`]) so that `ALICE` and ` alice` count against
//! alice.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ldap3::{LdapConn, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{Concurrency, Credentials, Identity, IdentitySource, Outcome};

/// The source's name.
pub const SOURCE_LDAP: &str = "ldap";

/// What `serve` and `check` say when `allow_plaintext` lets passwords cross the network in
/// clear.
pub const PLAINTEXT_WARNING: &str = "ldap.allow_plaintext is set and ldap.url is ldap:// to a \
     host that is not loopback without ldap.start_tls: every user's password crosses the \
     network in clear";

/// Longest user name sent to the directory; longer names are nobody's.
const MAX_USERNAME_BYTES: usize = 256;

/// Most groups collected for one user.
const MAX_GROUPS: usize = 1_000;

/// LDAP result codes regauth tells apart (RFC 4511, appendix A).
const RC_SIZE_LIMIT_EXCEEDED: u32 = 4;
const RC_INVALID_CREDENTIALS: u32 = 49;

/// `ldap.*`: where the directory is and how users and groups are found in it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapSettings {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything is sent.
    pub start_tls: bool,
    /// Allow `ldap://` without `start_tls` to a host that is not loopback: passwords then
    /// cross the network in clear. `serve` and `check` warn when it is used.
    pub allow_plaintext: bool,
    /// PEM certificates that sign the directory's certificate (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// The service account that searches users and groups (absent: anonymous searches).
    pub bind_dn: Option<String>,
    /// A file holding the service account's password (its first line).
    pub bind_password_file: Option<PathBuf>,
    /// Where users are searched (the whole subtree).
    pub base_dn: String,
    /// The filter that finds a user; `{username}` is replaced by the escaped user name.
    pub user_filter: String,
    /// A filter that finds the user's groups; `{dn}` is the user's DN, `{username}` the
    /// user name, both escaped.
    pub group_filter: Option<String>,
    /// Where groups are searched (default: `base_dn`).
    pub group_base_dn: Option<String>,
    /// The attribute of a group entry that names the group.
    pub group_name_attribute: String,
    /// An attribute of the user's entry listing its groups' DNs (`memberOf`); each group is
    /// named by the value of its DN's first component (`cn=dev,ou=groups,...` is `dev`).
    pub groups_attribute: Option<String>,
    /// Seconds one login may spend on the directory, all operations together (waiting for a
    /// slot and a connection, connect, binds, searches, one retry).
    pub timeout_seconds: u64,
    /// Connections to the directory kept open at most; also the directory logins checked at
    /// once (more wait for a slot within their deadline).
    pub pool_size: usize,
    /// Seconds cached logins of directory users keep working past `auth.cache_seconds`
    /// while the directory is unavailable; 0 turns this off.
    pub outage_grace_seconds: u64,
}

impl Default for LdapSettings {
    fn default() -> Self {
        LdapSettings {
            url: String::new(),
            start_tls: false,
            allow_plaintext: false,
            ca_file: None,
            bind_dn: None,
            bind_password_file: None,
            base_dn: String::new(),
            user_filter: "(uid={username})".into(),
            group_filter: None,
            group_base_dn: None,
            group_name_attribute: "cn".into(),
            groups_attribute: None,
            timeout_seconds: 5,
            pool_size: 4,
            outage_grace_seconds: 0,
        }
    }
}

/// A setting that cannot work: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct LdapSettingsError {
    /// The setting, e.g. `ldap.url`.
    pub key: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn bad(key: &'static str, message: impl Into<String>) -> Result<(), LdapSettingsError> {
    Err(LdapSettingsError {
        key,
        message: message.into(),
    })
}

impl LdapSettings {
    /// Checks what can be checked without reading files or the network.
    pub fn validate(&self) -> Result<(), LdapSettingsError> {
        let scheme = self
            .url
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("ldap") => {}
            Some("ldaps") if self.start_tls => {
                return bad(
                    "ldap.start_tls",
                    "an ldaps:// URL is already TLS; use ldap:// with start_tls, or ldaps:// without",
                );
            }
            Some("ldaps") => {}
            _ => {
                return bad(
                    "ldap.url",
                    format!("{:?} must start with ldap:// or ldaps://", self.url),
                );
            }
        }
        if url_host(&self.url).is_none() {
            return bad("ldap.url", format!("{:?} names no host", self.url));
        }
        if self.sends_plaintext() && !self.allow_plaintext {
            return bad(
                "ldap.url",
                format!(
                    "{:?} sends every password in clear to a host that is not loopback; set \
                     ldap.start_tls: true, use an ldaps:// URL, or (on a network you trust) \
                     set ldap.allow_plaintext: true",
                    self.url
                ),
            );
        }
        if self.base_dn.trim().is_empty() {
            return bad("ldap.base_dn", "must not be empty");
        }
        if !self.user_filter.contains("{username}") {
            return bad(
                "ldap.user_filter",
                format!("{:?} must contain {{username}}", self.user_filter),
            );
        }
        check_parentheses("ldap.user_filter", &self.user_filter)?;
        if let Some(filter) = &self.group_filter {
            if !filter.contains("{dn}") && !filter.contains("{username}") {
                return bad(
                    "ldap.group_filter",
                    format!("{filter:?} must contain {{dn}} or {{username}}"),
                );
            }
            check_parentheses("ldap.group_filter", filter)?;
            if self.groups_attribute.is_some() {
                return bad(
                    "ldap.groups_attribute",
                    "set group_filter or groups_attribute, not both",
                );
            }
        }
        if self.group_name_attribute.trim().is_empty() {
            return bad("ldap.group_name_attribute", "must not be empty");
        }
        match (&self.bind_dn, &self.bind_password_file) {
            (Some(_), None) => return bad("ldap.bind_password_file", "required with bind_dn"),
            (None, Some(_)) => return bad("ldap.bind_dn", "required with bind_password_file"),
            _ => {}
        }
        if self.timeout_seconds == 0 {
            return bad("ldap.timeout_seconds", "must be at least 1");
        }
        if self.pool_size == 0 {
            return bad("ldap.pool_size", "must be at least 1");
        }
        Ok(())
    }
}

impl LdapSettings {
    /// True when passwords would cross the network in clear: `ldap://` without `start_tls`
    /// to a host that is not loopback (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn sends_plaintext(&self) -> bool {
        let plain = self
            .url
            .split_once("://")
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("ldap"));
        plain && !self.start_tls && !url_host(&self.url).is_some_and(is_loopback)
    }

    /// True when the connection uses TLS (`ldaps://` or StartTLS).
    pub fn uses_tls(&self) -> bool {
        self.start_tls
            || self
                .url
                .split_once("://")
                .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("ldaps"))
    }
}

/// True for an authority (`host`, `host:port`, `[v6]:port`, with optional `user@`) naming a
/// loopback host.
fn is_loopback(authority: &str) -> bool {
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(h, _)| h),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    // A percent-encoded host is never taken for loopback.
    if host.contains('%') {
        return false;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    (!authority.is_empty()).then_some(authority)
}

fn check_parentheses(setting: &'static str, filter: &str) -> Result<(), LdapSettingsError> {
    let mut depth = 0i64;
    for c in filter.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            break;
        }
    }
    if depth != 0 || !filter.starts_with('(') {
        return bad(
            setting,
            format!("{filter:?} is not a parenthesised LDAP filter"),
        );
    }
    Ok(())
}

/// Escapes a value for an LDAP filter (RFC 4515): `*`, `(`, `)`, `\` and NUL become `\2a`,
/// `\28`, `\29`, `\5c` and `\00`.
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// Errors setting the source up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LdapSetupError {
    /// Settings that cannot work.
    #[error(transparent)]
    Invalid(#[from] LdapSettingsError),
    /// The password file cannot be read, or is empty.
    #[error("ldap.bind_password_file {path}: {reason}")]
    PasswordFile {
        /// The path.
        path: String,
        /// Why (never the content).
        reason: String,
    },
    /// TLS is used, `ca_file` is not set and the system has no trust roots (the `FROM
    /// scratch` image has none).
    #[error(
        "ldap: {url} uses TLS but the system has no trust roots ({reason}); set ldap.ca_file \
         to the PEM file of the CA that signs the directory's certificate"
    )]
    NoTrustRoots {
        /// `ldap.url`.
        url: String,
        /// What the system store said.
        reason: String,
    },
    /// The CA file cannot be read or holds no certificate.
    #[error("ldap.ca_file {path}: {reason}")]
    CaFile {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A connection and who it is bound as.
struct Conn {
    ldap: LdapConn,
    /// True while bound as the service account (after a user bind it is the user).
    as_service: bool,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Conn>,
    in_use: usize,
}

/// Why one attempt did not produce an outcome: the connection failed (`retry`: not by
/// timing out, so a fresh connection may do better).
struct Broken(String, bool);

/// The LDAP directory as an identity source. `Debug` never shows the service password.
pub struct LdapSource {
    settings: LdapSettings,
    bind_password: Option<SecretString>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// One login's deadline for everything it does on the directory.
    timeout: Duration,
    /// The attribute `user_filter` matches the user name against, when it has one simple
    /// `(attr={username})` part: its value is the account's spelling of the name.
    name_attribute: Option<String>,
    pool: Mutex<Pool>,
    returned: Condvar,
}

impl std::fmt::Debug for LdapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSource")
            .field("settings", &self.settings)
            .field(
                "bind_password",
                &self.bind_password.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

impl LdapSource {
    /// Validates the settings and reads the password and CA files. Connects to nothing.
    pub fn new(settings: LdapSettings) -> Result<LdapSource, LdapSetupError> {
        settings.validate()?;
        let bind_password = settings
            .bind_password_file
            .as_ref()
            .map(|path| read_password(path))
            .transpose()?;
        let tls = match &settings.ca_file {
            Some(path) => Some(tls_config(path)?),
            None if settings.uses_tls() => Some(system_tls_config(&settings.url)?),
            None => None,
        };
        Ok(LdapSource {
            timeout: Duration::from_secs(settings.timeout_seconds),
            name_attribute: name_attribute(&settings.user_filter),
            settings,
            bind_password,
            tls,
            pool: Mutex::new(Pool::default()),
            returned: Condvar::new(),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &LdapSettings {
        &self.settings
    }

    /// Connects and binds as the service account once, for `regauth check`. The outer
    /// error: the directory cannot be reached; the inner one: it refused the bind.
    pub fn probe(&self) -> Result<Result<(), String>, String> {
        let deadline = Instant::now() + self.timeout;
        let mut conn = self.connect(deadline).map_err(|Broken(e, _)| e)?;
        let bound = self
            .bind_service(&mut conn, deadline)
            .map_err(|Broken(e, _)| e)?;
        let _ = conn.ldap.unbind();
        Ok(bound)
    }

    fn connect(&self, deadline: Instant) -> Result<Conn, Broken> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(left(deadline)?)
            .set_starttls(self.settings.start_tls);
        if let Some(config) = &self.tls {
            settings = settings.set_config(Arc::clone(config));
        }
        let ldap = LdapConn::with_settings(settings, &self.settings.url).map_err(|e| {
            Broken(
                format!("cannot connect to {}: {e}", self.settings.url),
                false,
            )
        })?;
        Ok(Conn {
            ldap,
            as_service: false,
        })
    }

    /// Binds as the service account (or anonymously without one). `Ok(Err(_))`: the
    /// directory answered and refused.
    fn bind_service(
        &self,
        conn: &mut Conn,
        deadline: Instant,
    ) -> Result<Result<(), String>, Broken> {
        let (dn, password) = match (&self.settings.bind_dn, &self.bind_password) {
            (Some(dn), Some(password)) => (dn.as_str(), password.expose_secret()),
            _ => ("", ""),
        };
        let result = conn
            .ldap
            .with_timeout(left(deadline)?)
            .simple_bind(dn, password)
            .map_err(transport)?;
        if result.rc == 0 {
            conn.as_service = true;
            Ok(Ok(()))
        } else {
            conn.as_service = false;
            Ok(Err(format!(
                "the service account bind was refused (result code {}: {})",
                result.rc,
                result.text.trim()
            )))
        }
    }

    /// A connection from the pool, or room to open one; waits until `deadline` for one.
    fn checkout(&self, deadline: Instant) -> Result<Option<Conn>, String> {
        let mut pool = self
            .pool
            .lock()
            .map_err(|_| "the connection pool is poisoned".to_owned())?;
        loop {
            if let Some(conn) = pool.idle.pop() {
                pool.in_use += 1;
                return Ok(Some(conn));
            }
            if pool.in_use < self.settings.pool_size {
                pool.in_use += 1;
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "all {} directory connections stayed busy until the login's deadline",
                    self.settings.pool_size,
                ));
            }
            pool = self
                .returned
                .wait_timeout(pool, deadline - now)
                .map_err(|_| "the connection pool is poisoned".to_owned())?
                .0;
        }
    }

    fn checkin(&self, conn: Option<Conn>) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.in_use = pool.in_use.saturating_sub(1);
            if let Some(conn) = conn {
                pool.idle.push(conn);
            }
        }
        self.returned.notify_one();
    }

    /// Runs `step` on a pooled connection bound as the service account. A pooled
    /// connection that turns out broken (the directory restarted, an idle timeout) is
    /// replaced by a new one once.
    fn with_conn(
        &self,
        deadline: Instant,
        step: impl Fn(&Self, &mut Conn) -> Result<Outcome, Broken>,
    ) -> Outcome {
        for attempt in 0..2 {
            let pooled = match self.checkout(deadline) {
                Ok(pooled) => pooled,
                Err(reason) => return Outcome::Unavailable(reason),
            };
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => match self.connect(deadline) {
                    Ok(conn) => conn,
                    Err(Broken(reason, _)) => {
                        self.checkin(None);
                        return Outcome::Unavailable(reason);
                    }
                },
            };
            let outcome = if conn.as_service {
                step(self, &mut conn)
            } else {
                match self.bind_service(&mut conn, deadline) {
                    Ok(Ok(())) => step(self, &mut conn),
                    Ok(Err(refused)) => Ok(Outcome::Unavailable(refused)),
                    Err(broken) => Err(broken),
                }
            };
            match outcome {
                Ok(outcome) => {
                    self.checkin(Some(conn));
                    return outcome;
                }
                Err(Broken(reason, retry)) => {
                    self.checkin(None);
                    if reused && retry && attempt == 0 {
                        log::debug!("a pooled directory connection failed ({reason}); retrying");
                        continue;
                    }
                    return Outcome::Unavailable(reason);
                }
            }
        }
        Outcome::Unavailable("the directory connection failed twice".into())
    }

    /// Searches the user with the service account: `Ok(None)` when no entry matches.
    fn find_user(
        &self,
        conn: &mut Conn,
        username: &str,
        deadline: Instant,
    ) -> Result<FoundUser, Broken> {
        let filter = self
            .settings
            .user_filter
            .replace("{username}", &escape_filter_value(username));
        let mut attrs: Vec<&str> = Vec::new();
        if let Some(attr) = &self.settings.groups_attribute {
            attrs.push(attr);
        }
        if let Some(attr) = &self.name_attribute {
            attrs.push(attr);
        }
        if attrs.is_empty() {
            // RFC 4511: "1.1" asks for no attributes.
            attrs.push("1.1");
        }
        let result = conn
            .ldap
            .with_search_options(SearchOptions::new().sizelimit(2))
            .with_timeout(left(deadline)?)
            .search(&self.settings.base_dn, Scope::Subtree, &filter, attrs)
            .map_err(transport)?;
        let (entries, status) = (result.0, result.1);
        let entries: Vec<SearchEntry> = entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(SearchEntry::construct)
            .collect();
        if status.rc == RC_SIZE_LIMIT_EXCEEDED || entries.len() > 1 {
            return Ok(FoundUser::Several);
        }
        if status.rc != 0 {
            return Ok(FoundUser::Failed(format!(
                "the user search under {:?} failed (result code {}: {})",
                self.settings.base_dn,
                status.rc,
                status.text.trim()
            )));
        }
        Ok(entries
            .into_iter()
            .next()
            .map_or(FoundUser::None, FoundUser::One))
    }

    /// The user's groups, with the connection bound as the service account.
    fn groups_of(
        &self,
        conn: &mut Conn,
        username: &str,
        entry: &SearchEntry,
        deadline: Instant,
    ) -> Result<Result<Vec<String>, String>, Broken> {
        if let Some(attr) = &self.settings.groups_attribute {
            let mut groups: Vec<String> = attribute(entry, attr)
                .iter()
                .map(|dn| group_name_from_dn(dn))
                .take(MAX_GROUPS)
                .collect();
            groups.sort();
            groups.dedup();
            return Ok(Ok(groups));
        }
        let Some(filter) = &self.settings.group_filter else {
            return Ok(Ok(Vec::new()));
        };
        let filter = filter
            .replace("{dn}", &escape_filter_value(&entry.dn))
            .replace("{username}", &escape_filter_value(username));
        let base = self
            .settings
            .group_base_dn
            .as_deref()
            .unwrap_or(&self.settings.base_dn);
        let name_attr = self.settings.group_name_attribute.as_str();
        let result = conn
            .ldap
            .with_search_options(SearchOptions::new().sizelimit(MAX_GROUPS as i32))
            .with_timeout(left(deadline)?)
            .search(base, Scope::Subtree, &filter, vec![name_attr])
            .map_err(transport)?;
        if result.1.rc != 0 && result.1.rc != RC_SIZE_LIMIT_EXCEEDED {
            return Ok(Err(format!(
                "the group search under {base:?} failed (result code {}: {})",
                result.1.rc,
                result.1.text.trim()
            )));
        }
        let mut groups: Vec<String> = result
            .0
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(SearchEntry::construct)
            .filter_map(|group| attribute(&group, name_attr).first().cloned())
            .collect();
        groups.sort();
        groups.dedup();
        Ok(Ok(groups))
    }

    fn subject(&self, username: &str, entry: &SearchEntry) -> String {
        // The directory's spelling of the name, when it is the same name: `ALICE`, ` alice`
        // and `alice` find the same entry, and rules see one account.
        let folded = fold_name(username);
        self.name_attribute
            .as_deref()
            .and_then(|attr| {
                attribute(entry, attr)
                    .iter()
                    .find(|v| fold_name(v) == folded)
                    .cloned()
            })
            .unwrap_or_else(|| username.to_owned())
    }

    fn login(
        &self,
        conn: &mut Conn,
        credentials: &Credentials,
        deadline: Instant,
    ) -> Result<Outcome, Broken> {
        let username = credentials.username.as_str();
        let entry = match self.find_user(conn, username, deadline)? {
            FoundUser::None => return Ok(Outcome::NotMine),
            FoundUser::Several => {
                log::warn!(
                    "ldap: more than one entry matches the user filter for a login; refused \
                     (make ldap.user_filter match exactly one entry)"
                );
                return Ok(Outcome::Rejected);
            }
            FoundUser::Failed(reason) => return Ok(Outcome::Unavailable(reason)),
            FoundUser::One(entry) => entry,
        };
        // From here the connection is bound as the user, whatever the answer.
        conn.as_service = false;
        let bound = conn
            .ldap
            .with_timeout(left(deadline)?)
            .simple_bind(&entry.dn, credentials.password.expose_secret())
            .map_err(transport)?;
        match bound.rc {
            0 => {}
            RC_INVALID_CREDENTIALS => return Ok(Outcome::Rejected),
            rc => {
                log::info!(
                    "ldap: the directory refused a user bind with result code {rc} ({}); \
                     answered as a wrong password",
                    bound.text.trim()
                );
                return Ok(Outcome::Rejected);
            }
        }
        // Groups are searched as the service account: users may not read them.
        if self.settings.group_filter.is_some()
            && let Err(refused) = self.bind_service(conn, deadline)?
        {
            return Ok(Outcome::Unavailable(refused));
        }
        let groups = match self.groups_of(conn, username, &entry, deadline)? {
            Ok(groups) => groups,
            Err(reason) => return Ok(Outcome::Unavailable(reason)),
        };
        let subject = self.subject(username, &entry);
        Ok(Outcome::Authenticated(
            Identity::user(&subject, groups).with_source(SOURCE_LDAP),
        ))
    }

    fn look_up(
        &self,
        conn: &mut Conn,
        account: &str,
        deadline: Instant,
    ) -> Result<Outcome, Broken> {
        let entry = match self.find_user(conn, account, deadline)? {
            FoundUser::None | FoundUser::Several => return Ok(Outcome::NotMine),
            FoundUser::Failed(reason) => return Ok(Outcome::Unavailable(reason)),
            FoundUser::One(entry) => entry,
        };
        let groups = match self.groups_of(conn, account, &entry, deadline)? {
            Ok(groups) => groups,
            Err(reason) => return Ok(Outcome::Unavailable(reason)),
        };
        let subject = self.subject(account, &entry);
        Ok(Outcome::Authenticated(
            Identity::user(&subject, groups).with_source(SOURCE_LDAP),
        ))
    }
}

enum FoundUser {
    None,
    One(SearchEntry),
    Several,
    Failed(String),
}

fn usable_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_USERNAME_BYTES
}

impl IdentitySource for LdapSource {
    fn name(&self) -> &str {
        SOURCE_LDAP
    }

    fn authenticate(&self, credentials: &Credentials) -> Outcome {
        self.authenticate_by(credentials, Instant::now() + self.timeout)
    }

    fn authenticate_by(&self, credentials: &Credentials, deadline: Instant) -> Outcome {
        if !usable_name(&credentials.username) {
            return Outcome::NotMine;
        }
        if credentials.password.expose_secret().is_empty() {
            // Never bind without a password: that is an unauthenticated bind, which
            // succeeds on many servers.
            return Outcome::Rejected;
        }
        self.with_conn(deadline, |source, conn| {
            source.login(conn, credentials, deadline)
        })
    }

    fn fold_name(&self, name: &str) -> String {
        fold_name(name)
    }

    fn concurrency(&self) -> Option<Concurrency> {
        Some(Concurrency {
            checks: self.settings.pool_size,
            deadline: self.timeout,
        })
    }

    fn describe(&self, account: &str) -> Outcome {
        if !usable_name(account) {
            return Outcome::NotMine;
        }
        let deadline = Instant::now() + self.timeout;
        self.with_conn(deadline, |source, conn| {
            source.look_up(conn, account, deadline)
        })
    }

    fn outage_grace(&self) -> Duration {
        Duration::from_secs(self.settings.outage_grace_seconds)
    }
}

/// What is left of the login's deadline; past it, the directory did not answer in time.
fn left(deadline: Instant) -> Result<Duration, Broken> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < Duration::from_millis(1) {
        return Err(Broken(
            "the directory did not answer within the login's deadline (ldap.timeout_seconds)"
                .into(),
            false,
        ));
    }
    Ok(left)
}

/// A user name as LDAP's caseIgnoreMatch compares it (RFC 4518 string preparation, on the
/// safe side: folding more than the directory does only merges brute-force budgets):
/// characters mapped to nothing (controls, soft hyphen, zero-width and variation selectors)
/// dropped, every kind of white space taken as a space, leading and trailing spaces dropped,
/// inner runs collapsed to one, and the case folded.
pub fn fold_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut space = false;
    for c in name.chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if c.is_control() || mapped_to_nothing(c) {
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.extend(c.to_lowercase());
    }
    out
}

/// RFC 3454 table B.1: characters string preparation maps to nothing.
fn mapped_to_nothing(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{1806}'
            | '\u{180B}'..='\u{180D}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
    )
}

/// Transport failures: the directory could not be reached or did not answer in time.
fn transport(e: LdapError) -> Broken {
    match e {
        LdapError::Timeout { .. } => Broken("the directory did not answer in time".into(), false),
        other => Broken(format!("directory connection failed: {other}"), true),
    }
}

/// The values of `name` in `entry`, matched without regard to case.
fn attribute<'a>(entry: &'a SearchEntry, name: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map_or(&[], |(_, v)| v.as_slice())
}

/// `cn=dev,ou=groups,dc=example,dc=org` → `dev` (escaped characters kept as written).
fn group_name_from_dn(dn: &str) -> String {
    let mut first = String::new();
    let mut escaped = false;
    for c in dn.chars() {
        if escaped {
            first.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '+' => break,
            c => first.push(c),
        }
    }
    match first.split_once('=') {
        Some((_, value)) if !value.trim().is_empty() => value.trim().to_owned(),
        _ => dn.to_owned(),
    }
}

/// The attribute of a simple `(attr={username})` part of `filter`.
fn name_attribute(filter: &str) -> Option<String> {
    let at = filter.find("={username})")?;
    let start = filter[..at].rfind('(')? + 1;
    let attr = &filter[start..at];
    (!attr.is_empty() && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .then(|| attr.to_owned())
}

fn read_password(path: &std::path::Path) -> Result<SecretString, LdapSetupError> {
    let err = |reason: String| LdapSetupError::PasswordFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let password = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if password.is_empty() {
        return Err(err(
            "the file is empty; put the password on its first line".into()
        ));
    }
    Ok(SecretString::from(password.to_owned()))
}

/// TLS with the system's trust roots (`SSL_CERT_FILE`, `SSL_CERT_DIR` or the platform
/// store). Without `ca_file`, ldap3 would use the same store but build an empty one, silently,
/// when there is none (or when any certificate in it fails to load): every TLS login would
/// then fail at the handshake. Here none is a start error naming `ldap.ca_file`.
fn system_tls_config(url: &str) -> Result<Arc<rustls::ClientConfig>, LdapSetupError> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let reason = match loaded.errors.first() {
            Some(e) => format!("no usable certificate: {e}"),
            None => "no certificate found".to_owned(),
        };
        return Err(LdapSetupError::NoTrustRoots {
            url: url.to_owned(),
            reason,
        });
    }
    client_config(roots).map_err(|reason| LdapSetupError::NoTrustRoots {
        url: url.to_owned(),
        reason,
    })
}

fn client_config(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, String> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

fn tls_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, LdapSetupError> {
    let err = |reason: String| LdapSetupError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| err(format!("not PEM certificates: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| err(format!("unusable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(err("holds no certificate".into()));
    }
    client_config(roots).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LdapSettings {
        LdapSettings {
            url: "ldap://127.0.0.1:389".into(),
            base_dn: "dc=example,dc=org".into(),
            ..LdapSettings::default()
        }
    }

    #[test]
    fn filter_metacharacters_in_user_names_are_escaped() {
        assert_eq!(escape_filter_value("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(escape_filter_value("a\\b\0"), "a\\5cb\\00");
        assert_eq!(escape_filter_value("jöhn.doe"), "jöhn.doe");
    }

    #[test]
    fn settings_that_cannot_work_are_refused_naming_the_setting() {
        assert_eq!(settings().validate(), Ok(()));
        assert!(
            LdapSettings {
                group_filter: Some("(member={dn})".into()),
                ..settings()
            }
            .validate()
            .is_ok()
        );
        let cases: [(LdapSettings, &str); 9] = [
            (
                LdapSettings {
                    url: "http://x".into(),
                    ..settings()
                },
                "ldap.url",
            ),
            (
                LdapSettings {
                    url: "ldap://".into(),
                    ..settings()
                },
                "names no host",
            ),
            (
                LdapSettings {
                    url: "ldaps://x".into(),
                    start_tls: true,
                    ..settings()
                },
                "ldap.start_tls",
            ),
            (
                LdapSettings {
                    user_filter: "(uid=alice)".into(),
                    ..settings()
                },
                "{username}",
            ),
            (
                LdapSettings {
                    user_filter: "(uid={username}".into(),
                    ..settings()
                },
                "parenthesised",
            ),
            (
                LdapSettings {
                    base_dn: " ".into(),
                    ..settings()
                },
                "ldap.base_dn",
            ),
            (
                LdapSettings {
                    bind_dn: Some("cn=svc".into()),
                    ..settings()
                },
                "ldap.bind_password_file",
            ),
            (
                LdapSettings {
                    group_filter: Some("(member={dn})".into()),
                    groups_attribute: Some("memberOf".into()),
                    ..settings()
                },
                "ldap.groups_attribute",
            ),
            (
                LdapSettings {
                    timeout_seconds: 0,
                    ..settings()
                },
                "ldap.timeout_seconds",
            ),
        ];
        for (bad, expected) in cases {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
    }

    #[test]
    fn group_names_come_from_the_first_component_of_their_dn() {
        assert_eq!(
            group_name_from_dn("cn=dev,ou=groups,dc=example,dc=org"),
            "dev"
        );
        assert_eq!(
            group_name_from_dn("CN=Domain Users,CN=Users,DC=corp"),
            "Domain Users"
        );
        assert_eq!(group_name_from_dn("cn=a\\,b,dc=x"), "a,b");
        assert_eq!(group_name_from_dn("plain"), "plain");
    }

    #[test]
    fn the_name_attribute_is_read_from_a_simple_filter_part() {
        assert_eq!(name_attribute("(uid={username})").as_deref(), Some("uid"));
        assert_eq!(
            name_attribute("(&(objectClass=user)(sAMAccountName={username}))").as_deref(),
            Some("sAMAccountName")
        );
        assert_eq!(
            name_attribute("(|(uid={username})(mail={username}))").as_deref(),
            Some("uid")
        );
        assert_eq!(name_attribute("(uid=*{username})"), None);
    }

    #[test]
    fn the_password_file_is_read_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret-service\n").unwrap();
        let source = LdapSource::new(LdapSettings {
            bind_dn: Some("cn=svc,dc=example,dc=org".into()),
            bind_password_file: Some(path.clone()),
            ..settings()
        })
        .unwrap();
        assert_eq!(
            source.bind_password.as_ref().unwrap().expose_secret(),
            "s3cret-service"
        );
        assert!(!format!("{source:?}").contains("s3cret"));
        std::fs::write(&path, "\n").unwrap();
        let err = LdapSource::new(LdapSettings {
            bind_dn: Some("cn=svc".into()),
            bind_password_file: Some(path),
            ..settings()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("empty"), "{err}");
        let err = LdapSource::new(LdapSettings {
            bind_dn: Some("cn=svc".into()),
            bind_password_file: Some(dir.path().join("missing")),
            ..settings()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("ldap.bind_password_file"), "{err}");
    }

    #[test]
    fn an_empty_password_is_refused_without_contacting_the_directory() {
        // Port 9 on loopback: nothing listens; a bind attempt would be "unavailable".
        let source = LdapSource::new(LdapSettings {
            url: "ldap://127.0.0.1:9".into(),
            ..settings()
        })
        .unwrap();
        assert_eq!(
            source.authenticate(&Credentials::new("alice", "")),
            Outcome::Rejected
        );
        assert!(matches!(
            source.authenticate(&Credentials::new("alice", "x")),
            Outcome::Unavailable(_)
        ));
    }

    #[test]
    fn a_login_whose_deadline_has_passed_sends_nothing_to_the_directory() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let source = LdapSource::new(LdapSettings {
            url: format!("ldap://{}", listener.local_addr().unwrap()),
            ..settings()
        })
        .unwrap();
        // The login's one deadline is spent (e.g. waiting for a slot): no connect, no bind.
        let outcome = source.authenticate_by(&Credentials::new("alice", "x"), Instant::now());
        match outcome {
            Outcome::Unavailable(reason) => {
                assert!(reason.contains("ldap.timeout_seconds"), "{reason}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(listener.accept().is_err(), "nothing connected");
    }

    #[test]
    fn names_fold_as_case_ignore_match_compares_them() {
        for variant in [
            "alice",
            "ALICE",
            " alice",
            "Alice ",
            "  aLiCe\t",
            "al\u{00AD}ice",
        ] {
            assert_eq!(fold_name(variant), "alice", "{variant:?}");
        }
        assert_eq!(fold_name("  Mary   ANN  smith "), "mary ann smith");
        assert_ne!(fold_name("mary ann"), fold_name("maryann"));
    }

    #[test]
    fn the_chain_keys_on_the_fold_of_every_configured_source() {
        let ldap: Arc<dyn IdentitySource> = Arc::new(LdapSource::new(settings()).unwrap());
        let users: Arc<dyn IdentitySource> = Arc::new(
            crate::identity::UserDirectory::start(
                [(
                    "bob".to_owned(),
                    crate::identity::UserSettings {
                        password: Some(bcrypt::hash("pw", 4).unwrap().into()),
                        groups: vec![],
                    },
                )]
                .into_iter()
                .collect(),
                None,
                crate::fs::watch::WatchOptions::default(),
            )
            .unwrap(),
        );
        let local_only = super::super::Sources::new(vec![Arc::clone(&users)]);
        assert_eq!(
            local_only.canonical_name(" Bob"),
            " Bob",
            "users match exactly"
        );
        let both = super::super::Sources::standard(None, users, Some(ldap));
        assert_eq!(
            both.canonical_name(" Bob"),
            "bob",
            "with LDAP, its fold applies"
        );
    }

    #[test]
    fn plaintext_to_a_host_that_is_not_loopback_needs_allow_plaintext() {
        let with = |url: &str, start_tls: bool, allow_plaintext: bool| LdapSettings {
            url: url.into(),
            start_tls,
            allow_plaintext,
            ..settings()
        };
        for url in [
            "ldap://127.0.0.1",
            "ldap://127.8.9.10:389",
            "ldap://localhost:389",
            "ldap://LOCALHOST",
            "ldap://[::1]:389",
            "ldap://[::ffff:127.0.0.1]:389",
        ] {
            assert_eq!(with(url, false, false).validate(), Ok(()), "{url}");
        }
        for url in [
            "ldap://ldap.example.org",
            "ldap://10.0.0.5:389",
            "ldap://[2001:db8::1]:389",
            "ldap://localhost.example.org",
            "ldap://user@ldap.example.org",
            "ldap://127%2e0.0.1",
        ] {
            let refused = with(url, false, false).validate().unwrap_err();
            assert_eq!(refused.key, "ldap.url", "{url}");
            assert!(refused.message.contains("ldap.allow_plaintext"), "{url}");
            assert_eq!(with(url, true, false).validate(), Ok(()), "{url}");
            assert_eq!(with(url, false, true).validate(), Ok(()), "{url}");
            assert!(with(url, false, true).sends_plaintext(), "{url}");
        }
        assert_eq!(
            with("ldaps://ldap.example.org", false, false).validate(),
            Ok(())
        );
    }
}
