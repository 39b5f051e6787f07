//! What the audit log says about one token request: the facts the issuing pipeline gathers as
//! it goes (service, scopes, who signed in, each rule's decision, the token's `jti` and `kid`),
//! written once the request has been answered (see [`crate::telemetry::audit`]).

use std::net::IpAddr;

use crate::clock::Clock;
use crate::identity::Identity;
use crate::issue::pipeline::Decided;
use crate::telemetry::audit::{AuditLog, Event, Outcome, ScopeDecision};
use crate::token::scope::{Actions, ResourceScope};

/// Why a request was refused, as the audit line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal<'a> {
    /// The error code of the answer (`UNAUTHORIZED`, `INVALID_SCOPE`, ...).
    pub error: &'a str,
    /// What kind of refusal, in a word an operator can filter on (`invalid_credentials`, ...).
    pub reason: &'a str,
}

/// The facts gathered so far; gathers nothing when the audit log is off.
#[derive(Debug)]
pub struct Trail {
    enabled: bool,
    grant_type: &'static str,
    service: String,
    account: String,
    source: String,
    scopes: Vec<ScopeDecision>,
    jti: Option<String>,
    kid: Option<String>,
}

impl Trail {
    /// A trail for a request of `grant_type`; `enabled` is whether the audit log is on.
    pub fn new(enabled: bool, grant_type: &'static str) -> Trail {
        Trail {
            enabled,
            grant_type,
            service: String::new(),
            account: String::new(),
            source: String::new(),
            scopes: Vec::new(),
            jti: None,
            kid: None,
        }
    }

    /// The grant type, once the request names it (`POST /token`).
    pub fn grant_type(&mut self, grant_type: &'static str) {
        self.grant_type = grant_type;
    }

    /// The requested service (shortened: it is client input).
    pub fn service(&mut self, service: &str) {
        if self.enabled {
            self.service = if service.len() <= crate::echo::MAX_ECHO_CHARS {
                // At most that many bytes, so at most that many characters: nothing to cut.
                service.to_owned()
            } else {
                crate::echo::shorten(service)
            };
        }
    }

    /// The validated scopes, before any decision.
    pub fn requested(&mut self, scopes: &[ResourceScope]) {
        if self.enabled {
            self.scopes = scopes
                .iter()
                .map(|s| ScopeDecision {
                    requested: scope_text(s),
                    granted: None,
                    rule: None,
                })
                .collect();
        }
    }

    /// Who was authenticated and what each rule decided.
    pub fn decided(&mut self, identity: &Identity, decisions: &[Decided<'_, '_>]) {
        if !self.enabled {
            return;
        }
        identity.subject().clone_into(&mut self.account);
        identity.source().clone_into(&mut self.source);
        for (record, decided) in self.scopes.iter_mut().zip(decisions) {
            let mut granted = String::with_capacity(16);
            push_actions(&mut granted, &decided.granted);
            record.granted = Some(granted);
            record.rule = Some(decided.rule.to_owned());
        }
    }

    /// The issued token.
    pub fn issued(&mut self, jti: &str, kid: Option<&str>) {
        if self.enabled {
            self.jti = Some(jti.to_owned());
            self.kid = kid.map(str::to_owned);
        }
    }

    /// Writes the line for the answer given: issued when `refusal` is `None`.
    pub fn record(
        self,
        audit: &AuditLog,
        clock: &dyn Clock,
        request_id: &str,
        client_ip: Option<IpAddr>,
        refusal: Option<Refusal<'_>>,
    ) {
        let time = crate::clock::rfc3339(&clock.now(), chrono::SecondsFormat::Millis);
        audit.write(&Event {
            time: time.as_str(),
            request_id,
            client_ip,
            // Set only by `decided`, after authentication succeeded: a failed login's typed
            // name may be a password and is never recorded.
            account: &self.account,
            source: &self.source,
            service: &self.service,
            grant_type: self.grant_type,
            scopes: &self.scopes,
            outcome: if refusal.is_some() {
                Outcome::Refused
            } else {
                Outcome::Issued
            },
            error: refusal.map(|r| r.error),
            reason: refusal.map(|r| r.reason),
            jti: self.jti.as_deref(),
            kid: self.kid.as_deref(),
        });
    }
}

/// `scope` as its `Display` writes it (`type:name:a,b`), without the formatting machinery.
fn scope_text(scope: &ResourceScope) -> String {
    let mut text = String::with_capacity(scope.resource_type.len() + scope.name.len() + 24);
    text.push_str(&scope.resource_type);
    text.push(':');
    text.push_str(&scope.name);
    text.push(':');
    push_actions(&mut text, &scope.actions);
    text
}

/// `actions` as their `Display` writes them (`a,b`).
fn push_actions(text: &mut String, actions: &Actions) {
    for (i, action) in actions.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(action.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_text_is_what_display_writes() {
        for text in [
            "repository:team/app:pull,push",
            "repository:localhost:5000/team/app:pull",
            "registry:catalog:*",
            "repository:x:",
        ] {
            let scope: ResourceScope = text.parse().unwrap();
            assert_eq!(scope_text(&scope), scope.to_string());
            let mut actions = String::new();
            push_actions(&mut actions, &scope.actions);
            assert_eq!(actions, scope.actions.to_string());
        }
    }
}
