//! Access tokens as passwords: the seam between the login path and the token store
//! ([`crate::store`]).
//!
//! A password with the shape of an access token (its prefix and checksum, see
//! [`crate::store::secret`]) is checked by [`AccessTokens`] before any identity source and
//! before the login cache: the check is an in-memory lookup (a SHA-256 and a map), so it
//! needs no cache, and a revoked or expired token stops working as soon as the store's
//! snapshot says so. A token sign-in is never cached by [`super::Logins`].
//!
//! What a token may do ([`TokenScopes`]) is intersected with what the rules give its caller
//! (see [`crate::policy::grant`]): a user's token acts as its owner (source `tokens`, with the
//! owner's groups, and rules naming the owner's source apply too), so it never gets more than
//! its owner has now; a robot (source `robot`) gets what rules naming `source: robot` give,
//! within its scopes.

use std::sync::Arc;

use crate::matching::pattern::Pattern;
use crate::token::scope::{Action, Actions, ResourceScope};

/// The source of a caller who signed in with a user's access token.
pub const SOURCE_TOKENS: &str = "tokens";
/// The source of a robot account (signed in with its access token).
pub const SOURCE_ROBOT: &str = "robot";

/// What the store says about a password that looks like an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// A live token of the user named in the credentials.
    Valid(Arc<TokenGrant>),
    /// Unknown, revoked, expired, or another owner's: a wrong password.
    Rejected,
    /// The store has not been reached recently enough to answer (503, not counted).
    Unavailable(String),
}

/// Checks access tokens without blocking (an in-memory snapshot of the store).
pub trait AccessTokens: Send + Sync {
    /// True when `password` has an access token's shape (prefix and valid checksum): only
    /// those are checked here, everything else goes to the identity sources.
    fn recognises(&self, password: &str) -> bool;

    /// Checks `password` as `username`'s access token (no I/O).
    fn check(&self, username: &str, password: &str) -> TokenCheck;
}

/// A valid token: whose it is and what it may be used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The token's public id.
    pub id: String,
    /// The token's name (unique per owner).
    pub name: String,
    /// The user or robot that owns it.
    pub owner: String,
    /// True for a robot account's token.
    pub robot: bool,
    /// What it may be used for.
    pub scopes: TokenScopes,
}

/// A token's scopes: `TYPE:NAME:ACTIONS` with a glob or exact name (`repository:alice/*:pull`).
#[derive(Debug, Clone)]
pub struct TokenScopes {
    limits: Vec<Limit>,
}

#[derive(Debug, Clone)]
struct Limit {
    text: String,
    resource_type: String,
    name: Pattern,
    actions: Actions,
}

impl PartialEq for TokenScopes {
    fn eq(&self, other: &Self) -> bool {
        self.texts().eq(other.texts())
    }
}

impl Eq for TokenScopes {}

/// Most scopes a token may carry.
pub const MAX_TOKEN_SCOPES: usize = 32;

impl TokenScopes {
    /// Parses scopes as `regauth token create --scope` takes them; the error says which one is
    /// wrong and why.
    pub fn parse<S: AsRef<str>>(scopes: &[S]) -> Result<TokenScopes, String> {
        if scopes.is_empty() {
            return Err("a token needs at least one --scope, e.g. repository:alice/*:pull".into());
        }
        if scopes.len() > MAX_TOKEN_SCOPES {
            return Err(format!("a token holds at most {MAX_TOKEN_SCOPES} scopes"));
        }
        let limits = scopes
            .iter()
            .map(|s| Limit::parse(s.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(TokenScopes { limits })
    }

    /// The scopes as written.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.limits.iter().map(|l| l.text.as_str())
    }

    /// The actions the token may use on the resource of `scope`: the union over its scopes
    /// that match the resource.
    pub fn allowed(&self, scope: &ResourceScope) -> Actions {
        let mut allowed = Actions::none();
        for limit in &self.limits {
            if limit.resource_type == scope.resource_type && limit.name.matches(&scope.name, "") {
                allowed.extend(&limit.actions);
            }
        }
        allowed
    }
}

impl Limit {
    fn parse(text: &str) -> Result<Limit, String> {
        let text = text.trim();
        let fail = |why: &str| {
            format!(
                "scope {text:?}: {why} (write TYPE:NAME:ACTIONS, e.g. repository:alice/*:pull,push)"
            )
        };
        let (resource_type, rest) = text.split_once(':').ok_or_else(|| fail("no type"))?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(|| fail("no actions"))?;
        if resource_type.is_empty() || name.is_empty() || actions.is_empty() {
            return Err(fail("type, name and actions must not be empty"));
        }
        if name.starts_with('/') {
            return Err(fail("names are exact or globs (* and **), not /regex/"));
        }
        let name = Pattern::new(name, false).map_err(|e| fail(&e.to_string()))?;
        let actions = actions
            .split(',')
            .map(|a| a.trim().parse::<Action>().map_err(fail))
            .collect::<Result<Actions, _>>()?;
        Ok(Limit {
            text: text.to_owned(),
            resource_type: resource_type.to_owned(),
            name,
            actions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> ResourceScope {
        s.parse().unwrap()
    }

    #[test]
    fn a_token_allows_only_what_its_scopes_name() {
        let scopes = TokenScopes::parse(&[
            "repository:alice/*:pull",
            "repository:alice/app:push",
            "registry:catalog:*",
        ])
        .unwrap();
        assert_eq!(
            scopes
                .allowed(&scope("repository:alice/app:pull,push,delete"))
                .to_string(),
            "pull,push"
        );
        assert_eq!(
            scopes
                .allowed(&scope("repository:alice/lib:pull"))
                .to_string(),
            "pull"
        );
        assert!(
            scopes
                .allowed(&scope("repository:alice/deep/lib:pull"))
                .is_empty()
        );
        assert!(scopes.allowed(&scope("repository:bob/app:pull")).is_empty());
        assert_eq!(
            scopes.allowed(&scope("registry:catalog:*")).to_string(),
            "*"
        );
    }

    #[test]
    fn bad_scopes_are_refused_with_the_reason() {
        for bad in [
            "repository",
            "repository:alice",
            ":alice:pull",
            "repository::pull",
            "repository:/a.*/:pull",
            "repository:a:PULL",
        ] {
            let e = TokenScopes::parse(&[bad]).unwrap_err();
            assert!(e.contains("scope"), "{bad}: {e}");
        }
        assert!(TokenScopes::parse::<&str>(&[]).is_err());
    }
}
