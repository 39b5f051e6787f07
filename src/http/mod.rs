//! The HTTP surface: `GET /token`, `POST /token`, `/.well-known/jwks.json`, `/healthz`,
//! `/readyz`, `/metrics`, and JSON errors for everything else.

mod api_tokens;
mod context;
mod error;
mod health;
mod jwks;
pub mod limits;
mod metrics;
mod oauth;
mod request;
mod token;
mod trail;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::Service;
use actix_web::http::Method;
use actix_web::web;

pub use context::{
    RequestInfo, X_REQUEST_ID, access_log_on, log_client, log_request_id, log_request_line, tag,
};
pub use error::{ApiError, ErrorBody, json_fallback};
pub use limits::limits;
pub use oauth::{OAuthResponse, TokenForm};
pub use request::{MAX_REQUEST_LINE_LOGGED, request_line};
pub use token::TokenResponse;

use crate::clock::Clock;
use crate::identity::Logins;
use crate::issue::refresh::RefreshTokens;
use crate::keys::KeyProvider;
use crate::policy::Policy;
use crate::server::proxy::TrustedProxies;
use crate::server::shutdown::Shutdown;
use crate::telemetry::audit::AuditLog;
use crate::telemetry::metrics::{Metrics, TokenMethod};
use crate::token::claims::ClaimsBuilder;

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
    /// Password logins: limits, cache, bounded checks; the identity sources, among them the
    /// users regauth knows itself ([`Logins::users`]).
    pub logins: Arc<Logins>,
    /// Refresh tokens, when a refresh secret is configured.
    pub refresh: Option<Arc<RefreshTokens>>,
    /// Set once the process is shutting down.
    pub shutdown: Arc<Shutdown>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Proxies whose forwarding header names the client.
    pub proxies: TrustedProxies,
    /// The audit log of token decisions, when on.
    pub audit: Option<Arc<AuditLog>>,
    /// The served TLS certificate, when the main listener is HTTPS.
    pub tls: Option<Arc<crate::server::tls::TlsCertificates>>,
    /// Access tokens, robots and logouts, when `store` is configured.
    pub store: Option<Arc<crate::store::Store>>,
}

impl AppState {
    /// The issuing pipeline over this state's parts (borrowed: free to make per request).
    pub fn issuer(&self) -> crate::issue::pipeline::TokenIssuer<'_> {
        crate::issue::pipeline::TokenIssuer {
            services: &self.services,
            logins: &self.logins,
            policy: self.policy.as_ref(),
            claims: &self.claims,
            keys: self.keys.as_ref(),
            clock: self.clock.as_ref(),
            refresh: self.refresh.as_deref(),
            logouts: self
                .store
                .as_deref()
                .map(|store| store as &dyn crate::issue::refresh::Logouts),
            metrics: &self.metrics,
        }
    }
}

/// Largest `POST /token` body accepted: the form carries the same scopes a `GET` query does
/// (at most [`limits::MAX_QUERY_BYTES`]) plus a password or refresh token, percent-encoded.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Every route on one listener (no `server.admin_listen`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    token_routes(cfg);
    operator_routes(cfg, Readiness::StatusOnly);
    api_routes(cfg);
    cfg.default_service(web::to(error::not_found));
}

/// The main listener when `server.admin_listen` is set: tokens, keys and `/healthz`;
/// `/metrics` and `/readyz` are served only on the admin listener.
pub fn public_routes(cfg: &mut web::ServiceConfig) {
    token_routes(cfg);
    cfg.service(healthz());
    api_routes(cfg);
    cfg.default_service(web::to(error::not_found));
}

/// The admin listener (`server.admin_listen`): `/metrics`, `/readyz`, `/healthz`.
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    operator_routes(cfg, Readiness::Details);
    cfg.default_service(web::to(error::not_found));
}

fn token_routes(cfg: &mut web::ServiceConfig) {
    // The router tries resources in the order they are registered, and the token API's
    // `/api/v1/tokens/{token}` is a pattern (a regex match per request that reaches it):
    // static paths go first, so a token request or a health check never runs it.
    cfg.service(
        web::resource("/token")
            // Times every /token request, whatever its outcome.
            .wrap_fn(|req, srv| {
                let method = match *req.method() {
                    Method::GET => Some(TokenMethod::Get),
                    Method::POST => Some(TokenMethod::Post),
                    _ => None,
                };
                let state = req.app_data::<web::Data<AppState>>().cloned();
                let start = Instant::now();
                let fut = srv.call(req);
                async move {
                    let res = fut.await;
                    if let (Some(method), Some(state)) = (method, state) {
                        state.metrics.token_request(method, start.elapsed());
                    }
                    res
                }
            })
            .route(web::get().to(token::get_token))
            .route(web::post().to(oauth::post_token))
            .default_service(web::to(error::token_method_not_allowed)),
    )
    .service(
        web::resource("/.well-known/jwks.json")
            .route(web::get().to(jwks::get_jwks))
            .default_service(web::to(error::get_only)),
    );
}

/// The token API (`/api/v1/tokens`), after every static route (see [`token_routes`]).
fn api_routes(cfg: &mut web::ServiceConfig) {
    api_tokens::routes(cfg);
}

fn healthz() -> actix_web::Resource {
    web::resource("/healthz")
        .route(web::get().to(health::healthz))
        .default_service(web::to(error::get_only))
}

/// What `/readyz` shows: the status alone on the listener token clients reach, the key,
/// certificate and reload details only on `server.admin_listen`.
#[derive(Clone, Copy)]
enum Readiness {
    StatusOnly,
    Details,
}

fn operator_routes(cfg: &mut web::ServiceConfig, readiness: Readiness) {
    let readyz = match readiness {
        Readiness::StatusOnly => web::get().to(health::readyz),
        Readiness::Details => web::get().to(health::readyz_details),
    };
    cfg.service(healthz())
        .service(
            web::resource("/readyz")
                .route(readyz)
                .default_service(web::to(error::get_only)),
        )
        .service(
            web::resource("/metrics")
                .route(web::get().to(metrics::get_metrics))
                .default_service(web::to(error::get_only)),
        );
}
