//! What a caller may do: a [`Policy`] says which actions it allows on a resource, and
//! [`grant`] intersects that with what was requested. A partial or empty grant is not an
//! error; the token simply carries fewer actions.

use crate::claims::AccessEntry;
use crate::identity::Identity;
use crate::scope::{Actions, ResourceScope};

/// A source of permissions.
pub trait Policy: Send + Sync + 'static {
    /// The actions `identity` may perform on the resource of `scope`.
    fn allowed(&self, identity: &Identity, scope: &ResourceScope) -> Actions;
}

/// Every caller gets a fixed set of actions on repositories, and nothing on other resource
/// types (such as `registry:catalog`).
#[derive(Debug, Clone)]
pub struct AnonymousPolicy {
    repository_actions: Actions,
}

impl AnonymousPolicy {
    /// A policy allowing `actions` on every repository.
    pub fn new(actions: Actions) -> Self {
        AnonymousPolicy {
            repository_actions: actions,
        }
    }
}

impl Policy for AnonymousPolicy {
    fn allowed(&self, _identity: &Identity, scope: &ResourceScope) -> Actions {
        if scope.resource_type == "repository" {
            self.repository_actions.clone()
        } else {
            Actions::none()
        }
    }
}

/// The access entries to put in a token: for each requested scope, requested ∩ allowed.
pub fn grant(
    policy: &dyn Policy,
    identity: &Identity,
    scopes: &[ResourceScope],
) -> Vec<AccessEntry> {
    scopes
        .iter()
        .map(|scope| {
            let allowed = policy.allowed(identity, scope);
            AccessEntry::new(scope, scope.actions.intersect(&allowed))
        })
        .collect()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]
mod tests {
    use super::*;
    use crate::scope::parse_all;

    fn actions(s: &str) -> Actions {
        s.split(',')
            .filter(|a| !a.is_empty())
            .map(|a| a.parse().unwrap())
            .collect()
    }

    #[test]
    fn anonymous_grant_is_the_intersection_per_scope() {
        let policy = AnonymousPolicy::new(actions("pull"));
        let scopes = parse_all([
            "repository:team/app:pull,push",
            "repository:team/new:push",
            "registry:catalog:*",
            "repository:x/y:*",
        ])
        .unwrap();
        let granted: Vec<String> = grant(&policy, &Identity::anonymous(), &scopes)
            .iter()
            .map(|e| format!("{}:{}:{}", e.resource_type, e.name, e.actions))
            .collect();
        assert_eq!(
            granted,
            [
                "repository:team/app:pull",
                "repository:team/new:",
                "registry:catalog:",
                "repository:x/y:pull"
            ]
        );
    }

    #[test]
    fn a_wildcard_policy_grants_what_was_asked() {
        let policy = AnonymousPolicy::new(actions("*"));
        let scopes = parse_all(["repository:a/b:pull,push,delete"]).unwrap();
        let entry = &grant(&policy, &Identity::anonymous(), &scopes)[0];
        assert_eq!(entry.actions.to_string(), "pull,push,delete");
    }
}
