//! The HTTP surface: `GET /token`, `POST /token`, `/.well-known/jwks.json`, `/healthz`,
//! `/readyz`, and JSON errors for everything else.

mod error;
mod health;
mod jwks;
mod oauth;
mod request;
mod token;

use std::collections::HashSet;
use std::sync::Arc;

use actix_web::web;

pub use error::{ApiError, ErrorBody, json_fallback};
pub use oauth::{OAuthResponse, TokenForm};
pub use request::{MAX_REQUEST_LINE_LOGGED, request_line};
pub use token::TokenResponse;

use crate::claims::ClaimsBuilder;
use crate::clock::Clock;
use crate::identity::{Logins, UserDirectory};
use crate::keys::KeyProvider;
use crate::policy::Policy;
use crate::refresh::RefreshTokens;
use crate::shutdown::Shutdown;

/// What the handlers share.
pub struct AppState {
    /// Signing keys.
    pub keys: Arc<dyn KeyProvider>,
    /// Claims for every token.
    pub claims: ClaimsBuilder,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Who may do what.
    pub policy: Arc<dyn Policy>,
    /// Allowed services; empty means any.
    pub services: HashSet<String>,
    /// Who can sign in.
    pub users: Arc<UserDirectory>,
    /// Password logins: limits, cache, bounded checks.
    pub logins: Arc<Logins>,
    /// Refresh tokens, when a refresh secret is configured.
    pub refresh: Option<Arc<RefreshTokens>>,
    /// Set once the process is shutting down.
    pub shutdown: Arc<Shutdown>,
}

/// Largest `POST /token` body accepted.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/token")
            .route(web::get().to(token::get_token))
            .route(web::post().to(oauth::post_token))
            .default_service(web::to(error::token_method_not_allowed)),
    )
    .service(
        web::resource("/.well-known/jwks.json")
            .route(web::get().to(jwks::get_jwks))
            .default_service(web::to(error::get_only)),
    )
    .service(
        web::resource("/healthz")
            .route(web::get().to(health::healthz))
            .default_service(web::to(error::get_only)),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(health::readyz))
            .default_service(web::to(error::get_only)),
    )
    .default_service(web::to(error::not_found));
}
