//! What a caller may do: a [`Policy`] decides which actions it allows on a resource, and
//! [`grant`] intersects that with what was requested. A partial or empty grant is not an
//! error; the token simply carries fewer actions.

mod acl;

mod settings;

use std::net::IpAddr;

pub use crate::matching::pattern::{
    Pattern, PatternError, Variables, anchored_regex, regex_inside,
};
pub use acl::{Acl, MatchSettings, OneOrMore, RuleError, RuleSettings, SOURCE_NAMES};
pub use settings::AccessSettings;

use crate::identity::Identity;
use crate::token::claims::AccessEntry;
use crate::token::scope::{Actions, ResourceScope};

/// The facts about a request that rules can look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// Who is asking.
    pub identity: &'a Identity,
    /// The requested service (the token's audience).
    pub service: &'a str,
    /// The client's address, when known.
    pub ip: Option<IpAddr>,
}

/// The outcome for one resource, borrowed from the policy: deciding copies nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    /// Actions the policy allows.
    pub allowed: &'p Actions,
    /// Index of the deciding rule, if any.
    pub rule: Option<usize>,
    /// The deciding rule as text (written once, at load), for `regauth explain`.
    pub explanation: &'p str,
}

/// A source of permissions.
pub trait Policy: Send + Sync + 'static {
    /// The actions allowed on the resource of `scope` for this request.
    fn decide(&self, ctx: &RequestContext<'_>, scope: &ResourceScope) -> Decision<'_>;
}

/// The access entries to put in a token: for each requested scope, requested ∩ allowed.
pub fn grant(
    policy: &dyn Policy,
    ctx: &RequestContext<'_>,
    scopes: &[ResourceScope],
) -> Vec<AccessEntry> {
    grant_explained(policy, ctx, scopes)
        .into_iter()
        .map(|(entry, _)| entry)
        .collect()
}

/// [`grant`], with the deciding rule's text beside each entry (for the audit log).
pub fn grant_explained<'p>(
    policy: &'p dyn Policy,
    ctx: &RequestContext<'_>,
    scopes: &[ResourceScope],
) -> Vec<(AccessEntry, &'p str)> {
    scopes
        .iter()
        .map(|scope| {
            let decision = policy.decide(ctx, scope);
            let actions = granted(ctx, scope, decision.allowed);
            (AccessEntry::new(scope, actions), decision.explanation)
        })
        .collect()
}

/// What a request gets of `scope` when the rules allow `allowed`: requested ∩ allowed, and for
/// a caller signed in with an access token, ∩ the token's scopes as well.
pub fn granted(ctx: &RequestContext<'_>, scope: &ResourceScope, allowed: &Actions) -> Actions {
    let actions = scope.actions.intersect(allowed);
    match ctx.identity.token() {
        Some(token) => actions.intersect(&token.scopes.allowed(scope)),
        None => actions,
    }
}

#[cfg(test)]
mod tests;
