//! Keys as the settings name them: the one place that turns `key.*` and `token.kid_format`
//! into a provider for `serve`, or into loaded keys for `check`, `bundle` and `jwks`, so all
//! of them read the same files (or variable) the same way.
//!
//! The server sends and publishes only the certificates the settings name
//! (`key.certificate`, `key.next_certificate`). [`certificate_beside`] is the one rule for
//! the certificate `regauth keygen` writes next to a key file, which only the bundle (as a
//! trust anchor) and the startup banner (as the `rootcertbundle` to configure) fall back to.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    EnvKeyProvider, FileKeyProvider, FileKind, KeyFiles, KeyProvider, KeySettings, KeySource,
    KeySpec, ProviderError, ReloadOptions, SigningKey, load_key_file,
};
use crate::clock::Clock;

/// The certificate `regauth keygen` writes beside a key file: `NAME.crt` for `NAME.key` (or
/// for `NAME` without an extension). It may not exist.
pub fn certificate_beside(key: &Path) -> PathBuf {
    key.with_extension("crt")
}

/// A key loaded once from the settings, exactly as `serve` loads it at start.
pub struct LoadedKey {
    /// The key, with the certificate the settings name (if any).
    pub key: Arc<SigningKey>,
    /// The key file; `None` for a key from the environment.
    pub path: Option<PathBuf>,
    /// Which key and where from, e.g. `the signing key (key.path keys/signing.key)`.
    pub role: String,
    /// The setting that names its certificate.
    pub certificate_setting: &'static str,
}

/// The next key (`key.next`), as far as it could be loaded.
pub enum NextKey {
    /// `key.next` is not set.
    NotConfigured,
    /// `key.next` is set but its file does not exist: no next key (as right after it was
    /// moved over `key.path`).
    Missing(PathBuf),
    /// Loaded.
    Loaded(LoadedKey),
    /// The file exists but cannot be used.
    Unusable(ProviderError),
}

/// The signing key and the next key.
pub struct LoadedKeys {
    /// The key that signs.
    pub signing: LoadedKey,
    /// The next key.
    pub next: NextKey,
}

/// Loads the signing key (an error when it cannot be used) and the next key (see
/// [`NextKey`]) of the `key.*` settings without starting a watcher; `spec` says how keys are
/// built.
pub fn load_from_settings(
    settings: &KeySettings,
    spec: KeySpec,
) -> Result<LoadedKeys, ProviderError> {
    let signing = match settings.source {
        KeySource::Env => {
            let provider =
                EnvKeyProvider::from_env(&settings.env, settings.certificate.clone(), spec)?;
            LoadedKey {
                key: provider.signing_key(),
                path: None,
                role: format!("the signing key (environment variable {})", settings.env),
                certificate_setting: "key.certificate",
            }
        }
        KeySource::File => LoadedKey {
            key: Arc::new(load_key_file(
                &settings.path,
                settings.certificate.as_deref(),
                spec,
            )?),
            path: Some(settings.path.clone()),
            role: format!("the signing key (key.path {})", settings.path.display()),
            certificate_setting: "key.certificate",
        },
    };
    let next = match &settings.next {
        None => NextKey::NotConfigured,
        Some(path) => match load_key_file(path, settings.next_certificate.as_deref(), spec) {
            Ok(key) => NextKey::Loaded(LoadedKey {
                key: Arc::new(key),
                path: Some(path.clone()),
                role: format!("the next key (key.next {})", path.display()),
                certificate_setting: "key.next_certificate",
            }),
            Err(e) if e.is_missing(FileKind::Key) => NextKey::Missing(path.clone()),
            Err(e) => NextKey::Unusable(e),
        },
    };
    Ok(LoadedKeys { signing, next })
}

/// The provider `serve` signs with: the environment key, or the key files watched and
/// reloaded with `options` (see [`FileKeyProvider`]).
pub fn provider_from_settings(
    settings: &KeySettings,
    spec: KeySpec,
    options: ReloadOptions,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn KeyProvider>, ProviderError> {
    match settings.source {
        KeySource::Env => Ok(Arc::new(EnvKeyProvider::from_env(
            &settings.env,
            settings.certificate.clone(),
            spec,
        )?)),
        KeySource::File => {
            let files = KeyFiles {
                key: settings.path.clone(),
                certificate: settings.certificate.clone(),
                next: settings.next.clone(),
                next_certificate: settings.next_certificate.clone(),
            };
            Ok(Arc::new(FileKeyProvider::start_with_clock(
                files, spec, options, clock,
            )?))
        }
    }
}

impl ProviderError {
    /// True when this is "the file of `kind` does not exist".
    pub fn is_missing(&self, kind: FileKind) -> bool {
        matches!(self, ProviderError::Read { what, error, .. }
            if *what == kind && error.kind() == ErrorKind::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, generate};

    #[test]
    fn the_certificate_beside_a_key_is_named_like_keygen_writes_it() {
        assert_eq!(
            certificate_beside(Path::new("keys/signing.key")),
            Path::new("keys/signing.crt")
        );
        assert_eq!(
            certificate_beside(Path::new("/k/next.pem")),
            Path::new("/k/next.crt")
        );
        assert_eq!(
            certificate_beside(Path::new("k/key")),
            Path::new("k/key.crt")
        );
    }

    #[test]
    fn a_missing_next_key_is_no_next_key_and_a_broken_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        generate::write(dir.path(), Algorithm::ES256, false).unwrap();
        let settings = KeySettings {
            path: dir.path().join("signing.key"),
            next: Some(dir.path().join("next.key")),
            ..KeySettings::default()
        };
        let spec = KeySpec {
            algorithm: None,
            kid_format: crate::keys::KidFormat::Libtrust,
            x5c: true,
        };
        let loaded = load_from_settings(&settings, spec).unwrap();
        assert!(loaded.signing.key.certificate().is_none(), "not configured");
        assert!(matches!(loaded.next, NextKey::Missing(_)));
        std::fs::write(dir.path().join("next.key"), "broken").unwrap();
        let loaded = load_from_settings(&settings, spec).unwrap();
        assert!(matches!(loaded.next, NextKey::Unusable(_)));
    }
}
