//! `GET /token`: the realm registries send clients to, and the issuing steps it shares with
//! `POST /token`.
//!
//! extract → authenticate → parse scopes → authorize → build claims → sign → respond.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::claims::Claims;
use crate::identity::{self, AuthError, Credentials, Identity};
use crate::policy::{self, RequestContext};
use crate::{scope, signing};

/// Most resource scopes one request may carry.
pub const MAX_SCOPES: usize = 64;

/// The query parameters clients send. Unknown parameters are ignored.
#[derive(Debug, Deserialize)]
struct TokenQuery {
    service: Option<String>,
    /// Repeatable; each value may hold several space-separated scopes.
    #[serde(default)]
    scope: Vec<String>,
    /// The user name the client claims; must match the credentials.
    account: Option<String>,
    /// `true` asks for a refresh token (docker login).
    offline_token: Option<String>,
}

/// The answer to `GET /token`: `token` and `access_token` carry the same JWT.
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
    /// Present when offline access was asked for by a signed-in user.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub refresh_token: Option<String>,
}

/// A signed token and what it says.
pub(super) struct Issued {
    pub claims: Claims,
    pub token: String,
}

/// Runs the password check on the blocking pool: bcrypt takes tens of milliseconds. Callers
/// without credentials are anonymous and never leave the worker.
pub(super) async fn authenticate(
    state: &web::Data<AppState>,
    credentials: Option<Credentials>,
    account: Option<String>,
    ip: Option<IpAddr>,
) -> Result<Identity, ApiError> {
    if credentials.is_none() {
        return Ok(Identity::anonymous());
    }
    let users = Arc::clone(&state.users);
    let username = credentials.as_ref().map(|c| c.username.clone());
    let result =
        web::block(move || identity::authenticate(&users, credentials, account.as_deref()))
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("password check did not run: {e}")))?;
    result.map_err(|e| {
        log::info!(
            "authentication failed for {:?} from {}: {e}",
            username.unwrap_or_default(),
            ip.map(|i| i.to_string()).unwrap_or_else(|| "?".into())
        );
        ApiError::Auth(e)
    })
}

/// Parses scopes, applies the rules, builds and signs the token.
pub(super) fn issue<'a, I>(
    state: &AppState,
    identity: &Identity,
    service: &str,
    scopes: I,
    ip: Option<IpAddr>,
) -> Result<Issued, ApiError>
where
    I: IntoIterator<Item = &'a str>,
{
    if !state.services.is_empty() && !state.services.contains(service) {
        return Err(ApiError::UnknownService(service.to_owned()));
    }
    let scopes = scope::parse_all(scopes)?;
    if scopes.len() > MAX_SCOPES {
        return Err(ApiError::TooManyScopes(MAX_SCOPES));
    }
    let ctx = RequestContext {
        identity,
        service,
        ip,
    };
    let access = policy::grant(state.policy.as_ref(), &ctx, &scopes);
    let claims = state
        .claims
        .build(state.clock.as_ref(), identity.subject(), service, access)
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
    Ok(Issued { claims, token })
}

/// A refresh token for a signed-in user, when the server has a refresh secret.
pub(super) fn refresh_token_for(
    state: &AppState,
    identity: &Identity,
    service: &str,
) -> Option<String> {
    if identity.is_anonymous() {
        return None;
    }
    let refresh = state.refresh.as_ref()?;
    let user = state.users.lookup(identity.subject())?;
    Some(refresh.issue(
        user.name(),
        user.password_hash(),
        service,
        state.clock.now(),
    ))
}

pub(super) fn no_store(
    mut response: actix_web::HttpResponseBuilder,
) -> actix_web::HttpResponseBuilder {
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    response
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
        .ok_or(ApiError::MissingField("service"))?;
    let ip = req.peer_addr().map(|a| a.ip());
    let credentials = identity::basic_credentials(req.headers().get(header::AUTHORIZATION))
        .map_err(|e: AuthError| {
            log::info!(
                "authentication failed from {}: {e}",
                ip.map(|i| i.to_string()).unwrap_or_default()
            );
            ApiError::Auth(e)
        })?;
    let identity = authenticate(&state, credentials, query.account, ip).await?;
    let issued = issue(
        &state,
        &identity,
        &service,
        query.scope.iter().map(String::as_str),
        ip,
    )?;
    let offline = query.offline_token.as_deref() == Some("true");
    let refresh_token = if offline {
        refresh_token_for(&state, &identity, &service)
    } else {
        None
    };
    Ok(no_store(HttpResponse::Ok()).json(TokenResponse {
        access_token: issued.token.clone(),
        token: issued.token,
        expires_in: state.claims.ttl_seconds(),
        issued_at: issued.claims.issued_at(),
        refresh_token,
    }))
}
