//! What the handlers read from a request before any work: the caller's address, the
//! `Authorization` header, and a bounded form body, each refused with a clear error.

use std::net::IpAddr;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpMessage, HttpRequest, web};
use futures_util::StreamExt;

use super::ApiError;
use super::error::shorten;
use crate::identity::{self, AuthError, Credentials};

/// Longest request line written to the access log; longer ones are cut with `…`.
pub const MAX_REQUEST_LINE_LOGGED: usize = 1024;

/// The client's address, the one place that decides it: computed once per request by the
/// [`super::context::tag`] middleware (the TCP peer, or what a trusted proxy forwarded).
pub(super) fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    match req.extensions().get::<super::context::RequestInfo>() {
        Some(info) => info.client_ip,
        None => super::context::resolve_client_ip(req),
    }
}

/// Basic credentials from the one `Authorization` header, `None` without one. Two headers
/// are ambiguous (which one would a proxy have checked?) and refused.
pub(super) fn credentials(
    headers: &HeaderMap,
    ip: Option<IpAddr>,
) -> Result<Option<Credentials>, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::DuplicateHeader("Authorization"));
    }
    identity::parse_basic(value.as_bytes())
        .map(Some)
        .map_err(|e: AuthError| {
            log::info!(
                "authentication failed from {}: {e}",
                ip.map(|i| i.to_string()).unwrap_or_default()
            );
            ApiError::Auth(e)
        })
}

/// The body of a form post: `application/x-www-form-urlencoded`, not encoded, at most
/// `limit` bytes. Checked in that order, so a wrong type costs no read.
pub(super) async fn form_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(ApiError::UnsupportedMediaType(
            "POST /token takes a form: Content-Type: application/x-www-form-urlencoded",
        ));
    }
    let encoded = req
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(ApiError::UnsupportedMediaType(
            "POST /token takes an unencoded body; Content-Encoding is not supported",
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            log::info!("request body unreadable: {}", shorten(&e.to_string()));
            ApiError::BadBody
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The request line for the access log, cut to [`MAX_REQUEST_LINE_LOGGED`] bytes, with the
/// value of `account` replaced: it is whatever a person typed as their user name, and people
/// type passwords there.
pub fn request_line(method: &str, uri: &str, version: actix_web::http::Version) -> String {
    let uri = match uri.split_once('?') {
        Some((path, query)) if query.split('&').any(|p| p.starts_with("account=")) => {
            let query: Vec<&str> = query
                .split('&')
                .map(|pair| {
                    if pair.starts_with("account=") {
                        "account=<redacted>"
                    } else {
                        pair
                    }
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        _ => uri.to_owned(),
    };
    let mut line = format!("{method} {uri} {version:?}");
    if line.len() > MAX_REQUEST_LINE_LOGGED {
        let mut cut = MAX_REQUEST_LINE_LOGGED;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_request_lines_are_cut_for_the_log() {
        let short = request_line("GET", "/token?service=x", actix_web::http::Version::HTTP_11);
        assert_eq!(short, "GET /token?service=x HTTP/1.1");
        let typed = request_line(
            "GET",
            "/token?account=hunter2&service=x&scope=a",
            actix_web::http::Version::HTTP_11,
        );
        assert_eq!(
            typed,
            "GET /token?account=<redacted>&service=x&scope=a HTTP/1.1"
        );
        let long_uri = format!("/token?scope={}", "é".repeat(5_000));
        let long = request_line("GET", &long_uri, actix_web::http::Version::HTTP_11);
        assert!(long.len() <= MAX_REQUEST_LINE_LOGGED + '…'.len_utf8());
        assert!(long.ends_with('…'));
    }
}
