use super::*;
use crate::clock::SystemClock;
use crate::test_support::new_ca;

/// A server certificate for `localhost` named `cn`, signed by `ca`: (certificate, key) PEM.
fn server_pair(ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>, cn: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    (
        params.signed_by(&key, ca).unwrap().pem(),
        key.serialize_pem(),
    )
}

struct Dir {
    _dir: tempfile::TempDir,
    files: TlsFiles,
}

fn write_pair(files: &TlsFiles, (cert, key): &(String, String)) {
    for (path, text) in [(&files.certificate, cert), (&files.key, key)] {
        let staged = path.with_extension("staged");
        std::fs::write(&staged, text).unwrap();
        std::fs::rename(&staged, path).unwrap();
    }
}

fn dir_with(pair: &(String, String)) -> Dir {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        certificate: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    write_pair(&files, pair);
    Dir { _dir: dir, files }
}

/// Started with a watch that never polls and a long debounce: the tests call `reload`.
fn start(files: &TlsFiles, pair_retry: Duration) -> Result<TlsCertificates, TlsError> {
    let options = TlsOptions {
        watch: WatchOptions {
            debounce: Duration::from_secs(3600),
            max_delay: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(3600),
        },
        pair_retry,
    };
    TlsCertificates::start(files.clone(), options, Arc::new(SystemClock))
}

fn cn(tls: &TlsCertificates) -> String {
    tls.served().subject
}

#[test]
fn unusable_files_at_start_are_errors_that_name_the_file_and_the_problem() {
    let ca = new_ca();
    let good = server_pair(&ca, "one");
    let other = server_pair(&ca, "two");
    let cases: [(&str, (String, String), &str); 5] = [
        (
            "no certificate",
            (String::new(), good.1.clone()),
            "tls.crt (server.tls.certificate) holds no usable PEM certificate: no CERTIFICATE",
        ),
        (
            "a broken certificate",
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
                good.1.clone(),
            ),
            "holds no usable PEM certificate: the first certificate does not parse",
        ),
        (
            "no key",
            (good.0.clone(), "not a key".into()),
            "tls.key (server.tls.key) holds no usable private key",
        ),
        (
            "a key of another certificate",
            (good.0.clone(), other.1.clone()),
            "tls.key does not match the certificate in",
        ),
        (
            "the key where the certificate belongs",
            (good.1.clone(), good.0.clone()),
            "no CERTIFICATE",
        ),
    ];
    for (what, pair, expected) in cases {
        let dir = dir_with(&pair);
        let error = start(&dir.files, Duration::from_millis(1))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{what}: {error}");
        assert_eq!(check(&dir.files).unwrap_err().to_string(), error, "{what}");
        assert!(!error.contains("PRIVATE KEY-----"), "{what}: {error}");
    }
    let dir = dir_with(&good);
    assert_eq!(check(&dir.files).unwrap().subject, "CN=one");
    std::fs::remove_file(&dir.files.key).unwrap();
    assert!(check(&dir.files).is_err());
    let error = start(&dir.files, Duration::from_millis(1))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("cannot read server.tls.key ") && error.contains("tls.key"),
        "{error}"
    );
}

#[test]
fn a_new_pair_is_served_and_a_broken_one_keeps_the_last_good_pair_and_is_counted_once() {
    let ca = new_ca();
    let dir = dir_with(&server_pair(&ca, "first"));
    let tls = start(&dir.files, Duration::from_millis(1)).unwrap();
    assert_eq!(cn(&tls), "CN=first");
    let first = tls.served();

    write_pair(&dir.files, &server_pair(&ca, "second"));
    tls.shared.reload();
    let status = tls.status();
    assert_eq!(status.served.subject, "CN=second");
    assert_ne!(status.served.serial, first.serial);
    assert!(status.last_reload.is_some());
    assert_eq!(status.failed_reloads, 0);

    // A certificate with the key of another: the second pair keeps serving.
    let second = std::fs::read_to_string(&dir.files.certificate).unwrap();
    let third = server_pair(&ca, "third");
    write_pair(&dir.files, &(third.0.clone(), server_pair(&ca, "x").1));
    tls.shared.reload();
    tls.shared.reload();
    let status = tls.status();
    assert_eq!(status.served.subject, "CN=second");
    assert_eq!(status.failed_reloads, 1, "the same broken files count once");
    assert!(
        status.last_error.unwrap().contains("does not match"),
        "{:?}",
        tls.status()
    );

    // A missing key file is another failure, reported until the files are usable.
    std::fs::remove_file(&dir.files.key).unwrap();
    tls.shared.reload();
    let status = tls.status();
    assert_eq!(status.failed_reloads, 2);
    assert!(
        status
            .last_error
            .unwrap()
            .contains("cannot read server.tls.key")
    );

    write_pair(&dir.files, &third);
    tls.shared.reload();
    let status = tls.status();
    assert_eq!(status.served.subject, "CN=third");
    assert_eq!(status.last_error, None);
    assert_eq!(status.failed_reloads, 2);
    assert_ne!(second, third.0);
}

#[test]
fn broken_files_put_back_to_the_served_pair_clear_the_error() {
    let ca = new_ca();
    let pair = server_pair(&ca, "kept");
    let dir = dir_with(&pair);
    let tls = start(&dir.files, Duration::from_millis(1)).unwrap();
    std::fs::write(&dir.files.certificate, "garbage").unwrap();
    tls.shared.reload();
    assert!(tls.status().last_error.is_some());
    write_pair(&dir.files, &pair);
    tls.shared.reload();
    let status = tls.status();
    assert_eq!(status.last_error, None);
    assert_eq!(status.failed_reloads, 1);
}

#[test]
fn a_certificate_replaced_before_its_key_is_read_again_before_counting_a_failure() {
    let ca = new_ca();
    let dir = dir_with(&server_pair(&ca, "old"));
    let tls = start(&dir.files, Duration::from_millis(1500)).unwrap();
    let (cert, key) = server_pair(&ca, "new");
    std::fs::write(&dir.files.certificate, &cert).unwrap();
    let key_path = dir.files.key.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(key_path, key).unwrap();
    });
    tls.shared.reload();
    writer.join().unwrap();
    let status = tls.status();
    assert_eq!(status.served.subject, "CN=new");
    assert_eq!(status.failed_reloads, 0, "{status:?}");
}

#[test]
fn the_watch_swaps_the_certificate_after_a_kubernetes_style_secret_update() {
    let ca = new_ca();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let swap = |generation: &str, (cert, key): (String, String)| {
        let real = format!("..{generation}");
        std::fs::create_dir(dir.join(&real)).unwrap();
        std::fs::write(dir.join(&real).join("tls.crt"), cert).unwrap();
        std::fs::write(dir.join(&real).join("tls.key"), key).unwrap();
        std::os::unix::fs::symlink(&real, dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    };
    swap("1", server_pair(&ca, "gen1"));
    for name in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
    }
    let files = TlsFiles {
        certificate: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    let options = TlsOptions {
        watch: WatchOptions {
            debounce: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            poll_interval: Duration::from_secs(3600),
        },
        pair_retry: Duration::from_millis(100),
    };
    let tls = TlsCertificates::start(files, options, Arc::new(SystemClock)).unwrap();
    assert_eq!(cn(&tls), "CN=gen1");
    swap("2", server_pair(&ca, "gen2"));
    let started = std::time::Instant::now();
    while cn(&tls) != "CN=gen2" {
        assert!(started.elapsed() < Duration::from_secs(10), "no reload");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(tls.status().failed_reloads, 0);
}

#[test]
fn handshakes_are_served_the_current_pair_over_tls_1_2_and_1_3() {
    let ca = new_ca();
    let dir = dir_with(&server_pair(&ca, "one"));
    let tls = start(&dir.files, Duration::from_millis(1)).unwrap();
    let config = tls.server_config().unwrap();
    assert!(
        config.alpn_protocols.is_empty(),
        "actix-web adds h2 and http/1.1"
    );
    let seal = tls.seal_config().unwrap();
    assert_eq!(seal.alpn_protocols, vec![b"http/1.1".to_vec()]);

    let config = Arc::new(config);
    let (first, version) = handshake(&config, &ca, &[&version::TLS12]);
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_2);
    write_pair(&dir.files, &server_pair(&ca, "two"));
    tls.shared.reload();
    let (second, version) = handshake(&config, &ca, &[&version::TLS13, &version::TLS12]);
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    assert_ne!(first, second, "a new handshake gets the new certificate");
    assert_eq!(
        second,
        tls.shared.current.load().certified.cert[0],
        "the one served now"
    );
}

/// A TLS handshake in memory between a client trusting `ca` (offering `versions`) and
/// `server`: the leaf certificate the client was shown, and the version agreed.
fn handshake(
    server: &Arc<ServerConfig>,
    ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (CertificateDer<'static>, rustls::ProtocolVersion) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut client =
        rustls::ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap()).unwrap();
    let mut server = rustls::ServerConnection::new(Arc::clone(server)).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).unwrap();
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().unwrap();
        }
        buf.clear();
        server.write_tls(&mut buf).unwrap();
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
    }
    assert!(!client.is_handshaking(), "the handshake did not finish");
    (
        client.peer_certificates().unwrap()[0].clone().into_owned(),
        client.protocol_version().unwrap(),
    )
}

#[test]
fn a_pair_caught_mid_rotation_at_start_is_read_again() {
    let ca = new_ca();
    let (cert, key) = server_pair(&ca, "new");
    let dir = dir_with(&(cert, server_pair(&ca, "old").1));
    let key_path = dir.files.key.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(key_path, key).unwrap();
    });
    let tls = start(&dir.files, Duration::from_millis(1500));
    writer.join().unwrap();
    assert_eq!(cn(&tls.unwrap()), "CN=new");
}
