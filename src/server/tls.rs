//! HTTPS for the main listener (`server.tls.certificate`, `server.tls.key`): rustls with the
//! aws-lc-rs provider, TLS 1.2 and 1.3 only, rustls' default cipher suites (AEAD with forward
//! secrecy: no CBC, RC4, 3DES or static RSA key exchange), ALPN `h2` and `http/1.1`.
//!
//! The certificate is served through a [`ResolvesServerCert`] that reads an [`ArcSwap`]:
//! every handshake takes whatever pair is current, so a reload changes the certificate for
//! new handshakes while connections already established keep theirs. Both files are watched
//! through [`crate::fs::watch`] (directories, symlink targets, the Kubernetes `..data` swap) and
//! read as a pair: when key and certificate do not match they are read once more after a
//! moment (a rotation may have replaced one and not yet the other). A pair that still cannot
//! be used leaves the last good one in place, is logged once, counted, and reported in
//! `/readyz` until a good pair replaces it. At startup a broken pair is an error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};

use crate::clock::Clock;
use crate::fs::pair::{self, Known, PairRead, content_digest};
use crate::fs::watch::{FileWatch, WatchOptions, read_pair_settled};
use crate::support::sync::lock;
use crate::support::tls::provider;

/// Largest certificate chain or key file read (a chain of a few certificates is a few KiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The two files of `server.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first (`server.tls.certificate`).
    pub certificate: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`server.tls.key`).
    pub key: PathBuf,
}

/// How the files are watched and how long a mismatched pair waits before its second read.
#[derive(Debug, Clone, Copy)]
pub struct TlsOptions {
    /// Debounce and backstop poll.
    pub watch: WatchOptions,
    /// Wait before reading a key and certificate that do not match once more.
    pub pair_retry: Duration,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            watch: WatchOptions::default(),
            pair_retry: Duration::from_millis(500),
        }
    }
}

/// Why a certificate and key cannot be served. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read (missing, permissions, too large).
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        /// `server.tls.certificate` or `server.tls.key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The certificate file holds no `CERTIFICATE` block, or a broken one.
    #[error("{path} (server.tls.certificate) holds no usable PEM certificate: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key file holds no private key, or one rustls cannot sign with.
    #[error("{path} (server.tls.key) holds no usable private key: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key is not the one the leaf certificate was issued for.
    #[error("the key in {key} does not match the certificate in {certificate}")]
    Mismatch {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The TLS configuration cannot be built.
    #[error("cannot configure TLS: {0}")]
    Config(String),
}

/// A certificate and key that parsed and match: what handshakes are served.
struct Served {
    certified: Arc<CertifiedKey>,
    digest: [u8; 32],
    info: CertificateInfo,
}

/// What the leaf certificate says, for `/readyz`, metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject, e.g. `CN=auth.example.com`.
    pub subject: String,
    /// The serial number in hex, e.g. `4a:0f:...`.
    pub serial: String,
    /// When it expires.
    pub not_after: DateTime<Utc>,
}

/// The state of the served certificate, for `/readyz` and metrics.
#[derive(Debug, Clone)]
pub struct TlsStatus {
    /// The certificate file.
    pub certificate: PathBuf,
    /// The leaf certificate served now.
    pub served: CertificateInfo,
    /// When the served pair was loaded.
    pub loaded_at: DateTime<Utc>,
    /// When a reload last replaced the pair.
    pub last_reload: Option<DateTime<Utc>>,
    /// Reloads that found files that could not be used (the last good pair kept serving).
    pub failed_reloads: u64,
    /// Why the files on disk are not served now; `None` once a good pair is loaded again.
    pub last_error: Option<String>,
    /// Reloads that panicked (caught).
    pub reload_panics: u64,
    /// Why some watched directory is not watched now.
    pub watch_problem: Option<String>,
}

/// What the last failed read was, so the same failure is counted and logged once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// Files that parsed into this unusable content.
    Content([u8; 32]),
    /// Files that could not be read, with this message.
    Read(String),
}

struct State {
    loaded_at: DateTime<Utc>,
    last_reload: Option<DateTime<Utc>>,
    failed_reloads: u64,
    last_error: Option<String>,
    last_failed: Option<Failure>,
}

struct Shared {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Served>,
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    pair_retry: Duration,
}

/// The served certificate, its reload watch and its status.
pub struct TlsCertificates {
    shared: Arc<Shared>,
    watch: FileWatch,
}

impl std::fmt::Debug for TlsCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCertificates")
            .field("files", &self.shared.files)
            .finish_non_exhaustive()
    }
}

fn read_limited(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let error = |reason: String| TlsError::Read {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(error(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    Ok(bytes)
}

fn read_files(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let cert = read_limited("server.tls.certificate", &files.certificate)?;
    let key = read_limited("server.tls.key", &files.key)?;
    Ok((cert, key))
}

/// Parses a PEM certificate chain and key into what handshakes serve.
fn parse_pair(
    files: &TlsFiles,
    provider: &CryptoProvider,
    cert: &[u8],
    key: &[u8],
) -> Result<(CertifiedKey, CertificateInfo), TlsError> {
    let cert_error = |reason: String| TlsError::Certificate {
        path: files.certificate.clone(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| cert_error("no CERTIFICATE block".into()))?;
    let info = certificate_info(leaf).map_err(cert_error)?;
    let key_error = |reason: String| TlsError::Key {
        path: files.key.clone(),
        reason,
    };
    // The PEM error names the block, never its content.
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| key_error(e.to_string()))?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => Ok((certified, info)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Mismatch {
                certificate: files.certificate.clone(),
                key: files.key.clone(),
            })
        }
        Err(e) => Err(cert_error(e.to_string())),
    }
}

fn certificate_info(leaf: &CertificateDer<'_>) -> Result<CertificateInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("the first certificate does not parse ({e})"))?;
    let not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .ok_or_else(|| "the certificate's notAfter is out of range".to_owned())?;
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        serial: cert.raw_serial_as_string(),
        not_after,
    })
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Reads and parses both files; a mismatch is read once more after
    /// [`TlsOptions::pair_retry`].
    fn read_pair(&self) -> PairRead<Served, TlsError> {
        pair::read_pair(
            self.pair_retry,
            "TLS certificate and key",
            || read_files(&self.files).map(|(cert, key)| (key, Some(cert))),
            |digest| {
                if self.current.load().digest == *digest {
                    Known::Current
                } else if self.lock().last_failed == Some(Failure::Content(*digest)) {
                    Known::Failed
                } else {
                    Known::New
                }
            },
            |key, cert| {
                let cert = cert.unwrap_or_default();
                let (certified, info) = parse_pair(&self.files, &self.provider, cert, key)?;
                Ok(Served {
                    certified: Arc::new(certified),
                    digest: content_digest(key, Some(cert)),
                    info,
                })
            },
            |error| matches!(error, TlsError::Mismatch { .. }),
        )
    }

    /// Re-reads the files; swaps the served pair when they hold a new usable one.
    fn reload(&self) {
        let read = self.read_pair();
        let now = self.clock.now();
        let mut state = self.lock();
        let (failure, error) = match read {
            PairRead::Failed => return,
            PairRead::Current => {
                // The files hold the served pair again (a broken replacement was undone).
                if state.last_failed.take().is_some() {
                    state.last_error = None;
                    log::info!(
                        "TLS certificate files {} and {} are usable again",
                        self.files.certificate.display(),
                        self.files.key.display()
                    );
                }
                return;
            }
            PairRead::New(_, Ok(served)) => {
                let old = self.current.load_full();
                log::info!(
                    "TLS certificate reloaded from {}: {} (serial {}) -> {} (serial {}, expires {})",
                    self.files.certificate.display(),
                    old.info.subject,
                    old.info.serial,
                    served.info.subject,
                    served.info.serial,
                    served.info.not_after.to_rfc3339()
                );
                self.current.store(Arc::from(served));
                state.loaded_at = now;
                state.last_reload = Some(now);
                state.last_error = None;
                state.last_failed = None;
                return;
            }
            PairRead::New(digest, Err(e)) => (Failure::Content(digest), e),
            PairRead::Unreadable(e) => (Failure::Read(e.to_string()), e),
        };
        if state.last_failed.as_ref() == Some(&failure) {
            return;
        }
        state.failed_reloads += 1;
        state.last_error = Some(error.to_string());
        state.last_failed = Some(failure);
        log::warn!(
            "TLS certificate not reloaded, still serving {} (serial {}): {error}",
            self.current.load().info.subject,
            self.current.load().info.serial
        );
    }
}

/// Reads and checks the pair as `serve` would at start (for `regauth check`): what the
/// leaf certificate says, or why the pair cannot be served.
pub fn check(files: &TlsFiles) -> Result<CertificateInfo, TlsError> {
    let (cert, key) = read_files(files)?;
    parse_pair(files, &provider(), &cert, &key).map(|(_, info)| info)
}

/// The served certificate for `server.tls` (`files`), watched with `watch` (like the signing
/// key); `None` for plain HTTP.
pub fn from_settings(
    files: Option<&TlsFiles>,
    watch: WatchOptions,
    clock: Arc<dyn Clock>,
) -> Result<Option<Arc<TlsCertificates>>, TlsError> {
    let Some(files) = files else {
        return Ok(None);
    };
    let options = TlsOptions {
        watch,
        ..TlsOptions::default()
    };
    let tls = TlsCertificates::start(files.clone(), options, clock)?;
    let served = tls.served();
    log::info!(
        "serving HTTPS (TLS 1.2, 1.3) with {} from {} (serial {}, expires {})",
        served.subject,
        files.certificate.display(),
        served.serial,
        served.not_after.to_rfc3339()
    );
    Ok(Some(Arc::new(tls)))
}

impl TlsCertificates {
    /// Loads the pair (an error when it cannot be served; a mismatched pair is read once
    /// more after [`TlsOptions::pair_retry`]) and watches both files.
    pub fn start(
        files: TlsFiles,
        options: TlsOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<TlsCertificates, TlsError> {
        let provider = provider();
        // A rotation may be half done: a mismatched pair is read once more, as a reload does.
        let (cert, key, parsed) = read_pair_settled(
            options.pair_retry,
            "TLS certificate and key",
            || {
                let (cert, key) = read_files(&files)?;
                let parsed = parse_pair(&files, &provider, &cert, &key);
                Ok::<_, TlsError>((cert, key, parsed))
            },
            |read| matches!(read, Ok((_, _, Err(TlsError::Mismatch { .. })))),
        )?;
        let (certified, info) = parsed?;
        let served = Served {
            certified: Arc::new(certified),
            digest: content_digest(&key, Some(&cert)),
            info,
        };
        let shared = Arc::new(Shared {
            files: files.clone(),
            provider,
            current: ArcSwap::from_pointee(served),
            state: Mutex::new(State {
                loaded_at: clock.now(),
                last_reload: None,
                failed_reloads: 0,
                last_error: None,
                last_failed: None,
            }),
            clock,
            pair_retry: options.pair_retry,
        });
        let weak = Arc::downgrade(&shared);
        let watch = FileWatch::start(
            "tls-reload",
            &[files.certificate, files.key],
            options.watch,
            move || match weak.upgrade() {
                Some(shared) => {
                    shared.reload();
                    true
                }
                None => false,
            },
        );
        Ok(TlsCertificates { shared, watch })
    }

    /// The leaf certificate served now.
    pub fn served(&self) -> CertificateInfo {
        self.shared.current.load().info.clone()
    }

    /// Reload state, for `/readyz`.
    pub fn status(&self) -> TlsStatus {
        let served = self.served();
        let report = self.watch.report();
        let state = self.shared.lock();
        TlsStatus {
            certificate: self.shared.files.certificate.clone(),
            served,
            loaded_at: state.loaded_at,
            last_reload: state.last_reload,
            failed_reloads: state.failed_reloads,
            last_error: state.last_error.clone(),
            reload_panics: report.reload_panics,
            watch_problem: report.problem,
        }
    }

    /// Re-reads the pair now, as the file watch does (SIGHUP), and says in one phrase what
    /// was read and the outcome.
    pub fn reread(&self) -> String {
        let before = self.shared.current.load().digest;
        self.shared.reload();
        let served = self.shared.current.load();
        let outcome = match (&self.shared.lock().last_error, served.digest == before) {
            (Some(error), _) => format!("not usable ({error}), the last good pair is served"),
            (None, true) => "unchanged".to_owned(),
            (None, false) => "reloaded".to_owned(),
        };
        format!(
            "TLS pair {} and {}: {outcome}, serving serial {}",
            self.shared.files.certificate.display(),
            self.shared.files.key.display(),
            served.info.serial
        )
    }

    /// The rustls configuration for the listener: TLS 1.3 and 1.2, the certificate from the
    /// resolver. ALPN (`h2`, `http/1.1`) is added by actix-web.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.shared.provider))
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(&self.shared))));
        config.alpn_protocols = Vec::new();
        Ok(config)
    }

    /// The configuration [`crate::server::shutdown::Seal`] answers queued connections with: HTTP/1.1
    /// only, since it writes a plain HTTP/1.1 response.
    pub fn seal_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = self.server_config()?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The TLS metrics, read at scrape time.
    pub fn collector(self: &Arc<Self>) -> Box<dyn Collector> {
        Box::new(TlsMetrics(Arc::clone(self)))
    }
}

/// Hands every handshake the current pair.
struct Resolver(Arc<Shared>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.current.load().certified))
    }
}

/// `regauth_tls_*`.
struct TlsMetrics(Arc<TlsCertificates>);

impl std::fmt::Debug for TlsMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMetrics").finish_non_exhaustive()
    }
}

impl Collector for TlsMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.0.status();
        crate::telemetry::metrics::gauge(
            &mut encoder,
            "tls_certificate_expiry_timestamp_seconds",
            "Unix time the served TLS certificate expires.",
            status.served.not_after.timestamp(),
        )?;
        crate::telemetry::metrics::gauge(
            &mut encoder,
            "tls_last_reload_timestamp_seconds",
            "Unix time the served TLS certificate was loaded.",
            status.loaded_at.timestamp(),
        )?;
        crate::telemetry::metrics::counter(
            &mut encoder,
            "tls_reload_failures",
            "TLS certificate reloads that found files that could not be used (the last good pair kept serving).",
            status.failed_reloads,
        )
    }
}

#[cfg(test)]
mod tests;
