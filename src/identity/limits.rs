//! Brute-force limits: failed logins counted per (client network, [`Budget`]), with an
//! exponential lockout that refuses further attempts from that network for that budget before
//! any password check.
//!
//! What a failure counts against is what the identity sources would sign in, not what the
//! client typed:
//! - a user name counts against the account the sources would match it to: each source folds
//!   names the way it matches them ([`super::IdentitySource::fold_name`]; LDAP ignores case
//!   and extra spaces, so `ALICE`, ` alice` and `alice` share one budget), and with several
//!   sources the folds of all of them apply (merging too much is safe, too little is a bypass);
//! - a workload token counts against its issuer while its signature does not verify (garbage),
//!   and against (issuer, subject) once it does, so garbage tokens never lock out a real one;
//! - the network is the IPv4 address, or the /64 of an IPv6 address (one host commonly owns
//!   a whole /64); an IPv4-mapped IPv6 address counts as its IPv4 address.
//!
//! Keying by the pair means an attacker cannot lock a user out from elsewhere: the same user
//! from another network is unaffected. Behind a reverse proxy that is not listed in
//! `server.trusted_proxies`, every client has the proxy's address and so shares one budget
//! per account (`regauth serve` warns once when it sees forwarded requests from an untrusted
//! peer). Unknown names are tracked exactly like known ones, so the limiter says nothing about
//! who exists. Memory is bounded: at most `max_entries` pairs are kept (the least used are
//! evicted first) and idle pairs are forgotten.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use serde::Deserialize;

/// `auth.limits.*`: failed logins are counted per (client network, account) (see the module
/// comment for what an account is); past `failures` within `window_seconds`, that network
/// gets 429 for that account, for `backoff_seconds`, doubling
/// with every further failure up to `max_backoff_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Failures allowed before attempts are refused; 0 turns the limits off.
    pub failures: u32,
    /// Failures older than this are forgotten.
    pub window_seconds: u64,
    /// The first lockout.
    pub backoff_seconds: u64,
    /// The longest lockout.
    pub max_backoff_seconds: u64,
    /// (network, account) pairs tracked at most; the least used are forgotten first.
    pub max_entries: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            failures: 5,
            window_seconds: 600,
            backoff_seconds: 5,
            max_backoff_seconds: 900,
            max_entries: 100_000,
        }
    }
}

/// What a failed login counts against, besides the client's network.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Budget {
    /// A user name, folded the way the configured sources match names
    /// ([`super::Sources::canonical_name`]).
    Account(String),
    /// Workload tokens of this issuer whose signature did not verify (malformed, unknown key,
    /// bad signature).
    Issuer(String),
    /// Workload tokens of this issuer for this subject (`sub`) whose signature verified but
    /// that failed a later check (expired, audience, lifetime, user name, claims).
    Subject {
        /// The issuer.
        issuer: String,
        /// The token's `sub` (empty when it has none).
        subject: String,
    },
}

/// (client network, SHA-256 of the budget): fixed size whatever the name's length.
type Key = (IpAddr, [u8; 32]);

/// The network a client address counts as: an IPv4 address (IPv4-mapped IPv6 included) as
/// itself, an IPv6 address as its /64.
pub fn network_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[derive(Debug, Default)]
struct Attempts {
    failures: u32,
    last_failure: Option<Instant>,
    blocked_until: Option<Instant>,
}

/// The limiter. Cheap to call: one hash and one map lookup.
pub struct Limiter {
    threshold: u32,
    window: Duration,
    backoff: Duration,
    max_backoff: Duration,
    entries: moka::sync::Cache<Key, Arc<Mutex<Attempts>>>,
}

impl Limiter {
    /// A limiter for `settings`; `None` when `failures` is 0 (limits off).
    pub fn new(settings: &LimitSettings) -> Option<Limiter> {
        if settings.failures == 0 {
            return None;
        }
        let window = Duration::from_secs(settings.window_seconds);
        let max_backoff = Duration::from_secs(settings.max_backoff_seconds);
        Some(Limiter {
            threshold: settings.failures,
            window,
            backoff: Duration::from_secs(settings.backoff_seconds),
            max_backoff,
            entries: moka::sync::Cache::builder()
                .max_capacity(settings.max_entries)
                // A pair is kept while it can still matter: within the window, or locked out.
                .time_to_idle(window.max(max_backoff))
                .build(),
        })
    }

    fn key(ip: Option<IpAddr>, budget: &Budget) -> Key {
        // Each kind of budget is tagged and each part length-prefixed, so no two budgets
        // share a hash input.
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut part = |bytes: &[u8]| {
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        };
        match budget {
            Budget::Account(name) => {
                part(b"account");
                part(name.as_bytes());
            }
            Budget::Issuer(issuer) => {
                part(b"issuer");
                part(issuer.as_bytes());
            }
            Budget::Subject { issuer, subject } => {
                part(b"subject");
                part(issuer.as_bytes());
                part(subject.as_bytes());
            }
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(ctx.finish().as_ref());
        let network = ip.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), network_of);
        (network, hash)
    }

    /// `Err(retry_after)` while `ip`'s network is locked out for `budget`.
    pub fn check(&self, ip: Option<IpAddr>, budget: &Budget, now: Instant) -> Result<(), Duration> {
        let Some(entry) = self.entries.get(&Self::key(ip, budget)) else {
            return Ok(());
        };
        let Ok(attempts) = entry.lock() else {
            return Ok(());
        };
        match attempts.blocked_until {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed login; returns the lockout it starts, if any.
    pub fn failed(&self, ip: Option<IpAddr>, budget: &Budget, now: Instant) -> Option<Duration> {
        let entry = self
            .entries
            .get_with(Self::key(ip, budget), Default::default);
        let Ok(mut attempts) = entry.lock() else {
            return None;
        };
        if attempts
            .last_failure
            .is_some_and(|last| now.saturating_duration_since(last) > self.window)
        {
            *attempts = Attempts::default();
        }
        attempts.failures = attempts.failures.saturating_add(1);
        attempts.last_failure = Some(now);
        if attempts.failures < self.threshold {
            return None;
        }
        // The threshold-th failure locks out for `backoff`, each further one doubles it.
        let doublings = (attempts.failures - self.threshold).min(31);
        let lockout = self
            .backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff);
        attempts.blocked_until = Some(now + lockout);
        Some(lockout)
    }

    /// A successful login clears the count for this network and budget.
    pub fn succeeded(&self, ip: Option<IpAddr>, budget: &Budget) {
        self.entries.invalidate(&Self::key(ip, budget));
    }

    /// Pairs tracked now (approximate until pending evictions run).
    pub fn tracked(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(failures: u32, max_entries: u64) -> Limiter {
        Limiter::new(&LimitSettings {
            failures,
            window_seconds: 60,
            backoff_seconds: 2,
            max_backoff_seconds: 10,
            max_entries,
        })
        .unwrap()
    }

    fn acct(name: &str) -> Budget {
        Budget::Account(name.to_owned())
    }

    const A: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));

    #[test]
    fn zero_failures_turns_the_limits_off() {
        assert!(
            Limiter::new(&LimitSettings {
                failures: 0,
                ..LimitSettings::default()
            })
            .is_none()
        );
    }

    #[test]
    fn the_threshold_locks_out_one_ip_for_one_name_with_a_doubling_capped_backoff() {
        let l = limiter(3, 100);
        let t0 = Instant::now();
        assert_eq!(l.failed(A, &acct("alice"), t0), None);
        assert_eq!(l.failed(A, &acct("alice"), t0), None);
        assert!(
            l.check(A, &acct("alice"), t0).is_ok(),
            "two failures are allowed"
        );
        assert_eq!(
            l.failed(A, &acct("alice"), t0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(l.check(A, &acct("alice"), t0), Err(Duration::from_secs(2)));
        assert!(
            l.check(B, &acct("alice"), t0).is_ok(),
            "another IP is unaffected"
        );
        assert!(
            l.check(A, &acct("bob"), t0).is_ok(),
            "another name is unaffected"
        );
        let t1 = t0 + Duration::from_secs(3);
        assert!(l.check(A, &acct("alice"), t1).is_ok(), "the lockout ends");
        assert_eq!(
            l.failed(A, &acct("alice"), t1),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            l.failed(A, &acct("alice"), t1),
            Some(Duration::from_secs(8))
        );
        assert_eq!(
            l.failed(A, &acct("alice"), t1),
            Some(Duration::from_secs(10)),
            "capped"
        );
        assert_eq!(
            l.failed(A, &acct("alice"), t1),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn a_success_resets_the_count_and_old_failures_leave_the_window() {
        let l = limiter(2, 100);
        let t0 = Instant::now();
        l.failed(A, &acct("alice"), t0);
        l.succeeded(A, &acct("alice"));
        assert_eq!(l.failed(A, &acct("alice"), t0), None, "the count restarted");
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            l.failed(A, &acct("alice"), later),
            None,
            "a failure outside the window starts a new count"
        );
        assert!(l.failed(A, &acct("alice"), later).is_some());
    }

    #[test]
    fn memory_stays_bounded_by_max_entries() {
        let l = limiter(5, 50);
        let t0 = Instant::now();
        for i in 0..2_000 {
            l.failed(A, &Budget::Account(format!("user{i}")), t0);
        }
        assert!(l.tracked() <= 50, "tracked {}", l.tracked());
    }

    fn v6(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn ipv6_addresses_in_one_64_share_a_budget_and_mapped_ipv4_is_its_ipv4() {
        let l = limiter(2, 100);
        let t0 = Instant::now();
        l.failed(v6("2001:db8:1:2::1"), &acct("alice"), t0);
        assert!(
            l.failed(v6("2001:db8:1:2:ffff:ffff:ffff:fffe"), &acct("alice"), t0)
                .is_some(),
            "the second failure from the same /64 locks out"
        );
        assert!(
            l.check(v6("2001:db8:1:2:abcd::9"), &acct("alice"), t0)
                .is_err()
        );
        assert!(
            l.check(v6("2001:db8:1:3::1"), &acct("alice"), t0).is_ok(),
            "the next /64 is another network"
        );
        l.failed(v6("::ffff:192.0.2.1"), &acct("bob"), t0);
        assert!(
            l.failed(A, &acct("bob"), t0).is_some(),
            "an IPv4-mapped address counts as its IPv4 address"
        );
        assert!(
            l.check(B, &acct("bob"), t0).is_ok(),
            "IPv4 addresses are not grouped"
        );
    }

    #[test]
    fn budgets_of_different_kinds_never_collide() {
        let l = limiter(1, 100);
        let t0 = Instant::now();
        let garbage = Budget::Issuer("https://issuer".into());
        assert!(l.failed(A, &garbage, t0).is_some());
        assert!(l.check(A, &garbage, t0).is_err());
        let subject = Budget::Subject {
            issuer: "https://issuer".into(),
            subject: String::new(),
        };
        assert!(l.check(A, &subject, t0).is_ok());
        assert!(l.check(A, &acct("https://issuer"), t0).is_ok());
    }
}
