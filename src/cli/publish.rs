//! What verifiers should trust, worked out from the settings without starting a server or a
//! watcher: `regauth bundle` (PEM for a registry's `rootcertbundle`) and `regauth jwks` (a
//! JWK Set, e.g. for registry 3.x's `auth.token.jwks` file) and `regauth public-key` (one
//! key's PEM public key, for verifiers that trust a single key file, such as Pulp's
//! `PUBLIC_KEY_PATH`).
//!
//! Both cover the signing key and the next key, loaded by [`keys::load_from_settings`] as
//! `serve` loads them, so `regauth jwks` prints what `GET /.well-known/jwks.json` answers
//! right after a start. Keys replaced recently live only in a running server; make a new
//! bundle only after the retention window.

use std::sync::Arc;

use anyhow::Context;

use regauth::config::Validated;
use regauth::keys::bundle::{self, BundleKey};
use regauth::keys::jwks::Jwks;
use regauth::keys::{self, LoadedKey, NextKey, SigningKey, load_key_file};

/// What a command prints: `text` to stdout, `notes` (one per line) to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// PEM or JSON, ready for a file.
    pub text: String,
    /// What was taken from where, and what was left out.
    pub notes: Vec<String>,
}

/// The signing key and, when its file exists, the next key, with a note when `key.next` is
/// configured but absent. A next key that exists but cannot be loaded is an error: a partial
/// answer would leave a registry or verifier short of a key.
fn published(config: &Validated) -> anyhow::Result<(Vec<LoadedKey>, Option<String>)> {
    let loaded = keys::load_from_settings(&config.key, config.key_spec())?;
    let mut out = vec![loaded.signing];
    let mut note = None;
    match loaded.next {
        NextKey::NotConfigured => {}
        NextKey::Missing(path) => {
            note = Some(format!(
                "key.next {} does not exist: only the signing key is included",
                path.display()
            ));
        }
        NextKey::Loaded(next) => out.push(next),
        NextKey::Unusable(e) => {
            return Err(anyhow::Error::new(e).context("key.next is configured but cannot be used"));
        }
    }
    Ok((out, note))
}

/// The key whose certificate anchors `loaded` in the bundle, and how to name it: the key
/// itself when the settings name its certificate, else the same key file read with the
/// certificate beside it ([`keys::certificate_beside`]), which tokens never carry.
fn with_anchor(
    loaded: &LoadedKey,
    config: &Validated,
) -> anyhow::Result<(Arc<SigningKey>, String)> {
    let beside = loaded
        .path
        .as_deref()
        .filter(|_| loaded.key.certificate().is_none())
        .map(|path| (path, keys::certificate_beside(path)))
        .filter(|(_, cert)| cert.is_file());
    let Some((path, cert)) = beside else {
        return Ok((Arc::clone(&loaded.key), loaded.role.clone()));
    };
    let key = load_key_file(path, Some(&cert), config.key_spec())?;
    let role = format!(
        "{}, with the certificate {} beside it)",
        loaded.role.trim_end_matches(')'),
        cert.display()
    );
    Ok((Arc::new(key), role))
}

/// The PEM certificates a registry should trust for the published keys (see
/// [`bundle::trust_anchors`]), with a note per key saying what was taken.
pub fn bundle(config: &Validated) -> anyhow::Result<Output> {
    let (keys, missing_next) = published(config)?;
    let mut anchors: Vec<Vec<u8>> = Vec::new();
    let mut notes = Vec::new();
    for loaded in &keys {
        let (key, role) = with_anchor(loaded, config)?;
        // Each key on its own terms: tokens carry x5c only for a certificate the settings
        // name, and the registry must trust a certificate found beside the key itself. So
        // whether x5c is sent is the loaded key's answer, not that of the copy made with the
        // certificate found beside it.
        let sent = loaded.key.sends_x5c();
        let entry = BundleKey {
            role: &role,
            setting: loaded.certificate_setting,
            key: &key,
        };
        for anchor in bundle::trust_anchors(&[entry], sent)? {
            if !anchors.contains(&anchor) {
                anchors.push(anchor);
            }
        }
        let chain = key.certificate().map_or(0, |c| c.chain_der.len());
        let what = if sent && chain > 1 {
            "the last certificate of its x5c chain"
        } else if sent {
            "its self-signed certificate (sent as x5c)"
        } else {
            "its certificate (found by kid)"
        };
        notes.push(format!("{role}: {}, {what}", key.label()));
    }
    notes.extend(missing_next);
    Ok(Output {
        text: bundle::to_pem(&anchors),
        notes,
    })
}

/// The JWK Set of the published keys as pretty JSON, the same as the server's for these
/// keys, with a note for an HMAC key (never published).
pub fn jwks(config: &Validated) -> anyhow::Result<Output> {
    let (keys, missing_next) = published(config)?;
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

/// Which key `regauth public-key` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The key that signs now.
    Signing,
    /// `key.next`, the key that signs after the next rotation.
    Next,
}

/// One key's public half as a PEM `PUBLIC KEY` block (DER SubjectPublicKeyInfo). Verifiers
/// that trust exactly one key file need this, not a certificate. An HMAC secret has no
/// public half; a missing next key is an error, not an empty answer.
pub fn public_key(config: &Validated, which: Which) -> anyhow::Result<Output> {
    let loaded = keys::load_from_settings(&config.key, config.key_spec())?;
    let key = match which {
        Which::Signing => loaded.signing,
        Which::Next => match loaded.next {
            NextKey::Loaded(next) => next,
            NextKey::NotConfigured => anyhow::bail!("key.next is not configured"),
            NextKey::Missing(path) => anyhow::bail!("key.next {} does not exist", path.display()),
            NextKey::Unusable(e) => {
                return Err(
                    anyhow::Error::new(e).context("key.next is configured but cannot be used")
                );
            }
        },
    };
    let Some(public) = key.key.public_key() else {
        anyhow::bail!(
            "{} is an HMAC secret ({}): it has no public key, and a secret is never printed",
            key.role,
            key.key.algorithm()
        );
    };
    let text = pem::encode(&pem::Pem::new("PUBLIC KEY", public.spki_der.clone()));
    Ok(Output {
        text,
        notes: vec![format!("the public key of {}", key.role)],
    })
}

/// Prints what `make` computes from the settings to stdout, its notes to stderr; prints
/// nothing to stdout on error.
pub(super) fn print(
    config_path: Option<std::path::PathBuf>,
    make: impl FnOnce(&Validated) -> anyhow::Result<Output>,
) -> anyhow::Result<()> {
    let config = regauth::config::load(config_path.as_deref())?;
    let output = make(&config)?;
    for note in output.notes {
        eprintln!("regauth: {note}");
    }
    print!("{}", output.text);
    Ok(())
}
