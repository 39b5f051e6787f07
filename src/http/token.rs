//! `GET /token`: the realm registries send clients to, and the issuing steps it shares with
//! `POST /token`.
//!
//! extract → validate service and scopes → authenticate → authorize → build claims → sign
//! → respond. The cheap checks come first: a bad request never costs a password check.

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::error::shorten;
use super::request::{client_ip, credentials};
use super::trail::Trail;
use super::{ApiError, AppState};
use crate::identity::{
    AuthError, Credentials, Identity, LoginError, SOURCE_HTPASSWD, SOURCE_USERS,
};
use crate::issue::claims::Claims;
use crate::issue::scope::{self, ResourceScope};
use crate::issue::signing;
use crate::policy::{self, RequestContext};
use crate::telemetry::metrics::{AuthFailure, Grant};

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

/// The cheap checks, done before anyone's password is: the service is one this server
/// issues for, and the scopes parse, within the limit.
pub(super) fn validate<'a, I>(
    state: &AppState,
    service: &str,
    scopes: I,
) -> Result<Vec<ResourceScope>, ApiError>
where
    I: IntoIterator<Item = &'a str>,
{
    if !state.services.is_empty() && !state.services.contains(service) {
        return Err(ApiError::UnknownService(service.to_owned()));
    }
    Ok(scope::parse_limited(scopes, scope::MAX_SCOPES)?)
}

/// Decides who the caller is (see [`crate::identity::Logins`]); failures are logged without
/// the name the client sent, which may be a mistyped password.
pub(super) async fn authenticate(
    state: &AppState,
    credentials: Option<Credentials>,
    account: Option<&str>,
    ip: Option<IpAddr>,
) -> Result<Identity, ApiError> {
    state
        .logins
        .login(credentials, account, ip)
        .await
        .map_err(|e| {
            // Limited and shed logins are counted by `Logins` itself; a malformed header
            // never gets here (it is refused while the request is read).
            match &e {
                LoginError::Invalid(AuthError::AccountMismatch) => {
                    state.metrics.auth_failed(AuthFailure::AccountMismatch);
                }
                LoginError::Invalid(_) => {
                    state.metrics.auth_failed(AuthFailure::InvalidCredentials);
                }
                LoginError::Unavailable(_) => {
                    state.metrics.auth_failed(AuthFailure::SourceUnavailable);
                }
                _ => {}
            }
            if !matches!(e, LoginError::Busy) {
                log::info!(
                    "authentication failed from {}: {e}",
                    ip.map(|i| i.to_string()).unwrap_or_else(|| "?".into())
                );
            }
            ApiError::from(e)
        })
}

/// Applies the rules to validated scopes, builds and signs the token.
pub(super) fn issue(
    state: &AppState,
    identity: &Identity,
    service: &str,
    scopes: &[ResourceScope],
    ip: Option<IpAddr>,
    trail: &mut Trail,
) -> Result<Issued, ApiError> {
    let ctx = RequestContext {
        identity,
        service,
        ip,
    };
    let decisions = policy::grant_explained(state.policy.as_ref(), &ctx, scopes);
    trail.decided(identity, &decisions);
    let access = decisions.into_iter().map(|(entry, _)| entry).collect();
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
    trail.issued(&claims.jti, key.kid());
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
    // Refresh tokens are bound to a password hash regauth holds: only for its own users.
    if ![SOURCE_USERS, SOURCE_HTPASSWD].contains(&identity.source()) {
        return None;
    }
    let user = state.users.lookup(identity.subject())?;
    state.metrics.refresh_issued();
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

/// Issues a token for the requested scopes; the decision goes to the audit log.
pub async fn get_token(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let grant_type = if req.headers().contains_key(header::AUTHORIZATION) {
        "basic"
    } else {
        "anonymous"
    };
    let mut trail = Trail::new(&state, grant_type);
    let result = answer_get(&req, &state, &mut trail).await;
    trail.record(&state, &req, &result);
    result
}

async fn answer_get(
    req: &HttpRequest,
    state: &AppState,
    trail: &mut Trail,
) -> Result<HttpResponse, ApiError> {
    let query: TokenQuery = serde_html_form::from_str(req.query_string())
        .map_err(|e| ApiError::BadQuery(shorten(&e.to_string())))?;
    let service = query
        .service
        .filter(|s| !s.is_empty())
        .ok_or(ApiError::MissingField("service"))?;
    trail.service(&service);
    let scopes = validate(state, &service, query.scope.iter().map(String::as_str))?;
    trail.requested(&scopes);
    let ip = client_ip(req);
    let credentials = credentials(req.headers(), ip)
        .inspect_err(|_| state.metrics.auth_failed(AuthFailure::MalformedHeader))?;
    let identity = authenticate(state, credentials, query.account.as_deref(), ip).await?;
    let issued = issue(state, &identity, &service, &scopes, ip, trail)?;
    let grant = if identity.is_anonymous() {
        Grant::Anonymous
    } else {
        Grant::Basic
    };
    state.metrics.token_issued(&service, grant);
    let offline = query.offline_token.as_deref() == Some("true");
    let refresh_token = if offline {
        refresh_token_for(state, &identity, &service)
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
