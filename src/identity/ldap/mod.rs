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
//! waiting for one of the source's `pool_size` check slots (see [`super::Logins`]), connect
//! and StartTLS, the service bind, the user search, the user bind, the group search, and the
//! retry on a broken pooled connection. A login holds its slot while it uses the directory,
//! so at most `pool_size` connections are open and idle ones are reused without a second
//! wait (see `pool.rs`). A directory that cannot be reached or does not answer in time makes
//! the source unavailable (503), never a wrong password.
//!
//! Safe by default: `ldap://` to a host that is not loopback without `start_tls` is refused
//! unless `allow_plaintext` is set (every user's password would cross the network in clear),
//! and TLS without `ca_file` needs trust roots from the system: none is a start error.
//!
//! Names match as the directory matches them (`uid` is caseIgnoreMatch): the brute-force
//! limits fold case and spaces ([`fold_name`]) so that `ALICE` and ` alice` count against
//! alice.

mod pool;
mod search;
mod settings;

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};

use super::{Concurrency, Credentials, Identity, IdentitySource, Outcome};
use crate::support::tls;
use pool::{Broken, Conn, Pool, left, transport};
pub use search::escape_filter_value;
use search::{FoundUser, name_attribute};
pub use settings::{LdapSettings, LdapSettingsError};

/// The source's name.
pub const SOURCE_LDAP: &str = "ldap";

/// What `serve` and `check` say when `allow_plaintext` lets passwords cross the network in
/// clear.
pub const PLAINTEXT_WARNING: &str = "ldap.allow_plaintext is set and ldap.url is ldap:// to a \
     host that is not loopback without ldap.start_tls: every user's password crosses the \
     network in clear";

/// Longest user name sent to the directory; longer names are nobody's.
const MAX_USERNAME_BYTES: usize = 256;

/// LDAP result code for a refused bind (RFC 4511, appendix A).
const RC_INVALID_CREDENTIALS: u32 = 49;

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
    pool: Pool,
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
            pool: Pool::new(settings.pool_size),
            settings,
            bind_password,
            tls,
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
        self.identity(conn, username, &entry, deadline)
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
        self.identity(conn, account, &entry, deadline)
    }

    /// The identity of the user `entry` found for `username`: its groups (searched with the
    /// connection bound as the service account) and the directory's spelling of the name.
    fn identity(
        &self,
        conn: &mut Conn,
        username: &str,
        entry: &ldap3::SearchEntry,
        deadline: Instant,
    ) -> Result<Outcome, Broken> {
        let groups = match self.groups_of(conn, username, entry, deadline)? {
            Ok(groups) => groups,
            Err(reason) => return Ok(Outcome::Unavailable(reason)),
        };
        let subject = self.subject(username, entry);
        Ok(Outcome::Authenticated(
            Identity::user(&subject, groups).with_source(SOURCE_LDAP),
        ))
    }
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
        self.describe_by(account, Instant::now() + self.timeout)
    }

    fn describe_by(&self, account: &str, deadline: Instant) -> Outcome {
        if !usable_name(account) {
            return Outcome::NotMine;
        }
        self.with_conn(deadline, |source, conn| {
            source.look_up(conn, account, deadline)
        })
    }

    fn outage_grace(&self) -> Duration {
        Duration::from_secs(self.settings.outage_grace_seconds)
    }
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

/// TLS with the system's trust roots. Without `ca_file`, ldap3 would use the same store but
/// build an empty one, silently, when there is none (or when any certificate in it fails to
/// load): every TLS login would then fail at the handshake. Here none is a start error
/// naming `ldap.ca_file`.
fn system_tls_config(url: &str) -> Result<Arc<rustls::ClientConfig>, LdapSetupError> {
    let no_roots = |reason: String| LdapSetupError::NoTrustRoots {
        url: url.to_owned(),
        reason,
    };
    tls::client_config(tls::system_roots().map_err(no_roots)?).map_err(no_roots)
}

fn tls_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, LdapSetupError> {
    let err = |reason: String| LdapSetupError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let roots = tls::read_ca_file(path).and_then(tls::roots).map_err(err)?;
    tls::client_config(roots).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::settings::tests::settings;
    use super::*;

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
}
