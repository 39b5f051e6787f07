//! What the audit log says about one token request, collected as the handler goes and
//! written once it has answered (see [`crate::telemetry::audit`]).

use actix_web::{HttpMessage, HttpRequest};

use super::error::shorten;
use super::{ApiError, AppState, RequestInfo};
use crate::identity::{AuthError, Identity};
use crate::issue::claims::AccessEntry;
use crate::issue::scope::ResourceScope;
use crate::telemetry::audit::{Event, Outcome, ScopeDecision};

/// The facts gathered so far; does nothing when the audit log is off.
pub(super) struct Trail {
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
    pub fn new(state: &AppState, grant_type: &'static str) -> Trail {
        Trail {
            enabled: state.audit.is_some(),
            grant_type,
            service: String::new(),
            account: String::new(),
            source: String::new(),
            scopes: Vec::new(),
            jti: None,
            kid: None,
        }
    }

    pub fn grant_type(&mut self, grant_type: &'static str) {
        self.grant_type = grant_type;
    }

    pub fn service(&mut self, service: &str) {
        if self.enabled {
            self.service = shorten(service);
        }
    }

    /// The validated scopes, before any decision.
    pub fn requested(&mut self, scopes: &[ResourceScope]) {
        if self.enabled {
            self.scopes = scopes
                .iter()
                .map(|s| ScopeDecision {
                    requested: s.to_string(),
                    granted: None,
                    rule: None,
                })
                .collect();
        }
    }

    /// Who was authenticated and what each rule decided.
    pub fn decided(&mut self, identity: &Identity, decisions: &[(AccessEntry, &str)]) {
        if !self.enabled {
            return;
        }
        identity.subject().clone_into(&mut self.account);
        identity.source().clone_into(&mut self.source);
        for (record, (entry, rule)) in self.scopes.iter_mut().zip(decisions) {
            record.granted = Some(entry.actions.to_string());
            record.rule = Some((*rule).to_owned());
        }
    }

    /// The issued token.
    pub fn issued(&mut self, jti: &str, kid: Option<&str>) {
        if self.enabled {
            self.jti = Some(jti.to_owned());
            self.kid = kid.map(str::to_owned);
        }
    }

    /// Writes the line for the answer the handler gave.
    pub fn record<T>(self, state: &AppState, req: &HttpRequest, result: &Result<T, ApiError>) {
        let Some(audit) = &state.audit else {
            return;
        };
        let info = req.extensions().get::<RequestInfo>().cloned();
        let (outcome, error, reason) = match result {
            Ok(_) => (Outcome::Issued, None, None),
            Err(e) => (Outcome::Refused, Some(e.code()), Some(reason(e))),
        };
        audit.write(&Event {
            time: state
                .clock
                .now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            request_id: info.as_ref().map_or("", |i| i.id.as_str()),
            client_ip: info.as_ref().and_then(|i| i.client_ip),
            // Set only by `decided`, after authentication succeeded: a failed login's
            // typed name may be a password and is never recorded.
            account: &self.account,
            source: &self.source,
            service: &self.service,
            grant_type: self.grant_type,
            scopes: &self.scopes,
            outcome,
            error,
            reason,
            jti: self.jti.as_deref(),
            kid: self.kid.as_deref(),
        });
    }
}

/// What kind of refusal, in a word an operator can filter on.
fn reason(error: &ApiError) -> &'static str {
    match error {
        ApiError::Auth(AuthError::InvalidCredentials) => "invalid_credentials",
        ApiError::Auth(AuthError::MalformedHeader) => "malformed_credentials",
        ApiError::Auth(AuthError::AccountMismatch) => "account_mismatch",
        ApiError::RefreshRefused => "invalid_refresh_token",
        ApiError::RefreshDisabled => "refresh_disabled",
        ApiError::TooManyAttempts(_) => "locked_out",
        ApiError::Busy => "busy",
        ApiError::SourceUnavailable(_) => "source_unavailable",
        ApiError::UnknownService(_) => "unknown_service",
        ApiError::Scope(_) | ApiError::TooManyScopes(_) => "invalid_scope",
        ApiError::UnsupportedGrant(_) => "unsupported_grant",
        ApiError::Internal(_) | ApiError::Status(_) => "internal",
        _ => "invalid_request",
    }
}
