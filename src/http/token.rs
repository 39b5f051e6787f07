//! `GET /token`: the realm registries send clients to. A thin extractor: the query and the
//! `Authorization` header in, the issuing pipeline ([`crate::issue::pipeline`]), the token
//! response out.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::request::{client_ip, credentials};
use super::{ApiError, AppState, trail};
use crate::issue::pipeline::Proof;
use crate::issue::trail::Trail;
use crate::support::json;
use crate::telemetry::metrics::AuthFailure;

/// The query parameters clients send. Unknown parameters are ignored.
#[derive(Debug, Default)]
struct TokenQuery {
    service: Option<String>,
    /// Repeatable; each value may hold several space-separated scopes.
    scope: Vec<String>,
    /// The user name the client claims; must match the credentials.
    account: Option<String>,
    /// `true` asks for a refresh token (docker login).
    offline_token: Option<String>,
}

impl TokenQuery {
    /// The parameters of `query` (`application/x-www-form-urlencoded`: `+` is a space, `%XX`
    /// a byte, invalid UTF-8 replaced), read in one pass. `scope` may repeat; any other
    /// parameter named above given twice is refused rather than one of them picked.
    fn parse(query: &str) -> Result<TokenQuery, ApiError> {
        let mut parsed = TokenQuery::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let single = match key.as_ref() {
                "scope" => {
                    parsed.scope.push(value.into_owned());
                    continue;
                }
                "service" => &mut parsed.service,
                "account" => &mut parsed.account,
                "offline_token" => &mut parsed.offline_token,
                _ => continue,
            };
            if single.replace(value.into_owned()).is_some() {
                return Err(ApiError::BadQuery(format!(
                    "the {key} parameter is given more than once"
                )));
            }
        }
        Ok(parsed)
    }
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
    // Static values: no copy of the text per response.
    response
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
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
    let query = TokenQuery::parse(req.query_string())?;
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
    let body = response_body(
        &issued.token,
        state.claims.ttl_seconds(),
        issued.claims.issued_at().as_str(),
        issued.refresh_token.as_deref(),
    );
    Ok(no_store(HttpResponse::Ok())
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .body(body))
}

/// The [`TokenResponse`] JSON, written once into a buffer of the right size: the token
/// appears twice, and copying it for a second `String` and scanning both for characters to
/// escape is most of what serializing the struct costs. A JWS is base64url and dots, and
/// `issued_at` RFC 3339, so neither needs escaping (debug builds check); the refresh token
/// goes through [`json::push_str`]. The bytes equal `serde_json::to_vec(&TokenResponse {..})`
/// (pinned by a test below).
fn response_body(
    token: &str,
    expires_in: i64,
    issued_at: &str,
    refresh_token: Option<&str>,
) -> Vec<u8> {
    debug_assert!(plain(token) && plain(issued_at));
    let mut body = Vec::with_capacity(2 * token.len() + refresh_token.map_or(0, str::len) + 128);
    let field = |body: &mut Vec<u8>, name: &str, value: &str| {
        body.extend_from_slice(name.as_bytes());
        body.push(b'"');
        body.extend_from_slice(value.as_bytes());
        body.push(b'"');
    };
    field(&mut body, "{\"token\":", token);
    field(&mut body, ",\"access_token\":", token);
    body.extend_from_slice(b",\"expires_in\":");
    json::push_i64(&mut body, expires_in);
    field(&mut body, ",\"issued_at\":", issued_at);
    if let Some(refresh) = refresh_token {
        body.extend_from_slice(b",\"refresh_token\":");
        json::push_str(&mut body, refresh);
    }
    body.push(b'}');
    body
}

/// True when `text` needs no JSON escaping (base64url, dots, RFC 3339 times).
fn plain(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_decoded_as_a_form_with_repeatable_scopes() {
        let query = TokenQuery::parse(
            "service=registry.te%73t&scope=repository%3Ax%3Apull+repository:y:push\
             &scope=registry:catalog:*&account=al%69ce&offline_token=true&other=1&%ZZ",
        )
        .unwrap();
        assert_eq!(query.service.as_deref(), Some("registry.test"));
        assert_eq!(
            query.scope,
            ["repository:x:pull repository:y:push", "registry:catalog:*"]
        );
        assert_eq!(query.account.as_deref(), Some("alice"));
        assert_eq!(query.offline_token.as_deref(), Some("true"));

        let empty = TokenQuery::parse("").unwrap();
        assert!(empty.service.is_none() && empty.scope.is_empty() && empty.account.is_none());
        // A key without `=` has an empty value; invalid UTF-8 is replaced, never refused.
        let bare = TokenQuery::parse("service&scope").unwrap();
        assert_eq!(bare.service.as_deref(), Some(""));
        assert_eq!(bare.scope, [""]);
        let lossy = TokenQuery::parse("service=%FF").unwrap();
        assert_eq!(lossy.service.as_deref(), Some("\u{FFFD}"));
    }

    #[test]
    fn a_single_valued_parameter_given_twice_is_refused() {
        for (query, name) in [
            ("service=a&service=b", "service"),
            ("service=a&account=x&account=x", "account"),
            ("offline_token=true&offline_token=false", "offline_token"),
            ("service=a&%73ervice=b", "service"),
        ] {
            match TokenQuery::parse(query) {
                Err(ApiError::BadQuery(message)) => {
                    assert_eq!(
                        message,
                        format!("the {name} parameter is given more than once")
                    );
                }
                other => panic!("{query}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_hand_written_body_is_what_serde_writes_for_the_response() {
        let token = "eyJ0eXAiOiJKV1QifQ.eyJpc3MiOiJyZWdhdXRoIn0.c2lnbmF0dXJl-_";
        for refresh in [
            None,
            Some("rt1.abc_-.def"),
            Some("odd \"quoted\" \\ text\n"),
        ] {
            let expected = serde_json::to_vec(&TokenResponse {
                token: token.into(),
                access_token: token.into(),
                expires_in: 300,
                issued_at: "2026-12-02T16:00:00Z".into(),
                refresh_token: refresh.map(str::to_owned),
            })
            .unwrap();
            let written = response_body(token, 300, "2026-12-02T16:00:00Z", refresh);
            assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
