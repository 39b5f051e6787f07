//! `GET /token`: the realm registries send clients to.
//!
//! extract → authenticate → parse scopes → authorize → build claims → sign → respond.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::{identity, policy, scope, signing};

/// Most resource scopes one request may carry.
pub const MAX_SCOPES: usize = 64;

/// The query parameters clients send. Unknown parameters are ignored.
#[derive(Debug, Deserialize)]
struct TokenQuery {
    service: Option<String>,
    /// Repeatable; each value may hold several space-separated scopes.
    #[serde(default)]
    scope: Vec<String>,
    /// The user name the client claims; checked against credentials once users exist.
    #[allow(dead_code)]
    account: Option<String>,
}

/// The answer: `token` and `access_token` carry the same JWT.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The JWT.
    pub token: String,
    /// The JWT again, for OAuth2 clients.
    pub access_token: String,
    /// Lifetime in seconds.
    pub expires_in: i64,
    /// Issue time, RFC 3339 UTC.
    pub issued_at: String,
}

/// Issues a token for the requested scopes.
pub async fn get_token(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query: TokenQuery = serde_html_form::from_str(req.query_string())
        .map_err(|e| ApiError::BadQuery(e.to_string()))?;
    let service = query
        .service
        .filter(|s| !s.is_empty())
        .ok_or(ApiError::MissingService)?;
    if !state.services.is_empty() && !state.services.contains(&service) {
        return Err(ApiError::UnknownService(service));
    }
    let identity = identity::authenticate(req.headers().get(header::AUTHORIZATION))?;
    let scopes = scope::parse_all(query.scope.iter().map(String::as_str))?;
    if scopes.len() > MAX_SCOPES {
        return Err(ApiError::TooManyScopes(MAX_SCOPES));
    }
    let access = policy::grant(state.policy.as_ref(), &identity, &scopes);
    let claims = state
        .claims
        .build(state.clock.as_ref(), identity.subject(), &service, access)
        .context("building claims")
        .map_err(ApiError::Internal)?;
    let key = state.keys.signing_key();
    let token = signing::sign(&claims, &key)
        .with_context(|| format!("signing with {}", key.label()))
        .map_err(ApiError::Internal)?;
    log::debug!(
        "issued token jti={} sub={:?} aud={:?} kid={:?} access={}",
        claims.jti,
        claims.sub,
        claims.aud,
        key.kid(),
        serde_json::to_string(&claims.access).unwrap_or_default()
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(TokenResponse {
            access_token: token.clone(),
            token,
            expires_in: state.claims.ttl_seconds(),
            issued_at: claims.issued_at(),
        }))
}
