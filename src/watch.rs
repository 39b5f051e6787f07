//! Watching files that get replaced: secrets, keys and password files.
//!
//! The watch is on each file's directory, not the file: editors, `mv` and the Kubernetes secret
//! mount (`..data` symlink swap) all put a new inode in place, and a watch on the old one goes
//! silent. Any event that concerns a watched name (or a `..`-prefixed entry) triggers a
//! debounced call of the reload function; a slow periodic call backs the watch up. The reload
//! function decides whether anything changed.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};

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

/// A running watch. Dropping it stops the reload thread.
pub struct FileWatch {
    _watcher: Option<notify::RecommendedWatcher>,
    _wake: Sender<()>,
}

impl FileWatch {
    /// Watches the directories of `paths` and calls `reload` (on a thread named `name`) after
    /// changes and every poll interval. `reload` returns false to stop watching, e.g. when
    /// what it reloads into is gone.
    pub fn start<F>(name: &str, paths: &[PathBuf], options: WatchOptions, reload: F) -> FileWatch
    where
        F: FnMut() -> bool + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<()>();
        let watcher = start_watcher(paths, tx.clone());
        let spawned = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || reload_loop(rx, options, reload));
        if let Err(e) = spawned {
            log::error!("cannot start the {name} thread, files will not hot-reload: {e}");
        }
        FileWatch {
            _watcher: watcher,
            _wake: tx,
        }
    }
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
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

fn start_watcher(paths: &[PathBuf], tx: Sender<()>) -> Option<notify::RecommendedWatcher> {
    let names: HashSet<OsString> = paths
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
        .collect();
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(event) if is_relevant(&event, &names) => {
            let _ = tx.send(());
        }
        Ok(_) => {}
        Err(e) => {
            log::warn!("file watch error: {e}");
            let _ = tx.send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            log::warn!("cannot watch files ({e}); falling back to periodic re-reads");
            return None;
        }
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    for dir in paths.iter().map(|p| directory_of(p)) {
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

fn reload_loop<F: FnMut() -> bool>(events: Receiver<()>, options: WatchOptions, mut reload: F) {
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
        if !reload() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_replaced_file_triggers_one_debounced_reload_and_others_none() {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("secret");
        std::fs::write(&watched, "1").unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let options = WatchOptions {
            poll_interval: Duration::from_secs(3600),
            ..WatchOptions::default()
        };
        let _watch = FileWatch::start(
            "test-watch",
            std::slice::from_ref(&watched),
            options,
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
                true
            },
        );
        // Unrelated files in the same directory do not count.
        std::fs::write(dir.path().join("other"), "x").unwrap();
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // A burst of writes and a rename is one reload.
        for i in 0..5 {
            std::fs::write(dir.path().join("secret.tmp"), i.to_string()).unwrap();
        }
        std::fs::rename(dir.path().join("secret.tmp"), &watched).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while calls.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no reload");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
