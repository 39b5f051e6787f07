//! Workload-token fixtures: issuer keys made on the spot (RSA and EC), their JWK Set, tokens
//! signed with them (and the forged kinds: unsigned, HMAC keyed with the public key), and a
//! tiny loopback HTTP or HTTPS server that serves a JWKS and counts its hits.

// Each suite uses only part of this file.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use regauth::keys::generate;

/// An issuer's signing key, with its public JWK.
pub struct WorkloadKey {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
    pub jwk: Jwk,
    /// The public key as PEM (SubjectPublicKeyInfo): what a confused verifier would use as
    /// an HMAC secret.
    pub public_pem: String,
}

/// A new RS256 (2048-bit RSA) or ES256 (P-256) key called `kid`.
pub fn workload_key(kid: &str, alg: Algorithm) -> WorkloadKey {
    let ours = match alg {
        Algorithm::RS256 => regauth::keys::Algorithm::RS256,
        Algorithm::ES256 => regauth::keys::Algorithm::ES256,
        other => panic!("no test key for {other:?}"),
    };
    let pem = generate::generate(ours).expect("keygen").key_pem;
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        _ => EncodingKey::from_ec_pem(pem.as_bytes()),
    }
    .expect("key parses");
    let mut jwk = Jwk::from_encoding_key(&key, alg).expect("jwk");
    jwk.common.key_id = Some(kid.to_owned());
    let public_pem = rcgen::KeyPair::from_pem(&pem)
        .expect("key parses")
        .public_key_pem();
    WorkloadKey {
        kid: kid.to_owned(),
        alg,
        key,
        jwk,
        public_pem,
    }
}

impl WorkloadKey {
    /// `claims` signed with this key, `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }

    /// `claims` signed with this key under another `kid`.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }

    /// The classic confusion attack: `alg: HS256`, keyed with this key's public PEM.
    pub fn hmac_with_public_key(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let secret = EncodingKey::from_secret(self.public_pem.as_bytes()).expect("secret");
        jsonwebtoken::encode(&header, claims, &secret).expect("sign")
    }
}

/// The JWK Set of `keys`.
pub fn jwks_of(keys: &[&WorkloadKey]) -> String {
    json!({"keys": keys.iter().map(|k| &k.jwk).collect::<Vec<_>>()}).to_string()
}

/// An `alg: none` token naming `kid`.
pub fn unsigned_token(kid: &str, claims: &Value) -> String {
    let part = |v: &Value| BASE64URL_NOPAD.encode(v.to_string().as_bytes());
    format!(
        "{}.{}.",
        part(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        part(claims)
    )
}

/// Kubernetes-style claims for `system:serviceaccount:{namespace}:{name}`, issued at `iat`,
/// valid for `lifetime` seconds, for `audience`.
pub fn service_account_claims(
    issuer: &str,
    audience: &str,
    namespace: &str,
    name: &str,
    iat: i64,
    lifetime: i64,
) -> Value {
    json!({
        "iss": issuer,
        "aud": [audience],
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "iat": iat,
        "nbf": iat,
        "exp": iat + lifetime,
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": "0b0e4a4e-0000-4000-8000-000000000000"}
        }
    })
}

/// A loopback HTTP(S) server answering every request with a JWKS, counting requests.
pub struct JwksServer {
    pub url: String,
    hits: Arc<AtomicU64>,
    refused_handshakes: Arc<AtomicU64>,
    body: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

/// The HTTP answer carrying `body`.
fn response(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A TLS server configuration presenting `cert_pem` (one certificate) with `key_pem` (PKCS#8).
fn tls_config(cert_pem: &str, key_pem: &str) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let cert = CertificateDer::from(pem::parse(cert_pem).expect("cert pem").into_contents());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        pem::parse(key_pem).expect("key pem").into_contents(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server certificate"),
    )
}

/// One HTTPS exchange on a blocking socket (bounded by its timeouts): handshake, read the
/// request head, answer, close. A handshake the client breaks off counts in `refused`.
fn serve_tls(
    socket: std::net::TcpStream,
    config: Arc<rustls::ServerConfig>,
    hits: &AtomicU64,
    refused: &AtomicU64,
    body: &Mutex<String>,
) {
    use std::io::{Read, Write};
    let timeout = Some(std::time::Duration::from_secs(10));
    if socket.set_nonblocking(false).is_err()
        || socket.set_read_timeout(timeout).is_err()
        || socket.set_write_timeout(timeout).is_err()
    {
        return;
    }
    let connection = rustls::ServerConnection::new(config).expect("tls connection");
    let mut tls = rustls::StreamOwned::new(connection, socket);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(_) => {
                if tls.conn.is_handshaking() {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
                return;
            }
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let answer = response(&body.lock().unwrap());
    let _ = tls.write_all(answer.as_bytes());
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

impl JwksServer {
    /// Serves `body` over HTTP on 127.0.0.1, a free port.
    pub async fn start(body: String) -> JwksServer {
        JwksServer::serve(body, None).await
    }

    /// Serves `body` over HTTPS on 127.0.0.1, a free port, presenting `cert_pem` (which
    /// must name 127.0.0.1) with `key_pem`.
    pub async fn start_tls(body: String, cert_pem: &str, key_pem: &str) -> JwksServer {
        JwksServer::serve(body, Some(tls_config(cert_pem, key_pem))).await
    }

    async fn serve(body: String, tls: Option<Arc<rustls::ServerConfig>>) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "{}://{}/.well-known/jwks.json",
            if tls.is_some() { "https" } else { "http" },
            listener.local_addr().expect("addr")
        );
        let hits = Arc::new(AtomicU64::new(0));
        let refused_handshakes = Arc::new(AtomicU64::new(0));
        let body = Arc::new(Mutex::new(body));
        let (h, r, b) = (
            Arc::clone(&hits),
            Arc::clone(&refused_handshakes),
            Arc::clone(&body),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (h, r, b) = (Arc::clone(&h), Arc::clone(&r), Arc::clone(&b));
                if let Some(config) = &tls {
                    let config = Arc::clone(config);
                    let Ok(socket) = stream.into_std() else {
                        continue;
                    };
                    tokio::task::spawn_blocking(move || serve_tls(socket, config, &h, &r, &b));
                    continue;
                }
                tokio::spawn(async move {
                    // Read the request head (bounded), then answer and close.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let answer = response(&b.lock().unwrap());
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        JwksServer {
            url,
            hits,
            refused_handshakes,
            body,
            task,
        }
    }

    /// Requests answered so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// TLS handshakes the client broke off (it did not trust the certificate), so far.
    pub fn refused_handshakes(&self) -> u64 {
        self.refused_handshakes.load(Ordering::SeqCst)
    }

    /// Serves `body` from now on.
    pub fn set(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }

    /// Stops listening: connections are refused from now on.
    pub async fn stop(&self) {
        self.task.abort();
        // The listener is dropped once the aborted task is; wait until a connection fails.
        let addr = self
            .url
            .split("://")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(&addr).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the JWKS server still accepts connections");
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
