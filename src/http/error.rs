//! The JSON error body clients understand: `{"errors":[{"code","message"}]}`.
//!
//! Client errors say what is wrong; server errors are logged in full and answered opaquely.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::{StatusCode, header};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::identity::{AuthError, LoginError};
use crate::issue::pipeline::IssueError;
use crate::token::scope::{ScopeError, ScopesError};

pub(crate) use crate::echo::shorten;

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
    /// A service outside `token.services` (shortened for display).
    #[error("service {:?} is not served by this token server", shorten(.0))]
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
    /// The form body cannot be decoded.
    #[error("the form body is malformed: {0}")]
    BadForm(String),
    /// The body could not be read (broken chunked encoding, a connection cut short).
    #[error("the request body could not be read")]
    BadBody,
    /// A body larger than the route accepts.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A path or query string longer than the server reads: what, and its limit in bytes.
    #[error("the {0} is longer than {1} bytes")]
    UriTooLong(&'static str, usize),
    /// A header value or header list larger than the server reads: what, and its limit.
    #[error("{0} is larger than {1} bytes")]
    HeaderTooLarge(&'static str, usize),
    /// A body in a media type or encoding the route does not take.
    #[error("{0}")]
    UnsupportedMediaType(&'static str),
    /// A header that must appear at most once appeared more often.
    #[error("the {0} header must appear at most once")]
    DuplicateHeader(&'static str),
    /// Authentication failed. The message is the same whatever the reason.
    #[error("authentication failed: invalid username or password")]
    Auth(AuthError),
    /// Too many failed logins from this address for this user name.
    #[error("too many failed logins; retry in {} s", retry_after_seconds(.0))]
    TooManyAttempts(Duration),
    /// Every password-check worker busy and the queue full.
    #[error("the server is busy checking passwords; retry shortly")]
    Busy,
    /// An identity source (e.g. the LDAP directory) could not answer; the name is for the
    /// log only. Not a wrong password.
    #[error("the identity source is unavailable; retry shortly")]
    SourceUnavailable(String),
    /// No such route.
    #[error("no such endpoint")]
    NotFound,
    /// A method the route does not take; the methods it takes.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// An error answered by the framework, turned into this body by [`json_fallback`].
    #[error("{}", .0.canonical_reason().unwrap_or("error"))]
    Status(StatusCode),
    /// Anything on our side; the cause goes to the log only.
    #[error("internal server error")]
    Internal(#[source] anyhow::Error),
}

fn retry_after_seconds(d: &Duration) -> u64 {
    // Round up: a client that waits the whole number of seconds is no longer locked out.
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl From<ScopesError> for ApiError {
    fn from(e: ScopesError) -> Self {
        match e {
            ScopesError::Malformed(e) => ApiError::Scope(e),
            ScopesError::TooMany(max) => ApiError::TooManyScopes(max),
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::UnknownService(service) => ApiError::UnknownService(service),
            IssueError::Scopes(e) => e.into(),
            IssueError::Login(e) => e.into(),
            IssueError::RefreshDisabled => ApiError::RefreshDisabled,
            IssueError::RefreshRefused => ApiError::RefreshRefused,
            IssueError::Internal(e) => ApiError::Internal(e),
            // `IssueError` is non-exhaustive for other crates only; a new variant is
            // answered opaquely until it gets its own mapping.
            #[allow(unreachable_patterns)]
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Invalid(e) => ApiError::Auth(e),
            LoginError::Limited { retry_after } => ApiError::TooManyAttempts(retry_after),
            LoginError::Busy => ApiError::Busy,
            LoginError::Unavailable(source) => ApiError::SourceUnavailable(source),
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl ApiError {
    /// The machine-readable code of the error body.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ApiError::MissingField(_)
            | ApiError::UnknownService(_)
            | ApiError::TooManyScopes(_)
            | ApiError::BadQuery(_)
            | ApiError::BadForm(_)
            | ApiError::BadBody
            | ApiError::DuplicateHeader(_)
            | ApiError::RefreshDisabled => "INVALID_REQUEST",
            ApiError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::UriTooLong(..) => "URI_TOO_LONG",
            ApiError::HeaderTooLarge(..) => "HEADERS_TOO_LARGE",
            ApiError::UnsupportedGrant(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::MethodNotAllowed(_) => "UNSUPPORTED",
            ApiError::Scope(_) => "INVALID_SCOPE",
            ApiError::Auth(_) | ApiError::RefreshRefused => "UNAUTHORIZED",
            ApiError::TooManyAttempts(_) => "TOO_MANY_REQUESTS",
            ApiError::Busy | ApiError::SourceUnavailable(_) => "UNAVAILABLE",
            ApiError::NotFound => "NOT_FOUND",
            ApiError::Status(status) => match *status {
                StatusCode::NOT_FOUND => "NOT_FOUND",
                StatusCode::METHOD_NOT_ALLOWED | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                    "UNSUPPORTED"
                }
                StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
                StatusCode::URI_TOO_LONG => "URI_TOO_LONG",
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "HEADERS_TOO_LARGE",
                StatusCode::TOO_MANY_REQUESTS => "TOO_MANY_REQUESTS",
                StatusCode::SERVICE_UNAVAILABLE => "UNAVAILABLE",
                s if s.is_server_error() => "INTERNAL_ERROR",
                _ => "INVALID_REQUEST",
            },
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
            | ApiError::BadForm(_)
            | ApiError::BadBody
            | ApiError::DuplicateHeader(_)
            | ApiError::UnsupportedGrant(_)
            | ApiError::RefreshDisabled => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UriTooLong(..) => StatusCode::URI_TOO_LONG,
            ApiError::HeaderTooLarge(..) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Auth(_) | ApiError::RefreshRefused => StatusCode::UNAUTHORIZED,
            ApiError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy | ApiError::SourceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Status(status) => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => log::error!("request failed: {cause:#}"),
            ApiError::NotFound
            | ApiError::MethodNotAllowed(_)
            | ApiError::Auth(_)
            | ApiError::RefreshRefused
            | ApiError::TooManyAttempts(_)
            | ApiError::Status(_) => {}
            ApiError::Busy => log::warn!("request shed: {self}"),
            ApiError::SourceUnavailable(source) => {
                log::warn!("login refused: identity source {source} is unavailable");
            }
            other => log::info!("request refused: {other}"),
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Auth(_) | ApiError::RefreshRefused => {
                response.insert_header((header::WWW_AUTHENTICATE, r#"Basic realm="regauth""#));
            }
            ApiError::MethodNotAllowed(allowed) => {
                response.insert_header((header::ALLOW, *allowed));
            }
            ApiError::TooManyAttempts(wait) => {
                response.insert_header((header::RETRY_AFTER, retry_after_seconds(wait)));
            }
            ApiError::Busy => {
                response.insert_header((header::RETRY_AFTER, 1));
            }
            ApiError::SourceUnavailable(_) => {
                response.insert_header((header::RETRY_AFTER, 5));
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

/// Fallback for `/token` with another method. Clients that try OAuth2 `POST` first
/// (containerd) fall back to `GET` on 405.
pub async fn token_method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed("GET, POST").error_response()
}

/// Fallback for the read-only endpoints with another method.
pub async fn get_only() -> HttpResponse {
    ApiError::MethodNotAllowed("GET").error_response()
}

/// The last line of defence: an error response that is not JSON (one the framework made
/// itself, outside regauth's handlers) gets the JSON error body for its status. Its own text
/// is dropped: it may carry internal detail.
pub fn json_fallback<B: MessageBody>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (req, _) = res.into_parts();
    let response: HttpResponse<BoxBody> = ApiError::Status(status).error_response();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body::<B>(),
    ))
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;
    use actix_web::test::TestRequest;

    use super::*;

    #[tokio::test]
    async fn a_framework_error_that_is_not_json_becomes_the_json_body_for_its_status() {
        let plain = TestRequest::default().to_srv_response(
            HttpResponse::PayloadTooLarge()
                .content_type("text/plain")
                .body("payload reached size limit: internal detail"),
        );
        let ErrorHandlerResponse::Response(res) = json_fallback(plain).unwrap() else {
            panic!("a response is expected");
        };
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            res.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        let body = to_bytes(res.into_body()).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(r#""code":"PAYLOAD_TOO_LARGE""#), "{body}");
        assert!(!body.contains("internal detail"), "{body}");

        let json = TestRequest::default().to_srv_response(ApiError::NotFound.error_response());
        let ErrorHandlerResponse::Response(res) = json_fallback(json).unwrap() else {
            panic!("a response is expected");
        };
        let body = to_bytes(res.into_body()).await.unwrap();
        assert!(
            String::from_utf8_lossy(&body).contains("no such endpoint"),
            "kept as it was"
        );
    }

    #[tokio::test]
    async fn an_unavailable_identity_source_is_a_json_503_that_does_not_name_it() {
        let res = ApiError::from(LoginError::Unavailable("ldap".into())).error_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "5");
        assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
        let body = to_bytes(res.into_body()).await.unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.errors[0].code, "UNAVAILABLE");
        assert!(!body.errors[0].message.contains("ldap"));
    }
}
