//! A recording HTTP relay between the registry's clients and regauth: the registry's realm
//! points here, and every token request is written down (method, query, form fields, the
//! kind of Authorization) before it is passed on unchanged. regauth's own log does not show
//! POST bodies, and the grant type, `client_id` and space-joined scopes are what the client
//! tests need to assert.
//!
//! One request per connection: the request goes upstream with `Connection: close`, the
//! answer comes back the same way, so clients reconnect for the next request. Bodies must
//! carry `Content-Length` (Go's and containers/image's form posts do; chunked bodies are not
//! read).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use data_encoding::{BASE64, BASE64URL_NOPAD};

/// Largest request head or body the relay reads.
const MAX_PART: usize = 64 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How a request authenticated itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// Basic, with the user name it carried (never the password).
    Basic(String),
    Bearer,
    Other,
}

/// One request to the token endpoint and regauth's answer.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Decoded form pairs of a POST body, in order; secrets replaced by `<set>`.
    pub form: Vec<(String, String)>,
    pub auth: Auth,
    /// The status regauth answered with (0 when it did not answer).
    pub status: u16,
    /// The refresh token a POST carried, for comparing requests (never printed).
    refresh_token: Option<String>,
    /// Whether regauth's answer carried a `refresh_token`.
    pub answered_refresh_token: bool,
    /// The claims of the token regauth answered with, if it did.
    pub issued: Option<Issued>,
}

/// The claims of an issued token that tell one token from another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    /// The header's `kid`, if any.
    pub kid: Option<String>,
}

impl TokenRequest {
    /// First value of `key` in the query (GET) or form (POST).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .chain(self.form.iter())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn fields(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .chain(self.form.iter())
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `grant_type` of a POST, `None` for GET.
    pub fn grant_type(&self) -> Option<&str> {
        (self.method == "POST")
            .then(|| self.field("grant_type"))
            .flatten()
    }

    /// The refresh token this request carried, if any.
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh_token.as_deref()
    }

    /// Its scopes (space-separated in a POST, repeated in a GET), each with its actions
    /// sorted: docker asks for `push,pull`, skopeo for `pull,push`.
    pub fn scopes(&self) -> Vec<String> {
        self.fields("scope")
            .iter()
            .flat_map(|s| s.split(' '))
            .filter(|s| !s.is_empty())
            .map(|scope| match scope.rsplit_once(':') {
                Some((resource, actions)) => {
                    let mut actions: Vec<&str> = actions.split(',').collect();
                    actions.sort_unstable();
                    format!("{resource}:{}", actions.join(","))
                }
                None => scope.to_owned(),
            })
            .collect()
    }

    /// Whether one of its scopes is `scope` (actions sorted, as [`TokenRequest::scopes`]).
    pub fn asks_for(&self, scope: &str) -> bool {
        self.scopes().iter().any(|s| s == scope)
    }

    /// Whether its scopes are exactly `scopes`, in order (actions sorted).
    pub fn asks_exactly(&self, scopes: &[&str]) -> bool {
        self.scopes() == scopes
    }

    /// A GET (the distribution spec's token request) authenticated as `auth`.
    pub fn is_get_with(&self, auth: &Auth) -> bool {
        self.method == "GET" && self.auth == *auth
    }

    /// A GET with no credentials and no `account`: an anonymous caller.
    pub fn is_anonymous_get(&self) -> bool {
        self.is_get_with(&Auth::None) && self.field("account").is_none()
    }

    /// A POST of the OAuth2 grant `grant_type`, without an Authorization header.
    pub fn is_grant(&self, grant_type: &str) -> bool {
        self.method == "POST" && self.grant_type() == Some(grant_type) && self.auth == Auth::None
    }

    /// A POST refresh grant carrying `refresh_token`.
    pub fn is_refresh_grant(&self, refresh_token: &str) -> bool {
        self.is_grant("refresh_token") && self.refresh_token() == Some(refresh_token)
    }

    /// A one-line summary without secrets, for assertion messages.
    pub fn summary(&self) -> String {
        format!(
            "{} {} query={:?} form={:?} auth={:?} -> {}{}",
            self.method,
            self.path,
            self.query,
            self.form,
            self.auth,
            self.status,
            if self.answered_refresh_token {
                " (+refresh_token)"
            } else {
                ""
            }
        )
    }
}

/// The relay; stops accepting when dropped.
pub struct Recorder {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    /// Listens on a free loopback port and relays to `upstream`.
    pub fn start(upstream: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        Recorder::start_on(listener, upstream)
    }

    /// Relays from `listener`, bound beforehand: for a registry that needs the realm's URL
    /// (Pulp's `TOKEN_SERVER` is also the issuer regauth must write) before regauth starts.
    pub fn start_on(listener: TcpListener, upstream: SocketAddr) -> Recorder {
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("recorder addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (requests, stop) = (Arc::clone(&requests), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let requests = Arc::clone(&requests);
                            thread::spawn(move || relay(stream, upstream, &requests));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Recorder {
            addr,
            requests,
            stop,
        }
    }

    /// Everything recorded so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().expect("lock").clone()
    }

    /// Forgets what was recorded (between the steps of a scenario). With
    /// `E2E_TRACE` set, prints it first (how docs/clients.md was written).
    pub fn clear(&self) {
        let mut requests = self.requests.lock().expect("lock");
        if std::env::var_os("E2E_TRACE").is_some() {
            for r in requests.iter() {
                eprintln!("token request: {}", r.summary());
            }
            eprintln!("token requests: ---");
        }
        requests.clear();
    }

    /// All requests, one summary a line, for assertion messages.
    pub fn dump(&self) -> String {
        dump(&self.requests())
    }

    /// Asserts that the clients made token requests since the last [`Recorder::clear`] and
    /// that every one is `what` (`pred` holds); returns them. The failure names the first
    /// request that is not and lists them all.
    pub fn assert_every(
        &self,
        what: &str,
        pred: impl Fn(&TokenRequest) -> bool,
    ) -> Vec<TokenRequest> {
        let requests = self.requests();
        assert!(
            !requests.is_empty(),
            "no token request was made; expected {what}"
        );
        if let Some((i, r)) = requests.iter().enumerate().find(|(_, r)| !pred(r)) {
            panic!(
                "token request {} of {} is not {what}: {}\n--- token requests ---\n{}",
                i + 1,
                requests.len(),
                r.summary(),
                dump(&requests)
            );
        }
        requests
    }

    /// Asserts that one of the token requests made since the last [`Recorder::clear`] is
    /// `what` (`pred` holds); returns the first such. The failure lists them all.
    pub fn assert_some(&self, what: &str, pred: impl Fn(&TokenRequest) -> bool) -> TokenRequest {
        let requests = self.requests();
        match requests.iter().find(|r| pred(r)) {
            Some(r) => r.clone(),
            None => panic!(
                "no token request is {what}\n--- token requests ---\n{}",
                dump(&requests)
            ),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.clear();
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One summary a line.
fn dump(requests: &[TokenRequest]) -> String {
    requests
        .iter()
        .map(TokenRequest::summary)
        .collect::<Vec<_>>()
        .join("\n")
}

fn relay(mut client: TcpStream, upstream: SocketAddr, log: &Mutex<Vec<TokenRequest>>) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(IO_TIMEOUT));
    let _ = client.set_write_timeout(Some(IO_TIMEOUT));
    let Some((head, body)) = read_request(&mut client) else {
        return;
    };
    let mut record = parse(&head, &body);
    let mut forwarded = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let answer = TcpStream::connect_timeout(&upstream, IO_TIMEOUT).and_then(|mut up| {
        up.set_read_timeout(Some(IO_TIMEOUT))?;
        up.write_all(forwarded.as_bytes())?;
        up.write_all(&body)?;
        let mut raw = Vec::new();
        up.read_to_end(&mut raw)?;
        Ok(raw)
    });
    let raw = answer.unwrap_or_default();
    record.status = std::str::from_utf8(&raw[..raw.len().min(16)])
        .ok()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    record.answered_refresh_token = String::from_utf8_lossy(&raw).contains("\"refresh_token\"");
    record.issued = issued(&raw);
    log.lock().expect("lock").push(record);
    let _ = client.write_all(&raw);
}

/// The request head (without the blank line) and its Content-Length body.
fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if raw.len() > MAX_PART {
            return None;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let length: usize = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    if length > MAX_PART {
        return None;
    }
    let mut body = raw[split + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
    }
    body.truncate(length);
    Some((head, body))
}

fn parse(head: &str, body: &[u8]) -> TokenRequest {
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| auth_kind(v.trim()))
        .unwrap_or(Auth::None);
    let mut form = if method == "POST" {
        pairs(&String::from_utf8_lossy(body))
    } else {
        Vec::new()
    };
    let refresh_token = form
        .iter()
        .find(|(k, _)| k == "refresh_token")
        .map(|(_, v)| v.clone());
    for (k, v) in &mut form {
        if k == "password" || k == "refresh_token" {
            *v = "<set>".into();
        }
    }
    TokenRequest {
        method,
        path: path.to_owned(),
        query: pairs(query),
        form,
        auth,
        status: 0,
        refresh_token,
        answered_refresh_token: false,
        issued: None,
    }
}

/// The claims of the JWT in a token answer (`token` or `access_token`).
fn issued(raw: &[u8]) -> Option<Issued> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let body: serde_json::Value = serde_json::from_slice(&raw[split + 4..]).ok()?;
    let jwt = body["access_token"].as_str().or(body["token"].as_str())?;
    let mut parts = jwt.split('.');
    let decode_part = |part: Option<&str>| -> Option<serde_json::Value> {
        serde_json::from_slice(&BASE64URL_NOPAD.decode(part?.as_bytes()).ok()?).ok()
    };
    let header = decode_part(parts.next())?;
    let claims = decode_part(parts.next())?;
    Some(Issued {
        jti: claims["jti"].as_str()?.to_owned(),
        iat: claims["iat"].as_i64()?,
        exp: claims["exp"].as_i64()?,
        kid: header["kid"].as_str().map(str::to_owned),
    })
}

fn auth_kind(value: &str) -> Auth {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = BASE64
            .decode(rest.trim().as_bytes())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let user = decoded.split_once(':').map(|(u, _)| u).unwrap_or_default();
        Auth::Basic(user.to_owned())
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Auth::Bearer
    } else {
        Auth::Other
    }
}

/// `a=b&c=d` with `+` as space and percent-decoding.
fn pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_body_is_decoded_and_its_secrets_hidden() {
        let head =
            "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded";
        let body = b"grant_type=refresh_token&refresh_token=abc&scope=repository%3Aa%3Apull+repository%3Ab%3Apush&password=p%";
        let r = parse(head, body);
        assert_eq!(r.grant_type(), Some("refresh_token"));
        assert_eq!(
            r.field("scope"),
            Some("repository:a:pull repository:b:push")
        );
        assert_eq!(r.refresh_token(), Some("abc"));
        assert!(!r.summary().contains("abc"));
        assert_eq!(r.auth, Auth::None);
    }

    #[test]
    fn basic_auth_yields_the_user_name_only() {
        let head = "GET /token?account=alice&scope=repository%3Aa%3Apull HTTP/1.1\r\nAuthorization: Basic YWxpY2U6czNjcmV0";
        let r = parse(head, b"");
        assert_eq!(r.auth, Auth::Basic("alice".into()));
        assert_eq!(r.field("scope"), Some("repository:a:pull"));
        assert_eq!(r.grant_type(), None);
        assert!(!r.summary().contains("s3cret"));
    }
}
