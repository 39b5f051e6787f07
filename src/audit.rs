//! The audit log: one JSON line per token decision, written to stderr, stdout or a file that
//! is appended to and reopened on SIGHUP (so logrotate can move it away).
//!
//! A line says who asked (account, client address, request id), for what (service, grant
//! type, scopes), what was granted and by which rule, and the outcome. It never holds a
//! password, a refresh token, a key, or the user name of a failed login (people type their
//! password there).
//!
//! Requests only add their line to a buffer; a writer thread of its own writes it out (see
//! [`AuditLog`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::config::AuditSettings;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The process's standard error (with the log).
    Stderr,
    /// The process's standard output.
    Stdout,
    /// A file, appended to; reopened by [`AuditLog::reopen`].
    File(PathBuf),
}

impl Output {
    /// `stderr`, `stdout`, or a path.
    pub fn parse(text: &str) -> Output {
        match text.trim() {
            "stderr" => Output::Stderr,
            "stdout" => Output::Stdout,
            path => Output::File(PathBuf::from(path)),
        }
    }
}

/// The audit file cannot be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// Whether a token was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A token was issued (possibly granting less than asked).
    Issued,
    /// The request was refused; `error` says why.
    Refused,
}

/// One requested scope and what was decided for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeDecision {
    /// The scope as requested, e.g. `repository:team/app:pull,push`.
    pub requested: String,
    /// The actions granted, e.g. `pull`; empty when none. Absent when no decision was made.
    pub granted: Option<String>,
    /// The deciding rule as text; absent when no decision was made.
    pub rule: Option<String>,
}

/// One audit line.
#[derive(Debug, Clone, Serialize)]
pub struct Event<'a> {
    /// RFC 3339, UTC.
    pub time: String,
    /// The request id (also in the access log and `X-Request-Id`).
    pub request_id: &'a str,
    /// The client, after `server.trusted_proxies`.
    pub client_ip: Option<IpAddr>,
    /// The authenticated subject; empty for anonymous callers and failed logins.
    pub account: &'a str,
    /// The identity source that authenticated the account (`users`, `htpasswd`, `ldap`,
    /// ...); empty when `account` is.
    pub source: &'a str,
    /// The requested service.
    pub service: &'a str,
    /// `basic` or `anonymous` (GET), `password` or `refresh_token` (POST).
    pub grant_type: &'a str,
    /// Each requested scope with its decision.
    pub scopes: &'a [ScopeDecision],
    /// `issued` or `refused`.
    pub outcome: Outcome,
    /// The error code of a refusal (`UNAUTHORIZED`, `INVALID_SCOPE`, ...).
    pub error: Option<&'a str>,
    /// What kind of refusal (`invalid_credentials`, `locked_out`, ...).
    pub reason: Option<&'a str>,
    /// The issued token's `jti`.
    pub jti: Option<&'a str>,
    /// The issued token's `kid`.
    pub kid: Option<&'a str>,
}

/// How often the writer thread writes what has gathered.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes gathered before the request that passes this writes them itself (backpressure
/// from a disk that cannot keep up, instead of unbounded memory or lost lines).
const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;

/// The audit sink. Requests serialize their line into a shared buffer (a short lock, no
/// system call); a writer thread swaps the buffer out every [`FLUSH_INTERVAL`] and writes it
/// in one call of whole lines, without holding the requests' lock. Lines therefore reach the
/// sink up to 100 ms late, and a busy server makes ten writes a second instead of one per
/// token.
pub struct AuditLog {
    output: Output,
    shared: Arc<Shared>,
}

struct Shared {
    /// Lines not yet written; requests append here.
    pending: Mutex<Vec<u8>>,
    /// The destination; held while writing, which keeps batches in order.
    sink: Mutex<Sink>,
}

struct Sink {
    output: Output,
    file: Option<File>,
    /// The buffer swapped in for the next batch, kept to reuse its allocation.
    spare: Vec<u8>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| AuditError {
            path: path.to_path_buf(),
            source,
        })
}

impl AuditLog {
    /// The sink `settings` names, `None` when the audit log is off.
    pub fn from_settings(settings: &AuditSettings) -> Result<Option<Arc<AuditLog>>, AuditError> {
        if !settings.enabled {
            return Ok(None);
        }
        AuditLog::open(Output::parse(&settings.output)).map(|a| Some(Arc::new(a)))
    }

    /// Opens `output` (a file is created if missing, and appended to) and starts the writer
    /// thread; it ends once the `AuditLog` is dropped (which writes what is pending).
    pub fn open(output: Output) -> Result<AuditLog, AuditError> {
        let file = match &output {
            Output::File(path) => Some(open_append(path)?),
            _ => None,
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            sink: Mutex::new(Sink {
                output: output.clone(),
                file,
                spare: Vec::with_capacity(64 * 1024),
            }),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_INTERVAL);
                    let Some(shared) = weak.upgrade() else {
                        return;
                    };
                    shared.write_pending(&mut lock(&shared.sink));
                }
            })
            .map_err(|source| AuditError {
                path: PathBuf::from("<audit writer thread>"),
                source,
            })?;
        Ok(AuditLog { output, shared })
    }

    /// Where lines go.
    pub fn output(&self) -> &Output {
        &self.output
    }

    /// Writes the pending lines, then reopens the file by its path (after logrotate moved
    /// it); nothing more for stderr/stdout. On failure the old file stays in use.
    pub fn reopen(&self) -> Result<(), AuditError> {
        let mut sink = lock(&self.shared.sink);
        self.shared.write_pending(&mut sink);
        if let Output::File(path) = &self.output {
            sink.file = Some(open_append(path)?);
        }
        Ok(())
    }

    /// Writes every pending line now.
    pub fn flush(&self) {
        self.shared.write_pending(&mut lock(&self.shared.sink));
    }

    /// Adds one line. A line that cannot be written is logged, never returned: an audit
    /// outage must not turn into refused tokens.
    pub fn write(&self, event: &Event<'_>) {
        let mut pending = lock(&self.shared.pending);
        let before = pending.len();
        if let Err(e) = serde_json::to_writer(&mut *pending, event) {
            pending.truncate(before);
            drop(pending);
            log::error!("audit line not written: {e}");
            return;
        }
        pending.push(b'\n');
        let full = pending.len() >= MAX_PENDING_BYTES;
        drop(pending);
        if full {
            self.flush();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The guarded value, even if a thread panicked while holding it (buffers hold whole lines:
/// a failed line is truncated away before the lock is released).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Swaps the pending lines out and writes them; `sink` is held by the caller, so
    /// batches are written in the order they were taken.
    fn write_pending(&self, sink: &mut Sink) {
        let mut batch = std::mem::take(&mut sink.spare);
        std::mem::swap(&mut *lock(&self.pending), &mut batch);
        if !batch.is_empty() {
            let result = match (&sink.output, sink.file.as_mut()) {
                (Output::Stderr, _) => io::stderr().lock().write_all(&batch),
                (Output::Stdout, _) => io::stdout().lock().write_all(&batch),
                (Output::File(_), Some(file)) => file.write_all(&batch),
                (Output::File(_), None) => Ok(()),
            };
            if let Err(e) = result {
                log::error!("audit lines not written to {:?}: {e}", sink.output);
            }
        }
        batch.clear();
        if batch.capacity() > MAX_PENDING_BYTES {
            batch.shrink_to(64 * 1024);
        }
        sink.spare = batch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(scopes: &'a [ScopeDecision]) -> Event<'a> {
        Event {
            time: "2026-11-29T08:00:00Z".into(),
            request_id: "r-1",
            client_ip: Some("10.1.2.3".parse().unwrap()),
            account: "alice",
            source: "users",
            service: "registry.test",
            grant_type: "basic",
            scopes,
            outcome: Outcome::Issued,
            error: None,
            reason: None,
            jti: Some("j"),
            kid: Some("k"),
        }
    }

    #[test]
    fn outputs_are_named_streams_or_paths() {
        assert_eq!(Output::parse("stderr"), Output::Stderr);
        assert_eq!(Output::parse(" stdout "), Output::Stdout);
        assert_eq!(
            Output::parse("/var/log/regauth/audit.log"),
            Output::File("/var/log/regauth/audit.log".into())
        );
    }

    #[test]
    fn lines_are_appended_and_a_reopen_follows_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let audit = AuditLog::open(Output::File(path.clone())).unwrap();
        let scopes = [ScopeDecision {
            requested: "repository:a:pull".into(),
            granted: Some("pull".into()),
            rule: Some("rule 0".into()),
        }];
        audit.write(&event(&scopes));
        audit.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "earlier");
        let line: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(line["outcome"], "issued");
        assert_eq!(line["client_ip"], "10.1.2.3");
        assert_eq!(line["scopes"][0]["granted"], "pull");

        let rotated = dir.path().join("audit.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        audit.write(&event(&scopes));
        audit.flush();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap().lines().count(),
            3
        );
        assert!(!path.exists(), "no reopen yet");
        audit.reopen().unwrap();
        audit.write(&event(&scopes));
        audit.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap().lines().count(),
            3
        );
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let err = AuditLog::open(Output::File("/nonexistent/dir/audit.log".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/dir/audit.log"), "{err}");
    }
}
