//! Watching files that get replaced: secrets, keys and password files.
//!
//! The watch is on each file's directory, not the file: editors, `mv` and the Kubernetes secret
//! mount (`..data` symlink swap) all put a new inode in place, and a watch on the old one goes
//! silent. When a path is a symlink, the directory of its target is watched too. Any event that
//! concerns a watched name (or a `..`-prefixed entry) triggers a debounced call of the reload
//! function; a slow periodic call backs the watch up. The reload function decides whether
//! anything changed.
//!
//! Before every call the watched directories are checked: a directory that was deleted and
//! re-created (or missing at start and created later) is watched again, and while it is
//! missing its nearest existing parent is watched so its return is seen at once. A panic in
//! the reload function is caught, counted and logged, and the watch keeps running.
//! [`FileWatch::report`] says what happened, for `/readyz`.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher as _};

use crate::fs::atomic_file::directory_of;

/// Runs `read`, and runs it once more after `delay` when `torn` says its answer may come from
/// two files caught halfway through their replacement (a key and its certificate renamed one
/// after the other, or a symlink swapped between the two reads). The second answer stands.
pub fn read_pair_settled<T>(
    delay: Duration,
    what: impl std::fmt::Display,
    mut read: impl FnMut() -> T,
    torn: impl Fn(&T) -> bool,
) -> T {
    let first = read();
    if !torn(&first) {
        return first;
    }
    log::debug!("{what} do not match; reading them again in {delay:?}");
    thread::sleep(delay);
    read()
}

/// How the reload thread paces itself.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// Quiet time after the last file event before reloading.
    pub debounce: Duration,
    /// Longest a burst of events may delay a reload.
    pub max_delay: Duration,
    /// Periodic reload, in case the watch misses an event.
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

/// What a watch has been through, for health reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchReport {
    /// File events that concerned a watched name.
    pub events: u64,
    /// File events about other files in the watched directories (ignored).
    pub ignored_events: u64,
    /// Events the reload thread has taken from its queue.
    pub received: u64,
    /// Calls of the reload function (after events and at each poll).
    pub reloads: u64,
    /// Reload calls that panicked (caught; the watch kept running).
    pub reload_panics: u64,
    /// The last panic's message.
    pub last_panic: Option<String>,
    /// Directories watched again after they were deleted and re-created, or created after
    /// the start.
    pub rearmed: u64,
    /// The last of those, e.g. `/etc/regauth/keys (re-created)`.
    pub last_rearm: Option<String>,
    /// Why some directory is not watched now (then only its parent, or the poll, sees it).
    pub problem: Option<String>,
}

#[derive(Default)]
struct Health {
    events: AtomicU64,
    ignored_events: AtomicU64,
    received: AtomicU64,
    reloads: AtomicU64,
    reload_panics: AtomicU64,
    rearmed: AtomicU64,
    text: Mutex<HealthText>,
}

#[derive(Default)]
struct HealthText {
    last_panic: Option<String>,
    last_rearm: Option<String>,
    problem: Option<String>,
}

impl Health {
    fn text(&self) -> MutexGuard<'_, HealthText> {
        crate::support::sync::lock(&self.text)
    }
}

enum Wake {
    Event,
    Stop,
}

/// A running watch. Dropping it stops the reload thread.
pub struct FileWatch {
    wake: Sender<Wake>,
    health: Arc<Health>,
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        let _ = self.wake.send(Wake::Stop);
    }
}

impl FileWatch {
    /// Watches the directories of `paths` (and of their symlink targets) and calls `reload`
    /// (on a thread named `name`) after changes and every poll interval. `reload` returns
    /// false to stop watching, e.g. when what it reloads into is gone.
    pub fn start<F>(name: &str, paths: &[PathBuf], options: WatchOptions, reload: F) -> FileWatch
    where
        F: FnMut() -> bool + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Wake>();
        let health = Arc::new(Health::default());
        let names = Arc::new(ArcSwap::from_pointee(HashSet::new()));
        let watcher = start_watcher(tx.clone(), Arc::clone(&names), Arc::clone(&health));
        let mut dirs = Directories {
            paths: paths.to_vec(),
            names,
            armed: HashMap::new(),
            ever_armed: HashSet::new(),
            parents: HashSet::new(),
            watcher,
            health: Arc::clone(&health),
        };
        // Armed before returning, so a change right after the start is seen.
        dirs.arm();
        let thread_health = Arc::clone(&health);
        let thread_name = name.to_owned();
        let spawned = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || reload_loop(rx, options, dirs, &thread_health, &thread_name, reload));
        if let Err(e) = spawned {
            log::error!("cannot start the {name} thread, files will not hot-reload: {e}");
        }
        FileWatch { wake: tx, health }
    }

    /// What the watch has been through so far.
    pub fn report(&self) -> WatchReport {
        let h = &self.health;
        let text = h.text();
        WatchReport {
            events: h.events.load(Ordering::Relaxed),
            ignored_events: h.ignored_events.load(Ordering::Relaxed),
            received: h.received.load(Ordering::Relaxed),
            reloads: h.reloads.load(Ordering::Relaxed),
            reload_panics: h.reload_panics.load(Ordering::Acquire),
            last_panic: text.last_panic.clone(),
            rearmed: h.rearmed.load(Ordering::Acquire),
            last_rearm: text.last_rearm.clone(),
            problem: text.problem.clone(),
        }
    }
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

fn start_watcher(
    tx: Sender<Wake>,
    names: Arc<ArcSwap<HashSet<OsString>>>,
    health: Arc<Health>,
) -> Option<notify::RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(event) if is_relevant(&event, &names.load()) => {
            health.events.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(Wake::Event);
        }
        Ok(_) => {
            health.ignored_events.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            log::warn!("file watch error: {e}");
            health.events.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(Wake::Event);
        }
    };
    match notify::recommended_watcher(handler) {
        Ok(w) => Some(w),
        Err(e) => {
            log::warn!("cannot watch files ({e}); falling back to periodic re-reads");
            None
        }
    }
}

/// A directory's identity, to tell a re-created directory from the one watched.
#[cfg(unix)]
fn identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(dir: &Path) -> Option<(u64, u64)> {
    dir.is_dir().then_some((0, 0))
}

/// The directories to watch for the configured paths, and what is watched now.
struct Directories {
    paths: Vec<PathBuf>,
    /// File names (and directory names) whose events matter, shared with the handler.
    names: Arc<ArcSwap<HashSet<OsString>>>,
    /// Each wanted directory and the identity it had when watched (`None`: missing).
    armed: HashMap<PathBuf, Option<(u64, u64)>>,
    /// Directories that were watched at some point, to tell "re-created" from "created".
    ever_armed: HashSet<PathBuf>,
    /// Existing parents watched while a wanted directory is missing.
    parents: HashSet<PathBuf>,
    watcher: Option<notify::RecommendedWatcher>,
    health: Arc<Health>,
}

impl Directories {
    /// The directories that hold the paths and, for symlinks, their targets; and the names
    /// whose events matter.
    fn wanted(&self) -> (Vec<PathBuf>, HashSet<OsString>) {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut names = HashSet::new();
        for path in &self.paths {
            let target = std::fs::canonicalize(path).ok();
            for p in std::iter::once(path).chain(target.as_ref()) {
                if let Some(n) = p.file_name() {
                    names.insert(n.to_os_string());
                }
                let dir = directory_of(p);
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
        // Events on a directory itself (deleted, moved) and on the way to a missing one.
        for dir in &dirs {
            for component in dir.components() {
                names.insert(component.as_os_str().to_os_string());
            }
        }
        (dirs, names)
    }

    /// Brings the watches in line with the directories as they are now: watches new and
    /// re-created directories, and the nearest parent of a missing one.
    fn arm(&mut self) {
        let (wanted, names) = self.wanted();
        self.names.store(Arc::new(names));
        let mut problems = Vec::new();
        let mut rearmed = Vec::new();
        let mut parents = HashSet::new();
        for dir in &wanted {
            let now = identity(dir);
            let before = self.armed.get(dir).copied();
            match (before, now) {
                (Some(Some(old)), Some(new)) if old == new => {}
                (None, Some(new)) => {
                    if let Err(e) = self.watch(dir) {
                        problems.push(format!("cannot watch {} ({e})", dir.display()));
                        continue;
                    }
                    self.armed.insert(dir.clone(), Some(new));
                    self.ever_armed.insert(dir.clone());
                }
                (Some(_), Some(new)) => {
                    self.unwatch(dir);
                    if let Err(e) = self.watch(dir) {
                        problems.push(format!("cannot watch {} ({e})", dir.display()));
                        continue;
                    }
                    self.armed.insert(dir.clone(), Some(new));
                    let how = if !self.ever_armed.insert(dir.clone()) {
                        "re-created"
                    } else {
                        "created"
                    };
                    let what = format!("{} ({how})", dir.display());
                    log::warn!("watching {what} again");
                    rearmed.push(what);
                }
                (before, None) => {
                    // Logged when it goes missing (or is missing at the start), not at every
                    // check while it stays missing.
                    if !matches!(before, Some(None)) {
                        log::warn!(
                            "watched directory {} is missing; its files are re-read when it \
                             comes back",
                            dir.display()
                        );
                    }
                    self.armed.insert(dir.clone(), None);
                    match existing_ancestor(dir) {
                        Some(parent) => {
                            problems.push(format!(
                                "directory {} is missing (watching {} for it)",
                                dir.display(),
                                parent.display()
                            ));
                            parents.insert(parent);
                        }
                        None => problems.push(format!("directory {} is missing", dir.display())),
                    }
                }
            }
        }
        // Directories no longer wanted (an old symlink target) and parents no longer needed.
        let gone: Vec<PathBuf> = self
            .armed
            .keys()
            .filter(|d| !wanted.contains(d))
            .cloned()
            .collect();
        for dir in gone {
            if self.armed.remove(&dir).flatten().is_some() && !parents.contains(&dir) {
                self.unwatch(&dir);
            }
        }
        for p in &parents {
            if !self.parents.contains(p)
                && !self.armed.contains_key(p)
                && let Err(e) = self.watch(p)
            {
                problems.push(format!("cannot watch {} ({e})", p.display()));
            }
        }
        let old_parents: Vec<PathBuf> = self.parents.difference(&parents).cloned().collect();
        for p in old_parents {
            if !self.armed.get(&p).is_some_and(Option::is_some) {
                self.unwatch(&p);
            }
        }
        self.parents = parents;
        // Text first, counter last: a reader that sees the new count sees the state with it.
        let mut text = self.health.text();
        text.problem = (!problems.is_empty()).then(|| problems.join("; "));
        if let Some(last) = rearmed.last() {
            text.last_rearm = Some(last.clone());
        }
        drop(text);
        self.health
            .rearmed
            .fetch_add(rearmed.len() as u64, Ordering::Release);
    }

    fn watch(&mut self, dir: &Path) -> Result<(), String> {
        match &mut self.watcher {
            Some(w) => w
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| e.to_string()),
            None => Err("no file watcher; the poll re-reads the files".to_owned()),
        }
    }

    fn unwatch(&mut self, dir: &Path) {
        if let Some(w) = &mut self.watcher {
            // A deleted directory's watch is already gone.
            let _ = w.unwatch(dir);
        }
    }
}

/// The nearest existing directory above `dir` (`.` for a relative path's start).
fn existing_ancestor(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .skip(1)
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find(|a| a.is_dir())
        .map(Path::to_path_buf)
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

fn reload_loop<F: FnMut() -> bool>(
    events: Receiver<Wake>,
    options: WatchOptions,
    mut dirs: Directories,
    health: &Health,
    name: &str,
    mut reload: F,
) {
    let received = || health.received.fetch_add(1, Ordering::Relaxed);
    loop {
        match events.recv_timeout(options.poll_interval) {
            Ok(Wake::Event) => {
                received();
                // Debounce: wait for a quiet spell, but not forever.
                let started = Instant::now();
                loop {
                    match events.recv_timeout(options.debounce) {
                        Ok(Wake::Event) => {
                            received();
                            if started.elapsed() >= options.max_delay {
                                break;
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => break,
                        Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return,
        }
        dirs.arm();
        health.reloads.fetch_add(1, Ordering::Relaxed);
        match panic::catch_unwind(AssertUnwindSafe(&mut reload)) {
            Ok(true) => {}
            Ok(false) => return,
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                log::error!("{name}: a reload panicked ({message}); the watch keeps running");
                health.text().last_panic = Some(message);
                health.reload_panics.fetch_add(1, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const DEADLINE: Duration = Duration::from_secs(10);

    /// Polls `done` every 20 ms until it holds; fails the test after [`DEADLINE`].
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A watch on `paths` that never polls, counting reload calls.
    fn counting_watch(paths: &[PathBuf], debounce: Duration) -> (FileWatch, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let options = WatchOptions {
            debounce,
            max_delay: Duration::from_secs(5),
            poll_interval: Duration::from_secs(3600),
        };
        let watch = FileWatch::start("test-watch", paths, options, move || {
            counter.fetch_add(1, Ordering::SeqCst);
            true
        });
        (watch, calls)
    }

    #[test]
    fn other_files_are_ignored_and_a_burst_of_writes_is_one_debounced_reload() {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("secret");
        std::fs::write(&watched, "0").unwrap();
        let (watch, calls) =
            counting_watch(std::slice::from_ref(&watched), Duration::from_millis(1000));
        // An unrelated file: the event arrives, is classified, and reloads nothing.
        std::fs::write(dir.path().join("other"), "x").unwrap();
        wait_until("the unrelated event", || watch.report().ignored_events > 0);
        assert_eq!(watch.report().events, 0);
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        // Five writes and a rename over the file, well inside the 1 s debounce.
        for i in 0..5 {
            std::fs::write(&watched, i.to_string()).unwrap();
        }
        std::fs::write(dir.path().join("secret.new"), "5").unwrap();
        std::fs::rename(dir.path().join("secret.new"), &watched).unwrap();
        wait_until("a reload", || calls.load(Ordering::SeqCst) > 0);
        // Every event was taken from the queue, so no second reload is pending.
        wait_until("the queue to drain", || {
            let r = watch.report();
            r.received == r.events
        });
        let report = watch.report();
        assert!(report.events >= 6, "{report:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{report:?}");
        assert_eq!(report.reloads, 1);
    }

    #[test]
    fn a_panicking_reload_is_counted_and_the_watch_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("secret");
        std::fs::write(&watched, "0").unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let options = WatchOptions {
            poll_interval: Duration::from_secs(3600),
            ..WatchOptions::default()
        };
        let watch = FileWatch::start(
            "test-watch",
            std::slice::from_ref(&watched),
            options,
            move || {
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("hostile file");
                }
                true
            },
        );
        std::fs::write(&watched, "1").unwrap();
        wait_until("the panic", || watch.report().reload_panics == 1);
        assert_eq!(watch.report().last_panic.as_deref(), Some("hostile file"));

        std::fs::write(&watched, "2").unwrap();
        wait_until("a reload after the panic", || {
            calls.load(Ordering::SeqCst) >= 2
        });
        assert_eq!(watch.report().reload_panics, 1);
    }

    #[test]
    fn the_directory_a_symlink_points_into_is_watched() {
        let link_dir = tempfile::tempdir().unwrap();
        let target_dir = tempfile::tempdir().unwrap();
        let target = target_dir.path().join("real.key");
        std::fs::write(&target, "0").unwrap();
        let link = link_dir.path().join("signing.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let (watch, calls) = counting_watch(&[link], Duration::from_millis(100));

        let staged = target_dir.path().join("real.key.new");
        std::fs::write(&staged, "1").unwrap();
        std::fs::rename(&staged, &target).unwrap();
        wait_until("a reload from the target's directory", || {
            calls.load(Ordering::SeqCst) > 0
        });
        assert_eq!(watch.report().problem, None);
    }

    #[test]
    fn a_deleted_and_recreated_directory_is_watched_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keys");
        std::fs::create_dir(&dir).unwrap();
        let watched = dir.join("secret");
        std::fs::write(&watched, "0").unwrap();
        let (watch, calls) =
            counting_watch(std::slice::from_ref(&watched), Duration::from_millis(100));

        std::fs::remove_dir_all(&dir).unwrap();
        wait_until("the missing directory to be noticed", || {
            watch
                .report()
                .problem
                .is_some_and(|p| p.contains("missing"))
        });
        std::fs::create_dir(&dir).unwrap();
        wait_until("the re-created directory to be watched", || {
            watch.report().rearmed == 1
        });
        let report = watch.report();
        assert!(
            report.last_rearm.unwrap().contains("re-created"),
            "{:?}",
            watch.report()
        );
        assert_eq!(report.problem, None);

        // Changes inside the new directory are seen (the poll is an hour away).
        let before = calls.load(Ordering::SeqCst);
        std::fs::write(&watched, "1").unwrap();
        wait_until("a reload from the new directory", || {
            calls.load(Ordering::SeqCst) > before
        });
    }

    #[test]
    fn a_directory_missing_at_start_is_watched_once_it_exists() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("later");
        let watched = dir.join("secret");
        let (watch, calls) =
            counting_watch(std::slice::from_ref(&watched), Duration::from_millis(100));
        assert!(
            watch.report().problem.unwrap().contains("missing"),
            "reported from the start"
        );
        std::fs::create_dir(&dir).unwrap();
        wait_until("the new directory to be watched", || {
            watch.report().rearmed == 1
        });
        let before = calls.load(Ordering::SeqCst);
        std::fs::write(&watched, "1").unwrap();
        wait_until("a reload from the new directory", || {
            calls.load(Ordering::SeqCst) > before
        });
        assert_eq!(watch.report().problem, None);
    }
}
