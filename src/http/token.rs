//! `GET /token`: the realm registries send clients to. A thin extractor: the query and the
//! `Authorization` header in, the issuing pipeline ([`crate::issue::pipeline`]), the token
//! response out.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::error::shorten;
use super::request::{client_ip, credentials};
use super::{ApiError, AppState, trail};
use crate::issue::pipeline::Proof;
use crate::issue::trail::Trail;
use crate::telemetry::metrics::AuthFailure;

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
    let mut trail = trail::start(&state, grant_type);
    let result = answer_get(&req, &state, &mut trail).await;
    trail::record(trail, &state, &req, &result);
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
    let issuer = state.issuer();
    let request = issuer.validate(&service, query.scope.iter().map(String::as_str), trail)?;
    let ip = client_ip(req);
    let credentials = credentials(req.headers(), ip)
        .inspect_err(|_| state.metrics.auth_failed(AuthFailure::MalformedHeader))?;
    let proof = Proof::Basic {
        credentials,
        account: query.account,
    };
    let offline = query.offline_token.as_deref() == Some("true");
    let issued = issuer.issue(request, proof, ip, offline, trail).await?;
    Ok(no_store(HttpResponse::Ok()).json(TokenResponse {
        access_token: issued.token.clone(),
        token: issued.token,
        expires_in: state.claims.ttl_seconds(),
        issued_at: issued.claims.issued_at(),
        refresh_token: issued.refresh_token,
    }))
}
