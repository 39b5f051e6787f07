//! The HTTP surface: `GET /token`, `/.well-known/jwks.json`, `/healthz`, `/readyz`, and JSON
//! errors for everything else.

mod error;
mod health;
mod jwks;
mod token;

use std::collections::HashSet;
use std::sync::Arc;

use actix_web::web;

pub use error::{ApiError, ErrorBody};
pub use token::{MAX_SCOPES, TokenResponse};

use crate::claims::ClaimsBuilder;
use crate::clock::Clock;
use crate::keys::KeyProvider;
use crate::policy::Policy;

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
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/token")
            .route(web::get().to(token::get_token))
            .default_service(web::to(error::method_not_allowed)),
    )
    .service(web::resource("/.well-known/jwks.json").route(web::get().to(jwks::get_jwks)))
    .service(web::resource("/healthz").route(web::get().to(health::healthz)))
    .service(web::resource("/readyz").route(web::get().to(health::readyz)))
    .default_service(web::to(error::not_found));
}
