//! The keys a verifier should trust at one moment: the signing key, the next key (published,
//! not yet signing), and the keys that signed until recently, kept for a retention window
//! (`token.ttl_seconds` + 60 s leeway) after they were replaced, then dropped.
//!
//! Pure bookkeeping: the caller says what time it is, so tests need no clock or sleep.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::SigningKey;

/// A key that signed until it was replaced.
#[derive(Debug, Clone)]
pub struct RetiredKey {
    /// The key.
    pub key: Arc<SigningKey>,
    /// When it stops being published (replacement time + retention window).
    pub until: DateTime<Utc>,
}

/// The published keys besides the signing key itself.
#[derive(Debug)]
pub struct KeySet {
    retain: chrono::Duration,
    next: Option<Arc<SigningKey>>,
    /// Newest first.
    retired: Vec<RetiredKey>,
}

/// True when both are the same key (same public key; for secrets, same content).
pub fn same_key(a: &SigningKey, b: &SigningKey) -> bool {
    match (a.public_key(), b.public_key()) {
        (Some(pa), Some(pb)) => pa.spki_der == pb.spki_der,
        (None, None) => a.fingerprint() == b.fingerprint(),
        _ => false,
    }
}

impl KeySet {
    /// An empty set whose replaced keys stay published for `retain`.
    pub fn new(retain: Duration) -> KeySet {
        KeySet {
            retain: chrono::Duration::from_std(retain).unwrap_or(chrono::Duration::MAX),
            next: None,
            retired: Vec::new(),
        }
    }

    /// The signing key `old` was replaced by `new` at `now`: `old` is kept published for the
    /// retention window, unless it is the same key as `new`. A key that signs again is no
    /// longer retired.
    pub fn replaced(&mut self, old: Arc<SigningKey>, new: &SigningKey, now: DateTime<Utc>) {
        self.retired.retain(|r| !same_key(&r.key, new));
        if same_key(&old, new) {
            return;
        }
        self.retired.retain(|r| !same_key(&r.key, &old));
        let until = now
            .checked_add_signed(self.retain)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.retired.insert(0, RetiredKey { key: old, until });
    }

    /// Sets (or clears) the next key.
    pub fn set_next(&mut self, next: Option<Arc<SigningKey>>) {
        self.next = next;
    }

    /// The next key, if one is loaded.
    pub fn next(&self) -> Option<&Arc<SigningKey>> {
        self.next.as_ref()
    }

    /// Drops retired keys whose window has passed at `now`.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        self.retired.retain(|r| now < r.until);
    }

    /// Retired keys still inside their window at `now`, newest first.
    pub fn retired(&self, now: DateTime<Utc>) -> impl Iterator<Item = &RetiredKey> {
        self.retired.iter().filter(move |r| now < r.until)
    }

    /// Every key to publish at `now`: `current` first, then the next key, then retired keys
    /// (newest first); each key once.
    pub fn published(&self, current: Arc<SigningKey>, now: DateTime<Utc>) -> Vec<Arc<SigningKey>> {
        let mut out: Vec<Arc<SigningKey>> = vec![current];
        let candidates = self.next.iter().chain(self.retired(now).map(|r| &r.key));
        for key in candidates {
            if !out.iter().any(|k| same_key(k, key)) {
                out.push(Arc::clone(key));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Algorithm;
    use crate::test_support::key;

    fn kids(keys: &[Arc<SigningKey>]) -> Vec<String> {
        keys.iter().map(|k| k.kid().unwrap().to_owned()).collect()
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_replaced_key_stays_published_for_the_window_then_is_dropped() {
        let (a, b) = (key(Algorithm::ES256), key(Algorithm::ES256));
        let mut set = KeySet::new(Duration::from_secs(360));
        set.replaced(Arc::clone(&a), &b, at(0));
        assert_eq!(
            kids(&set.published(Arc::clone(&b), at(359))),
            kids(&[Arc::clone(&b), Arc::clone(&a)])
        );
        assert_eq!(
            kids(&set.published(Arc::clone(&b), at(360))),
            kids(std::slice::from_ref(&b))
        );
        set.prune(at(360));
        assert_eq!(set.retired(at(0)).count(), 0, "pruned for good");
    }

    #[test]
    fn the_next_key_is_published_after_the_current_one_and_before_retired_ones() {
        let (a, b, c) = (
            key(Algorithm::ES256),
            key(Algorithm::ES384),
            key(Algorithm::ES256),
        );
        let mut set = KeySet::new(Duration::from_secs(120));
        set.set_next(Some(Arc::clone(&c)));
        set.replaced(Arc::clone(&a), &b, at(0));
        assert_eq!(
            kids(&set.published(Arc::clone(&b), at(1))),
            kids(&[b.clone(), c.clone(), a.clone()])
        );
        set.set_next(None);
        assert_eq!(
            kids(&set.published(Arc::clone(&b), at(1))),
            kids(&[b.clone(), a.clone()])
        );
    }

    #[test]
    fn each_key_is_published_once_and_a_key_that_signs_again_is_not_retired() {
        let (a, b) = (key(Algorithm::ES256), key(Algorithm::ES256));
        let mut set = KeySet::new(Duration::from_secs(120));
        // The next key promoted: it is both current and (until the next reload) next.
        set.set_next(Some(Arc::clone(&b)));
        set.replaced(Arc::clone(&a), &b, at(0));
        assert_eq!(
            kids(&set.published(Arc::clone(&b), at(1))),
            kids(&[b.clone(), a.clone()])
        );
        // Rolled back to `a`: `b` is retired, `a` no longer.
        set.replaced(Arc::clone(&b), &a, at(10));
        let retired: Vec<_> = set.retired(at(11)).map(|r| r.key.kid().unwrap()).collect();
        assert_eq!(retired, [b.kid().unwrap()]);
        // The same key reloaded (new file, same key) retires nothing.
        set.replaced(Arc::clone(&a), &a, at(20));
        assert_eq!(set.retired(at(21)).count(), 1);
    }

    #[test]
    fn several_replacements_keep_each_for_its_own_window_newest_first() {
        let (a, b, c) = (
            key(Algorithm::ES256),
            key(Algorithm::ES256),
            key(Algorithm::ES256),
        );
        let mut set = KeySet::new(Duration::from_secs(100));
        set.replaced(Arc::clone(&a), &b, at(0));
        set.replaced(Arc::clone(&b), &c, at(50));
        assert_eq!(
            kids(&set.published(Arc::clone(&c), at(60))),
            kids(&[c.clone(), b.clone(), a.clone()])
        );
        assert_eq!(
            kids(&set.published(Arc::clone(&c), at(120))),
            kids(&[c.clone(), b.clone()])
        );
        let until: Vec<_> = set.retired(at(0)).map(|r| r.until).collect();
        assert_eq!(until, [at(150), at(100)]);
    }
}
