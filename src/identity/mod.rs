//! Who the caller is: anonymous, or a user who proved a password (Basic credentials on
//! `GET /token`, `username`/`password` on `POST /token`).
//!
//! A wrong password, an unknown user and a malformed `Authorization` header get the same
//! answer (401). For the users regauth knows itself (`users:`, htpasswd) an unknown user
//! costs the same bcrypt check as a known one; for LDAP it does not: a directory user with a
//! wrong password is refused after one bind, an unknown name after the equalizing bcrypt, so
//! response times can tell the two apart (review L4, not fixed here).

pub mod federation;
pub mod htpasswd;
pub mod ldap;
mod limits;
mod login;
mod metrics;
mod settings;
mod source;
pub mod tokens;
mod users;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use data_encoding::BASE64;
use secrecy::SecretString;

pub use ldap::{LdapSettings, LdapSettingsError, LdapSetupError, LdapSource, SOURCE_LDAP};
pub use limits::{Budget, LimitSettings, Limiter, network_of};
pub use login::{LoginError, LoginOptions, LoginStats, Logins};
pub use settings::AuthSettings;
pub use source::{Budgeted, Concurrency, Failure, IdentitySource, Outcome, Sources, TokenClaim};
pub use users::{
    ReloadStatus, SOURCE_HTPASSWD, SOURCE_USERS, User, UserDirectory, UserSettings, UsersError,
};

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    subject: String,
    groups: Vec<String>,
    /// The identity source that authenticated the caller (`""` for anonymous callers).
    source: String,
    /// Past this instant the login must not be reused from the cache (e.g. a token's expiry).
    valid_until: Option<Instant>,
    /// For a caller signed in with a workload token: its issuer and string claims.
    workload: Option<Arc<Workload>>,
    /// For a caller signed in with an access token: the token, and the source of its owner.
    token: Option<(Arc<tokens::TokenGrant>, String)>,
}

/// What a verified workload token says beyond the account and groups: the rules' `issuer`
/// and `${claim.NAME}` look here. Bounded by the token's claim-set limit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Workload {
    issuer: String,
    /// The token's claims that are strings of at most 255 bytes (no other can be part of a
    /// resource name).
    claims: BTreeMap<String, String>,
}

impl Identity {
    /// A caller that did not authenticate; its `sub` is `""`.
    pub fn anonymous() -> Self {
        Identity {
            subject: String::new(),
            groups: Vec::new(),
            source: String::new(),
            valid_until: None,
            workload: None,
            token: None,
        }
    }

    /// A signed-in user. The source that authenticated it is stamped by [`Sources`].
    pub fn user(name: &str, groups: Vec<String>) -> Self {
        Identity {
            subject: name.to_owned(),
            groups,
            source: String::new(),
            valid_until: None,
            workload: None,
            token: None,
        }
    }

    /// This identity, as authenticated by the source called `source`.
    pub fn with_source(mut self, source: &str) -> Self {
        source.clone_into(&mut self.source);
        self
    }

    /// This identity, vouched for by a workload token of `issuer` carrying the string
    /// `claims` (those rules may use).
    pub fn with_workload(mut self, issuer: &str, claims: BTreeMap<String, String>) -> Self {
        self.workload = Some(Arc::new(Workload {
            issuer: issuer.to_owned(),
            claims,
        }));
        self
    }

    /// This identity, signed in with the access token `grant` whose owner signs in through
    /// the source `owner_source` (empty for robots).
    pub fn with_token(mut self, grant: Arc<tokens::TokenGrant>, owner_source: &str) -> Self {
        self.token = Some((grant, owner_source.to_owned()));
        self
    }

    /// The access token the caller signed in with; `None` for everyone else.
    pub fn token(&self) -> Option<&tokens::TokenGrant> {
        self.token.as_ref().map(|(grant, _)| grant.as_ref())
    }

    /// For a caller signed in with a user's access token: the source its owner signs in
    /// through (`users`, `ldap`, ...), whose rules apply to the token too.
    pub fn token_owner_source(&self) -> Option<&str> {
        self.token
            .as_ref()
            .map(|(_, source)| source.as_str())
            .filter(|s| !s.is_empty())
    }

    /// The issuer of the workload token the caller signed in with; `None` for everyone else.
    pub fn issuer(&self) -> Option<&str> {
        self.workload.as_ref().map(|w| w.issuer.as_str())
    }

    /// The string claim `name` of the caller's workload token; `None` when there is no such
    /// claim, when it is not a string, or when the caller did not sign in with a token.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.workload
            .as_ref()
            .and_then(|w| w.claims.get(name))
            .map(String::as_str)
    }

    /// This identity, not to be answered from the login cache after `until` (a source whose
    /// credentials expire, such as a workload token, sets it).
    pub fn valid_until(mut self, until: Instant) -> Self {
        self.valid_until = Some(until);
        self
    }

    /// The name of the identity source that authenticated the caller (`users`, `htpasswd`,
    /// `ldap`, ...); empty for anonymous callers and identities no source produced.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// When the login stops being reusable from the cache, if the source said.
    pub fn expiry(&self) -> Option<Instant> {
        self.valid_until
    }

    /// The `sub` claim, and the account rules match.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The user's groups.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// True for callers that did not authenticate.
    pub fn is_anonymous(&self) -> bool {
        self.subject.is_empty()
    }
}

/// Why authentication failed. Every variant answers the same 401; the variant is for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The Authorization header is not valid `Basic base64(user:password)`.
    #[error("malformed Authorization header")]
    MalformedHeader,
    /// Unknown user or wrong password.
    #[error("unknown user or wrong password")]
    InvalidCredentials,
    /// The `account` parameter names someone else than the credentials.
    #[error("the account parameter does not match the credentials")]
    AccountMismatch,
}

/// bcrypt reads only the first 72 bytes of a password; longer ones are refused where
/// passwords are set (`regauth hash-password`).
pub const MAX_PASSWORD_BYTES: usize = 72;

/// User name and password from a request. `Debug` never shows the password.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: SecretString,
}

impl Credentials {
    /// Credentials from a name and a password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: SecretString::from(password.into()),
        }
    }
}

/// Parses the value of an `Authorization: Basic base64(user:password)` header.
pub fn parse_basic(value: &[u8]) -> Result<Credentials, AuthError> {
    let text = std::str::from_utf8(value).map_err(|_| AuthError::MalformedHeader)?;
    let (scheme, encoded) = text
        .trim()
        .split_once(' ')
        .ok_or(AuthError::MalformedHeader)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::MalformedHeader);
    }
    let decoded = BASE64
        .decode(encoded.trim().as_bytes())
        .map_err(|_| AuthError::MalformedHeader)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AuthError::MalformedHeader)?;
    let (username, password) = decoded.split_once(':').ok_or(AuthError::MalformedHeader)?;
    Ok(Credentials::new(username, password))
}

#[cfg(test)]
mod tests;
