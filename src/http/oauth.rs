//! `POST /token`: the OAuth2 password and refresh-token grants (distribution's oauth.md).
//!
//! A refresh grant returns the refresh token it was given, unchanged: docker stores the first
//! one and reuses it forever. Every refresh re-evaluates the access rules.

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::error::shorten;
use super::request::{client_ip, form_body};
use super::token::no_store;
use super::{ApiError, AppState, MAX_FORM_BYTES, trail};
use crate::identity::Credentials;
use crate::issue::pipeline::Proof;
use crate::issue::trail::Trail;

/// The `POST /token` form. Unknown fields are ignored; `Debug` never shows the password or
/// the refresh token.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    /// `password` or `refresh_token`.
    pub grant_type: Option<String>,
    /// The registry the token is for.
    pub service: Option<String>,
    /// The client's name (required by the spec, not checked).
    pub client_id: Option<String>,
    /// `offline` asks for a refresh token with a password grant.
    pub access_type: Option<String>,
    /// Space-separated, and clients also repeat the field.
    #[serde(default)]
    pub scope: Vec<String>,
    /// For the password grant.
    pub username: Option<String>,
    /// For the password grant.
    pub password: Option<SecretString>,
    /// For the refresh grant.
    pub refresh_token: Option<SecretString>,
}

/// The OAuth2 answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct OAuthResponse {
    /// The JWT.
    pub access_token: String,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// Lifetime in seconds.
    pub expires_in: i64,
    /// Issue time, RFC 3339 UTC.
    pub issued_at: String,
    /// For `access_type=offline` password grants, and echoed back on refresh grants.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub refresh_token: Option<String>,
}

fn required(value: Option<String>, field: &'static str) -> Result<String, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or(ApiError::MissingField(field))
}

/// Handles both grants; the decision goes to the audit log.
pub async fn post_token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut trail = trail::start(&state, "");
    let result = answer_post(&req, payload, &state, &mut trail).await;
    trail::record(trail, &state, &req, &result);
    result
}

async fn answer_post(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    trail: &mut Trail,
) -> Result<HttpResponse, ApiError> {
    let body = form_body(req, payload, MAX_FORM_BYTES).await?;
    let form: TokenForm = serde_html_form::from_bytes(&body)
        .map_err(|e| ApiError::BadForm(shorten(&e.to_string())))?;
    let grant_type = required(form.grant_type, "grant_type")?;
    trail.grant_type(match grant_type.as_str() {
        "password" => "password",
        "refresh_token" => "refresh_token",
        _ => "unsupported",
    });
    let service = required(form.service, "service")?;
    trail.service(&service);
    let _client_id = required(form.client_id, "client_id")?;
    let issuer = state.issuer();
    let request = issuer.validate(&service, form.scope.iter().map(String::as_str), trail)?;
    let ip = client_ip(req);

    let (proof, offline) = match grant_type.as_str() {
        "password" => {
            let username = required(form.username, "username")?;
            let credentials = Credentials {
                username,
                password: form.password.unwrap_or_else(|| SecretString::from("")),
            };
            let offline = form.access_type.as_deref() == Some("offline");
            (Proof::Password(credentials), offline)
        }
        "refresh_token" => {
            let token = form
                .refresh_token
                .filter(|t| !t.expose_secret().is_empty())
                .ok_or(ApiError::MissingField("refresh_token"))?;
            (Proof::Refresh(token), false)
        }
        other => return Err(ApiError::UnsupportedGrant(shorten(other))),
    };
    let issued = issuer.issue(request, proof, ip, offline, trail).await?;
    let scope = issued
        .claims
        .access
        .iter()
        .filter(|e| !e.actions.is_empty())
        .map(|e| format!("{}:{}:{}", e.resource_type, e.name, e.actions))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(no_store(HttpResponse::Ok()).json(OAuthResponse {
        access_token: issued.token,
        scope,
        expires_in: state.claims.ttl_seconds(),
        issued_at: issued.claims.issued_at().as_str().to_owned(),
        refresh_token: issued.refresh_token,
    }))
}
