//! An issuer's public keys: a JWK Set read from a file or fetched over HTTP(S), kept in
//! memory, and refreshed when a token names a key it does not have.
//!
//! - A file is re-read when its modification time or size changes (checked on each use,
//!   one `stat`), so a rotated key file needs no restart.
//! - A URL is fetched on first use, again once the keys are [`STALE_AFTER`] old (at most
//!   once per [`MIN_REFETCH`]), and again when a token names an unknown `kid`: at most once
//!   per [`MIN_KID_REFETCH`] per issuer, one fetch at a time, whatever tokens arrive. A
//!   made-up `kid` therefore delays a real rotation by [`MIN_KID_REFETCH`] at most, and the
//!   endpoint sees at most one fetch per [`MIN_KID_REFETCH`] from each replica (30 a minute).
//!   A failed fetch keeps the keys already known.
//! - SIGHUP re-reads a file at once ([`KeyStore::reread_file`]).
//! - Symmetric (`oct`) keys, encryption keys, RSA keys under 2048 bits and curves this
//!   server cannot verify are skipped with a log line: a JWKS only ever adds public
//!   signature keys.

mod keys;
mod source;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::Algorithm;

use crate::clock::Clock;

/// Largest JWKS document read, from a file or over HTTP.
pub const MAX_JWKS_BYTES: u64 = 256 * 1024;
/// Most keys kept from one JWKS.
pub const MAX_KEYS: usize = 64;
/// Shortest time between two refreshes of one issuer's keys for staleness.
pub const MIN_REFETCH: TimeDelta = TimeDelta::seconds(60);
/// Shortest time between two fetches of one issuer's keys for tokens with an unknown `kid`:
/// how long a made-up `kid` can delay a legitimately rotated key, and the most often such
/// tokens make the JWKS endpoint be fetched.
pub const MIN_KID_REFETCH: TimeDelta = TimeDelta::seconds(2);
/// Shortest time between two attempts while no key was ever loaded.
pub const MIN_RETRY_WITHOUT_KEYS: TimeDelta = TimeDelta::seconds(10);
/// Fetched keys older than this are fetched again on next use (failures keep them).
pub const STALE_AFTER: TimeDelta = TimeDelta::minutes(15);
/// Longest a JWKS fetch may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why keys could not be loaded. The text names the source, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The file cannot be read.
    #[error("cannot read JWKS file {path}: {reason}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The HTTP fetch failed (connection, timeout, status, size).
    #[error("cannot fetch JWKS from {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The document is larger than [`MAX_JWKS_BYTES`].
    #[error("JWKS from {0} is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge(String),
    /// Not a JSON object with a `keys` array.
    #[error("JWKS from {from} is not a JWK Set: {reason}")]
    Parse {
        /// Where it came from.
        from: String,
        /// Why.
        reason: String,
    },
    /// A JWK Set without one usable signature key.
    #[error("JWKS from {0} has no usable signature key (RSA ≥ 2048 bits, EC P-256/P-384, Ed25519)")]
    NoKeys(String),
    /// The CA file for the URL cannot be used.
    #[error("federation ca_file {path}: {reason}")]
    Ca {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
}

pub use keys::{KeyKind, PublicKey, parse};
pub use source::Source;
use source::{load, stamp};

#[derive(Default)]
struct Loaded {
    keys: Vec<Arc<PublicKey>>,
    at: Option<DateTime<Utc>>,
    file_stamp: Option<(SystemTime, u64)>,
}

#[derive(Default)]
struct Attempts {
    last: Option<DateTime<Utc>>,
}

/// Counters, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyStats {
    /// Loads tried (file reads or HTTP fetches).
    pub loads: u64,
    /// Loads that failed.
    pub failures: u64,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// Keys that may verify the token (one for a known `kid`; the fitting ones without).
    Found(Vec<Arc<PublicKey>>),
    /// The `kid` is known but its key cannot verify this `alg`.
    Mismatch,
    /// No key has this `kid`, even after a refresh (or a refresh was not allowed yet).
    Unknown,
    /// No key was ever loaded and loading failed.
    Unavailable(JwksError),
}

/// Why keys are loaded again; it sets the shortest time since the last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// First use, stale keys, a changed file: [`MIN_REFETCH`].
    Due,
    /// A token names a `kid` the keys lack: [`MIN_KID_REFETCH`].
    UnknownKid,
    /// SIGHUP: now.
    Hangup,
}

/// One issuer's keys.
pub struct KeyStore {
    source: Source,
    clock: Arc<dyn Clock>,
    loaded: ArcSwap<Loaded>,
    attempts: Mutex<Attempts>,
    loads: AtomicU64,
    failures: AtomicU64,
}

impl KeyStore {
    /// A store for `source`. A file is read now (an unusable file is an error); a URL is
    /// fetched on first use.
    pub fn new(source: Source, clock: Arc<dyn Clock>) -> Result<KeyStore, JwksError> {
        let store = KeyStore {
            source,
            clock,
            loaded: ArcSwap::from_pointee(Loaded::default()),
            attempts: Mutex::new(Attempts::default()),
            loads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        };
        if let Source::File(path) = &store.source {
            let file_stamp = stamp(path);
            let keys = store.load_counted()?;
            store.loaded.store(Arc::new(Loaded {
                keys,
                at: Some(store.clock.now()),
                file_stamp,
            }));
        }
        Ok(store)
    }

    /// Where the keys come from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// What the loads have done.
    pub fn stats(&self) -> KeyStats {
        KeyStats {
            loads: self.loads.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    /// Keys known now.
    pub fn len(&self) -> usize {
        self.loaded.load().keys.len()
    }

    /// True before any key was loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads the keys now if allowed (see the module docs), for a first fetch at start.
    pub fn refresh(&self) -> Result<(), JwksError> {
        self.reload(Trigger::Due, true, |_| true).map(|_| ())
    }

    /// Re-reads a JWKS file now, whatever its time stamp says (SIGHUP), and says in one
    /// phrase what was read and the outcome; `None` for a URL (fetched as the module docs
    /// say). A file that cannot be used keeps the keys already known.
    pub fn reread_file(&self) -> Option<String> {
        let Source::File(path) = &self.source else {
            return None;
        };
        let outcome = match self.reload(Trigger::Hangup, true, |_| true) {
            Ok(Some(loaded)) => format!("{} key(s)", loaded.keys.len()),
            Ok(None) => format!("unchanged, {} key(s)", self.len()),
            Err(e) => format!("not usable ({e}), keeping {} key(s)", self.len()),
        };
        Some(format!("JWKS file {}: {outcome}", path.display()))
    }

    /// The keys that may verify a token with `kid` and `alg`. May read the file or fetch
    /// the URL (blocking, bounded by [`FETCH_TIMEOUT`]).
    pub fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let mut loaded = self.loaded.load_full();
        if self.needs_reload(&loaded) {
            // Stale keys still verify: then nobody waits for a load another request runs.
            let wait = loaded.keys.is_empty();
            match self.reload(Trigger::Due, wait, |_| true) {
                Ok(Some(fresh)) => loaded = fresh,
                Ok(None) => loaded = self.loaded.load_full(),
                Err(e) if loaded.keys.is_empty() => return Lookup::Unavailable(e),
                Err(e) => log::warn!("keeping the keys known: {e}"),
            }
        }
        if loaded.keys.is_empty() {
            return Lookup::Unavailable(JwksError::NoKeys(self.source.describe()));
        }
        let Some(kid) = kid else {
            let fitting: Vec<_> = loaded
                .keys
                .iter()
                .filter(|k| k.accepts(alg))
                .cloned()
                .collect();
            return if fitting.is_empty() {
                Lookup::Mismatch
            } else {
                Lookup::Found(fitting)
            };
        };
        let find = |keys: &Loaded| {
            keys.keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .cloned()
        };
        let key = match find(&loaded) {
            Some(key) => key,
            None => {
                // Someone may have refreshed meanwhile; else one refresh, if due.
                let fresh = match self
                    .reload(Trigger::UnknownKid, true, |current| find(current).is_none())
                {
                    Ok(Some(fresh)) => fresh,
                    Ok(None) => self.loaded.load_full(),
                    Err(e) => {
                        log::warn!("unknown kid and the keys could not be refreshed: {e}");
                        return Lookup::Unknown;
                    }
                };
                match find(&fresh) {
                    Some(key) => key,
                    None => return Lookup::Unknown,
                }
            }
        };
        if key.accepts(alg) {
            Lookup::Found(vec![key])
        } else {
            Lookup::Mismatch
        }
    }

    /// A changed file, keys never loaded, or fetched keys gone stale.
    fn needs_reload(&self, loaded: &Loaded) -> bool {
        match &self.source {
            Source::File(path) => stamp(path) != loaded.file_stamp,
            Source::Url { .. } => match loaded.at {
                None => true,
                Some(at) => self.clock.now() - at >= STALE_AFTER,
            },
        }
    }

    /// Loads once more if `still_needed(current keys)` and the last attempt is old enough
    /// for `trigger`; `Ok(None)` when nothing was loaded. One load at a time: callers that
    /// `wait` for a load in progress then see its result and do not load again; the others
    /// go on at once.
    fn reload(
        &self,
        trigger: Trigger,
        wait: bool,
        still_needed: impl Fn(&Loaded) -> bool,
    ) -> Result<Option<Arc<Loaded>>, JwksError> {
        let mut attempts = match self.attempts.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) if !wait => return Ok(None),
            Err(TryLockError::WouldBlock) => {
                self.attempts.lock().unwrap_or_else(PoisonError::into_inner)
            }
        };
        let current = self.loaded.load_full();
        if !still_needed(&current) {
            return Ok(None);
        }
        let now = self.clock.now();
        let gap = match trigger {
            Trigger::Hangup => TimeDelta::zero(),
            _ if current.keys.is_empty() => MIN_RETRY_WITHOUT_KEYS,
            Trigger::UnknownKid => MIN_KID_REFETCH,
            Trigger::Due => MIN_REFETCH,
        };
        let file_changed = match &self.source {
            Source::File(path) => stamp(path) != current.file_stamp,
            Source::Url { .. } => false,
        };
        if !file_changed
            && trigger != Trigger::Hangup
            && attempts.last.is_some_and(|last| now - last < gap)
        {
            return Ok(None);
        }
        attempts.last = Some(now);
        let file_stamp = match &self.source {
            Source::File(path) => stamp(path),
            Source::Url { .. } => None,
        };
        let keys = match self.load_counted() {
            Ok(keys) => keys,
            Err(e) => {
                if file_stamp.is_some() {
                    // Remember the broken file's stamp: it is not read again until it changes.
                    self.loaded.store(Arc::new(Loaded {
                        keys: current.keys.clone(),
                        at: current.at,
                        file_stamp,
                    }));
                }
                return Err(e);
            }
        };
        log::info!(
            "loaded {} key(s) from {}",
            keys.len(),
            self.source.describe()
        );
        let fresh = Arc::new(Loaded {
            keys,
            at: Some(now),
            file_stamp,
        });
        self.loaded.store(Arc::clone(&fresh));
        Ok(Some(fresh))
    }

    fn load_counted(&self) -> Result<Vec<Arc<PublicKey>>, JwksError> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        load(&self.source).inspect_err(|e| {
            self.failures.fetch_add(1, Ordering::Relaxed);
            log::warn!("{e}");
        })
    }
}
