//! A key read from a PEM file and hot-reloaded when the file is replaced, published with the
//! next key (`key.next`) and the keys it recently replaced (see [`super::keyset`]).
//!
//! The files are watched through [`crate::fs::watch`] (their directories and, for symlinks, their
//! targets' directories, so `mv`, editors and the Kubernetes `..data` symlink swap are all
//! seen, with a periodic re-read as a backstop). New content replaces the key only when it
//! parses and fits; otherwise the last good key keeps signing and the failure is logged once.
//! A key and its certificate are read as a pair: when they do not match, they are read again
//! after a moment (a rotation may have replaced one and not yet the other) before the reload
//! counts as failed. A key file that cannot be read is reported (and logged once) until it
//! can be read again. Files are read and parsed without holding the state lock that
//! `/readyz` and the JWKS take.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::keyset::KeySet;
use super::{FileKind, KeyError, KeyProvider, KeySpec, KeyStatus, ProviderError, SigningKey};
use crate::clock::{Clock, SystemClock};
use crate::fs::pair::{self, Known, PairRead};
use crate::fs::watch::{self, FileWatch};
use crate::support::sync::lock;

/// How the key files are watched, and how long replaced keys stay published.
#[derive(Debug, Clone, Copy)]
pub struct ReloadOptions {
    /// Debounce and backstop poll of the file watch.
    pub watch: watch::WatchOptions,
    /// How long a replaced signing key stays published: the token lifetime plus the
    /// registry's 60 s leeway, so every token it signed expires first.
    pub retain: Duration,
    /// How long to wait before reading a key and a certificate that do not match once more.
    pub pair_retry: Duration,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        ReloadOptions {
            watch: watch::WatchOptions::default(),
            retain: Duration::from_secs(300 + 60),
            pair_retry: Duration::from_millis(500),
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
    watch: FileWatch,
}

struct Shared {
    files: KeyFiles,
    spec: KeySpec,
    clock: Arc<dyn Clock>,
    pair_retry: Duration,
    /// Pairs read once more after a mismatch.
    pair_retries: AtomicU64,
    current: ArcSwap<SigningKey>,
    /// Held for a whole reload (file I/O included), so reloads run one at a time; readers
    /// never take it.
    reloading: Mutex<()>,
    /// Held only to read or update the bookkeeping, never across file I/O.
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
        let mut status = KeyStatus::new(format!("file {}", files.key.display()), &key, clock.now());
        status.last_check = Some(status.loaded_at);
        let shared = Arc::new(Shared {
            files,
            spec,
            clock,
            pair_retry: options.pair_retry,
            pair_retries: AtomicU64::new(0),
            current: ArcSwap::from_pointee(key),
            reloading: Mutex::new(()),
            state: Mutex::new(ReloadState {
                status,
                set: KeySet::new(options.retain),
                last_failed: None,
                next_failed: None,
            }),
        });
        shared.reload_next();

        let weak: Weak<Shared> = Arc::downgrade(&shared);
        let paths: Vec<PathBuf> = shared.files.all().cloned().collect();
        let watch = FileWatch::start("regauth-key-reload", &paths, options.watch, move || {
            weak.upgrade().map(|shared| shared.reload()).is_some()
        });
        Ok(FileKeyProvider { shared, watch })
    }

    /// Re-reads the files now; true when a new signing key was swapped in.
    pub fn reload_now(&self) -> bool {
        matches!(self.shared.reload(), Reread::Swapped)
    }
}

/// What re-reading the signing key's files found.
enum Reread {
    /// The files hold the key that signs.
    Unchanged,
    /// A new key was swapped in.
    Swapped,
    /// The files cannot be read or used; the last good key signs.
    Kept(String),
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
        let mut status = {
            let state = self.shared.lock();
            let mut status = state.status.clone();
            status.retired = state.set.retired(self.shared.clock.now()).count();
            status
        };
        let watch = self.watch.report();
        status.reload_panics = watch.reload_panics;
        status.watch_rearmed = watch.rearmed;
        status.watch_problem = watch.problem;
        status.pair_retries = self.shared.pair_retries.load(Ordering::Relaxed);
        status
    }

    fn reread(&self) -> Option<String> {
        let outcome = match self.shared.reload() {
            Reread::Unchanged => "unchanged".to_owned(),
            Reread::Swapped => "reloaded".to_owned(),
            Reread::Kept(reason) => format!("not usable ({reason}), the last good key signs"),
        };
        let status = self.status();
        let mut text = format!(
            "signing key {}: {outcome}, signing with {}",
            self.shared.files.key.display(),
            self.shared.current.load().label()
        );
        if let Some(next) = &self.shared.files.next {
            let next_outcome = match (&status.next_error, &status.next_kid) {
                (Some(error), _) => error.clone(),
                (None, Some(kid)) => format!("publishing {kid}"),
                (None, None) => "none".to_owned(),
            };
            text.push_str(&format!("; next key {}: {next_outcome}", next.display()));
        }
        Some(text)
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
    let key_bytes = std::fs::read(key).map_err(|error| ProviderError::Read {
        what: FileKind::Key,
        path: key.display().to_string(),
        error,
    })?;
    Ok((key_bytes, super::read_certificate(cert)?))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ReloadState> {
        lock(&self.state)
    }

    /// Re-reads every file; swaps in a new signing key when its content changed and is
    /// usable (the old one is retired, still published), then refreshes the next key and
    /// drops retired keys past their window. Says what became of the signing key.
    fn reload(&self) -> Reread {
        let _one_at_a_time = lock(&self.reloading);
        self.lock().status.last_check = Some(self.clock.now());
        let outcome = self.reload_current();
        self.reload_next();
        self.lock().set.prune(self.clock.now());
        outcome
    }

    /// Reads `key` and `cert` as one pair and parses them unless `known` says the content
    /// is the key in use or the last failure. A key and certificate that do not match are
    /// read again after [`Shared::pair_retry`]: a rotation that replaces them one after the
    /// other (or a symlink swap between the two reads) is seen whole rather than counted as
    /// a failure.
    fn read_pair(
        &self,
        key: &Path,
        cert: Option<&Path>,
        known: impl Fn(&[u8; 32]) -> Known,
    ) -> PairRead<SigningKey, KeyError, ProviderError> {
        pair::read_pair(
            self.pair_retry,
            describe(key, cert),
            || read_files(key, cert),
            known,
            |key_bytes, cert_bytes| SigningKey::from_bytes(key_bytes, cert_bytes, self.spec),
            |error| {
                let torn = matches!(error, KeyError::CertificateMismatch);
                if torn {
                    self.pair_retries.fetch_add(1, Ordering::Relaxed);
                }
                torn
            },
        )
    }

    fn reload_current(&self) -> Reread {
        let cert = self.files.certificate.as_deref();
        let current = self.current.load_full();
        let read = self.read_pair(&self.files.key, cert, |digest| {
            if current.fingerprint() == digest {
                Known::Current
            } else if self.lock().last_failed == Some(*digest) {
                Known::Failed
            } else {
                Known::New
            }
        });
        let now = self.clock.now();
        let mut state = self.lock();
        if !matches!(read, PairRead::Unreadable(_)) {
            self.readable_again(&mut state, &current);
        }
        match read {
            // The files hold content already known not to work.
            PairRead::Failed => Reread::Kept(state.status.last_error.clone().unwrap_or_default()),
            PairRead::Current => Reread::Unchanged,
            PairRead::Unreadable(e) => {
                let reason = e.to_string();
                if state.status.key_file_error.as_deref() != Some(reason.as_str()) {
                    log::warn!(
                        "{reason}; still signing with {}, which a restart could not load",
                        current.label()
                    );
                }
                state.status.key_file_missing_since.get_or_insert(now);
                state.status.key_file_error = Some(reason.clone());
                Reread::Kept(reason)
            }
            PairRead::New(_, Ok(key)) => {
                let old = current.label();
                let new = key.label();
                super::warn_registry_thumbprint(
                    &key,
                    &format!("signing key from {}", self.files.key.display()),
                );
                state.set.replaced(Arc::clone(&current), &key, now);
                state.status.kid = key.kid().map(str::to_owned);
                self.current.store(Arc::from(key));
                state.status.loaded_at = now;
                state.status.last_reload = Some(now);
                state.status.last_error = None;
                state.last_failed = None;
                log::info!(
                    "signing key reloaded from {}: {old} -> {new}",
                    self.files.key.display()
                );
                Reread::Swapped
            }
            PairRead::New(digest, Err(error)) => {
                state.status.failed_reloads += 1;
                state.status.last_error = Some(error.to_string());
                state.last_failed = Some(digest);
                log::error!(
                    "new content of {} is not usable, still signing with {}: {error}",
                    describe(&self.files.key, cert),
                    current.label()
                );
                Reread::Kept(error.to_string())
            }
        }
    }

    /// Clears a recorded read failure once the files can be read again.
    fn readable_again(&self, state: &mut ReloadState, current: &SigningKey) {
        if state.status.key_file_error.take().is_some() {
            state.status.key_file_missing_since = None;
            log::info!(
                "{} can be read again (signing with {})",
                describe(&self.files.key, self.files.certificate.as_deref()),
                current.label()
            );
        }
    }

    /// Loads, replaces or drops the next key. Never touches the signing key: a broken next
    /// key is reported in the status and the last good one (if any) stays published; a
    /// missing one is no longer published.
    fn reload_next(&self) {
        let Some(path) = &self.files.next else {
            return;
        };
        let cert = self.files.next_certificate.as_deref();
        let read = self.read_pair(path, cert, |digest| {
            let state = self.lock();
            if state.set.next().is_some_and(|k| k.fingerprint() == digest) {
                Known::Current
            } else if state.next_failed == Some(*digest) {
                Known::Failed
            } else {
                Known::New
            }
        });
        let mut state = self.lock();
        match read {
            PairRead::Current | PairRead::Failed => {}
            PairRead::Unreadable(e) if e.is_missing(FileKind::Key) => {
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
            }
            PairRead::Unreadable(e) => self.next_failed(&mut state, e.to_string()),
            PairRead::New(_, Ok(key)) => {
                log::info!(
                    "next key loaded from {}: {} (published, not signing)",
                    describe(path, cert),
                    key.label()
                );
                super::warn_registry_thumbprint(&key, &format!("next key from {}", path.display()));
                state.status.next_kid = key.published_id().map(str::to_owned);
                state.status.next_error = None;
                state.next_failed = None;
                state.set.set_next(Some(Arc::from(key)));
            }
            PairRead::New(digest, Err(error)) => {
                state.next_failed = Some(digest);
                self.next_failed(&mut state, format!("{}: {error}", describe(path, cert)));
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

    /// Watch options under which nothing reloads unless the test calls `reload_now`.
    fn never_on_its_own() -> watch::WatchOptions {
        watch::WatchOptions {
            debounce: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(3600),
            ..watch::WatchOptions::default()
        }
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
            watch: never_on_its_own(),
            retain: Duration::from_secs(360),
            pair_retry: Duration::from_millis(50),
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

    #[test]
    fn an_unreadable_key_file_is_reported_since_it_went_missing_and_cleared_when_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_key(&dir.path().join("signing.key"));
        let (provider, clock, key, _next) = start(dir.path(), false);
        let gone = std::fs::read(&key).unwrap();
        std::fs::remove_file(&key).unwrap();
        assert!(!provider.reload_now());
        let status = provider.status();
        let since = status.key_file_missing_since.unwrap();
        assert!(
            status
                .key_file_error
                .unwrap()
                .contains("cannot read key file"),
            "the reason is recorded"
        );
        assert_eq!(status.last_check, Some(clock.now()));
        assert_eq!(status.failed_reloads, 0, "not a bad key, just no file");
        assert_eq!(provider.signing_key().kid(), Some(first.as_str()));

        clock.advance(TimeDelta::seconds(30));
        provider.reload_now();
        let status = provider.status();
        assert_eq!(
            status.key_file_missing_since,
            Some(since),
            "since the first miss"
        );
        assert_eq!(status.last_check, Some(clock.now()));

        std::fs::write(&key, gone).unwrap();
        assert!(!provider.reload_now(), "the same key is back");
        let status = provider.status();
        assert_eq!(
            (status.key_file_error, status.key_file_missing_since),
            (None, None)
        );
    }

    fn with_certificate(dir: &Path) -> (FileKeyProvider, PathBuf, PathBuf) {
        let (key, cert) = (dir.join("signing.key"), dir.join("signing.crt"));
        generate::write(dir, Algorithm::ES256, false).unwrap();
        let files = KeyFiles {
            certificate: Some(cert.clone()),
            ..KeyFiles::new(&key)
        };
        let options = ReloadOptions {
            watch: never_on_its_own(),
            pair_retry: Duration::from_millis(1000),
            ..ReloadOptions::default()
        };
        let provider = FileKeyProvider::start(files, KeySpec::default(), options).unwrap();
        (provider, key, cert)
    }

    #[test]
    fn a_certificate_replaced_before_its_key_is_read_again_before_counting_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (provider, key, cert) = with_certificate(dir.path());
        let staging = tempfile::tempdir().unwrap();
        let next = generate::write(staging.path(), Algorithm::ES256, false).unwrap();
        let new_kid =
            SigningKey::from_bytes(&std::fs::read(&next.key).unwrap(), None, KeySpec::default())
                .unwrap()
                .kid()
                .unwrap()
                .to_owned();

        // Certificate first; the key follows while the reload waits to read the pair again.
        std::fs::rename(next.certificate.unwrap(), &cert).unwrap();
        let (new_key, target) = (next.key.clone(), key.clone());
        let follower = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::rename(new_key, target).unwrap();
        });
        assert!(provider.reload_now());
        follower.join().unwrap();
        assert_eq!(provider.signing_key().kid(), Some(new_kid.as_str()));
        assert_eq!(provider.status().failed_reloads, 0);

        // A certificate whose key never comes is a failure, counted once.
        let other = generate::generate(Algorithm::ES256)
            .unwrap()
            .cert_pem
            .unwrap();
        std::fs::write(&cert, other).unwrap();
        assert!(!provider.reload_now());
        assert!(!provider.reload_now());
        let status = provider.status();
        assert_eq!(status.failed_reloads, 1);
        assert!(status.last_error.unwrap().contains("does not match"));
        assert_eq!(provider.signing_key().kid(), Some(new_kid.as_str()));
    }
}
