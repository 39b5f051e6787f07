//! Password logins as requests make them: brute-force limits first, then a cache of recent
//! successes, then one check by the identity sources (see [`super::Sources`]) per distinct
//! (user, password) at a time, each source on a bounded pool.
//!
//! - A cache hit is a keyed hash and a map lookup on the async worker; it never waits for a
//!   thread. An entry in use is re-verified in the background before it expires, so steady
//!   traffic never sees every client pay bcrypt at once.
//! - Concurrent first logins with the same credentials share one check (single flight).
//! - Sources that do CPU work (bcrypt: `users`, htpasswd) run on the shared pool: at most
//!   `workers` at once and at most `queue` more waiting; past that a request is refused as
//!   busy (503) instead of queueing without bound. Network sources (`ldap`, `federation`)
//!   run on their own permits ([`super::Concurrency`]) and never hold a shared worker while
//!   they wait, so a stuck directory cannot starve local users. A login that gets no permit
//!   of a network source within its deadline is unavailable (503), not a wrong password.
//! - Permits move into the blocking task: a request that is cancelled (the client went away)
//!   does not free its permit while its check still runs.
//! - Failures count against what the sources would sign in ([`super::Budget`]): the folded
//!   account for user names, the issuer or (issuer, subject) for workload tokens.
//!
//! - A source that cannot answer (a directory down) fails the login as unavailable (503),
//!   never as a wrong password. A cached login whose lifetime ran out may still answer for
//!   that source's outage grace (`outage_grace`), but only while the source is known to be
//!   down: its last check answered "unavailable". Such answers re-check the source in the
//!   background at most every few seconds, so a recovered source is noticed without every
//!   request waiting for a timeout.
//!
//! This file holds the entry point, the limits and the cache; one check by the sources on
//! their pools is in [`chain`]. Access tokens from the store skip the login cache and the
//! check pool: see [`token`] (their owners' lookups are bounded and cached there).
//!
//! Cache keys are HMAC-SHA256 of user and password under a key drawn at process start, with
//! the sources' generations: the password is never stored, and any change to the users (a
//! reload, a new password) makes old entries unreachable.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use super::tokens::AccessTokens;
use super::{
    AuthError, Budget, Budgeted, Credentials, Identity, IdentitySource, LimitSettings, Limiter,
    Sources, UserDirectory,
};

mod chain;
mod token;

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
    /// Too many failures from this network for this account (429).
    #[error("too many failed logins; retry in {} s", retry_after.as_secs().max(1))]
    Limited {
        /// When the lockout ends.
        retry_after: Duration,
    },
    /// Every worker busy and the queue full (503).
    #[error("too many password checks in progress")]
    Busy,
    /// An identity source could not answer and no later source claimed the user (503).
    /// Never counted as a failed login.
    #[error("identity source {0} is unavailable")]
    Unavailable(String),
    /// The check could not run (a worker thread failed).
    #[error("the password check did not run: {0}")]
    Failed(String),
}

/// Counters, for tests, benchmarks and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginStats {
    /// Checks by the identity sources run (request checks and background refreshes).
    pub checks: u64,
    /// Logins answered from the cache.
    pub cache_hits: u64,
    /// Logins the cache could not answer.
    pub cache_misses: u64,
    /// Logins refused by the brute-force limits.
    pub limited: u64,
    /// Logins refused because the pool was full.
    pub shed: u64,
    /// Checks that failed because an identity source could not answer.
    pub unavailable: u64,
    /// Logins answered from an expired cache entry because its source was down.
    pub stale_answers: u64,
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
    unavailable: AtomicU64,
    stale_answers: AtomicU64,
}

/// How a cache entry may be used now.
enum Freshness {
    /// Within the cache lifetime.
    Fresh,
    /// Past the lifetime, within its source's outage grace.
    Stale,
    /// Not usable.
    Expired,
}

/// The login path shared by `GET /token` and the OAuth2 password grant.
pub struct Logins {
    inner: Arc<Inner>,
}

struct Inner {
    users: Arc<UserDirectory>,
    sources: Arc<Sources>,
    cache: Option<moka::future::Cache<[u8; 32], Arc<Verified>>>,
    /// Token owners the sources were asked about (not `users:`), for the cache lifetime
    /// exactly: `None` for an owner nobody knows. See `token.rs`.
    owners: Option<moka::future::Cache<String, Option<Identity>>>,
    ttl: Duration,
    key: hmac::Key,
    workers: Arc<Semaphore>,
    /// Permits for running plus waiting checks: `workers + queue`.
    admission: Arc<Semaphore>,
    limiter: Option<Limiter>,
    counters: Counters,
    /// Access tokens (the store), when configured: checked before the sources and the cache.
    tokens: std::sync::OnceLock<Arc<dyn AccessTokens>>,
}

impl Logins {
    /// Logins against `users` only. Fails only if the system random generator does.
    pub fn new(users: Arc<UserDirectory>, options: &LoginOptions) -> anyhow::Result<Logins> {
        let source: Arc<dyn IdentitySource> = users.clone();
        Logins::with_sources(users, Sources::new(vec![source]), options)
    }

    /// Logins against `sources`, asked in their order; `users` is the directory among them
    /// that refresh tokens and `regauth explain` look users up in. Fails only if the system
    /// random generator does.
    pub fn with_sources(
        users: Arc<UserDirectory>,
        sources: Sources,
        options: &LoginOptions,
    ) -> anyhow::Result<Logins> {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key)
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        let sources = Arc::new(sources);
        // Entries live past the cache lifetime only as long as an outage grace may use them.
        let keep = options.cache_ttl + sources.max_outage_grace();
        let cache = (!options.cache_ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(keep)
                .build()
        });
        // Never past the cache lifetime, outage or not: a removed owner loses every token
        // within it.
        let owners = (!options.cache_ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(options.cache_ttl)
                .build()
        });
        let workers = options.workers.max(1);
        Ok(Logins {
            inner: Arc::new(Inner {
                users,
                sources,
                cache,
                owners,
                ttl: options.cache_ttl,
                key: hmac::Key::new(hmac::HMAC_SHA256, &key),
                workers: Arc::new(Semaphore::new(workers)),
                admission: Arc::new(Semaphore::new(workers + options.queue.max(1))),
                limiter: Limiter::new(&options.limits),
                counters: Counters::default(),
                tokens: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Checks passwords shaped like access tokens with `tokens` (the store) from now on,
    /// before the identity sources and without the login cache. Only the first call counts.
    pub fn set_access_tokens(&self, tokens: Arc<dyn AccessTokens>) {
        let _ = self.inner.tokens.set(tokens);
    }

    /// The users regauth knows itself (one of the sources).
    pub fn users(&self) -> &Arc<UserDirectory> {
        &self.inner.users
    }

    /// The identity sources, in the order they are asked.
    pub fn sources(&self) -> &Arc<Sources> {
        &self.inner.sources
    }

    /// Decides who the caller is. Without credentials the caller is anonymous; with
    /// credentials and no users configured at all, credentials are ignored (the caller is
    /// anonymous too), except an access token's, which the store checks. `account`, when
    /// given, must be the user name of the credentials or the account they authenticate as.
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
        // A token-shaped password is the store's to check even without users (robots).
        let token = inner
            .tokens
            .get()
            .filter(|t| t.recognises(credentials.password.expose_secret()));
        if token.is_none() && !inner.sources.is_configured() {
            log::debug!("credentials ignored: no users are configured, caller is anonymous");
            return Ok(Identity::anonymous());
        }
        let name = credentials.username.as_str();
        // What a failure counts against, before anything is verified: the canonical account,
        // or for a workload token its claimed subject (only ever locked by failures of tokens
        // whose signature verified).
        // A workload token is decoded here once: its claim set goes on to its source's check.
        let budgeted = inner
            .limiter
            .as_ref()
            .map(|_| inner.sources.budget(&credentials));
        let budget = budgeted.as_ref().map(Budgeted::budget);
        if let (Some(limiter), Some(budget)) = (&inner.limiter, budget)
            && let Err(retry_after) = limiter.check(ip, budget, Instant::now())
        {
            inner.counters.limited.fetch_add(1, Ordering::Relaxed);
            return Err(LoginError::Limited { retry_after });
        }
        let result = match token {
            Some(tokens) => inner.token_login(tokens.as_ref(), &credentials).await,
            None => inner.verify(&credentials, budgeted.as_ref()).await,
        };
        if let (Some(limiter), Some(budget)) = (&inner.limiter, budget) {
            match &result {
                Ok(_) => limiter.succeeded(ip, budget),
                Err((LoginError::Invalid(_), counted)) => {
                    let counted = counted.as_ref().unwrap_or(budget);
                    // A token whose signature did not verify counts against its issuer: that
                    // budget is decided only now, so a garbage token never holds up a real one.
                    if counted != budget
                        && let Err(retry_after) = limiter.check(ip, counted, Instant::now())
                    {
                        inner.counters.limited.fetch_add(1, Ordering::Relaxed);
                        return Err(LoginError::Limited { retry_after });
                    }
                    if let Some(lockout) = limiter.failed(ip, counted, Instant::now()) {
                        log::warn!(
                            "login failures from {} passed the limit; locked out for {} s",
                            ip.map(|i| super::network_of(i).to_string())
                                .unwrap_or_else(|| "?".into()),
                            lockout.as_secs()
                        );
                    }
                }
                Err(_) => {}
            }
        }
        let result = result.map_err(|(error, _)| error);
        let identity = result?;
        // The name the client signed in with (which the source accepted: `oidc` for a
        // workload token) or the account it maps to.
        match account {
            Some(account)
                if !account.is_empty() && account != identity.subject() && account != name =>
            {
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
            unavailable: c.unavailable.load(Ordering::Relaxed),
            stale_answers: c.stale_answers.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    fn fingerprint(&self, user: &str, password: &SecretString) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for generation in self.sources.generations() {
            ctx.update(&generation.to_be_bytes());
        }
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(user.as_bytes());
        ctx.update(password.expose_secret().as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    fn freshness(&self, entry: &Verified) -> Freshness {
        if entry
            .identity
            .expiry()
            .is_some_and(|until| until <= Instant::now())
        {
            return Freshness::Expired;
        }
        let age = entry.at.elapsed();
        if age < self.ttl {
            Freshness::Fresh
        } else if age < self.ttl + self.sources.outage_grace(entry.identity.source()) {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }

    /// The caller, or why not with the budget the source counted the failure against.
    /// `read`: what [`Sources::budget`] read of the credentials, if it was asked.
    async fn verify(
        self: &Arc<Self>,
        credentials: &Credentials,
        read: Option<&Budgeted>,
    ) -> Result<Identity, Refused> {
        let Some(cache) = &self.cache else {
            return self.check(credentials, read).await;
        };
        let key = self.fingerprint(&credentials.username, &credentials.password);
        let mut stale = None;
        if let Some(entry) = cache.get(&key).await {
            match self.freshness(&entry) {
                Freshness::Fresh => {
                    self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                    self.recheck_if_due(key, &entry, credentials);
                    return Ok(entry.identity.clone());
                }
                Freshness::Stale if self.sources.is_down(entry.identity.source()) => {
                    self.counters.stale_answers.fetch_add(1, Ordering::Relaxed);
                    self.recheck_if_due(key, &entry, credentials);
                    log::debug!(
                        "login answered from an expired cache entry: source {} is down",
                        entry.identity.source()
                    );
                    return Ok(entry.identity.clone());
                }
                // The source was up at its last check: ask it, and fall back to this entry
                // only if it turns out to be down.
                Freshness::Stale => {
                    cache.invalidate(&key).await;
                    stale = Some(entry);
                }
                Freshness::Expired => cache.invalidate(&key).await,
            }
        }
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        // Concurrent misses for the same key wait for one check; only successes are kept.
        let checked = cache
            .try_get_with(key, async {
                let identity = self.check(credentials, read).await?;
                Ok::<_, Refused>(Arc::new(Verified {
                    identity,
                    at: Instant::now(),
                    refreshing: AtomicBool::new(false),
                }))
            })
            .await
            .map(|entry| entry.identity.clone())
            .map_err(|e| (*e).clone());
        match (checked, stale) {
            (Err((LoginError::Unavailable(source), _)), Some(entry))
                if source == entry.identity.source() =>
            {
                self.counters.stale_answers.fetch_add(1, Ordering::Relaxed);
                log::info!("login answered from an expired cache entry: source {source} is down");
                let identity = entry.identity.clone();
                cache.insert(key, entry).await;
                Ok(identity)
            }
            (checked, _) => checked,
        }
    }

    /// An entry past three quarters of its life, or answering during its source's outage,
    /// is re-checked in the background by the first request that uses it; until then it
    /// keeps answering. While the entry's source is down, re-checks are spaced out.
    fn recheck_if_due(
        self: &Arc<Self>,
        key: [u8; 32],
        entry: &Verified,
        credentials: &Credentials,
    ) {
        if entry.at.elapsed() < self.ttl.mul_f64(0.75) {
            return;
        }
        let source = entry.identity.source();
        if self.sources.is_down(source) && !self.sources.probe_due(source) {
            return;
        }
        if entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(self);
        let credentials = credentials.clone();
        tokio::spawn(async move {
            let Some(cache) = &inner.cache else { return };
            match inner.check(&credentials, None).await {
                Ok(identity) => {
                    let fresh = Arc::new(Verified {
                        identity,
                        at: Instant::now(),
                        refreshing: AtomicBool::new(false),
                    });
                    cache.insert(key, fresh).await;
                }
                // Wrong now (the users changed): let the entry go.
                Err((LoginError::Invalid(_), _)) => cache.invalidate(&key).await,
                // Busy, failed or unavailable: the entry keeps serving as long as it may; a
                // later request tries again.
                Err(_) => {
                    if let Some(entry) = cache.get(&key).await {
                        entry.refreshing.store(false, Ordering::Release);
                    }
                }
            }
        });
    }
}

/// A failed check: the error, and the budget the source counted it against when that is
/// not the login's own ([`Outcome::RejectedAs`]).
type Refused = (LoginError, Option<Budget>);

#[cfg(test)]
mod tests;
