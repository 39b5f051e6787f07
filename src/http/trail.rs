//! The HTTP side of the audit trail: once a token request is answered, its line gets the
//! request id, the client address and, for a refusal, the answer's error code and a reason
//! an operator can filter on. The facts themselves are gathered by the issuing pipeline
//! ([`crate::issue::trail::Trail`]).

use actix_web::{HttpMessage, HttpRequest};

use super::{ApiError, AppState, RequestInfo};
use crate::identity::AuthError;
use crate::issue::trail::{Refusal, Trail};

/// A trail for a request of `grant_type`, gathering only when the audit log is on.
pub(super) fn start(state: &AppState, grant_type: &'static str) -> Trail {
    Trail::new(state.audit.is_some(), grant_type)
}

/// Writes the line for the answer the handler gave (nothing when the audit log is off).
pub(super) fn record<T>(
    trail: Trail,
    state: &AppState,
    req: &HttpRequest,
    result: &Result<T, ApiError>,
) {
    let Some(audit) = &state.audit else {
        return;
    };
    let extensions = req.extensions();
    let info = extensions.get::<RequestInfo>();
    let refusal = result.as_ref().err().map(|e| Refusal {
        error: e.code(),
        reason: reason(e),
    });
    trail.record(
        audit,
        state.clock.as_ref(),
        info.map_or("", |i| i.id.as_str()),
        info.and_then(|i| i.client_ip),
        refusal,
    );
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
