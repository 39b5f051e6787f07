//! The store's shared state at work: connecting (and creating a SQLite file only when asked),
//! the poller's sync of the snapshot against the revision counter, the outage bookkeeping, and
//! the in-memory token check sign-ins make.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Db, Shared, Snapshot, StoreError};
use crate::identity::tokens::SOURCE_TOKENS;

impl Shared {
    pub(super) fn count(&self) {
        self.counters.queries.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn failed(&self, e: sqlx::Error) -> StoreError {
        let message = format!("{}: {e}", self.shown);
        self.note_down(&message);
        StoreError::Unavailable(message)
    }

    pub(super) fn note_down(&self, reason: &str) {
        if let Ok(mut down) = self.down.lock() {
            if down.is_none() {
                log::warn!("store is unavailable: {reason}");
                *down = Some(Instant::now());
            } else {
                log::debug!("store is still unavailable: {reason}");
            }
        }
    }

    pub(super) fn note_up(&self) {
        if let Ok(mut down) = self.down.lock()
            && let Some(since) = down.take()
        {
            log::info!(
                "store answers again (it was unavailable for {} s)",
                since.elapsed().as_secs()
            );
        }
    }

    /// Connects if not connected; migrates (refusing a newer or corrupt database).
    pub(super) async fn connect(&self, create: bool) -> Result<Option<Db>, StoreError> {
        if let Some(db) = self.db.lock().ok().and_then(|d| d.clone()) {
            return Ok(Some(db));
        }
        if !create && self.location.is_absent() {
            return Ok(None);
        }
        let db = Db::connect(&self.location, create).await?;
        self.count();
        let applied = db.migrate(&self.shown).await?;
        if !applied.is_empty() {
            log::info!("store {}: applied migrations {applied:?}", self.shown);
        }
        if let Ok(mut slot) = self.db.lock() {
            *slot = Some(db.clone());
        }
        Ok(Some(db))
    }

    pub(super) async fn db(&self) -> Result<Db, StoreError> {
        self.connect(false)
            .await?
            .ok_or_else(|| StoreError::Refused(format!("{} does not exist yet", self.shown)))
    }

    pub(super) async fn db_creating(&self) -> Result<Db, StoreError> {
        self.connect(true)
            .await?
            .ok_or_else(|| StoreError::Unavailable(format!("{} cannot be created", self.shown)))
    }

    pub(super) async fn db_if_present(&self) -> Result<Option<Db>, StoreError> {
        self.connect(false).await
    }

    /// One poll: write the gathered last-use times, read the revision, reload on a change.
    pub(super) async fn sync(&self) {
        let db = match self.connect(false).await {
            Ok(Some(db)) => db,
            // No SQLite file yet: no tokens, and that is up to date.
            Ok(None) => {
                self.confirmed();
                return;
            }
            Err(e) => {
                self.note_down(&e.to_string());
                return;
            }
        };
        let used: Vec<(String, i64)> = self
            .used
            .lock()
            .map(|mut u| u.drain().collect())
            .unwrap_or_default();
        if !used.is_empty() {
            self.count();
            if let Err(e) = db.touch(&used).await {
                log::debug!("store: last-use times not written: {e}");
                // Kept for the next poll.
                if let Ok(mut pending) = self.used.lock() {
                    for (id, at) in used {
                        pending.entry(id).or_insert(at);
                    }
                }
            }
        }
        self.count();
        let revision = match db.revision().await {
            Ok(r) => r,
            Err(e) => {
                self.failed(e);
                return;
            }
        };
        let current = self.snapshot.load();
        if current.loaded && current.revision == revision {
            self.confirmed();
            return;
        }
        self.count();
        let tokens = match db.tokens(None).await {
            Ok(t) => t,
            Err(e) => {
                self.failed(e);
                return;
            }
        };
        self.count();
        let logouts = match db.logouts().await {
            Ok(l) => l,
            Err(e) => {
                self.failed(e);
                return;
            }
        };
        let snapshot = Snapshot::build(revision, &tokens, logouts);
        log::debug!(
            "store revision {revision}: {} access tokens",
            snapshot.len()
        );
        self.snapshot.store(Arc::new(snapshot));
        self.confirmed();
    }

    pub(super) fn confirmed(&self) {
        if let Ok(mut synced) = self.synced.lock() {
            *synced = Some(Instant::now());
        }
        self.note_up();
    }

    pub(super) fn fresh(&self) -> bool {
        let limit = Duration::from_secs(self.settings.stale_seconds);
        self.synced
            .lock()
            .ok()
            .and_then(|s| *s)
            .is_some_and(|at| at.elapsed() <= limit)
    }

    pub(super) fn check(
        &self,
        username: &str,
        password: &str,
    ) -> crate::identity::tokens::TokenCheck {
        use crate::identity::tokens::TokenCheck;
        if !self.fresh() {
            self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            return TokenCheck::Unavailable(SOURCE_TOKENS.into());
        }
        let now = chrono::Utc::now().timestamp();
        match self.snapshot.load().find(username, password, now) {
            Some(grant) => {
                self.counters.uses.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut used) = self.used.lock() {
                    used.insert(grant.id.clone(), now);
                }
                TokenCheck::Valid(grant)
            }
            None => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                TokenCheck::Rejected
            }
        }
    }
}
