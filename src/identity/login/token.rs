//! Sign-ins with access tokens from the store (`rgat_…`): an in-memory check of the secret,
//! then, for a user's token, who its owner is now.
//!
//! An owner among the users regauth knows itself (`users:`, htpasswd) is a map lookup at
//! every sign-in. Any other owner (an LDAP user) is looked up through the sources as
//! `regauth explain` does, but bounded as a password login is: a network source on its own
//! check slots within its deadline (a lookup that gets no slot in time is unavailable), and
//! cached per owner for `auth.cache_seconds` (the login cache's lifetime, never longer; zero
//! turns it off). Concurrent sign-ins of one owner share one lookup. So a token used in a
//! loop costs at most one directory search per owner per `auth.cache_seconds`, and an owner
//! removed from the directory, or who lost a group, loses it through every token within that
//! bound. A source that cannot answer and no cached answer: 503 (unavailable), never a
//! wrong password, and not counted by the brute-force limits. Only answers are cached (an
//! owner found or known to nobody), never "unavailable".

use std::sync::Arc;
use std::sync::atomic::Ordering;

use secrecy::ExposeSecret;

use super::super::source::{Slot, stamped};
use super::super::tokens::{AccessTokens, SOURCE_ROBOT, SOURCE_TOKENS, TokenCheck};
use super::super::{AuthError, Credentials, Identity, Outcome};
use super::{Inner, LoginError, Refused};

impl Inner {
    /// A sign-in with an access token (no login cache, no check pool). A user's token signs
    /// in as its owner (with the owner's groups as they are now, see the module doc) under
    /// source `tokens`; a robot's under source `robot`.
    pub(super) async fn token_login(
        &self,
        tokens: &dyn AccessTokens,
        credentials: &Credentials,
    ) -> Result<Identity, Refused> {
        let grant = match tokens.check(&credentials.username, credentials.password.expose_secret())
        {
            TokenCheck::Valid(grant) => grant,
            TokenCheck::Rejected => return Err((AuthError::InvalidCredentials.into(), None)),
            TokenCheck::Unavailable(source) => {
                self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
                return Err((LoginError::Unavailable(source), None));
            }
        };
        if grant.robot {
            let name = grant.owner.clone();
            return Ok(Identity::user(&name, Vec::new())
                .with_source(SOURCE_ROBOT)
                .with_token(grant, ""));
        }
        let owner = match self.users.lookup(&grant.owner) {
            Some(user) => user.identity(),
            None => match self.owner(&grant.owner).await? {
                Some(identity) => identity,
                None => {
                    log::info!(
                        "access token {} refused: its owner is no longer known",
                        grant.id
                    );
                    return Err((AuthError::InvalidCredentials.into(), None));
                }
            },
        };
        let owner_source = owner.source().to_owned();
        Ok(Identity::user(owner.subject(), owner.groups().to_vec())
            .with_source(SOURCE_TOKENS)
            .with_token(grant, &owner_source))
    }

    /// Who the token owner `name` is per the sources: from the owner cache when it holds a
    /// recent answer, else one lookup shared by concurrent sign-ins.
    async fn owner(&self, name: &str) -> Result<Option<Identity>, Refused> {
        let Some(owners) = &self.owners else {
            return self.describe(name).await;
        };
        owners
            .try_get_with(name.to_owned(), self.describe(name))
            .await
            .map_err(|e| (*e).clone())
    }

    /// Asks the sources in order who `name` is, each as a login would run it: a network
    /// source on its own slots within its deadline. Mirrors [`super::super::Sources::describe`]:
    /// the first source that knows the account decides, and one that cannot answer makes the
    /// lookup unavailable.
    async fn describe(&self, name: &str) -> Result<Option<Identity>, Refused> {
        let unavailable = |source: &str| {
            self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            Err((LoginError::Unavailable(source.to_owned()), None))
        };
        for slot in self.sources.configured() {
            let source = slot.source().name();
            let Some(outcome) = self.describe_on(slot, name).await? else {
                log::debug!("identity source {source} is busy: every check slot stayed taken");
                return unavailable(source);
            };
            slot.note(&outcome);
            match outcome {
                Outcome::Authenticated(identity) => return Ok(Some(stamped(identity, source))),
                Outcome::Unavailable(_) => return unavailable(source),
                Outcome::Rejected | Outcome::RejectedAs(_) | Outcome::NotMine => {}
            }
        }
        Ok(None)
    }

    /// One source's lookup of `name` on a blocking thread; a network source's holds one of
    /// its slots (which goes with the thread, as for a login's check in `chain.rs`). `None`
    /// when no slot came free within the source's deadline.
    async fn describe_on(&self, slot: &Slot, name: &str) -> Result<Option<Outcome>, Refused> {
        let source = Arc::clone(slot.source());
        let name = name.to_owned();
        let failed = |e: tokio::task::JoinError| (LoginError::Failed(e.to_string()), None);
        let Some((permits, deadline)) = slot.permits() else {
            return tokio::task::spawn_blocking(move || source.describe(&name))
                .await
                .map(Some)
                .map_err(failed);
        };
        let Some((permit, until)) = super::chain::network_slot(permits, *deadline).await? else {
            return Ok(None);
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            source.describe_by(&name, until)
        })
        .await
        .map(Some)
        .map_err(failed)
    }
}
