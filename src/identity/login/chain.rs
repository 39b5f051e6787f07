//! One check of credentials by the identity sources, in order, each on its own pool: the
//! shared check pool for CPU work (bcrypt), a network source's own slots within its deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::super::source::{Slot, stamped};
use super::super::{AuthError, Budgeted, Credentials, Identity, Outcome, TokenClaim};
use super::{Inner, LoginError, Refused};

impl Inner {
    /// One check by the sources, in order, each on its pool. Mirrors
    /// [`super::super::Sources::authenticate`]: the first source that knows the user decides; when none
    /// does and one could not answer, the login is unavailable.
    pub(super) async fn check(
        &self,
        credentials: &Credentials,
        read: Option<&Budgeted>,
    ) -> Result<Identity, Refused> {
        let result = self.chain(credentials, read).await;
        // A check shed for lack of room did not run (in part it may have: it is counted once,
        // as shed).
        if !matches!(result, Err((LoginError::Busy, _))) {
            let n = self.counters.checks.fetch_add(1, Ordering::Relaxed) + 1;
            log::debug!("password check {n}");
        }
        result
    }

    async fn chain(
        &self,
        credentials: &Credentials,
        read: Option<&Budgeted>,
    ) -> Result<Identity, Refused> {
        let mut unavailable: Option<&str> = None;
        for slot in self.sources.configured() {
            let name = slot.source().name();
            let claim = read.and_then(|r| r.claim_of(name));
            let Some(outcome) = self.run(slot, credentials, claim).await? else {
                // No slot of this network source came free in time: unavailable for this
                // login, but the source itself is not known to be down.
                log::debug!("identity source {name} is busy: every check slot stayed taken");
                unavailable.get_or_insert(name);
                continue;
            };
            slot.note(&outcome);
            match outcome {
                Outcome::Authenticated(identity) => return Ok(stamped(identity, name)),
                Outcome::Rejected => return Err((AuthError::InvalidCredentials.into(), None)),
                Outcome::RejectedAs(budget) => {
                    return Err((AuthError::InvalidCredentials.into(), Some(budget)));
                }
                Outcome::Unavailable(_) => {
                    unavailable.get_or_insert(name);
                }
                Outcome::NotMine => {}
            }
        }
        if let Some(source) = unavailable {
            self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            return Err((LoginError::Unavailable(source.to_owned()), None));
        }
        // Nobody claimed the name: spend what a known name would (bcrypt) on the shared pool.
        let permits = self.cpu_permits().await?;
        let sources = Arc::clone(&self.sources);
        let credentials = credentials.clone();
        tokio::task::spawn_blocking(move || {
            let _permits = permits;
            for slot in sources.configured() {
                slot.source().equalize(&credentials);
            }
        })
        .await
        .map_err(|e| (LoginError::Failed(e.to_string()), None))?;
        Err((AuthError::InvalidCredentials.into(), None))
    }

    /// A place on the shared check pool: admission (running plus waiting), then a worker.
    async fn cpu_permits(&self) -> Result<[OwnedSemaphorePermit; 2], Refused> {
        let Ok(admitted) = Arc::clone(&self.admission).try_acquire_owned() else {
            self.counters.shed.fetch_add(1, Ordering::Relaxed);
            return Err((LoginError::Busy, None));
        };
        let worker = Arc::clone(&self.workers)
            .acquire_owned()
            .await
            .map_err(|e| (LoginError::Failed(e.to_string()), None))?;
        Ok([admitted, worker])
    }

    /// Runs one source on a blocking thread holding its permits, which go with the thread:
    /// a cancelled request does not free them while the check still runs. `None` when a
    /// network source had no free slot within its deadline. `claim`: what this source read
    /// of the credentials for their budget, so that it does not read them again.
    async fn run(
        &self,
        slot: &Slot,
        credentials: &Credentials,
        claim: Option<&TokenClaim>,
    ) -> Result<Option<Outcome>, Refused> {
        let source = Arc::clone(slot.source());
        let credentials = credentials.clone();
        let claim = claim.cloned();
        let outcome = match slot.permits() {
            Some((permits, deadline)) => {
                let Some((permit, until)) = network_slot(permits, *deadline).await? else {
                    return Ok(None);
                };
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    match claim {
                        Some(claim) => {
                            source.authenticate_claimed(&credentials, &claim, Some(until))
                        }
                        None => source.authenticate_by(&credentials, until),
                    }
                })
                .await
            }
            None => {
                let permits = self.cpu_permits().await?;
                tokio::task::spawn_blocking(move || {
                    let _permits = permits;
                    match claim {
                        Some(claim) => source.authenticate_claimed(&credentials, &claim, None),
                        None => source.authenticate(&credentials),
                    }
                })
                .await
            }
        };
        outcome
            .map(Some)
            .map_err(|e| (LoginError::Failed(e.to_string()), None))
    }
}

/// One of a network source's own check slots (`permits`), waited for at most `deadline`:
/// the permit and the instant the source's work must end by; `None` when no slot came free
/// in time. A login's check and a token owner's lookup both take their slot here.
pub(super) async fn network_slot(
    permits: &Arc<Semaphore>,
    deadline: Duration,
) -> Result<Option<(OwnedSemaphorePermit, Instant)>, Refused> {
    let until = Instant::now() + deadline;
    match tokio::time::timeout(deadline, Arc::clone(permits).acquire_owned()).await {
        Ok(Ok(permit)) => Ok(Some((permit, until))),
        Ok(Err(e)) => Err((LoginError::Failed(e.to_string()), None)),
        Err(_) => Ok(None),
    }
}
