//! Size limits on the request itself, checked before any handler reads it: the path, the
//! query string, each header value and the whole header list. Anything over a limit is
//! answered with the JSON error body (414 for the path or query, 431 for headers) by
//! [`limits`], before the request reaches a handler, so it is never parsed, authenticated or
//! audited. The `POST /token` body has its own limit ([`super::MAX_FORM_BYTES`], 413).
//!
//! Why here and not in the HTTP layer: actix-http 3 (actix-web 4) caps an HTTP/1 request
//! head at 128 KiB itself (a larger head gets its own 431 with an empty body and the
//! connection is closed), but over HTTP/2 (negotiated whenever `server.tls` is set) it lets
//! the h2 crate accept header lists up to h2's default of 16 MiB and offers no setting for
//! `SETTINGS_MAX_HEADER_LIST_SIZE`. This middleware gives both protocols the same, smaller
//! limits; over HTTP/2 the h2 crate still decodes up to 16 MiB of headers before regauth sees
//! them, which costs time linear in their size but no work of regauth's.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use super::ApiError;

/// Longest path accepted. Every route is a few bytes long (`/.well-known/jwks.json` is the
/// longest); a long path can only be a mistake or a probe.
pub const MAX_PATH_BYTES: usize = 1024;

/// Longest query string accepted, as sent (percent-encoded).
///
/// Sized for the largest request a client legitimately makes: a `docker pull` or `buildx`
/// build from many bases may ask for up to [`crate::token::scope::MAX_SCOPES`] (64) scopes in one
/// `GET /token`. A scope of a 200-byte repository name with `pull,push` is about 230 bytes;
/// percent-encoding its `:`, `,` and a dozen `/` adds about 30 more, and `&scope=` 7: about
/// 270 bytes each, 17 KiB for 64 of them, plus `service`, `account` and `offline_token`.
/// 32 KiB holds that with room for names at the 255-byte cap, and is half the 64 KiB query
/// of the 16 000-action request the old parser spent 0.4 s of CPU on.
pub const MAX_QUERY_BYTES: usize = 32 * 1024;

/// Longest single header value accepted. The largest legitimate one is `Authorization`
/// carrying a workload token as a Basic password (`oidc:<JWT>`, base64): 16 KiB holds a
/// 12 KiB JWT, several times a GitHub Actions, GitLab or Kubernetes token.
pub const MAX_HEADER_VALUE_BYTES: usize = 16 * 1024;

/// Largest header list accepted, counted as HTTP/2 counts `SETTINGS_MAX_HEADER_LIST_SIZE`:
/// each field's name and value plus 32 bytes. Bounds the number of fields too (at most about
/// 2 000 empty ones).
pub const MAX_HEADER_LIST_BYTES: usize = 64 * 1024;

/// The per-field overhead HTTP/2 adds when it sizes a header list (RFC 9113, 6.5.2).
const HEADER_FIELD_OVERHEAD: usize = 32;

/// Checks the request target and headers against the limits above.
pub(crate) fn check(req: &actix_web::HttpRequest) -> Result<(), ApiError> {
    let uri = req.uri();
    if uri.path().len() > MAX_PATH_BYTES {
        return Err(ApiError::UriTooLong("path", MAX_PATH_BYTES));
    }
    if uri.query().map_or(0, str::len) > MAX_QUERY_BYTES {
        return Err(ApiError::UriTooLong("query string", MAX_QUERY_BYTES));
    }
    let mut list = 0usize;
    for (name, value) in req.headers() {
        if value.len() > MAX_HEADER_VALUE_BYTES {
            return Err(ApiError::HeaderTooLarge(
                "a header value",
                MAX_HEADER_VALUE_BYTES,
            ));
        }
        list = list
            .saturating_add(name.as_str().len())
            .saturating_add(value.len())
            .saturating_add(HEADER_FIELD_OVERHEAD);
        if list > MAX_HEADER_LIST_BYTES {
            return Err(ApiError::HeaderTooLarge(
                "the header list",
                MAX_HEADER_LIST_BYTES,
            ));
        }
    }
    Ok(())
}

/// Middleware: refuses a request over a limit with the JSON error body, before any handler.
pub async fn limits(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Err(e) = check(req.request()) {
        return Ok(req.error_response(e).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn each_limit_admits_its_size_and_refuses_one_byte_more() {
        let query = |n: usize| format!("/token?{}", "q".repeat(n));
        let path = |n: usize| format!("/{}", "p".repeat(n - 1));
        let value = |n: usize| "v".repeat(n);
        let ok = |req: TestRequest| check(&req.to_http_request());
        let cases: Vec<(&str, TestRequest, Option<u16>)> = vec![
            (
                "query at the limit",
                TestRequest::get().uri(&query(MAX_QUERY_BYTES)),
                None,
            ),
            (
                "query over",
                TestRequest::get().uri(&query(MAX_QUERY_BYTES + 1)),
                Some(414),
            ),
            (
                "path at the limit",
                TestRequest::get().uri(&path(MAX_PATH_BYTES)),
                None,
            ),
            (
                "path over",
                TestRequest::get().uri(&path(MAX_PATH_BYTES + 1)),
                Some(414),
            ),
            (
                "value at the limit",
                TestRequest::get().insert_header(("x-a", value(MAX_HEADER_VALUE_BYTES))),
                None,
            ),
            (
                "value over",
                TestRequest::get().insert_header(("x-a", value(MAX_HEADER_VALUE_BYTES + 1))),
                Some(431),
            ),
            (
                "list over, each value within",
                (0..5).fold(TestRequest::get(), |r, i| {
                    r.append_header((format!("x-{i}"), value(MAX_HEADER_VALUE_BYTES)))
                }),
                Some(431),
            ),
            (
                "list within",
                (0..3).fold(TestRequest::get(), |r, i| {
                    r.append_header((format!("x-{i}"), value(MAX_HEADER_VALUE_BYTES)))
                }),
                None,
            ),
        ];
        for (what, req, status) in cases {
            let got = ok(req).err().map(|e| {
                use actix_web::ResponseError;
                e.status_code().as_u16()
            });
            assert_eq!(got, status, "{what}");
        }
    }
}
