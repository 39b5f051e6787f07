//! The users regauth knows: from the configuration and from an htpasswd file that hot-reloads.
//! A broken htpasswd file keeps the last good user set.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::htpasswd::{self, HtpasswdError};
use super::{AuthError, Credentials, Identity, IdentitySource, Outcome};
use crate::fs::watch::{FileWatch, WatchOptions};

/// Cost used for the dummy hash when no user sets one.
const DEFAULT_DUMMY_COST: u32 = 10;

/// The source name of users whose password is under `users:`.
pub const SOURCE_USERS: &str = "users";
/// The source name of users whose password is in the htpasswd file.
pub const SOURCE_HTPASSWD: &str = "htpasswd";

/// A user as configured under `users:`. `Debug` never shows the hash.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserSettings {
    /// bcrypt hash; omit it to give groups to a user of the htpasswd file.
    pub password: Option<SecretString>,
    /// Groups, for `match: {group: ...}` rules.
    pub groups: Vec<String>,
}

/// Errors loading users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsersError {
    /// A configured password that is not a bcrypt hash.
    #[error(
        "users.{0}.password is not a bcrypt hash ($2y$/$2b$/$2a$); create one with `regauth hash-password`"
    )]
    NotBcrypt(String),
    /// The htpasswd file cannot be read.
    #[error("cannot read htpasswd file {path}: {reason}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A bad htpasswd line.
    #[error("htpasswd file {path}: {error}")]
    Htpasswd {
        /// The path.
        path: String,
        /// The line and reason.
        error: HtpasswdError,
    },
    /// A user with a password in both places.
    #[error("user {0:?} has a password both under users: and in the htpasswd file; keep one")]
    Duplicate(String),
}

/// One user. `Debug` never shows the hash.
#[derive(Debug, Clone)]
pub struct User {
    name: String,
    hash: SecretString,
    groups: Vec<String>,
    from_file: bool,
}

impl User {
    /// The user name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bcrypt hash (to bind refresh tokens to the current password; never logged).
    pub fn password_hash(&self) -> &str {
        self.hash.expose_secret()
    }

    /// The identity this user authenticates as, stamped with where its password is.
    pub fn identity(&self) -> Identity {
        let source = if self.from_file {
            SOURCE_HTPASSWD
        } else {
            SOURCE_USERS
        };
        Identity::user(&self.name, self.groups.clone()).with_source(source)
    }
}

/// A consistent set of users, replaced as a whole on reload.
struct UserSet {
    users: HashMap<String, Arc<User>>,
    generation: u64,
    htpasswd_count: usize,
    dummy_hash: SecretString,
}

/// What the htpasswd reloads have done since start: the state a failed reload leaves, since a
/// failed reload changes no user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Reloads that could not read the file or could not use its content. The same broken
    /// content, or the same read error again, counts once however often the watch re-reads.
    pub failed_reloads: u64,
    /// Why the latest failed reload failed; `None` again once a reload succeeds.
    pub last_error: Option<String>,
    /// When the file was last re-read (or a read was attempted); `None` before any reload.
    pub last_attempt: Option<DateTime<Utc>>,
}

/// Who can sign in, and the password check.
pub struct UserDirectory {
    shared: Arc<Shared>,
    _watch: Option<FileWatch>,
}

struct Shared {
    config_users: BTreeMap<String, UserSettings>,
    htpasswd: Option<PathBuf>,
    current: ArcSwap<UserSet>,
    generation: AtomicU64,
    /// The htpasswd content behind the current set, to skip unchanged re-reads.
    last_text: Mutex<Option<String>>,
    /// What the reloads did, for [`UserDirectory::reload_status`].
    status: Mutex<ReloadStatus>,
}

fn read_htpasswd(path: &Path) -> Result<String, UsersError> {
    std::fs::read_to_string(path).map_err(|e| UsersError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn build(
    config_users: &BTreeMap<String, UserSettings>,
    htpasswd: Option<(&Path, &str)>,
    generation: u64,
) -> Result<UserSet, UsersError> {
    let from_file = match htpasswd {
        None => BTreeMap::new(),
        Some((path, text)) => htpasswd::parse(text).map_err(|error| UsersError::Htpasswd {
            path: path.display().to_string(),
            error,
        })?,
    };
    let mut users = HashMap::new();
    for (name, settings) in config_users {
        let (hash, in_file) = match (&settings.password, from_file.get(name)) {
            (Some(_), Some(_)) => return Err(UsersError::Duplicate(name.clone())),
            (Some(hash), None) if htpasswd::is_bcrypt(hash.expose_secret()) => {
                (hash.clone(), false)
            }
            (Some(_), None) => return Err(UsersError::NotBcrypt(name.clone())),
            (None, Some(hash)) => (SecretString::from(hash.as_str()), true),
            (None, None) => {
                log::debug!("users.{name} has groups but no password anywhere; it cannot sign in");
                continue;
            }
        };
        let user = User {
            name: name.clone(),
            hash,
            groups: settings.groups.clone(),
            from_file: in_file,
        };
        users.insert(name.clone(), Arc::new(user));
    }
    for (name, hash) in &from_file {
        users.entry(name.clone()).or_insert_with(|| {
            Arc::new(User {
                name: name.clone(),
                hash: SecretString::from(hash.as_str()),
                groups: Vec::new(),
                from_file: true,
            })
        });
    }
    // Unknown users are checked against a hash of the same cost as real ones, so a wrong
    // name costs as long as a wrong password.
    let cost = users
        .values()
        .filter_map(|u| u.hash.expose_secret().parse::<bcrypt::HashParts>().ok())
        .map(|p| p.get_cost())
        .max()
        .unwrap_or(DEFAULT_DUMMY_COST);
    let dummy_hash = SecretString::from(
        bcrypt::hash("regauth: no such user", cost).unwrap_or_else(|_| {
            String::from("$2b$10$.................................................")
        }),
    );
    Ok(UserSet {
        users,
        generation,
        htpasswd_count: from_file.len(),
        dummy_hash,
    })
}

impl UserDirectory {
    /// Loads the users; watches the htpasswd file when there is one.
    pub fn start(
        config_users: BTreeMap<String, UserSettings>,
        htpasswd: Option<PathBuf>,
        options: WatchOptions,
    ) -> Result<UserDirectory, UsersError> {
        let text = htpasswd.as_deref().map(read_htpasswd).transpose()?;
        let set = build(&config_users, htpasswd.as_deref().zip(text.as_deref()), 0)?;
        let shared = Arc::new(Shared {
            config_users,
            htpasswd: htpasswd.clone(),
            current: ArcSwap::from_pointee(set),
            generation: AtomicU64::new(0),
            last_text: Mutex::new(text),
            status: Mutex::new(ReloadStatus::default()),
        });
        let watch = htpasswd.map(|path| {
            let weak: Weak<Shared> = Arc::downgrade(&shared);
            FileWatch::start("regauth-htpasswd", &[path], options, move || {
                weak.upgrade().map(|s| s.reload()).is_some()
            })
        });
        Ok(UserDirectory {
            shared,
            _watch: watch,
        })
    }

    /// True when any user can sign in (or an htpasswd file is configured).
    pub fn is_configured(&self) -> bool {
        self.shared.htpasswd.is_some() || !self.shared.current.load().users.is_empty()
    }

    /// Users known now: (total, from the htpasswd file).
    pub fn counts(&self) -> (usize, usize) {
        let set = self.shared.current.load();
        (set.users.len(), set.htpasswd_count)
    }

    /// The bcrypt cost of the hash unknown users are checked against.
    pub fn dummy_cost(&self) -> u32 {
        self.shared
            .current
            .load()
            .dummy_hash
            .expose_secret()
            .parse::<bcrypt::HashParts>()
            .map(|p| p.get_cost())
            .unwrap_or(0)
    }

    /// The distinct bcrypt costs of the users' hashes, lowest first. More than one means a
    /// login's speed tells a cheap-hash user from an unknown name.
    pub fn costs(&self) -> Vec<u32> {
        let set = self.shared.current.load();
        let costs: std::collections::BTreeSet<u32> = set
            .users
            .values()
            .filter_map(|u| u.hash.expose_secret().parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .collect();
        costs.into_iter().collect()
    }

    /// The user called `name`, if any.
    pub fn lookup(&self, name: &str) -> Option<Arc<User>> {
        self.shared.current.load().users.get(name).cloned()
    }

    /// The generation of the current user set; any reload that changes the users moves it.
    pub fn generation(&self) -> u64 {
        self.shared.current.load().generation
    }

    /// Checks a password with bcrypt. Unknown users and wrong passwords fail alike, in the
    /// same time. This takes tens of milliseconds: requests go through [`super::Logins`],
    /// which caches, coalesces and bounds these checks.
    /// It answers as this source does in the chain, with the chain's equal-time check for
    /// names it does not know.
    pub fn verify(&self, name: &str, password: &str) -> Result<Identity, AuthError> {
        let credentials = Credentials::new(name, password);
        match self.authenticate(&credentials) {
            Outcome::Authenticated(identity) => Ok(identity),
            Outcome::NotMine => {
                self.equalize(&credentials);
                Err(AuthError::InvalidCredentials)
            }
            Outcome::Rejected | Outcome::RejectedAs(_) | Outcome::Unavailable(_) => {
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    /// Re-reads the htpasswd file now; true when the users changed.
    pub fn reload_now(&self) -> bool {
        self.shared.reload()
    }

    /// The htpasswd file, when one is configured.
    pub fn htpasswd_path(&self) -> Option<&Path> {
        self.shared.htpasswd.as_deref()
    }

    /// What the htpasswd reloads have done so far (all zero without an htpasswd file).
    pub fn reload_status(&self) -> ReloadStatus {
        self.shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

/// The users regauth knows itself, as the `users` identity source: a name it does not know
/// is not its user (the next source is asked); a known name with a wrong password is final.
impl IdentitySource for UserDirectory {
    fn name(&self) -> &str {
        SOURCE_USERS
    }

    fn is_configured(&self) -> bool {
        UserDirectory::is_configured(self)
    }

    fn authenticate(&self, credentials: &Credentials) -> Outcome {
        let set = self.shared.current.load_full();
        let Some(user) = set.users.get(&credentials.username) else {
            return Outcome::NotMine;
        };
        if bcrypt::verify(
            credentials.password.expose_secret(),
            user.hash.expose_secret(),
        )
        .unwrap_or(false)
        {
            Outcome::Authenticated(user.identity())
        } else {
            Outcome::Rejected
        }
    }

    fn equalize(&self, credentials: &Credentials) {
        let set = self.shared.current.load_full();
        let _ = bcrypt::verify(
            credentials.password.expose_secret(),
            set.dummy_hash.expose_secret(),
        );
    }

    fn describe(&self, account: &str) -> Outcome {
        self.lookup(account).map_or(Outcome::NotMine, |user| {
            Outcome::Authenticated(user.identity())
        })
    }

    fn generation(&self) -> u64 {
        UserDirectory::generation(self)
    }
}

impl Shared {
    fn reload(&self) -> bool {
        let Some(path) = &self.htpasswd else {
            return false;
        };
        let text = match read_htpasswd(path) {
            Ok(text) => text,
            Err(e) => {
                log::debug!("htpasswd reload skipped: {e}");
                let error = e.to_string();
                self.note_attempt(|s| {
                    if s.last_error.as_deref() != Some(error.as_str()) {
                        s.failed_reloads += 1;
                    }
                    s.last_error = Some(error);
                });
                return false;
            }
        };
        let Ok(mut last) = self.last_text.lock() else {
            return false;
        };
        if last.as_deref() == Some(text.as_str()) {
            self.note_attempt(|_| {});
            return false;
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        match build(&self.config_users, Some((path, &text)), generation) {
            Ok(set) => {
                log::info!(
                    "htpasswd file {} reloaded: {} users in all",
                    path.display(),
                    set.users.len()
                );
                self.current.store(Arc::new(set));
                *last = Some(text);
                self.note_attempt(|s| s.last_error = None);
                true
            }
            Err(e) => {
                log::error!("new content is not usable, keeping the previous users: {e}");
                // Remember it so the same broken content is logged and counted once.
                *last = Some(text);
                self.note_attempt(|s| {
                    s.failed_reloads += 1;
                    s.last_error = Some(e.to_string());
                });
                false
            }
        }
    }

    /// Stamps a reload attempt and applies its outcome to the status.
    fn note_attempt(&self, outcome: impl FnOnce(&mut ReloadStatus)) {
        if let Ok(mut status) = self.status.lock() {
            status.last_attempt = Some(Utc::now());
            outcome(&mut status);
        }
    }
}
