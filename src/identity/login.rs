//! Password logins as requests make them: brute-force limits first, then a cache of recent
//! successes, then one bcrypt check per distinct (user, password) at a time on a bounded pool.
//!
//! - A cache hit is a keyed hash and a map lookup on the async worker; it never waits for a
//!   thread. An entry in use is re-verified in the background before it expires, so steady
//!   traffic never sees every client pay bcrypt at once.
//! - Concurrent first logins with the same credentials share one check (single flight).
//! - At most `workers` checks run at once and at most `queue` more wait; past that a request
//!   is refused as busy (503) instead of queueing without bound.
//!
//! Cache keys are HMAC-SHA256 of user and password under a key drawn at process start, with
//! the user set's generation: the password is never stored, and any change to the users (a
//! reload, a new password) makes old entries unreachable.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use super::{AuthError, Credentials, Identity, LimitSettings, Limiter, UserDirectory};

/// Most successful logins remembered; the least used are evicted first.
const CACHE_CAPACITY: u64 = 10_000;

/// How logins are bounded and cached.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// How long a successful check is remembered; zero turns the cache off.
    pub cache_ttl: Duration,
    /// Checks running at once (at least 1).
    pub workers: usize,
    /// Checks waiting for a worker (at least 1).
    pub queue: usize,
    /// Brute-force limits.
    pub limits: LimitSettings,
}

/// Why a login did not produce an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// Wrong credentials (401).
    #[error(transparent)]
    Invalid(#[from] AuthError),
    /// Too many failures from this IP for this name (429).
    #[error("too many failed logins; retry in {} s", retry_after.as_secs().max(1))]
    Limited {
        /// When the lockout ends.
        retry_after: Duration,
    },
    /// Every worker busy and the queue full (503).
    #[error("too many password checks in progress")]
    Busy,
    /// The check could not run (a worker thread failed).
    #[error("the password check did not run: {0}")]
    Failed(String),
}

/// Counters, for tests, benchmarks and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginStats {
    /// bcrypt checks run (request checks and background refreshes).
    pub checks: u64,
    /// Logins answered from the cache.
    pub cache_hits: u64,
    /// Logins the cache could not answer.
    pub cache_misses: u64,
    /// Logins refused by the brute-force limits.
    pub limited: u64,
    /// Logins refused because the pool was full.
    pub shed: u64,
}

struct Verified {
    identity: Identity,
    at: Instant,
    refreshing: AtomicBool,
}

#[derive(Default)]
struct Counters {
    checks: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    limited: AtomicU64,
    shed: AtomicU64,
}

/// The login path shared by `GET /token` and the OAuth2 password grant.
pub struct Logins {
    inner: Arc<Inner>,
}

struct Inner {
    users: Arc<UserDirectory>,
    cache: Option<moka::future::Cache<[u8; 32], Arc<Verified>>>,
    ttl: Duration,
    key: hmac::Key,
    workers: Semaphore,
    /// Permits for running plus waiting checks: `workers + queue`.
    admission: Semaphore,
    limiter: Option<Limiter>,
    counters: Counters,
}

impl Logins {
    /// Logins against `users`. Fails only if the system random generator does.
    pub fn new(users: Arc<UserDirectory>, options: &LoginOptions) -> anyhow::Result<Logins> {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key)
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        let cache = (!options.cache_ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(options.cache_ttl)
                .build()
        });
        let workers = options.workers.max(1);
        Ok(Logins {
            inner: Arc::new(Inner {
                users,
                cache,
                ttl: options.cache_ttl,
                key: hmac::Key::new(hmac::HMAC_SHA256, &key),
                workers: Semaphore::new(workers),
                admission: Semaphore::new(workers + options.queue.max(1)),
                limiter: Limiter::new(&options.limits),
                counters: Counters::default(),
            }),
        })
    }

    /// The users logins are checked against.
    pub fn users(&self) -> &Arc<UserDirectory> {
        &self.inner.users
    }

    /// Decides who the caller is. Without credentials the caller is anonymous; with
    /// credentials and no users configured at all, credentials are ignored (the caller is
    /// anonymous too). `account`, when given, must name the user the credentials belong to.
    pub async fn login(
        &self,
        credentials: Option<Credentials>,
        account: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<Identity, LoginError> {
        let Some(credentials) = credentials else {
            return Ok(Identity::anonymous());
        };
        let inner = &self.inner;
        if !inner.users.is_configured() {
            log::debug!("credentials ignored: no users are configured, caller is anonymous");
            return Ok(Identity::anonymous());
        }
        let name = credentials.username.as_str();
        if let Some(limiter) = &inner.limiter
            && let Err(retry_after) = limiter.check(ip, name, Instant::now())
        {
            inner.counters.limited.fetch_add(1, Ordering::Relaxed);
            return Err(LoginError::Limited { retry_after });
        }
        let result = inner.verify(&credentials).await;
        if let Some(limiter) = &inner.limiter {
            match &result {
                Ok(_) => limiter.succeeded(ip, name),
                Err(LoginError::Invalid(_)) => {
                    if let Some(lockout) = limiter.failed(ip, name, Instant::now()) {
                        log::warn!(
                            "login failures from {} passed the limit; locked out for {} s",
                            ip.map(|i| i.to_string()).unwrap_or_else(|| "?".into()),
                            lockout.as_secs()
                        );
                    }
                }
                Err(_) => {}
            }
        }
        let identity = result?;
        match account {
            Some(account) if !account.is_empty() && account != identity.subject() => {
                Err(AuthError::AccountMismatch.into())
            }
            _ => Ok(identity),
        }
    }

    /// What the logins have done so far.
    pub fn stats(&self) -> LoginStats {
        let c = &self.inner.counters;
        LoginStats {
            checks: c.checks.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_misses: c.cache_misses.load(Ordering::Relaxed),
            limited: c.limited.load(Ordering::Relaxed),
            shed: c.shed.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    fn fingerprint(&self, user: &str, password: &SecretString, generation: u64) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&generation.to_be_bytes());
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(user.as_bytes());
        ctx.update(password.expose_secret().as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    async fn verify(self: &Arc<Self>, credentials: &Credentials) -> Result<Identity, LoginError> {
        let Some(cache) = &self.cache else {
            return self.check(credentials).await;
        };
        let key = self.fingerprint(
            &credentials.username,
            &credentials.password,
            self.users.generation(),
        );
        if let Some(entry) = cache.get(&key).await {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            self.refresh_if_due(key, &entry, credentials);
            return Ok(entry.identity.clone());
        }
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        // Concurrent misses for the same key wait for one check; only successes are kept.
        cache
            .try_get_with(key, async {
                let identity = self.check(credentials).await?;
                Ok::<_, LoginError>(Arc::new(Verified {
                    identity,
                    at: Instant::now(),
                    refreshing: AtomicBool::new(false),
                }))
            })
            .await
            .map(|entry| entry.identity.clone())
            .map_err(|e| (*e).clone())
    }

    /// An entry past three quarters of its life is re-verified in the background by the
    /// first request that uses it; until then it keeps answering.
    fn refresh_if_due(
        self: &Arc<Self>,
        key: [u8; 32],
        entry: &Verified,
        credentials: &Credentials,
    ) {
        if entry.at.elapsed() < self.ttl.mul_f64(0.75)
            || entry.refreshing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let inner = Arc::clone(self);
        let credentials = credentials.clone();
        tokio::spawn(async move {
            let Some(cache) = &inner.cache else { return };
            match inner.check(&credentials).await {
                Ok(identity) => {
                    let fresh = Arc::new(Verified {
                        identity,
                        at: Instant::now(),
                        refreshing: AtomicBool::new(false),
                    });
                    cache.insert(key, fresh).await;
                }
                // Wrong now (the users changed): let the entry go.
                Err(LoginError::Invalid(_)) => cache.invalidate(&key).await,
                // Busy or failed: the entry keeps serving; a later request tries again.
                Err(_) => {
                    if let Some(entry) = cache.get(&key).await {
                        entry.refreshing.store(false, Ordering::Release);
                    }
                }
            }
        });
    }

    /// One bcrypt check on the bounded pool.
    async fn check(&self, credentials: &Credentials) -> Result<Identity, LoginError> {
        let Ok(_admitted) = self.admission.try_acquire() else {
            self.counters.shed.fetch_add(1, Ordering::Relaxed);
            return Err(LoginError::Busy);
        };
        let _worker = self
            .workers
            .acquire()
            .await
            .map_err(|e| LoginError::Failed(e.to_string()))?;
        let n = self.counters.checks.fetch_add(1, Ordering::Relaxed) + 1;
        log::debug!("password check {n}");
        let users = Arc::clone(&self.users);
        let name = credentials.username.clone();
        let password = credentials.password.clone();
        tokio::task::spawn_blocking(move || users.verify(&name, password.expose_secret()))
            .await
            .map_err(|e| LoginError::Failed(e.to_string()))?
            .map_err(LoginError::Invalid)
    }
}

#[cfg(test)]
mod tests;
