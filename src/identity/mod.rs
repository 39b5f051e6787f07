//! Who the caller is: anonymous, or a user who proved a password (Basic credentials on
//! `GET /token`, `username`/`password` on `POST /token`).
//!
//! A wrong password, an unknown user and a malformed `Authorization` header get the same
//! answer, and an unknown user costs the same bcrypt check as a known one.

mod cache;
pub mod htpasswd;
mod users;

use actix_web::http::header::HeaderValue;
use data_encoding::BASE64;

pub use users::{User, UserDirectory, UserSettings, UsersError};

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    subject: String,
    groups: Vec<String>,
}

impl Identity {
    /// A caller that did not authenticate; its `sub` is `""`.
    pub fn anonymous() -> Self {
        Identity {
            subject: String::new(),
            groups: Vec::new(),
        }
    }

    /// A signed-in user.
    pub fn user(name: &str, groups: Vec<String>) -> Self {
        Identity {
            subject: name.to_owned(),
            groups,
        }
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

/// User name and password from a request.
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password (never logged).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Reads `Authorization: Basic base64(user:password)`; `None` without the header.
pub fn basic_credentials(header: Option<&HeaderValue>) -> Result<Option<Credentials>, AuthError> {
    let Some(header) = header else {
        return Ok(None);
    };
    let text = header.to_str().map_err(|_| AuthError::MalformedHeader)?;
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
    Ok(Some(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    }))
}

/// Decides who the caller is. Without credentials the caller is anonymous; with credentials
/// and no users configured at all, credentials are ignored (the caller is anonymous too).
/// `account`, when given, must name the user the credentials belong to.
///
/// This runs bcrypt: call it off the async executor.
pub fn authenticate(
    users: &UserDirectory,
    credentials: Option<Credentials>,
    account: Option<&str>,
) -> Result<Identity, AuthError> {
    let Some(credentials) = credentials else {
        return Ok(Identity::anonymous());
    };
    if !users.is_configured() {
        log::debug!(
            "credentials for {:?} ignored: no users are configured, caller is anonymous",
            credentials.username
        );
        return Ok(Identity::anonymous());
    }
    let identity = users.verify(&credentials.username, &credentials.password)?;
    match account {
        Some(account) if !account.is_empty() && account != identity.subject() => {
            Err(AuthError::AccountMismatch)
        }
        _ => Ok(identity),
    }
}

#[cfg(test)]
mod tests;
