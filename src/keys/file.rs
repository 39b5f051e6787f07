//! A key read from a PEM file and hot-reloaded when the file is replaced, published with the
//! next key (`key.next`) and the keys it recently replaced (see [`super::keyset`]).
//!
//! The files are watched through [`crate::watch`] (their directories, so `mv`, editors and the
//! Kubernetes `..data` symlink swap are all seen, with a periodic re-read as a backstop). New
//! content replaces the key only when it parses and fits; otherwise the last good key keeps
//! signing and the failure is logged once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::keyset::KeySet;
use super::material::content_digest;
use super::{FileKind, KeyProvider, KeySpec, KeyStatus, ProviderError, SigningKey};
use crate::clock::{Clock, SystemClock};
use crate::watch::{self, FileWatch};

/// How the key files are watched, and how long replaced keys stay published.
#[derive(Debug, Clone, Copy)]
pub struct ReloadOptions {
    /// Debounce and backstop poll of the file watch.
    pub watch: watch::WatchOptions,
    /// How long a replaced signing key stays published: the token lifetime plus the
    /// registry's 60 s leeway, so every token it signed expires first.
    pub retain: Duration,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        ReloadOptions {
            watch: watch::WatchOptions::default(),
            retain: Duration::from_secs(300 + 60),
        }
    }
}

/// The files a [`FileKeyProvider`] reads.
#[derive(Debug, Clone, Default)]
pub struct KeyFiles {
    /// The signing key (`key.path`).
    pub key: PathBuf,
    /// Its certificate chain, leaf first (`key.certificate`).
    pub certificate: Option<PathBuf>,
    /// The next key (`key.next`): published, not signing.
    pub next: Option<PathBuf>,
    /// The next key's certificate chain (`key.next_certificate`).
    pub next_certificate: Option<PathBuf>,
}

impl KeyFiles {
    /// Just a signing key.
    pub fn new(key: impl Into<PathBuf>) -> KeyFiles {
        KeyFiles {
            key: key.into(),
            ..KeyFiles::default()
        }
    }

    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.key)
            .chain(self.certificate.iter())
            .chain(self.next.iter())
            .chain(self.next_certificate.iter())
    }
}

/// Signs with the key at `key.path` (and sends the chain at `key.certificate`), publishes it
/// with the next key and the recently replaced ones, and reloads all of them when their
/// files change.
pub struct FileKeyProvider {
    shared: Arc<Shared>,
    // Dropping the watch ends the reload thread.
    _watch: FileWatch,
}

struct Shared {
    files: KeyFiles,
    spec: KeySpec,
    clock: Arc<dyn Clock>,
    current: ArcSwap<SigningKey>,
    state: Mutex<ReloadState>,
}

struct ReloadState {
    status: KeyStatus,
    set: KeySet,
    /// Digest of the last content that failed, so one bad file is logged once.
    last_failed: Option<[u8; 32]>,
    /// The same for the next key.
    next_failed: Option<[u8; 32]>,
}

impl FileKeyProvider {
    /// Loads the key (a startup error names the path when it is missing or unusable) and
    /// starts watching. A missing or unusable next key is reported, never an error.
    pub fn start(
        files: KeyFiles,
        spec: KeySpec,
        options: ReloadOptions,
    ) -> Result<FileKeyProvider, ProviderError> {
        FileKeyProvider::start_with_clock(files, spec, options, Arc::new(SystemClock))
    }

    /// [`FileKeyProvider::start`] with an explicit clock for load times and the retention
    /// window (tests move time forward instead of sleeping).
    pub fn start_with_clock(
        files: KeyFiles,
        spec: KeySpec,
        options: ReloadOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<FileKeyProvider, ProviderError> {
        let key = load_key_file(&files.key, files.certificate.as_deref(), spec)?;
        super::warn_registry_thumbprint(&key, &format!("signing key from {}", files.key.display()));
        let status = KeyStatus::new(format!("file {}", files.key.display()), &key, clock.now());
        let shared = Arc::new(Shared {
            files,
            spec,
            clock,
            current: ArcSwap::from_pointee(key),
            state: Mutex::new(ReloadState {
                status,
                set: KeySet::new(options.retain),
                last_failed: None,
                next_failed: None,
            }),
        });
        shared.reload_next(&mut shared.lock());

        let weak: Weak<Shared> = Arc::downgrade(&shared);
        let paths: Vec<PathBuf> = shared.files.all().cloned().collect();
        let watch = FileWatch::start("regauth-key-reload", &paths, options.watch, move || {
            weak.upgrade().map(|shared| shared.reload()).is_some()
        });
        Ok(FileKeyProvider {
            shared,
            _watch: watch,
        })
    }

    /// Re-reads the files now; true when a new signing key was swapped in.
    pub fn reload_now(&self) -> bool {
        self.shared.reload()
    }
}

impl KeyProvider for FileKeyProvider {
    fn signing_key(&self) -> Arc<SigningKey> {
        self.shared.current.load_full()
    }

    fn published_keys(&self) -> Vec<Arc<SigningKey>> {
        let state = self.shared.lock();
        state
            .set
            .published(self.shared.current.load_full(), self.shared.clock.now())
    }

    fn status(&self) -> KeyStatus {
        let state = self.shared.lock();
        let mut status = state.status.clone();
        status.retired = state.set.retired(self.shared.clock.now()).count();
        status
    }
}

/// Reads a key file and its optional certificate chain once, into a signing key. Errors name
/// the files.
pub fn load_key_file(
    key: &Path,
    cert: Option<&Path>,
    spec: KeySpec,
) -> Result<SigningKey, ProviderError> {
    let (key_bytes, cert_bytes) = read_files(key, cert)?;
    SigningKey::from_bytes(&key_bytes, cert_bytes.as_deref(), spec).map_err(|error| {
        ProviderError::Key {
            source_desc: describe(key, cert),
            error,
        }
    })
}

fn describe(key: &Path, cert: Option<&Path>) -> String {
    match cert {
        Some(cert) => format!(
            "key file {} with certificate {}",
            key.display(),
            cert.display()
        ),
        None => format!("key file {}", key.display()),
    }
}

fn read_files(
    key: &Path,
    cert: Option<&Path>,
) -> Result<(Vec<u8>, Option<Vec<u8>>), ProviderError> {
    let key_bytes = std::fs::read(key).map_err(|source| ProviderError::Read {
        what: FileKind::Key,
        path: key.display().to_string(),
        source,
    })?;
    Ok((key_bytes, super::read_certificate(cert)?))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ReloadState> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Re-reads every file; swaps in a new signing key when its content changed and is
    /// usable (the old one is retired, still published), then refreshes the next key and
    /// drops retired keys past their window. Returns true on a swap.
    fn reload(&self) -> bool {
        let mut state = self.lock();
        let swapped = self.reload_current(&mut state);
        self.reload_next(&mut state);
        state.set.prune(self.clock.now());
        swapped
    }

    fn reload_current(&self, state: &mut ReloadState) -> bool {
        let files = read_files(&self.files.key, self.files.certificate.as_deref());
        let (key_bytes, cert_bytes) = match files {
            Ok(files) => files,
            Err(e) => {
                // A file missing for a moment (mid-rename) is not worth a failure count;
                // the next event or poll will find the new one.
                log::debug!("key reload skipped: {e}");
                return false;
            }
        };
        let digest_now = content_digest(&key_bytes, cert_bytes.as_deref());
        let current = self.current.load_full();
        if current.fingerprint() == &digest_now || state.last_failed == Some(digest_now) {
            return false;
        }
        match SigningKey::from_bytes(&key_bytes, cert_bytes.as_deref(), self.spec) {
            Ok(key) => {
                let old = current.label();
                let new = key.label();
                let now = self.clock.now();
                state.set.replaced(Arc::clone(&current), &key, now);
                super::warn_registry_thumbprint(
                    &key,
                    &format!("signing key from {}", self.files.key.display()),
                );
                state.status.kid = key.kid().map(str::to_owned);
                self.current.store(Arc::new(key));
                state.status.loaded_at = now;
                state.status.last_reload = Some(now);
                state.status.last_error = None;
                state.last_failed = None;
                log::info!(
                    "signing key reloaded from {}: {old} -> {new}",
                    self.files.key.display()
                );
                true
            }
            Err(error) => {
                state.status.failed_reloads += 1;
                state.status.last_error = Some(error.to_string());
                state.last_failed = Some(digest_now);
                log::error!(
                    "new content of {} is not usable, still signing with {}: {error}",
                    describe(&self.files.key, self.files.certificate.as_deref()),
                    current.label()
                );
                false
            }
        }
    }

    /// Loads, replaces or drops the next key. Never touches the signing key: a broken next
    /// key is reported in the status and the last good one (if any) stays published; a
    /// missing one is no longer published.
    fn reload_next(&self, state: &mut ReloadState) {
        let Some(path) = &self.files.next else {
            return;
        };
        let cert = self.files.next_certificate.as_deref();
        let (key_bytes, cert_bytes) = match read_files(path, cert) {
            Ok(files) => files,
            Err(e) if e.is_missing(FileKind::Key) => {
                if let Some(old) = state.set.next() {
                    log::info!(
                        "next key {} is gone; {} is no longer published as the next key",
                        path.display(),
                        old.label()
                    );
                }
                state.set.set_next(None);
                state.status.next_kid = None;
                state.status.next_error = Some(format!("no next key at {}", path.display()));
                state.next_failed = None;
                return;
            }
            Err(e) => {
                self.next_failed(state, e.to_string());
                return;
            }
        };
        let digest = content_digest(&key_bytes, cert_bytes.as_deref());
        let unchanged = state.set.next().is_some_and(|k| k.fingerprint() == &digest);
        if unchanged || state.next_failed == Some(digest) {
            return;
        }
        match SigningKey::from_bytes(&key_bytes, cert_bytes.as_deref(), self.spec) {
            Ok(key) => {
                log::info!(
                    "next key loaded from {}: {} (published, not signing)",
                    describe(path, cert),
                    key.label()
                );
                super::warn_registry_thumbprint(&key, &format!("next key from {}", path.display()));
                state.status.next_kid = key.published_id().map(str::to_owned);
                state.status.next_error = None;
                state.next_failed = None;
                state.set.set_next(Some(Arc::new(key)));
            }
            Err(error) => {
                state.next_failed = Some(digest);
                self.next_failed(state, format!("{}: {error}", describe(path, cert)));
            }
        }
    }

    fn next_failed(&self, state: &mut ReloadState, reason: String) {
        if state.status.next_error.as_deref() != Some(reason.as_str()) {
            let keeps = match state.set.next() {
                Some(k) => format!("still publishing {} as the next key", k.label()),
                None => "no next key is published".to_owned(),
            };
            log::error!("the next key is not usable, {keeps}: {reason}");
        }
        state.status.next_error = Some(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::keys::{Algorithm, generate};
    use chrono::{TimeDelta, Utc};

    fn write_key(path: &Path) -> String {
        let g = generate::generate(Algorithm::ES256).unwrap();
        let staged = path.with_extension("staged");
        std::fs::write(&staged, &g.key_pem).unwrap();
        std::fs::rename(&staged, path).unwrap();
        SigningKey::from_bytes(g.key_pem.as_bytes(), None, KeySpec::default())
            .unwrap()
            .kid()
            .unwrap()
            .to_owned()
    }

    fn kids(provider: &FileKeyProvider) -> Vec<String> {
        provider
            .published_keys()
            .iter()
            .map(|k| k.kid().unwrap().to_owned())
            .collect()
    }

    /// A provider whose reload thread never fires on its own (long debounce and poll), so
    /// the test drives reloads with `reload_now`.
    fn start(dir: &Path, with_next: bool) -> (FileKeyProvider, Arc<ManualClock>, PathBuf, PathBuf) {
        let (key, next) = (dir.join("signing.key"), dir.join("next.key"));
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let files = KeyFiles {
            next: with_next.then(|| next.clone()),
            ..KeyFiles::new(&key)
        };
        let options = ReloadOptions {
            watch: watch::WatchOptions {
                debounce: Duration::from_secs(3600),
                poll_interval: Duration::from_secs(3600),
                ..watch::WatchOptions::default()
            },
            retain: Duration::from_secs(360),
        };
        let provider = FileKeyProvider::start_with_clock(
            files,
            KeySpec::default(),
            options,
            Arc::clone(&clock) as Arc<dyn Clock>,
        )
        .unwrap();
        (provider, clock, key, next)
    }

    #[test]
    fn the_next_key_is_published_and_a_promoted_one_retires_the_old_key_for_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_key(&dir.path().join("signing.key"));
        let second = write_key(&dir.path().join("next.key"));
        let (provider, clock, key, next) = start(dir.path(), true);
        assert_eq!(kids(&provider), [first.clone(), second.clone()]);
        let status = provider.status();
        assert_eq!(status.kid.as_deref(), Some(first.as_str()));
        assert_eq!(status.next_kid.as_deref(), Some(second.as_str()));

        // The operator's swap: the next key moved over the signing key.
        std::fs::rename(&next, &key).unwrap();
        assert!(provider.reload_now());
        assert_eq!(provider.signing_key().kid(), Some(second.as_str()));
        assert_eq!(kids(&provider), [second.clone(), first.clone()]);
        let status = provider.status();
        assert_eq!(status.kid.as_deref(), Some(second.as_str()));
        assert_eq!((status.next_kid, status.retired), (None, 1));
        assert!(status.next_error.unwrap().contains("no next key"));
        assert_eq!(status.last_reload, Some(status.loaded_at));

        clock.advance(TimeDelta::seconds(359));
        assert_eq!(kids(&provider).len(), 2, "still inside the window");
        clock.advance(TimeDelta::seconds(1));
        assert_eq!(
            kids(&provider),
            std::slice::from_ref(&second),
            "dropped after ttl + 60 s"
        );
        assert_eq!(provider.status().retired, 0);
        assert_eq!(provider.status().key_age(clock.now()).num_seconds(), 360);
    }

    #[test]
    fn a_broken_next_key_never_affects_signing_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_key(&dir.path().join("signing.key"));
        std::fs::write(dir.path().join("next.key"), "not a key").unwrap();
        let (provider, _clock, _key, next) = start(dir.path(), true);
        assert_eq!(kids(&provider), std::slice::from_ref(&first));
        let status = provider.status();
        assert!(status.next_error.unwrap().contains("no PEM private key"));
        assert_eq!(status.failed_reloads, 0, "the signing key is fine");

        // A good next key, then a broken one: the good one stays published.
        let second = write_key(&next);
        provider.reload_now();
        assert_eq!(kids(&provider), [first.clone(), second.clone()]);
        std::fs::write(
            &next,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(!provider.reload_now());
        assert_eq!(kids(&provider), [first.clone(), second.clone()]);
        assert_eq!(provider.signing_key().kid(), Some(first.as_str()));
        assert!(provider.status().next_error.is_some());

        // Removed: no longer published.
        std::fs::remove_file(&next).unwrap();
        provider.reload_now();
        assert_eq!(kids(&provider), [first]);
    }

    #[test]
    fn without_a_next_key_only_the_signing_key_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_key(&dir.path().join("signing.key"));
        let (provider, _clock, _key, _next) = start(dir.path(), false);
        assert_eq!(kids(&provider), [first]);
        assert_eq!(provider.status().next_error, None);
    }
}
