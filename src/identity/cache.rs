//! A short-lived, bounded memory of successful password checks, so a client that logs in on
//! every token request pays for bcrypt once per window instead of every time.
//!
//! Entries are keyed by HMAC-SHA256 of user and password under a key drawn at process start:
//! the password itself is never stored, and the key never leaves memory. Entries carry the
//! user set's generation, so any change to the users (a reload, a removed user, a new
//! password) invalidates them all at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;

/// The cache.
pub struct VerifiedCache {
    key: hmac::Key,
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], (u64, Instant)>>,
}

impl VerifiedCache {
    /// A cache keeping successes for `ttl`, at most `capacity` of them. `None` if the system
    /// random generator fails (then nothing is cached).
    pub fn new(ttl: Duration, capacity: usize) -> Option<VerifiedCache> {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).ok()?;
        Some(VerifiedCache {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn fingerprint(&self, user: &str, password: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(user.as_bytes());
        ctx.update(password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// True when this user and password were verified under `generation` within the window.
    pub fn hit(&self, user: &str, password: &str, generation: u64) -> bool {
        let fp = self.fingerprint(user, password);
        let Ok(entries) = self.entries.lock() else {
            return false;
        };
        entries
            .get(&fp)
            .is_some_and(|(g, at)| *g == generation && at.elapsed() < self.ttl)
    }

    /// Records a successful verification.
    pub fn remember(&self, user: &str, password: &str, generation: u64) {
        let fp = self.fingerprint(user, password);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (g, at)| *g == generation && at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(fp, (generation, Instant::now()));
    }

    /// Entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_need_the_same_user_password_and_generation_within_the_window() {
        let cache = VerifiedCache::new(Duration::from_secs(60), 10).unwrap();
        cache.remember("alice", "pw", 1);
        assert!(cache.hit("alice", "pw", 1));
        assert!(!cache.hit("alice", "pw2", 1));
        assert!(
            !cache.hit("alicep", "w", 1),
            "user and password are separated"
        );
        assert!(!cache.hit("alice", "pw", 2), "a user change invalidates");
        let short = VerifiedCache::new(Duration::from_millis(1), 10).unwrap();
        short.remember("alice", "pw", 1);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!short.hit("alice", "pw", 1));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = VerifiedCache::new(Duration::from_secs(60), 100).unwrap();
        for i in 0..1000 {
            cache.remember(&format!("u{i}"), "pw", 1);
            assert!(cache.len() <= 100);
        }
        assert!(cache.hit("u999", "pw", 1));
    }
}
