//! Where users come from: the identity-source seam, and the order sources are asked in.
//!
//! A source turns a user name and password into an [`Outcome`]: who the caller is, a wrong
//! password, "the source cannot answer now", or "not mine" (ask the next source). Sources are
//! blocking calls (bcrypt, a directory round trip); [`super::Logins`] runs each on a blocking
//! thread behind its limits, cache and single flight. A source that does CPU work (bcrypt)
//! shares the bounded check pool (`auth.check_workers`); a source that waits on the network
//! says so ([`IdentitySource::concurrency`]) and gets its own permits, so a slow directory or
//! JWKS endpoint can hold only its own logins up, never those of local users.
//!
//! Each source also says how it matches names ([`IdentitySource::fold_name`]) and what a
//! token it claims counts against ([`IdentitySource::token_claim`]): the brute-force limits
//! key on that, not on what the client typed. What a source read to tell (a workload token's
//! claim set) goes back to its check ([`IdentitySource::authenticate_claimed`]): a login
//! decodes a token once.
//!
//! The order, fixed by [`Sources::standard`]:
//! 1. workload-token federation, which claims only passwords that are JWTs from a configured
//!    issuer;
//! 2. the users regauth knows itself (`users:` and the htpasswd file);
//! 3. the LDAP directory.
//!
//! The first source that knows the user decides: a wrong password there is final, later
//! sources are not asked. When a source cannot answer and no later source claims the user,
//! the login fails as unavailable (503), never as a wrong password, and it is not counted
//! against the user by the brute-force limits.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Budget, Credentials, Identity};

/// How long a source marked down waits between re-checks that cached logins trigger.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// What a source says about credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The credentials are good: this is the caller. Unless the source stamped a more
    /// precise name on it ([`Identity::with_source`]), the chain stamps the source's name.
    Authenticated(Identity),
    /// The source knows the user (or claims the password) and the credentials are wrong.
    Rejected,
    /// Like [`Outcome::Rejected`], for credentials the brute-force limits count against
    /// `Budget` rather than the user name (a workload token: its issuer, or its subject once
    /// its signature verified).
    RejectedAs(Budget),
    /// The source could not answer (unreachable, timed out). The reason is for the log only.
    Unavailable(String),
    /// Not a user of this source: ask the next one.
    NotMine,
}

/// How many logins a network source checks at once, and how long a login waits for one of
/// those slots (and, for sources that honour it, for its whole check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    /// Checks of this source running at once (at least 1).
    pub checks: usize,
    /// The login's deadline for this source, from the moment it starts waiting for a slot:
    /// a login that gets no slot within it is answered "unavailable" (503).
    pub deadline: Duration,
}

/// One place users come from. Implementations are blocking and bound their own waiting.
pub trait IdentitySource: Send + Sync {
    /// The source's name, as logs, metrics and `regauth explain` show it (`users`, `ldap`).
    fn name(&self) -> &str;

    /// False when the source has nobody to sign in (e.g. no users configured); with no
    /// configured source at all, credentials are ignored and callers are anonymous.
    fn is_configured(&self) -> bool {
        true
    }

    /// Checks the credentials. Called on a check thread; may block, within the source's own
    /// timeout.
    fn authenticate(&self, credentials: &Credentials) -> Outcome;

    /// Checks the credentials within `deadline` (the login's one deadline for this source,
    /// see [`Concurrency::deadline`]). Sources that bound their own waiting by other means
    /// ignore it.
    fn authenticate_by(&self, credentials: &Credentials, _deadline: Instant) -> Outcome {
        self.authenticate(credentials)
    }

    /// The form of `name` under which this source finds the same account: names that fold
    /// to the same string are one account to this source. Exact by default; a directory that
    /// ignores case and spaces folds them. The brute-force limits key on the fold of all
    /// configured sources ([`Sources::canonical_name`]).
    fn fold_name(&self, name: &str) -> String {
        name.to_owned()
    }

    /// What failed logins with `credentials` count against before they are checked, when
    /// this source claims them without a user name (a workload token), with what it read to
    /// tell; `None` for sources that sign in by user name. Cheap: no I/O, nothing verified
    /// yet.
    fn token_claim(&self, _credentials: &Credentials) -> Option<TokenClaim> {
        None
    }

    /// Checks credentials that this source claimed as `claim` ([`IdentitySource::token_claim`]
    /// for the same credentials), without reading the token again; within `deadline` when
    /// there is one. By default, as [`IdentitySource::authenticate_by`] (or
    /// [`IdentitySource::authenticate`] without a deadline).
    fn authenticate_claimed(
        &self,
        credentials: &Credentials,
        _claim: &TokenClaim,
        deadline: Option<Instant>,
    ) -> Outcome {
        match deadline {
            Some(deadline) => self.authenticate_by(credentials, deadline),
            None => self.authenticate(credentials),
        }
    }

    /// `Some` for a source that waits on the network: its own check slots and deadline,
    /// so that it cannot hold up the shared check pool. `None` (the default): the source
    /// runs on the shared pool of `auth.check_workers` (CPU work such as bcrypt).
    fn concurrency(&self) -> Option<Concurrency> {
        None
    }

    /// Called when no source claimed the credentials, so that an unknown name costs about as
    /// long as a wrong password (the users source spends one bcrypt check here).
    fn equalize(&self, _credentials: &Credentials) {}

    /// Who `account` is without checking a password, for `regauth explain`: its identity
    /// (with groups), [`Outcome::NotMine`] when unknown here or when the source cannot look
    /// accounts up, or [`Outcome::Unavailable`].
    fn describe(&self, _account: &str) -> Outcome {
        Outcome::NotMine
    }

    /// [`IdentitySource::describe`] within `deadline`, as [`IdentitySource::authenticate_by`]
    /// is to `authenticate`: the token sign-in looks owners up this way, on the source's
    /// own slots. Sources that bound their own waiting by other means ignore it.
    fn describe_by(&self, account: &str, _deadline: Instant) -> Outcome {
        self.describe(account)
    }

    /// Moves whenever the source's users change in a way that must invalidate cached logins
    /// (a reloaded htpasswd file). Sources whose answers the cache may keep return 0.
    fn generation(&self) -> u64 {
        0
    }

    /// How long past their cache lifetime this source's cached logins may still answer
    /// while the source is unavailable. Zero (the default) never uses an expired login.
    fn outage_grace(&self) -> Duration {
        Duration::ZERO
    }
}

/// A password a source claims as a token, as read before it is checked: nothing verified.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenClaim {
    /// What failed logins with it count against before the check.
    pub budget: Budget,
    /// The token's claim set as decoded (unverified), for the same source's check.
    pub claims: Arc<serde_json::Map<String, serde_json::Value>>,
}

/// What a failed login counts against, decided before the check ([`Sources::budget`]): the
/// canonical account, or the claim of the source that read the credentials as a token (its
/// budget, and what it decoded, for its check).
#[derive(Debug, Clone, PartialEq)]
pub enum Budgeted {
    /// Credentials signing in by user name: their canonical account.
    Account(Budget),
    /// Credentials the source called `source` claimed as a token.
    Token {
        /// The claiming source's name.
        source: String,
        /// What it read.
        claim: TokenClaim,
    },
}

impl Budgeted {
    /// What failures count against.
    pub fn budget(&self) -> &Budget {
        match self {
            Budgeted::Account(budget) => budget,
            Budgeted::Token { claim, .. } => &claim.budget,
        }
    }

    /// The claim that the source called `name` read, for its check.
    pub(super) fn claim_of(&self, name: &str) -> Option<&TokenClaim> {
        match self {
            Budgeted::Token { source, claim } if source == name => Some(claim),
            _ => None,
        }
    }
}

/// Why the chain produced no identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Some source rejected the credentials, or none claimed them.
    Rejected,
    /// A source could not answer and no later source claimed the credentials.
    Unavailable {
        /// The source's name.
        source: String,
    },
}

pub(super) struct Slot {
    source: Arc<dyn IdentitySource>,
    /// A network source's own check slots and deadline.
    permits: Option<(Arc<tokio::sync::Semaphore>, Duration)>,
    /// When the source last answered "unavailable" with no answer since.
    down_since: Mutex<Option<Instant>>,
    /// When a cached login last triggered a re-check while the source was down.
    last_probe: Mutex<Option<Instant>>,
}

/// The configured sources, in the order they are asked.
pub struct Sources {
    slots: Vec<Slot>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Sources {
    /// Sources asked in the order given.
    pub fn new(sources: Vec<Arc<dyn IdentitySource>>) -> Sources {
        Sources {
            slots: sources
                .into_iter()
                .map(|source| Slot {
                    permits: source.concurrency().map(|c| {
                        (
                            Arc::new(tokio::sync::Semaphore::new(c.checks.max(1))),
                            c.deadline,
                        )
                    }),
                    source,
                    down_since: Mutex::new(None),
                    last_probe: Mutex::new(None),
                })
                .collect(),
        }
    }

    /// The documented order: `federation` (workload tokens), then `users` (configuration and
    /// htpasswd), then `ldap`. Absent sources are skipped.
    pub fn standard(
        federation: Option<Arc<dyn IdentitySource>>,
        users: Arc<dyn IdentitySource>,
        ldap: Option<Arc<dyn IdentitySource>>,
    ) -> Sources {
        let ordered = federation
            .into_iter()
            .chain(std::iter::once(users))
            .chain(ldap)
            .collect();
        Sources::new(ordered)
    }

    /// The sources' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.slots.iter().map(|s| s.source.name()).collect()
    }

    /// True when any source can sign someone in.
    pub fn is_configured(&self) -> bool {
        self.slots.iter().any(|s| s.source.is_configured())
    }

    /// Each source's generation, in order (part of the login cache key).
    pub fn generations(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().map(|s| s.source.generation())
    }

    /// Asks the configured sources in order (blocking). Records which sources are down.
    pub fn authenticate(&self, credentials: &Credentials) -> Result<Identity, Failure> {
        let mut unavailable: Option<&str> = None;
        for slot in self.slots.iter().filter(|s| s.source.is_configured()) {
            let name = slot.source.name();
            let outcome = slot.source.authenticate(credentials);
            slot.note(&outcome);
            match outcome {
                Outcome::Authenticated(identity) => return Ok(stamped(identity, name)),
                Outcome::Rejected | Outcome::RejectedAs(_) => return Err(Failure::Rejected),
                Outcome::Unavailable(_) => {
                    unavailable.get_or_insert(name);
                }
                Outcome::NotMine => {}
            }
        }
        if let Some(source) = unavailable {
            return Err(Failure::Unavailable {
                source: source.to_owned(),
            });
        }
        for slot in self.slots.iter().filter(|s| s.source.is_configured()) {
            slot.source.equalize(credentials);
        }
        Err(Failure::Rejected)
    }

    /// Who `account` is according to the first source that knows it (blocking), for
    /// `regauth explain`. `Ok(None)` when no source knows it; `Err(source)` when a source
    /// that might know it is unavailable.
    pub fn describe(&self, account: &str) -> Result<Option<Identity>, String> {
        for slot in self.slots.iter().filter(|s| s.source.is_configured()) {
            let name = slot.source.name();
            match slot.source.describe(account) {
                Outcome::Authenticated(identity) => return Ok(Some(stamped(identity, name))),
                Outcome::Unavailable(reason) => return Err(format!("{name}: {reason}")),
                Outcome::Rejected | Outcome::RejectedAs(_) | Outcome::NotMine => {}
            }
        }
        Ok(None)
    }

    /// The configured sources, in order, for [`super::Logins`] to run one by one.
    pub(super) fn configured(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| s.source.is_configured())
    }

    /// `name` folded by every configured source ([`IdentitySource::fold_name`]): names that
    /// any configured source would take for the same account fold to the same string.
    pub fn canonical_name(&self, name: &str) -> String {
        self.configured()
            .fold(name.to_owned(), |name, slot| slot.source.fold_name(&name))
    }

    /// What a failed login with `credentials` counts against before it is checked: the
    /// token budget of the first source that claims them as a token (with that source's
    /// claim, for its check), else the canonical account of the user name.
    pub fn budget(&self, credentials: &Credentials) -> Budgeted {
        match self.configured().find_map(|slot| {
            slot.source
                .token_claim(credentials)
                .map(|claim| (slot.source.name().to_owned(), claim))
        }) {
            Some((source, claim)) => Budgeted::Token { source, claim },
            None => Budgeted::Account(Budget::Account(self.canonical_name(&credentials.username))),
        }
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.source.name() == name)
    }

    /// The outage grace of the source called `name` (zero for unknown names).
    pub fn outage_grace(&self, name: &str) -> Duration {
        self.slot(name)
            .map_or(Duration::ZERO, |s| s.source.outage_grace())
    }

    /// The longest outage grace of any source.
    pub fn max_outage_grace(&self) -> Duration {
        self.slots
            .iter()
            .map(|s| s.source.outage_grace())
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// True while the source called `name` is known to be down (its last answer was
    /// "unavailable").
    pub fn is_down(&self, name: &str) -> bool {
        self.slot(name)
            .and_then(|s| s.down_since.lock().ok().map(|d| d.is_some()))
            .unwrap_or(false)
    }

    /// True when a cached login of the down source `name` may trigger a re-check now: at
    /// most one every `PROBE_INTERVAL` (2 s), so an outage does not tie the check threads up
    /// in timeouts.
    pub fn probe_due(&self, name: &str) -> bool {
        let Some(slot) = self.slot(name) else {
            return false;
        };
        let Ok(mut last) = slot.last_probe.lock() else {
            return false;
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.saturating_duration_since(at) < PROBE_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }
}

impl Slot {
    /// The source.
    pub(super) fn source(&self) -> &Arc<dyn IdentitySource> {
        &self.source
    }

    /// A network source's own permits and deadline; `None` for the shared check pool.
    pub(super) fn permits(&self) -> Option<&(Arc<tokio::sync::Semaphore>, Duration)> {
        self.permits.as_ref()
    }

    /// Records whether the source answered; logs the start of an outage as a warning (and
    /// each further failure at debug level) and its end.
    pub(super) fn note(&self, outcome: &Outcome) {
        let Ok(mut down) = self.down_since.lock() else {
            return;
        };
        let name = self.source.name();
        match outcome {
            Outcome::Unavailable(reason) => {
                if down.is_none() {
                    log::warn!("identity source {name} is unavailable: {reason}");
                    *down = Some(Instant::now());
                } else {
                    log::debug!("identity source {name} is still unavailable: {reason}");
                }
            }
            _ => {
                if let Some(since) = down.take() {
                    log::info!(
                        "identity source {name} answers again (it was unavailable for {} s)",
                        since.elapsed().as_secs()
                    );
                }
            }
        }
    }
}

pub(super) fn stamped(identity: Identity, source: &str) -> Identity {
    if identity.source().is_empty() {
        identity.with_source(source)
    } else {
        identity
    }
}
