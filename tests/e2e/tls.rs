//! regauth over HTTPS (`server.tls`) as the realm of a plain-HTTP registry 2.8: skopeo and
//! podman sign in, push and pull, and every token request reaches regauth over TLS.
//!
//! How containers/image (skopeo, podman) treats the realm's certificate: the token request
//! goes through the same HTTP client as the registry requests, with the same TLS settings.
//! Those are made for the *registry* host: the system pool (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` work for Go on Linux) plus `ca.crt` from the registry's certs.d directory
//! (`--cert-dir`), and verification is off whenever the registry is insecure
//! (`--tls-verify=false`, or `insecure = true` in registries.conf). A plain-HTTP registry is
//! only reachable in that insecure mode, so here the realm's certificate is not verified by
//! the clients (the test CA is deliberately trusted nowhere, and the pushes still work);
//! with an HTTPS registry, the realm's CA must be in the system pool or the registry's
//! certs.d directory. The handshake itself is real: regauth's listener speaks only TLS.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use regauth::keys::{Algorithm, generate};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::clients::{assert_ok, digest_of};
use crate::registry::{Clients, http_request};
use crate::stack::{ISSUER, Regauth, SERVICE, Stack, start_registry_with_realm, tools_present};
use crate::support::{new_ca, tls_server_pair};

/// `GET path` over HTTPS, trusting only `ca`: the whole answer (head and body).
fn https_get(addr: SocketAddr, ca: &CertificateDer<'static>, path: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap().to_owned();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    // regauth closes without close_notify after `Connection: close`; what was read counts.
    let _ = tls.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The value of the series `name` in a Prometheus text answer.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn skopeo_and_podman_sign_in_push_and_pull_through_an_https_realm() {
    if !tools_present(&["skopeo", "podman"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let written = generate::write(&keys, Algorithm::ES256, false).unwrap();
    let bundle = written.certificate.unwrap();
    let ca = new_ca("regauth e2e TLS CA");
    let (cert, key) = tls_server_pair(&ca, "regauth e2e");
    let tls_dir = dir.path().join("tls");
    fs::create_dir(&tls_dir).unwrap();
    fs::write(tls_dir.join("tls.crt"), cert).unwrap();
    fs::write(tls_dir.join("tls.key"), key).unwrap();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    // No anonymous access: every push and pull needs alice's token.
    let config = format!(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    certificate: {tls}/tls.crt\n    key: {tls}/tls.key\n\
         token:\n  issuer: {ISSUER}\n  services: [{SERVICE}]\n\
         key:\n  path: {keys}/signing.key\n\
         auth:\n  refresh_secret_file: {dir}/refresh.secret\n\
         users:\n  alice: {{password: '{hash}'}}\n\
         access:\n  anonymous: []\n",
        tls = tls_dir.display(),
        keys = keys.display(),
        dir = dir.path().display(),
    );
    let config_path = dir.path().join("regauth.yaml");
    fs::write(&config_path, config).unwrap();
    let regauth = Regauth::start(&config_path, &dir.path().join("regauth.log"));
    let registry = start_registry_with_realm(
        format!("https://{}/token", regauth.addr),
        &dir.path().join("registry"),
        bundle,
    );
    let clients = Clients::new(&dir.path().join("clients")).unwrap();
    let stack = Stack {
        dir,
        regauth,
        recorder: None,
        registry,
        clients,
    };
    // Plain HTTP to regauth gets no token: the realm is TLS only.
    let plain = http_request(
        stack.regauth.addr,
        "GET",
        "/token",
        &[],
        Duration::from_secs(5),
    );
    assert!(
        !matches!(&plain, Ok(r) if r.status == 200),
        "plain HTTP answered: {plain:?}"
    );

    let image = stack.image("tls", "v1");
    let alice = Some("alice:s3cret");
    let (app, app_image) = (
        stack.registry.docker_ref("team/app", "v1"),
        stack.registry.image_ref("team/app", "v1"),
    );
    let push = stack.clients.push(&image, &app, alice);
    assert_ok(&stack, &push, "");
    let anonymous = stack.clients.inspect(&app, None);
    assert!(!anonymous.success, "anonymous pulls are not allowed");

    let pull = stack.clients.podman_pull(&app_image, alice);
    assert_ok(&stack, &pull, "");
    let copy = stack.registry.docker_ref("team/copy", "v1");
    let repush = stack.clients.podman_push(&app_image, &copy, alice);
    assert_ok(&stack, &repush, "");
    let inspect = stack.clients.inspect(&copy, alice);
    assert_ok(&stack, &inspect, "");
    assert_eq!(digest_of(&inspect), image.manifest_digest, "{inspect}");

    // Every token came from the TLS listener: alice's tokens are counted there, and the
    // access log has the token requests the clients made.
    let metrics = https_get(stack.regauth.addr, ca.der(), "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let basic = metric(
        &metrics,
        &format!("regauth_tokens_issued_total{{service=\"{SERVICE}\",grant_type=\"basic\"}}"),
    )
    .unwrap_or_default();
    assert!(basic >= 4.0, "tokens issued to alice: {basic}\n{metrics}");
    let log = stack.regauth.log();
    assert!(log.contains("serving HTTPS (TLS 1.2, 1.3)"), "{log}");
    let token_requests = log
        .lines()
        .filter(|l| l.contains("\"GET /token?") && l.contains("\" 200 "))
        .count();
    assert!(token_requests >= 4, "{log}");
}
