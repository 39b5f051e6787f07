//! What every request carries from the outermost middleware on: its id (returned as
//! `X-Request-Id`) and the client's address after `server.trusted_proxies`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};

use super::AppState;
use crate::telemetry::request_id::{self, RequestId};

/// The request id header, read and returned.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Stored in the request's extensions by [`tag`].
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The caller's valid `X-Request-Id`, or a generated one.
    pub id: RequestId,
    /// The client: the TCP peer, or what a trusted proxy says.
    pub client_ip: Option<IpAddr>,
}

/// Set once the "forwarded by an untrusted peer" warning was logged (once per process).
static UNTRUSTED_FORWARDER_WARNED: AtomicBool = AtomicBool::new(false);

/// The client's address: what a trusted proxy forwarded, else the TCP peer.
pub(super) fn resolve_client_ip(req: &actix_web::HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    Some(match req.app_data::<web::Data<AppState>>() {
        Some(state) => {
            if !state.proxies.trusts(peer) {
                warn_if_forwarded(peer, req.headers());
            }
            state.proxies.client_ip(peer, req.headers())
        }
        None => peer,
    })
}

/// A request from a peer that is not a trusted proxy but carries a forwarding header is most
/// likely from a reverse proxy missing in `server.trusted_proxies`: then every client has the
/// proxy's address, and shares one brute-force budget per account. Said once per process.
fn warn_if_forwarded(peer: IpAddr, headers: &actix_web::http::header::HeaderMap) {
    let forwarded = ["x-forwarded-for", "forwarded"]
        .iter()
        .find(|name| headers.contains_key(**name));
    if let Some(header) = forwarded
        && !UNTRUSTED_FORWARDER_WARNED.swap(true, Ordering::Relaxed)
    {
        log::warn!(
            "a request from {peer} carries a {header} header, but {peer} is not in \
             server.trusted_proxies: the header is ignored. If regauth runs behind a reverse \
             proxy, every client has the proxy's address and all of them share one \
             brute-force budget per account (a few wrong passwords lock everyone out); list \
             the proxy in server.trusted_proxies. (Said once.)"
        );
    }
}

/// Middleware: decides the request id and the client address once, makes the id current
/// for the log lines written while the request is handled, and returns it.
pub async fn tag(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| RequestId::parse(v.as_bytes()))
        .unwrap_or_else(RequestId::generate);
    let client_ip = resolve_client_ip(req.request());
    req.extensions_mut().insert(RequestInfo {
        id: id.clone(),
        client_ip,
    });
    let mut res = request_id::scope(id.clone(), next.call(req)).await?;
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        res.headers_mut().insert(X_REQUEST_ID, value);
    }
    Ok(res)
}

/// The access log's target: actix's `Logger` writes its lines at INFO under its module path.
const ACCESS_LOG_TARGET: &str = "actix_web::middleware::logger";

/// True when access-log lines are written (`RUST_LOG` lets INFO through for actix's
/// `Logger`). The `Logger` computes its fields for every request whatever the level, so the
/// server installs it only when this holds, and its fields are left empty otherwise
/// (`String::new` does not allocate).
pub fn access_log_on() -> bool {
    log::log_enabled!(target: ACCESS_LOG_TARGET, log::Level::Info)
}

/// For the access log: the client address and the request id of a tagged request.
pub fn log_client(req: &ServiceRequest) -> String {
    if !access_log_on() {
        return String::new();
    }
    match req.extensions().get::<RequestInfo>() {
        Some(info) => info.client_ip.map(|i| i.to_string()).unwrap_or_default(),
        None => req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default(),
    }
}

/// For the access log: the request line, cut and with `account` redacted (see
/// [`super::request_line`]).
pub fn log_request_line(req: &ServiceRequest) -> String {
    if !access_log_on() {
        return String::new();
    }
    super::request_line(req.method().as_str(), &req.uri().to_string(), req.version())
}

/// For the access log: the request id, `-` if the request was not tagged.
pub fn log_request_id(req: &ServiceRequest) -> String {
    if !access_log_on() {
        return String::new();
    }
    req.extensions()
        .get::<RequestInfo>()
        .map_or_else(|| "-".to_owned(), |info| info.id.to_string())
}
