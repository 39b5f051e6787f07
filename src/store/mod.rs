//! The store: access tokens, robot accounts and logouts in SQLite (one server) or PostgreSQL
//! (replicas), behind an in-memory snapshot.
//!
//! - **Off by default.** Without a `store` section nothing changes. With `store.url:
//!   sqlite:PATH`, the file is created by the first token (`regauth token create` or `POST
//!   /api/v1/tokens`), not at start.
//! - **Its own runtime.** The pool lives on a small tokio runtime on a thread of its own
//!   (`regauth-store`); actix's per-worker runtimes and the command line talk to it through
//!   its handle, so a pool connection is never shared across runtimes.
//! - **Off the hot path.** A poller reads a revision counter every `store.poll_seconds`
//!   (default 1 s); when it moved (create, revoke, logout on any replica) it reloads the
//!   tokens into a snapshot that sign-ins read ([`Store::check`]): a token sign-in makes no
//!   database call. Last-use times are gathered in memory and written once per poll.
//! - **Faults.** While the store cannot be read, the snapshot keeps answering for
//!   `store.stale_seconds` after the last successful read (default 5 s), so a revocation is
//!   never missed for longer than that; after it, token sign-ins answer 503 with
//!   `Retry-After` (never 401, never counted as a failed login) until a read succeeds again.
//!   Passwords, LDAP, workload tokens and anonymous callers do not use the store.
//! - **Schema.** Embedded versioned migrations (`src/store/migrations/{sqlite,postgres}`) run
//!   at start and with `regauth store migrate`; a database whose schema is newer than this
//!   binary, or a SQLite file that is not a database, is refused at start.

mod db;
mod metrics;
pub mod secret;
mod settings;
mod snapshot;
mod sync;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;

use db::Db;
pub use db::{Location, SCHEMA_VERSION, TokenRow};
pub use metrics::StoreMetrics;
use settings::valid_name;
pub use settings::{StoreSettings, parse_duration};
pub use snapshot::Snapshot;

use crate::identity::tokens::TokenScopes;

/// Why the store cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `store` is not configured.
    #[error(
        "this command needs a store: set store.url (sqlite:PATH or postgres://...) in the settings"
    )]
    NotConfigured,
    /// A setting is wrong.
    #[error("invalid store settings: {0}")]
    Invalid(String),
    /// The database cannot be reached or a query failed.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Not a database (a corrupt SQLite file).
    #[error("the store is not a usable database: {0}; restore it from a backup or move it away")]
    Corrupt(String),
    /// Its schema is newer than this binary knows.
    #[error(
        "the store at {location} has schema version {found}, newer than this regauth knows ({SCHEMA_VERSION}): run a regauth at least as new as the one that migrated it"
    )]
    TooNew {
        /// Where.
        location: String,
        /// The version found.
        found: i64,
    },
    /// A migration failed or is missing.
    #[error("store migration: {0}")]
    Migration(String),
    /// Bad input (a scope that does not parse, a name that cannot be one).
    #[error("{0}")]
    Refused(String),
    /// The owner already has a token of that name.
    #[error("{0}")]
    Exists(String),
    /// No token has that id or name (for that owner).
    #[error("{0}")]
    NoSuchToken(String),
}

/// How many calls the store has made, and what tokens did (for metrics and benchmarks).
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Database round trips (queries and transactions), all causes.
    pub queries: AtomicU64,
    /// Token sign-ins accepted.
    pub uses: AtomicU64,
    /// Token sign-ins refused (unknown, revoked, expired, wrong owner).
    pub refused: AtomicU64,
    /// Token sign-ins answered "unavailable" (the snapshot was too old).
    pub unavailable: AtomicU64,
    /// Tokens created by this process.
    pub created: AtomicU64,
    /// Tokens revoked by this process.
    pub revoked: AtomicU64,
}

/// A new token's secret and record. The secret is shown once and never stored.
#[derive(Debug)]
pub struct Created {
    /// The record (without the secret).
    pub row: TokenRow,
    /// The secret: `rgat_...`.
    pub secret: secrecy::SecretString,
}

/// What a listed token shows (never the secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// Public id.
    pub id: String,
    /// Name.
    pub name: String,
    /// User or robot name.
    pub owner: String,
    /// `user` or `robot`.
    pub kind: &'static str,
    /// Scopes.
    pub scopes: Vec<String>,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339, or null.
    pub expires: Option<String>,
    /// RFC 3339, or null (recorded in batches, up to a few seconds late).
    pub last_used: Option<String>,
}

fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl From<&TokenRow> for Listed {
    fn from(row: &TokenRow) -> Listed {
        Listed {
            id: row.id.clone(),
            name: row.name.clone(),
            owner: row.owner.clone(),
            kind: if row.robot { "robot" } else { "user" },
            scopes: row.scopes.clone(),
            created: rfc3339(row.created_at),
            expires: row.expires_at.map(rfc3339),
            last_used: row.last_used_at.map(rfc3339),
        }
    }
}

pub(crate) struct Shared {
    location: Location,
    shown: String,
    settings: StoreSettings,
    db: Mutex<Option<Db>>,
    snapshot: ArcSwap<Snapshot>,
    /// When the snapshot was last confirmed against the database.
    synced: Mutex<Option<Instant>>,
    /// Last-use times waiting for the next write: token id → unix seconds.
    used: Mutex<HashMap<String, i64>>,
    /// When the store last failed (for logging the start and end of an outage once).
    down: Mutex<Option<Instant>>,
    counters: StoreCounters,
}

/// A handle on the store. Cheap to share; dropping the last one stops its thread.
pub struct Store {
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.shared.shown)
            .finish_non_exhaustive()
    }
}

/// How the store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `regauth serve`: migrate at start, refuse a corrupt or newer database, keep serving
    /// (token sign-ins 503) when PostgreSQL cannot be reached yet, poll for changes.
    Serve,
    /// A command: connect now (creating a SQLite file when `create`), migrate, no poller.
    Command {
        /// Create the SQLite file if missing.
        create: bool,
    },
}

impl Store {
    /// Opens the store named by `settings` (blocking: call it outside async code or at
    /// start). See [`Mode`].
    pub fn open(settings: &StoreSettings, mode: Mode) -> Result<Arc<Store>, StoreError> {
        let location = settings
            .validate()
            .map_err(|(key, e)| StoreError::Invalid(format!("{key}: {e}")))?;
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("regauth-store".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store thread: {e}")))?;
        let handle = handle_rx
            .recv()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .map_err(StoreError::Unavailable)?;
        let shown = location.display();
        let store = Arc::new(Store {
            shared: Arc::new(Shared {
                location,
                shown,
                settings: settings.clone(),
                db: Mutex::new(None),
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
                synced: Mutex::new(None),
                used: Mutex::new(HashMap::new()),
                down: Mutex::new(None),
                counters: StoreCounters::default(),
            }),
            handle,
            _stop: stop,
        });
        match mode {
            Mode::Serve => {
                let shared = Arc::clone(&store.shared);
                let first = store.block(async move {
                    match shared.connect(false).await {
                        // PostgreSQL not reachable yet: serve, and keep trying.
                        Err(StoreError::Unavailable(e)) => {
                            shared.note_down(&e);
                            Ok(())
                        }
                        Err(e) => Err(e),
                        Ok(_) => {
                            shared.sync().await;
                            Ok(())
                        }
                    }
                })?;
                first?;
                let shared = Arc::clone(&store.shared);
                let poll = Duration::from_secs(settings.poll_seconds);
                store.handle.spawn(async move {
                    let mut ticks = tokio::time::interval(poll);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        ticks.tick().await;
                        shared.sync().await;
                    }
                });
                log::info!(
                    "store: {} (schema {SCHEMA_VERSION}), polled every {} s",
                    store.shared.shown,
                    settings.poll_seconds
                );
            }
            Mode::Command { create } => {
                let shared = Arc::clone(&store.shared);
                store.block(async move { shared.connect(create).await.map(|_| ()) })??;
            }
        }
        Ok(store)
    }

    /// Runs `work` on the store's runtime and waits for it (blocking).
    fn block<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv()
            .map_err(|_| StoreError::Unavailable("the store thread stopped".into()))
    }

    /// Runs `work` on the store's runtime and awaits it from any runtime.
    async fn run<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.handle
            .spawn(work)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    /// Where the store is, for messages (a PostgreSQL URL without credentials).
    pub fn location(&self) -> &str {
        &self.shared.shown
    }

    /// True while the snapshot may answer token sign-ins (read within `store.stale_seconds`).
    pub fn is_fresh(&self) -> bool {
        self.shared.fresh()
    }

    /// What the store has done so far.
    pub fn counters(&self) -> &StoreCounters {
        &self.shared.counters
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// Applies the pending migrations (blocking); returns the versions applied.
    pub fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        let shared = Arc::clone(&self.shared);
        self.block(async move {
            let db = shared.db().await?;
            db.migrate(&shared.shown).await
        })?
    }

    /// Creates a token for `owner` (a robot account when `robot`), valid for `ttl` when
    /// given. The secret is in the answer only.
    pub async fn create(
        &self,
        owner: &str,
        robot: bool,
        name: &str,
        scopes: &[String],
        ttl: Option<Duration>,
    ) -> Result<Created, StoreError> {
        if !valid_name(owner) {
            return Err(StoreError::Refused(format!(
                "{owner:?} cannot own tokens: 1 to 128 characters, no spaces or colons"
            )));
        }
        if !valid_name(name) {
            return Err(StoreError::Refused(format!(
                "token name {name:?}: 1 to 128 characters, no spaces or colons"
            )));
        }
        let parsed = TokenScopes::parse(scopes).map_err(StoreError::Refused)?;
        let secret = secret::generate()
            .ok_or_else(|| StoreError::Unavailable("the system random generator failed".into()))?;
        let id = secret::new_id()
            .ok_or_else(|| StoreError::Unavailable("the system random generator failed".into()))?;
        let now = chrono::Utc::now().timestamp();
        let ttl_seconds = ttl.map(|t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX / 2));
        let row = TokenRow {
            id,
            name: name.to_owned(),
            owner: owner.to_owned(),
            robot,
            scopes: parsed.texts().map(String::from).collect(),
            secret_sha256: secret::to_hex(&secret::hash(&secret)),
            created_at: now,
            expires_at: ttl_seconds.map(|t| now.saturating_add(t)),
            last_used_at: None,
        };
        let shared = Arc::clone(&self.shared);
        let stored = row.clone();
        let inserted = self
            .run(async move {
                let db = shared.db_creating().await?;
                shared.count();
                db.insert(&stored).await.map_err(|e| shared.failed(e))
            })
            .await?;
        if !inserted {
            return Err(StoreError::Exists(format!(
                "{owner} already has a token named {name}: revoke it first or pick another name"
            )));
        }
        self.shared.counters.created.fetch_add(1, Ordering::Relaxed);
        log::info!(
            "audit: access token created id={} name={:?} owner={:?} kind={} scopes={:?} expires={}",
            row.id,
            row.name,
            row.owner,
            if robot { "robot" } else { "user" },
            row.scopes,
            row.expires_at
                .map(rfc3339)
                .unwrap_or_else(|| "never".into())
        );
        // This replica sees its own change at once; others at their next poll.
        self.sync_now().await;
        Ok(Created {
            row,
            secret: secrecy::SecretString::from(secret),
        })
    }

    /// The stored tokens (one owner's when given), oldest first.
    pub async fn list(&self, owner: Option<&str>) -> Result<Vec<TokenRow>, StoreError> {
        let shared = Arc::clone(&self.shared);
        let owner = owner.map(String::from);
        self.run(async move {
            let Some(db) = shared.db_if_present().await? else {
                return Ok(Vec::new());
            };
            shared.count();
            db.tokens(owner.as_deref())
                .await
                .map_err(|e| shared.failed(e))
        })
        .await
    }

    /// Revokes (deletes) the token whose id or name is `key` (of `owner` when given). A name
    /// that several owners use must be given with the owner, or by id.
    pub async fn revoke(&self, key: &str, owner: Option<&str>) -> Result<TokenRow, StoreError> {
        let shared = Arc::clone(&self.shared);
        let owned_key = key.to_owned();
        let owner = owner.map(String::from);
        let deleted = self
            .run(async move {
                let Some(db) = shared.db_if_present().await? else {
                    return Ok(Vec::new());
                };
                shared.count();
                db.delete(&owned_key, owner.as_deref())
                    .await
                    .map_err(|e| shared.failed(e))
            })
            .await?;
        match deleted.as_slice() {
            [] => Err(StoreError::NoSuchToken(format!(
                "no token with id or name {key:?}"
            ))),
            [one] => {
                self.shared.counters.revoked.fetch_add(1, Ordering::Relaxed);
                log::info!(
                    "audit: access token revoked id={} name={:?} owner={:?}",
                    one.id,
                    one.name,
                    one.owner
                );
                self.sync_now().await;
                Ok(one.clone())
            }
            several => Err(StoreError::Refused(format!(
                "{} tokens are named {key:?} (owners {}): give --user or the id",
                several.len(),
                several
                    .iter()
                    .map(|t| t.owner.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Revokes every refresh token issued to `owner` until now.
    pub async fn logout(&self, owner: &str) -> Result<i64, StoreError> {
        let shared = Arc::clone(&self.shared);
        let owner = owner.to_owned();
        let now = chrono::Utc::now().timestamp();
        let logged = owner.clone();
        self.run(async move {
            let db = shared.db_creating().await?;
            shared.count();
            db.logout(&owner, now).await.map_err(|e| shared.failed(e))
        })
        .await?;
        log::info!(
            "audit: logout owner={logged:?} refresh tokens issued up to {} revoked",
            rfc3339(now)
        );
        Ok(now)
    }

    /// Checks `password` as `username`'s access token against the snapshot (no I/O).
    pub fn check(&self, username: &str, password: &str) -> crate::identity::tokens::TokenCheck {
        self.shared.check(username, password)
    }

    /// True when a refresh token of `owner` issued at `issued_at` (unix seconds) was revoked
    /// by `regauth logout` (as the snapshot knows it).
    pub fn logged_out(&self, owner: &str, issued_at: i64) -> bool {
        self.shared
            .snapshot
            .load()
            .logouts
            .get(owner)
            .is_some_and(|before| issued_at <= *before)
    }

    /// Reads the store now (as the poller does); for commands and tests.
    pub async fn sync_now(&self) {
        let shared = Arc::clone(&self.shared);
        let _ = self
            .run(async move {
                shared.sync().await;
                Ok(())
            })
            .await;
    }
}

/// Opens the store for `regauth serve` when configured, and hands it to the logins.
pub fn open_for_serve(
    settings: Option<&StoreSettings>,
    logins: &crate::identity::Logins,
) -> Result<Option<Arc<Store>>, StoreError> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    let store = Store::open(settings, Mode::Serve)?;
    logins.set_access_tokens(Arc::clone(&store) as Arc<dyn crate::identity::tokens::AccessTokens>);
    Ok(Some(store))
}

impl crate::identity::tokens::AccessTokens for Store {
    fn recognises(&self, password: &str) -> bool {
        secret::is_well_formed(password)
    }

    fn check(&self, username: &str, password: &str) -> crate::identity::tokens::TokenCheck {
        self.shared.check(username, password)
    }
}

impl crate::issue::refresh::Logouts for Store {
    fn logged_out(&self, user: &str, issued_at: i64) -> bool {
        Store::logged_out(self, user, issued_at)
    }
}
