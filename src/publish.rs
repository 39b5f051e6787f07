//! What verifiers should trust, worked out from the settings without starting a server or a
//! watcher: `regauth bundle` (PEM for a registry's `rootcertbundle`) and `regauth jwks` (a
//! JWK Set, e.g. for registry 3.x's `auth.token.jwks` file).
//!
//! Both cover the signing key and the next key. Keys replaced recently live only in a running
//! server (`GET /.well-known/jwks.json`); make a new bundle only after the retention window.

use std::path::Path;

use anyhow::Context;

use crate::config::{KeySource, Validated};
use crate::keys::bundle::{self, BundleKey};
use crate::keys::jwks::Jwks;
use crate::keys::{EnvKeyProvider, KeyProvider, SigningKey, load_key_file};
use crate::startup::key_spec;

/// What a command prints: `text` to stdout, `notes` (one per line) to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// PEM or JSON, ready for a file.
    pub text: String,
    /// What was taken from where, and what was left out.
    pub notes: Vec<String>,
}

/// A key to publish, with where it came from.
pub struct Published {
    /// e.g. `the signing key (key.path keys/signing.key)`.
    pub role: String,
    /// The setting that names its certificate.
    pub certificate_setting: &'static str,
    /// The key.
    pub key: std::sync::Arc<SigningKey>,
    /// True when its certificate was not configured but found beside the key file
    /// (`signing.key` → `signing.crt`, as `regauth keygen` writes them); the server does not
    /// send such a certificate as `x5c`.
    pub certificate_beside: bool,
}

/// The configured certificate, or else `NAME.crt` beside `NAME.key` when that file exists.
fn certificate_for(key: &Path, configured: Option<&Path>) -> (Option<std::path::PathBuf>, bool) {
    match configured {
        Some(path) => (Some(path.to_path_buf()), false),
        None => {
            let beside = key.with_extension("crt");
            if beside.is_file() {
                (Some(beside), true)
            } else {
                (None, false)
            }
        }
    }
}

/// Loads the signing key and, when its file exists, the next key (as the server does, a
/// missing next key means none, e.g. right after it was moved over `key.path`). A key that
/// exists but cannot be loaded is an error: a partial answer would leave a registry or
/// verifier short of a key.
pub fn load(config: &Validated) -> anyhow::Result<Vec<Published>> {
    let settings = &config.settings.key;
    let spec = key_spec(config);
    let current = match settings.source {
        KeySource::Env => {
            let provider =
                EnvKeyProvider::from_env(&settings.env, settings.certificate.clone(), spec)?;
            Published {
                role: format!("the signing key (environment variable {})", settings.env),
                certificate_setting: "key.certificate",
                key: provider.signing_key(),
                certificate_beside: false,
            }
        }
        KeySource::File => {
            let (certificate, beside) =
                certificate_for(&settings.path, settings.certificate.as_deref());
            Published {
                role: describe_role(
                    "the signing key",
                    "key.path",
                    &settings.path,
                    beside.then_some(certificate.as_deref()).flatten(),
                ),
                certificate_setting: "key.certificate",
                key: read_key(&settings.path, certificate.as_deref(), config)?,
                certificate_beside: beside,
            }
        }
    };
    let mut out = vec![current];
    if let Some(next) = settings.next.as_ref().filter(|p| p.exists()) {
        let (certificate, beside) = certificate_for(next, settings.next_certificate.as_deref());
        out.push(Published {
            role: describe_role(
                "the next key",
                "key.next",
                next,
                beside.then_some(certificate.as_deref()).flatten(),
            ),
            certificate_setting: "key.next_certificate",
            key: read_key(next, certificate.as_deref(), config)
                .context("key.next is configured but cannot be used")?,
            certificate_beside: beside,
        });
    }
    Ok(out)
}

fn describe_role(what: &str, setting: &str, path: &Path, beside: Option<&Path>) -> String {
    match beside {
        Some(cert) => format!(
            "{what} ({setting} {}, with the certificate {} beside it)",
            path.display(),
            cert.display()
        ),
        None => format!("{what} ({setting} {})", path.display()),
    }
}

/// A note when `key.next` is configured but its file does not exist.
fn missing_next(config: &Validated) -> Option<String> {
    let next = config.settings.key.next.as_ref()?;
    (!next.exists()).then(|| {
        format!(
            "key.next {} does not exist: only the signing key is included",
            next.display()
        )
    })
}

fn read_key(
    key: &Path,
    certificate: Option<&Path>,
    config: &Validated,
) -> anyhow::Result<std::sync::Arc<SigningKey>> {
    Ok(std::sync::Arc::new(load_key_file(
        key,
        certificate,
        key_spec(config),
    )?))
}

/// The PEM certificates a registry should trust for the published keys (see
/// [`bundle::trust_anchors`]), with a note per key saying what was taken.
pub fn bundle(config: &Validated) -> anyhow::Result<Output> {
    let keys = load(config)?;
    let missing_next = missing_next(config);
    let x5c = config.settings.key.x5c;
    // Each key on its own terms: a certificate found beside the key file is not sent as x5c,
    // so the registry must trust that certificate itself.
    let mut anchors: Vec<Vec<u8>> = Vec::new();
    for p in &keys {
        let entry = BundleKey {
            role: &p.role,
            setting: p.certificate_setting,
            key: &p.key,
        };
        for anchor in bundle::trust_anchors(&[entry], x5c && !p.certificate_beside)? {
            if !anchors.contains(&anchor) {
                anchors.push(anchor);
            }
        }
    }
    let notes = keys
        .iter()
        .map(|p| {
            let chain = p.key.certificate().map_or(0, |c| c.chain_der.len());
            let sent = x5c && !p.certificate_beside;
            let what = if sent && chain > 1 {
                "the last certificate of its x5c chain"
            } else if sent {
                "its self-signed certificate (sent as x5c)"
            } else {
                "its certificate (found by kid)"
            };
            format!("{}: {}, {what}", p.role, p.key.label())
        })
        .chain(missing_next)
        .collect();
    Ok(Output {
        text: bundle::to_pem(&anchors),
        notes,
    })
}

/// The JWK Set of the published keys as pretty JSON, with a note for an HMAC key (never
/// published).
pub fn jwks(config: &Validated) -> anyhow::Result<Output> {
    let keys = load(config)?;
    let missing_next = missing_next(config);
    let notes = keys
        .iter()
        .filter(|p| p.key.public_key().is_none())
        .map(|p| {
            format!(
                "{} is an HMAC secret ({}): secrets are never published, so it is not in the JWKS",
                p.role,
                p.key.algorithm()
            )
        })
        .chain(missing_next)
        .collect();
    let arcs: Vec<_> = keys.into_iter().map(|p| p.key).collect();
    let json = serde_json::to_string_pretty(&Jwks::of(&arcs)).context("encoding the JWKS")?;
    Ok(Output {
        text: json + "\n",
        notes,
    })
}
