//! Workload-token fixtures: issuer keys made on the spot (RSA and EC), their JWK Set, tokens
//! signed with them (and the forged kinds: unsigned, HMAC keyed with the public key), and a
//! tiny loopback HTTP server that serves a JWKS and counts its hits.

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

/// A loopback HTTP server answering every request with a JWKS, counting requests.
pub struct JwksServer {
    pub url: String,
    hits: Arc<AtomicU64>,
    body: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Serves `body` on 127.0.0.1, a free port.
    pub async fn start(body: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("addr")
        );
        let hits = Arc::new(AtomicU64::new(0));
        let body = Arc::new(Mutex::new(body));
        let (h, b) = (Arc::clone(&hits), Arc::clone(&body));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (h, b) = (Arc::clone(&h), Arc::clone(&b));
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
                    let body = b.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        JwksServer {
            url,
            hits,
            body,
            task,
        }
    }

    /// Requests answered so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
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
            .trim_start_matches("http://")
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
