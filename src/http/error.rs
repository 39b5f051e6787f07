//! The JSON error body clients understand: `{"errors":[{"code","message"}]}`.
//!
//! Client errors say what is wrong; server errors are logged in full and answered opaquely.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::identity::AuthError;
use crate::scope::ScopeError;

/// The error body.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// One entry per error.
    pub errors: Vec<ErrorEntry>,
}

/// One error.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ErrorEntry {
    /// Machine-readable code, e.g. `INVALID_SCOPE`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// A required parameter or form field is missing or empty.
    #[error("the {0} parameter is required")]
    MissingField(&'static str),
    /// A `grant_type` other than `password` and `refresh_token`.
    #[error("grant_type {0:?} is not supported; use password or refresh_token")]
    UnsupportedGrant(String),
    /// A refresh grant on a server without a refresh secret.
    #[error("refresh tokens are not enabled on this server")]
    RefreshDisabled,
    /// A refresh token that is invalid, expired, for another service or another password.
    #[error("the refresh token is not valid; sign in again")]
    RefreshRefused,
    /// A service outside `token.services`.
    #[error("service {0:?} is not served by this token server")]
    UnknownService(String),
    /// A malformed scope.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// More scopes than allowed.
    #[error("too many scopes in one request; at most {0}")]
    TooManyScopes(usize),
    /// The query string cannot be decoded.
    #[error("the query string is malformed: {0}")]
    BadQuery(String),
    /// Authentication failed. The message is the same whatever the reason.
    #[error("authentication failed: invalid username or password")]
    Auth(AuthError),
    /// No such route.
    #[error("no such endpoint")]
    NotFound,
    /// A method the route does not take.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Anything on our side; the cause goes to the log only.
    #[error("internal server error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::MissingField(_)
            | ApiError::UnknownService(_)
            | ApiError::TooManyScopes(_)
            | ApiError::BadQuery(_)
            | ApiError::RefreshDisabled => "INVALID_REQUEST",
            ApiError::UnsupportedGrant(_) => "UNSUPPORTED",
            ApiError::Scope(_) => "INVALID_SCOPE",
            ApiError::Auth(_) | ApiError::RefreshRefused => "UNAUTHORIZED",
            ApiError::NotFound => "NOT_FOUND",
            ApiError::MethodNotAllowed => "UNSUPPORTED",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MissingField(_)
            | ApiError::UnknownService(_)
            | ApiError::Scope(_)
            | ApiError::TooManyScopes(_)
            | ApiError::BadQuery(_)
            | ApiError::UnsupportedGrant(_)
            | ApiError::RefreshDisabled => StatusCode::BAD_REQUEST,
            ApiError::Auth(_) | ApiError::RefreshRefused => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => log::error!("request failed: {cause:#}"),
            ApiError::NotFound
            | ApiError::MethodNotAllowed
            | ApiError::Auth(_)
            | ApiError::RefreshRefused => {}
            other => log::info!("request refused: {other}"),
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Auth(_) | ApiError::RefreshRefused => {
                response.insert_header((header::WWW_AUTHENTICATE, r#"Basic realm="regauth""#));
            }
            ApiError::MethodNotAllowed => {
                response.insert_header((header::ALLOW, "GET, POST"));
            }
            _ => {}
        }
        response
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(ErrorBody {
                errors: vec![ErrorEntry {
                    code: self.code().to_owned(),
                    message: self.to_string(),
                }],
            })
    }
}

/// Fallback for unknown paths.
pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}

/// Fallback for known paths with another method. Clients that try OAuth2 `POST` first
/// (containerd) fall back to `GET` on 405.
pub async fn method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed.error_response()
}
