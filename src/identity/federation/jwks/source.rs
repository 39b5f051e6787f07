//! Where an issuer's keys come from (a file or a URL) and reading them once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::support;

use super::{FETCH_TIMEOUT, JwksError, MAX_JWKS_BYTES, PublicKey, parse};

/// Where an issuer's keys come from.
pub enum Source {
    /// A file, re-read when it changes.
    File(PathBuf),
    /// A URL, fetched with a bounded client.
    Url {
        /// The URL.
        url: String,
        /// The client (timeout, no redirects, the CA set).
        agent: ureq::Agent,
    },
}

impl Source {
    /// A URL source; `ca_file` replaces the built-in web roots when given.
    /// The proxy named by `HTTPS_PROXY`/`HTTP_PROXY` (and `NO_PROXY`) is used, except for a
    /// loopback URL.
    pub fn url(url: &str, ca_file: Option<&Path>) -> Result<Source, JwksError> {
        Source::url_via(url, ca_file, ureq::Proxy::try_from_env())
    }

    /// [`Source::url`] with the proxy the environment would name: `proxy` is used unless
    /// the URL is loopback.
    pub(in crate::identity::federation) fn url_via(
        url: &str,
        ca_file: Option<&Path>,
        proxy: Option<ureq::Proxy>,
    ) -> Result<Source, JwksError> {
        let loopback = url
            .parse::<ureq::http::Uri>()
            .ok()
            .and_then(|u| {
                u.host()
                    .map(crate::identity::federation::settings::is_loopback)
            })
            .unwrap_or(false);
        Ok(Source::Url {
            url: url.to_owned(),
            agent: agent(ca_file, proxy.filter(|_| !loopback))?,
        })
    }

    /// The file or URL, for messages.
    pub fn describe(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Url { url, .. } => url.clone(),
        }
    }
}

/// The bounded client; `proxy` replaces whatever the environment names (`None`: direct).
fn agent(ca_file: Option<&Path>, proxy: Option<ureq::Proxy>) -> Result<ureq::Agent, JwksError> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder().unversioned_rustls_crypto_provider(support::tls::provider());
    if let Some(path) = ca_file {
        let certs: Vec<Certificate<'static>> = support::tls::read_ca_file(path)
            .map_err(|reason| JwksError::Ca {
                path: path.display().to_string(),
                reason,
            })?
            .iter()
            .map(|der| Certificate::from_der(der.as_ref()).to_owned())
            .collect();
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    let config = ureq::Agent::config_builder()
        .proxy(proxy)
        .timeout_global(Some(FETCH_TIMEOUT))
        .max_redirects(0)
        .user_agent(concat!("regauth/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build();
    Ok(config.new_agent())
}

/// Reads the source once: the file, or one HTTP GET.
pub(super) fn load(source: &Source) -> Result<Vec<Arc<PublicKey>>, JwksError> {
    match source {
        Source::File(path) => {
            let from = path.display().to_string();
            let read = |e: std::io::Error| JwksError::Read {
                path: from.clone(),
                reason: e.to_string(),
            };
            let file = std::fs::File::open(path).map_err(read)?;
            let mut text = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(file, MAX_JWKS_BYTES + 1),
                &mut text,
            )
            .map_err(read)?;
            if text.len() as u64 > MAX_JWKS_BYTES {
                return Err(JwksError::TooLarge(from));
            }
            parse(&text, &from)
        }
        Source::Url { url, agent } => {
            let fetch = |reason: String| JwksError::Fetch {
                url: url.clone(),
                reason,
            };
            let mut response = agent.get(url).call().map_err(|e| fetch(e.to_string()))?;
            let text = response
                .body_mut()
                .with_config()
                .limit(MAX_JWKS_BYTES)
                .read_to_vec()
                .map_err(|e| match e {
                    ureq::Error::BodyExceedsLimit(_) => JwksError::TooLarge(url.clone()),
                    other => fetch(other.to_string()),
                })?;
            parse(&text, url)
        }
    }
}

/// A file's identity for change detection: modification time and length.
pub(super) fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
