//! Brute-force limits: failed logins counted per (client IP, user name), with an exponential
//! lockout that refuses further attempts from that IP for that name before any password check.
//!
//! Keying by the pair means an attacker cannot lock a user out from elsewhere: the same user
//! from another address is unaffected. Unknown names are tracked exactly like known ones, so
//! the limiter says nothing about who exists. Memory is bounded: at most `max_entries` pairs
//! are kept (the least used are evicted first) and idle pairs are forgotten.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use serde::Deserialize;

/// `auth.limits.*`: failed logins are counted per (client IP, user name); past `failures`
/// within `window_seconds`, that IP gets 429 for that name, for `backoff_seconds`, doubling
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
    /// (IP, user name) pairs tracked at most; the least used are forgotten first.
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

/// (client IP, SHA-256 of the user name): fixed size whatever the name's length.
type Key = (IpAddr, [u8; 32]);

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

    fn key(ip: Option<IpAddr>, user: &str) -> Key {
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest::digest(&digest::SHA256, user.as_bytes()).as_ref());
        (ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), hash)
    }

    /// `Err(retry_after)` while `ip` is locked out for `user`.
    pub fn check(&self, ip: Option<IpAddr>, user: &str, now: Instant) -> Result<(), Duration> {
        let Some(entry) = self.entries.get(&Self::key(ip, user)) else {
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
    pub fn failed(&self, ip: Option<IpAddr>, user: &str, now: Instant) -> Option<Duration> {
        let entry = self.entries.get_with(Self::key(ip, user), Default::default);
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

    /// A successful login clears the count for this IP and name.
    pub fn succeeded(&self, ip: Option<IpAddr>, user: &str) {
        self.entries.invalidate(&Self::key(ip, user));
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
        assert_eq!(l.failed(A, "alice", t0), None);
        assert_eq!(l.failed(A, "alice", t0), None);
        assert!(l.check(A, "alice", t0).is_ok(), "two failures are allowed");
        assert_eq!(l.failed(A, "alice", t0), Some(Duration::from_secs(2)));
        assert_eq!(l.check(A, "alice", t0), Err(Duration::from_secs(2)));
        assert!(l.check(B, "alice", t0).is_ok(), "another IP is unaffected");
        assert!(l.check(A, "bob", t0).is_ok(), "another name is unaffected");
        let t1 = t0 + Duration::from_secs(3);
        assert!(l.check(A, "alice", t1).is_ok(), "the lockout ends");
        assert_eq!(l.failed(A, "alice", t1), Some(Duration::from_secs(4)));
        assert_eq!(l.failed(A, "alice", t1), Some(Duration::from_secs(8)));
        assert_eq!(
            l.failed(A, "alice", t1),
            Some(Duration::from_secs(10)),
            "capped"
        );
        assert_eq!(l.failed(A, "alice", t1), Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_success_resets_the_count_and_old_failures_leave_the_window() {
        let l = limiter(2, 100);
        let t0 = Instant::now();
        l.failed(A, "alice", t0);
        l.succeeded(A, "alice");
        assert_eq!(l.failed(A, "alice", t0), None, "the count restarted");
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            l.failed(A, "alice", later),
            None,
            "a failure outside the window starts a new count"
        );
        assert!(l.failed(A, "alice", later).is_some());
    }

    #[test]
    fn memory_stays_bounded_by_max_entries() {
        let l = limiter(5, 50);
        let t0 = Instant::now();
        for i in 0..2_000 {
            l.failed(A, &format!("user{i}"), t0);
        }
        assert!(l.tracked() <= 50, "tracked {}", l.tracked());
    }
}
