//! `/api/v1/tokens`: a signed-in user creates, lists and revokes their own access tokens.
//!
//! Authenticated like `GET /token` (Basic), with a password: a caller signed in with an
//! access token, a robot or a workload token gets 403, so a leaked token cannot mint more.
//! A user only ever sees and revokes their own tokens; a token made here is a user's token,
//! limited by its scopes and its owner's rights like any other (robots are made with the
//! command line only).
//!
//! - `POST /api/v1/tokens` with `{"name": "laptop", "scopes": ["repository:alice/*:pull"],
//!   "expires": "30d"}` → 201 with the token and its `secret` (shown once).
//! - `GET /api/v1/tokens` → 200 with the caller's tokens (never a secret).
//! - `DELETE /api/v1/tokens/{id or name}` → 204; 404 when the caller has no such token.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::error::{ErrorBody, ErrorEntry, shorten};
use super::request::{client_ip, credentials};
use super::token::no_store;
use super::{ApiError, AppState};
use crate::identity::federation::SOURCE_FEDERATION;
use crate::identity::tokens::{SOURCE_ROBOT, SOURCE_TOKENS};
use crate::identity::{AuthError, Identity};
use crate::store::{Listed, Store, StoreError, parse_duration};

/// Largest body `POST /api/v1/tokens` reads.
const MAX_BODY: usize = 16 * 1024;

/// The routes, on the main listener.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/tokens")
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .route(web::get().to(list))
            .route(web::post().to(create))
            .default_service(web::to(|| async { method_not_allowed("GET, POST") })),
    )
    .service(
        web::resource("/api/v1/tokens/{token}")
            .route(web::delete().to(revoke))
            .default_service(web::to(|| async { method_not_allowed("DELETE") })),
    );
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        format!("method not allowed; use {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires: Option<String>,
}

#[derive(Serialize)]
struct CreatedBody<'a> {
    #[serde(flatten)]
    token: Listed,
    secret: &'a str,
}

fn refuse(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    no_store(HttpResponse::build(status)).json(ErrorBody {
        errors: vec![ErrorEntry {
            code: code.into(),
            message: message.into(),
        }],
    })
}

fn store_error(e: StoreError) -> HttpResponse {
    match e {
        StoreError::Refused(m) => refuse(StatusCode::BAD_REQUEST, "INVALID_REQUEST", m),
        StoreError::Exists(m) => refuse(StatusCode::CONFLICT, "CONFLICT", m),
        StoreError::NoSuchToken(m) => refuse(StatusCode::NOT_FOUND, "NOT_FOUND", m),
        other => {
            log::warn!("token API: {other}");
            let mut response = refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the token store is unavailable; retry shortly",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            response
        }
    }
}

/// The store and the signed-in user whose tokens these are, or the answer to give.
async fn caller(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Result<(std::sync::Arc<Store>, Identity), HttpResponse>, ApiError> {
    let Some(store) = state.store.clone() else {
        return Ok(Err(refuse(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "access tokens need a store: this server has no store.url",
        )));
    };
    let ip = client_ip(req);
    let credentials =
        credentials(req.headers(), ip)?.ok_or(ApiError::Auth(AuthError::InvalidCredentials))?;
    let identity = state
        .issuer()
        .authenticate(Some(credentials), None, ip)
        .await?;
    if identity.is_anonymous() {
        return Err(ApiError::Auth(AuthError::InvalidCredentials));
    }
    if [SOURCE_TOKENS, SOURCE_ROBOT, SOURCE_FEDERATION].contains(&identity.source()) {
        return Ok(Err(refuse(
            StatusCode::FORBIDDEN,
            "DENIED",
            "sign in with your password to manage access tokens",
        )));
    }
    Ok(Ok((store, identity)))
}

async fn create(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (store, identity) = match caller(&req, &state).await? {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    let body: CreateBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return Ok(refuse(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                format!(
                    "the body must be JSON {{\"name\", \"scopes\": [..], \"expires\"?}}: {}",
                    shorten(&e.to_string())
                ),
            ));
        }
    };
    let ttl = match body.expires.as_deref().map(parse_duration).transpose() {
        Ok(ttl) => ttl,
        Err(e) => {
            return Ok(refuse(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                format!("expires: {}", shorten(&e)),
            ));
        }
    };
    match store
        .create(identity.subject(), false, &body.name, &body.scopes, ttl)
        .await
    {
        Ok(created) => Ok(no_store(HttpResponse::Created()).json(CreatedBody {
            token: Listed::from(&created.row),
            secret: created.secret.expose_secret(),
        })),
        Err(e) => Ok(store_error(e)),
    }
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (store, identity) = match caller(&req, &state).await? {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    match store.list(Some(identity.subject())).await {
        Ok(rows) => Ok(no_store(HttpResponse::Ok()).json(
            rows.iter()
                // A robot of the user's name is not the user's.
                .filter(|row| !row.robot)
                .map(Listed::from)
                .collect::<Vec<_>>(),
        )),
        Err(e) => Ok(store_error(e)),
    }
}

async fn revoke(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (store, identity) = match caller(&req, &state).await? {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    let key = path.into_inner();
    let owner = identity.subject();
    // Only the caller's own user tokens: look them up first, then revoke by id.
    let mine = match store.list(Some(owner)).await {
        Ok(rows) => rows
            .into_iter()
            .find(|row| !row.robot && (row.id == key || row.name == key)),
        Err(e) => return Ok(store_error(e)),
    };
    let Some(mine) = mine else {
        return Ok(store_error(StoreError::NoSuchToken(format!(
            "you have no token with id or name {:?}",
            shorten(&key)
        ))));
    };
    match store.revoke(&mine.id, Some(owner)).await {
        Ok(_) => Ok(no_store(HttpResponse::NoContent()).finish()),
        Err(e) => Ok(store_error(e)),
    }
}
