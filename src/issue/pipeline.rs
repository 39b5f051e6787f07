//! The one issuing pipeline: validate → authenticate → authorize → build claims → sign, with
//! the audit facts gathered on the way (see [`Trail`]). `GET /token` and `POST /token` are
//! thin extractors around it ([`crate::http`]); `regauth explain` runs its [`authorize`]
//! step, so it shows exactly what a request would be granted.
//!
//! The cheap checks come first: a request with an unknown service or a malformed scope never
//! costs a password check.

use std::collections::HashSet;
use std::net::IpAddr;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use crate::clock::Clock;
use crate::identity::{
    AuthError, Credentials, Identity, LoginError, Logins, SOURCE_HTPASSWD, SOURCE_USERS,
};
use crate::issue::refresh::{Logouts, RefreshTokens};
use crate::issue::signing;
use crate::issue::trail::Trail;
use crate::keys::KeyProvider;
use crate::policy::{Policy, RequestContext};
use crate::telemetry::metrics::{AuthFailure, Grant, Metrics};
use crate::token::claims::{AccessEntry, Claims, ClaimsBuilder};
use crate::token::scope::{self, Actions, ResourceScope, ScopesError};

/// Why no token was issued. The HTTP layer maps each to its status and error body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// A service outside `token.services`.
    #[error("service {0:?} is not served by this token server")]
    UnknownService(String),
    /// A malformed scope, or too many.
    #[error(transparent)]
    Scopes(#[from] ScopesError),
    /// The login failed, was limited, shed, or its source was down.
    #[error(transparent)]
    Login(#[from] LoginError),
    /// A refresh grant on a server without a refresh secret.
    #[error("refresh tokens are not enabled on this server")]
    RefreshDisabled,
    /// A refresh token that is invalid, expired, for another service or another password.
    #[error("the refresh token is not valid")]
    RefreshRefused,
    /// Building or signing the token failed.
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// How the caller proves who it is.
#[derive(Debug)]
pub enum Proof {
    /// `GET /token`: Basic credentials when sent, and the `account` the client named.
    Basic {
        /// The `Authorization: Basic` credentials; `None` asks anonymously.
        credentials: Option<Credentials>,
        /// The `account` parameter; must match who the credentials sign in.
        account: Option<String>,
    },
    /// `POST /token`, `grant_type=password`.
    Password(Credentials),
    /// `POST /token`, `grant_type=refresh_token`: the refresh token, returned unchanged.
    Refresh(SecretString),
}

/// A request that passed [`TokenIssuer::validate`]: the only way into [`TokenIssuer::issue`].
#[derive(Debug)]
pub struct TokenRequest<'r> {
    service: &'r str,
    scopes: Vec<ResourceScope>,
}

impl<'r> TokenRequest<'r> {
    /// Step 1's checks: `service` is one this server issues for (`services`; empty means any)
    /// and the scopes parse, at most [`scope::MAX_SCOPES`] of them. [`TokenIssuer::validate`]
    /// runs it for the server, `regauth explain` for what it shows.
    pub fn check<'s, I>(
        services: &HashSet<String>,
        service: &'r str,
        scopes: I,
    ) -> Result<TokenRequest<'r>, IssueError>
    where
        I: IntoIterator<Item = &'s str>,
    {
        if !services.is_empty() && !services.contains(service) {
            return Err(IssueError::UnknownService(service.to_owned()));
        }
        let scopes = scope::parse_limited(scopes, scope::MAX_SCOPES)?;
        Ok(TokenRequest { service, scopes })
    }

    /// The requested service (the token's audience).
    pub fn service(&self) -> &str {
        self.service
    }

    /// The requested scopes, parsed and merged.
    pub fn scopes(&self) -> &[ResourceScope] {
        &self.scopes
    }
}

/// A signed token and what it says.
#[derive(Debug)]
pub struct Issued {
    /// The claims signed.
    pub claims: Claims,
    /// The compact JWS.
    pub token: String,
    /// A refresh token: a new one for offline password logins, the one given for refresh
    /// grants.
    pub refresh_token: Option<String>,
}

/// One requested scope and the policy's decision on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided<'s, 'p> {
    /// The scope as requested.
    pub scope: &'s ResourceScope,
    /// What the policy allows on its resource.
    pub allowed: &'p Actions,
    /// Requested ∩ allowed: what the token grants.
    pub granted: Actions,
    /// The deciding rule as text.
    pub rule: &'p str,
}

/// The authorize step, shared by the server and `regauth explain`: the policy's decision
/// for each scope, and what it grants (requested ∩ allowed; a partial or empty grant is not
/// an error).
pub fn authorize<'s, 'p>(
    policy: &'p dyn Policy,
    ctx: &RequestContext<'_>,
    scopes: &'s [ResourceScope],
) -> Vec<Decided<'s, 'p>> {
    scopes
        .iter()
        .map(|scope| {
            let decision = policy.decide(ctx, scope);
            Decided {
                scope,
                allowed: decision.allowed,
                granted: crate::policy::granted(ctx, scope, decision.allowed),
                rule: decision.explanation,
            }
        })
        .collect()
}

/// The pipeline over the server's shared parts. It borrows them, so making one per request
/// costs nothing.
pub struct TokenIssuer<'a> {
    /// Allowed services; empty means any.
    pub services: &'a HashSet<String>,
    /// Password logins: limits, cache, bounded checks.
    pub logins: &'a Logins,
    /// Who may do what.
    pub policy: &'a dyn Policy,
    /// Claims for every token.
    pub claims: &'a ClaimsBuilder,
    /// Signing keys.
    pub keys: &'a dyn KeyProvider,
    /// Time source.
    pub clock: &'a dyn Clock,
    /// Refresh tokens, when a refresh secret is configured.
    pub refresh: Option<&'a RefreshTokens>,
    /// Refresh tokens `regauth logout` revoked, when a store is configured.
    pub logouts: Option<&'a dyn Logouts>,
    /// Counters the pipeline bumps.
    pub metrics: &'a Metrics,
}

impl<'a> TokenIssuer<'a> {
    /// Step 1, the cheap checks, done before anyone's password is: the service is one this
    /// server issues for, and the scopes parse, within the limit. (The extractor has told
    /// the trail the service already: it is recorded even when a later field is missing.)
    pub fn validate<'r, 's, I>(
        &self,
        service: &'r str,
        scopes: I,
        trail: &mut Trail,
    ) -> Result<TokenRequest<'r>, IssueError>
    where
        I: IntoIterator<Item = &'s str>,
    {
        let request = TokenRequest::check(self.services, service, scopes)?;
        trail.requested(&request.scopes);
        Ok(request)
    }

    /// Steps 2 to 5: who the caller is, what it may do, the claims, the signature; then the
    /// refresh token the grant asks for. `offline` asks for a refresh token (docker login).
    pub async fn issue(
        &self,
        request: TokenRequest<'_>,
        proof: Proof,
        ip: Option<IpAddr>,
        offline: bool,
        trail: &mut Trail,
    ) -> Result<Issued, IssueError> {
        let service = request.service;
        let (identity, grant, echoed) = match proof {
            // Without credentials the caller is anonymous (what `Logins::login` answers for
            // `None`), and the login's future is never made: it is large, and boxed only
            // when a login runs, so an anonymous request's future stays small.
            Proof::Basic {
                credentials: None,
                account: _,
            } => (Identity::anonymous(), Grant::Anonymous, None),
            Proof::Basic {
                credentials: Some(credentials),
                account,
            } => {
                let identity =
                    Box::pin(self.authenticate(Some(credentials), account.as_deref(), ip)).await?;
                let grant = if identity.is_anonymous() {
                    Grant::Anonymous
                } else {
                    Grant::Basic
                };
                (identity, grant, None)
            }
            Proof::Password(credentials) => (
                Box::pin(self.authenticate(Some(credentials), None, ip)).await?,
                Grant::Password,
                None,
            ),
            Proof::Refresh(token) => {
                let identity = self.redeem(&token, service, ip)?;
                (identity, Grant::RefreshToken, Some(token))
            }
        };
        let ctx = RequestContext {
            identity: &identity,
            service,
            ip,
        };
        let decisions = authorize(self.policy, &ctx, &request.scopes);
        trail.decided(&identity, &decisions);
        let access = decisions
            .into_iter()
            .map(|d| AccessEntry::new(d.scope, d.granted))
            .collect();
        let (claims, token) = self.sign(&identity, service, access, trail)?;
        self.metrics.token_issued(service, grant);
        let refresh_token = match echoed {
            Some(token) => Some(token.expose_secret().to_owned()),
            None if offline => self.refresh_token_for(&identity, service),
            None => None,
        };
        Ok(Issued {
            claims,
            token,
            refresh_token,
        })
    }

    /// Step 2: decides who the caller is (see [`Logins`]); failures are counted and logged
    /// without the name the client sent, which may be a mistyped password. The token API
    /// (`/api/v1/tokens`) signs its callers in through this step too.
    pub async fn authenticate(
        &self,
        credentials: Option<Credentials>,
        account: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<Identity, IssueError> {
        self.logins
            .login(credentials, account, ip)
            .await
            .map_err(|e| {
                // Limited and shed logins are counted by `Logins` itself; a malformed header
                // never gets here (it is refused while the request is read).
                match &e {
                    LoginError::Invalid(AuthError::AccountMismatch) => {
                        self.metrics.auth_failed(AuthFailure::AccountMismatch);
                    }
                    LoginError::Invalid(_) => {
                        self.metrics.auth_failed(AuthFailure::InvalidCredentials);
                    }
                    LoginError::Unavailable(_) => {
                        self.metrics.auth_failed(AuthFailure::SourceUnavailable);
                    }
                    _ => {}
                }
                if !matches!(e, LoginError::Busy) {
                    log::info!(
                        "authentication failed from {}: {e}",
                        ip.map(|i| i.to_string()).unwrap_or_else(|| "?".into())
                    );
                }
                IssueError::Login(e)
            })
    }

    /// Step 2 for a refresh grant: the user a valid refresh token for `service` stands for.
    fn redeem(
        &self,
        token: &SecretString,
        service: &str,
        ip: Option<IpAddr>,
    ) -> Result<Identity, IssueError> {
        let refresh = self.refresh.ok_or(IssueError::RefreshDisabled)?;
        let users = self.logins.users();
        let claims = refresh
            .verify(token.expose_secret(), service, self.clock.now(), |name| {
                users.lookup(name).map(|u| u.password_hash().to_owned())
            })
            .map_err(|e| {
                log::info!(
                    "refresh token refused from {}: {e}",
                    ip.map(|i| i.to_string()).unwrap_or_default()
                );
                self.metrics.refresh_refused();
                IssueError::RefreshRefused
            })?;
        // `regauth logout USER` voids the refresh tokens issued to USER until then.
        if self
            .logouts
            .is_some_and(|logouts| logouts.logged_out(&claims.subject, claims.issued_at))
        {
            log::info!("refresh token refused: its user was logged out after it was issued");
            self.metrics.refresh_refused();
            return Err(IssueError::RefreshRefused);
        }
        users
            .lookup(&claims.subject)
            .map(|u| u.identity())
            .ok_or_else(|| {
                self.metrics.refresh_refused();
                IssueError::RefreshRefused
            })
    }

    /// Steps 4 and 5: the claims for `identity` on `service` granting `access`, signed with
    /// the current key.
    fn sign(
        &self,
        identity: &Identity,
        service: &str,
        access: Vec<AccessEntry>,
        trail: &mut Trail,
    ) -> Result<(Claims, String), IssueError> {
        let claims = self
            .claims
            .build(self.clock, identity.subject(), service, access)
            .context("building claims")
            .map_err(IssueError::Internal)?;
        let key = self.keys.signing_key();
        let token = signing::sign(&claims, &key)
            .with_context(|| format!("signing with {}", key.label()))
            .map_err(IssueError::Internal)?;
        log::debug!(
            "issued token jti={} sub={:?} aud={:?} kid={:?} access={}",
            claims.jti,
            claims.sub,
            claims.aud,
            key.kid(),
            serde_json::to_string(&claims.access).unwrap_or_default()
        );
        trail.issued(&claims.jti, key.kid());
        Ok((claims, token))
    }

    /// A refresh token for a signed-in user, when the server has a refresh secret. Refresh
    /// tokens are bound to a password hash regauth holds: only for its own users.
    fn refresh_token_for(&self, identity: &Identity, service: &str) -> Option<String> {
        if identity.is_anonymous() {
            return None;
        }
        let refresh = self.refresh?;
        if ![SOURCE_USERS, SOURCE_HTPASSWD].contains(&identity.source()) {
            return None;
        }
        let user = self.logins.users().lookup(identity.subject())?;
        self.metrics.refresh_issued();
        Some(refresh.issue(user.name(), user.password_hash(), service, self.clock.now()))
    }
}
