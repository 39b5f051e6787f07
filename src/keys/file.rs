//! A key read from a PEM file and hot-reloaded when the file is replaced.
//!
//! The watch is on the key's directory, not the file: editors, `mv` and the Kubernetes secret
//! mount (`..data` symlink swap) all put a new inode in place, and a watch on the old one goes
//! silent. Any event that concerns the key or certificate triggers a debounced re-read; a slow
//! periodic re-read backs the watch up. New content replaces the key only when it parses and
//! fits; otherwise the last good key keeps signing and the failure is logged once.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::Utc;
use notify::{RecursiveMode, Watcher};

use super::material::content_digest;
use super::{KeyProvider, KeySpec, KeyStatus, ProviderError, SigningKey};

/// How the reload thread paces itself.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// Quiet time after the last file event before re-reading.
    pub debounce: Duration,
    /// Longest a burst of events may delay a re-read.
    pub max_delay: Duration,
    /// Periodic re-read, in case the watch misses an event.
    pub poll_interval: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(150),
            max_delay: Duration::from_secs(2),
            poll_interval: Duration::from_secs(30),
        }
    }
}

/// Signs with the key at `key.path` (and sends the chain at `key.certificate`), reloading both
/// when they change.
pub struct FileKeyProvider {
    shared: Arc<Shared>,
    // Dropping the watcher and this sender ends the reload thread.
    _watcher: Option<notify::RecommendedWatcher>,
    _wake: Sender<()>,
}

struct Shared {
    key_path: PathBuf,
    cert_path: Option<PathBuf>,
    spec: KeySpec,
    current: ArcSwap<SigningKey>,
    state: Mutex<ReloadState>,
}

struct ReloadState {
    status: KeyStatus,
    /// Digest of the last content that failed, so one bad file is logged once.
    last_failed: Option<[u8; 32]>,
}

impl FileKeyProvider {
    /// Loads the key (a startup error names the path when it is missing or unusable) and
    /// starts watching.
    pub fn start(
        key_path: impl Into<PathBuf>,
        cert_path: Option<PathBuf>,
        spec: KeySpec,
        options: WatchOptions,
    ) -> Result<FileKeyProvider, ProviderError> {
        let key_path = key_path.into();
        let (key_bytes, cert_bytes) = read_files(&key_path, cert_path.as_deref())?;
        let key =
            SigningKey::from_bytes(&key_bytes, cert_bytes.as_deref(), spec).map_err(|error| {
                ProviderError::Key {
                    source_desc: describe(&key_path, cert_path.as_deref()),
                    error,
                }
            })?;
        let status = KeyStatus {
            source: format!("file {}", key_path.display()),
            loaded_at: Utc::now(),
            last_reload: None,
            failed_reloads: 0,
            last_error: None,
        };
        let shared = Arc::new(Shared {
            key_path,
            cert_path,
            spec,
            current: ArcSwap::from_pointee(key),
            state: Mutex::new(ReloadState {
                status,
                last_failed: None,
            }),
        });

        let (tx, rx) = mpsc::channel::<()>();
        let watcher = start_watcher(&shared, tx.clone());
        let weak = Arc::downgrade(&shared);
        let spawned = thread::Builder::new()
            .name("regauth-key-reload".into())
            .spawn(move || reload_loop(weak, rx, options));
        if let Err(e) = spawned {
            log::error!("cannot start the key reload thread, keys will not hot-reload: {e}");
        }
        Ok(FileKeyProvider {
            shared,
            _watcher: watcher,
            _wake: tx,
        })
    }

    /// Re-reads the files now; true when a new key was swapped in.
    pub fn reload_now(&self) -> bool {
        self.shared.reload()
    }
}

impl KeyProvider for FileKeyProvider {
    fn signing_key(&self) -> Arc<SigningKey> {
        self.shared.current.load_full()
    }

    fn status(&self) -> KeyStatus {
        match self.shared.state.lock() {
            Ok(state) => state.status.clone(),
            Err(poisoned) => poisoned.into_inner().status.clone(),
        }
    }
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
        what: "key file",
        path: key.display().to_string(),
        source,
    })?;
    let cert_bytes = match cert {
        None => None,
        Some(path) => Some(std::fs::read(path).map_err(|source| ProviderError::Read {
            what: "certificate file",
            path: path.display().to_string(),
            source,
        })?),
    };
    Ok((key_bytes, cert_bytes))
}

impl Shared {
    /// Re-reads key and certificate; swaps in a new key when the content changed and is
    /// usable. Returns true on a swap.
    fn reload(&self) -> bool {
        let files = read_files(&self.key_path, self.cert_path.as_deref());
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
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
        let current = self.current.load();
        if current.fingerprint() == &digest_now || state.last_failed == Some(digest_now) {
            return false;
        }
        match SigningKey::from_bytes(&key_bytes, cert_bytes.as_deref(), self.spec) {
            Ok(key) => {
                let old = current.label();
                let new = key.label();
                self.current.store(Arc::new(key));
                let now = Utc::now();
                state.status.loaded_at = now;
                state.status.last_reload = Some(now);
                state.status.last_error = None;
                state.last_failed = None;
                log::info!(
                    "signing key reloaded from {}: {old} -> {new}",
                    self.key_path.display()
                );
                true
            }
            Err(error) => {
                state.status.failed_reloads += 1;
                state.status.last_error = Some(error.to_string());
                state.last_failed = Some(digest_now);
                log::error!(
                    "new content of {} is not usable, still signing with {}: {error}",
                    describe(&self.key_path, self.cert_path.as_deref()),
                    current.label()
                );
                false
            }
        }
    }
}

/// The file names whose events matter: the key, the certificate, and Kubernetes' `..data`.
fn watched_names(shared: &Shared) -> HashSet<OsString> {
    let mut names = HashSet::new();
    for path in std::iter::once(&shared.key_path).chain(shared.cert_path.iter()) {
        if let Some(name) = path.file_name() {
            names.insert(name.to_os_string());
        }
    }
    names
}

fn is_relevant(event: &notify::Event, names: &HashSet<OsString>) -> bool {
    if event.kind.is_access() {
        return false;
    }
    event.paths.is_empty()
        || event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| names.contains(n) || n.to_string_lossy().starts_with(".."))
        })
}

fn start_watcher(shared: &Arc<Shared>, tx: Sender<()>) -> Option<notify::RecommendedWatcher> {
    let names = watched_names(shared);
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(event) if is_relevant(&event, &names) => {
            let _ = tx.send(());
        }
        Ok(_) => {}
        Err(e) => {
            log::warn!("key file watch error: {e}");
            let _ = tx.send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            log::warn!("cannot watch key files ({e}); falling back to periodic re-reads");
            return None;
        }
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    for path in std::iter::once(&shared.key_path).chain(shared.cert_path.iter()) {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            log::warn!(
                "cannot watch {} ({e}); falling back to periodic re-reads",
                dir.display()
            );
        }
    }
    Some(watcher)
}

fn reload_loop(shared: Weak<Shared>, events: Receiver<()>, options: WatchOptions) {
    loop {
        match events.recv_timeout(options.poll_interval) {
            Ok(()) => {
                // Debounce: wait for a quiet spell, but not forever.
                let started = Instant::now();
                loop {
                    match events.recv_timeout(options.debounce) {
                        Ok(()) if started.elapsed() < options.max_delay => continue,
                        Ok(()) | Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.reload();
    }
}
