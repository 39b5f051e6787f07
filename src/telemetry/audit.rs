//! The audit log: one JSON line per token decision, written to stderr, stdout or a file that
//! is appended to and reopened on SIGHUP (so logrotate can move it away).
//!
//! A line says who asked (account, client address, request id), for what (service, grant
//! type, scopes), what was granted and by which rule, and the outcome. It never holds a
//! password, a refresh token, a key, or the user name of a failed login (people type their
//! password there).
//!
//! A line is at most [`MAX_LINE_BYTES`] (longer ones are cut and marked `"truncated": true`).
//! Requests only add their line to a bounded buffer; a writer thread of its own writes it out,
//! and when the buffer is full lines are dropped and counted rather than making a request wait
//! (see [`AuditLog`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};

use crate::support::json::{push_field, push_opt_field};
// A poisoned lock still gives its buffer: a line is appended whole or not at all.
use crate::support::sync::lock;

/// `audit.*` ([`crate::config`] composes this section into its settings and checks it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// One JSON line per token decision.
    pub enabled: bool,
    /// `stderr`, `stdout`, or a file path (appended to, reopened on SIGHUP).
    pub output: String,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: true,
            output: "stderr".into(),
        }
    }
}

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
    pub time: &'a str,
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

/// How long the writer thread gathers lines after the first one of a batch before it writes
/// them: the longest a line waits, and (one wake-up per batch) at most a hundred wake-ups a
/// second under any load.
const BATCH_WINDOW: Duration = Duration::from_millis(10);
/// How often an idle writer thread checks whether its log is gone.
const IDLE_CHECK: Duration = Duration::from_millis(100);
/// Longest audit line written, newline included. A longer line is cut: the requested scopes
/// past what fits are left out, `scopes_omitted` says how many, and `"truncated": true`
/// marks the line. Every other field is short already (the service is shortened, the
/// request id is at most 128 characters, the account is a name the identity source signed
/// in, shortened too when it alone would not fit).
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Bytes of lines waiting for the writer. A line that would take the buffer past this is
/// dropped and counted (`regauth_audit_dropped_total`) instead of making a request wait for
/// a disk or a pipe that cannot keep up.
pub const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;
/// Pending bytes that make the writer write before its batch window is up.
const WAKE_BYTES: usize = MAX_PENDING_BYTES / 4;

/// The audit sink. Requests serialize their line (at most [`MAX_LINE_BYTES`]) and append it
/// to a bounded shared buffer (a short lock, never a wait for I/O; the line that finds the
/// buffer empty wakes the writer thread, the others make no system call). The writer gathers
/// for `BATCH_WINDOW` (10 ms; less once a quarter of the buffer is used), swaps the buffer
/// out and writes it in one call of whole lines, without holding the requests' lock. Lines
/// therefore reach the sink about 10 ms late, and a busy server makes at most about a
/// hundred writes a second instead of one per token. When the buffer is full (the sink is
/// slower than the requests) lines are dropped and counted, never queued without bound nor
/// written by a request.
pub struct AuditLog {
    output: Output,
    shared: Arc<Shared>,
}

struct Shared {
    /// Lines not yet written; requests append here.
    pending: Mutex<Vec<u8>>,
    /// Wakes the writer thread early when [`WAKE_BYTES`] are pending.
    wake: Condvar,
    /// The destination; held while writing, which keeps batches in order.
    sink: Mutex<Sink>,
    /// Lines dropped because the buffer was full.
    dropped: Counter,
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

/// What is written: the event, and when it had to be cut, the marker and how many scopes
/// were left out.
#[derive(Serialize)]
struct Line<'e, 'a> {
    #[serde(flatten)]
    event: &'e Event<'a>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes_omitted: Option<usize>,
}

/// [`serialize_line_into`] a new buffer (for tests).
#[cfg(test)]
fn serialize_line(event: &Event<'_>) -> serde_json::Result<Vec<u8>> {
    let mut line = Vec::new();
    serialize_line_into(event, &mut line)?;
    Ok(line)
}

/// `event` as one JSON line (newline included) of at most [`MAX_LINE_BYTES`] (see there for
/// what is cut), written into `line` (cleared first) so a request can reuse one buffer. The
/// work is linear in the event's size.
fn serialize_line_into(event: &Event<'_>, line: &mut Vec<u8>) -> serde_json::Result<()> {
    write_whole(event, line);
    if line.len() < MAX_LINE_BYTES {
        line.push(b'\n');
        return Ok(());
    }
    *line = serialize_cut_line(event)?;
    Ok(())
}

/// `event` as JSON into `line` (cleared first), the same bytes as `serde_json` writes for a
/// [`Line`] that was not cut (pinned by a test). Written field by field ([`crate::support::json`])
/// because every token request pays for it: through `serde_json` (a map for the flattened
/// event, an escape check per byte) it took three times the instructions.
fn write_whole(event: &Event<'_>, line: &mut Vec<u8>) {
    line.clear();
    push_field(line, b"{\"time\":", event.time);
    push_field(line, b",\"request_id\":", event.request_id);
    line.extend_from_slice(b",\"client_ip\":");
    push_ip(line, event.client_ip);
    push_field(line, b",\"account\":", event.account);
    push_field(line, b",\"source\":", event.source);
    push_field(line, b",\"service\":", event.service);
    push_field(line, b",\"grant_type\":", event.grant_type);
    line.extend_from_slice(b",\"scopes\":[");
    for (i, scope) in event.scopes.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        push_field(line, b"{\"requested\":", &scope.requested);
        push_opt_field(line, b",\"granted\":", scope.granted.as_deref());
        push_opt_field(line, b",\"rule\":", scope.rule.as_deref());
        line.push(b'}');
    }
    line.extend_from_slice(b"],\"outcome\":");
    line.extend_from_slice(match event.outcome {
        Outcome::Issued => b"\"issued\"",
        Outcome::Refused => b"\"refused\"",
    });
    push_opt_field(line, b",\"error\":", event.error);
    push_opt_field(line, b",\"reason\":", event.reason);
    push_opt_field(line, b",\"jti\":", event.jti);
    push_opt_field(line, b",\"kid\":", event.kid);
    line.push(b'}');
}

/// The client address as a JSON string (its text needs no escaping), or `null`. An IPv4
/// address is written digit by digit: `Display` goes through the formatter's padding.
fn push_ip(line: &mut Vec<u8>, ip: Option<IpAddr>) {
    match ip {
        Some(IpAddr::V4(ip)) => {
            line.push(b'"');
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    line.push(b'.');
                }
                if octet >= 100 {
                    line.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    line.push(b'0' + octet / 10 % 10);
                }
                line.push(b'0' + octet % 10);
            }
            line.push(b'"');
        }
        Some(ip) => {
            let _ = write!(line, "\"{ip}\"");
        }
        None => line.extend_from_slice(b"null"),
    }
}

/// The line of an event too long for [`MAX_LINE_BYTES`]: see there for what is cut.
fn serialize_cut_line(event: &Event<'_>) -> serde_json::Result<Vec<u8>> {
    // Keep the scopes that fit, in order, after everything else.
    let mut cut = event.clone();
    cut.scopes = &[];
    let shortened: String;
    let mut base = serialize_cut(&cut, event.scopes.len())?.len();
    if base >= MAX_LINE_BYTES {
        // Only the account can be long enough (a workload token's claim, say).
        shortened = crate::echo::shorten(cut.account);
        cut.account = &shortened;
        base = serialize_cut(&cut, event.scopes.len())?.len();
    }
    let mut kept = 0;
    // Each kept scope adds its JSON and a comma.
    let mut size = base;
    for scope in event.scopes {
        let more = serde_json::to_vec(scope)?.len() + 1;
        if size + more >= MAX_LINE_BYTES {
            break;
        }
        size += more;
        kept += 1;
    }
    cut.scopes = event.scopes.get(..kept).unwrap_or_default();
    let mut line = serialize_cut(&cut, event.scopes.len() - kept)?;
    if line.len() >= MAX_LINE_BYTES {
        // Only settings could make the rest this long (a rule's text, a kid); keep the line
        // parseable and marked, without scopes.
        cut.account = "";
        cut.scopes = &[];
        line = serialize_cut(&cut, event.scopes.len())?;
    }
    line.push(b'\n');
    Ok(line)
}

fn serialize_cut(event: &Event<'_>, omitted: usize) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Line {
        event,
        truncated: true,
        scopes_omitted: Some(omitted),
    })
}

impl AuditLog {
    /// The sink `settings` names, `None` when the audit log is off; lines dropped because
    /// the buffer was full are counted in `dropped`.
    pub fn from_settings(
        settings: &AuditSettings,
        dropped: Counter,
    ) -> Result<Option<Arc<AuditLog>>, AuditError> {
        if !settings.enabled {
            return Ok(None);
        }
        AuditLog::open_counting(Output::parse(&settings.output), dropped).map(|a| Some(Arc::new(a)))
    }

    /// Opens `output` (a file is created if missing, and appended to) and starts the writer
    /// thread; it ends once the `AuditLog` is dropped (which writes what is pending).
    pub fn open(output: Output) -> Result<AuditLog, AuditError> {
        AuditLog::open_counting(output, Counter::default())
    }

    /// [`AuditLog::open`], counting dropped lines in `dropped`.
    pub fn open_counting(output: Output, dropped: Counter) -> Result<AuditLog, AuditError> {
        let file = match &output {
            Output::File(path) => Some(open_append(path)?),
            _ => None,
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            wake: Condvar::new(),
            sink: Mutex::new(Sink {
                output: output.clone(),
                file,
                spare: Vec::with_capacity(64 * 1024),
            }),
            dropped,
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                loop {
                    let Some(shared) = weak.upgrade() else {
                        return;
                    };
                    // Asleep until a line arrives (checking now and then that the log is
                    // still there), then gathering for the batch window.
                    let (pending, _) = shared
                        .wake
                        .wait_timeout_while(lock(&shared.pending), IDLE_CHECK, |p| p.is_empty())
                        .unwrap_or_else(|p| p.into_inner());
                    if pending.is_empty() {
                        continue;
                    }
                    drop(
                        shared
                            .wake
                            .wait_timeout_while(pending, BATCH_WINDOW, |p| p.len() < WAKE_BYTES)
                            .unwrap_or_else(|p| p.into_inner()),
                    );
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

    /// Lines dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.get()
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

    /// Writes every pending line now, in the calling thread, and returns once they are
    /// written (for shutdown and tests; requests never call it).
    pub fn flush(&self) {
        self.shared.write_pending(&mut lock(&self.shared.sink));
    }

    /// Adds one line of at most [`MAX_LINE_BYTES`]. Never waits for I/O: when the buffer is
    /// full the line is dropped and counted. A line that cannot be written is logged, never
    /// returned: an audit outage must not turn into refused tokens.
    pub fn write(&self, event: &Event<'_>) {
        // Each worker thread serializes into a buffer of its own, kept between requests:
        // no allocation per line once it has grown to a line's size.
        thread_local! {
            static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => self.write_with(event, &mut line),
            // Not reachable (nothing here re-enters); a fresh buffer is as correct.
            Err(_) => self.write_with(event, &mut Vec::new()),
        });
    }

    fn write_with(&self, event: &Event<'_>, line: &mut Vec<u8>) {
        if let Err(e) = serialize_line_into(event, line) {
            log::error!("audit line not written: {e}");
            return;
        }
        if line.capacity() > MAX_LINE_BYTES * 2 {
            // A cut line of a huge request: do not keep its buffer.
            line.shrink_to(MAX_LINE_BYTES);
        }
        let mut pending = lock(&self.shared.pending);
        if pending.len() + line.len() > MAX_PENDING_BYTES {
            drop(pending);
            // Logged once per power of two, so a stuck sink does not flood the log.
            let dropped = self.shared.dropped.inc() + 1;
            if dropped.is_power_of_two() {
                log::error!(
                    "audit lines dropped: {dropped} so far; the audit output cannot keep up"
                );
            }
            return;
        }
        let before = pending.len();
        pending.extend_from_slice(line);
        // The first line of a batch starts the writer's window; a quarter-full buffer ends it.
        let wake = before == 0 || (before < WAKE_BYTES && pending.len() >= WAKE_BYTES);
        drop(pending);
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.flush();
    }
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
            time: "2026-11-29T08:00:00Z",
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
    fn a_whole_line_is_what_serde_json_writes_for_it() {
        let scopes = [
            ScopeDecision {
                requested: "repository:team/app:pull,push".into(),
                granted: Some("pull".into()),
                rule: Some("rule 2: \"team\" may pull".into()),
            },
            ScopeDecision {
                requested: "repository:a\\b\u{1}\u{7f}é:pull".into(),
                granted: Some(String::new()),
                rule: Some("a \"quoted\" rule".into()),
            },
            ScopeDecision {
                requested: "registry:catalog:*".into(),
                granted: None,
                rule: None,
            },
        ];
        let refused = Event {
            client_ip: Some("2001:db8::1".parse().unwrap()),
            account: "",
            source: "",
            outcome: Outcome::Refused,
            error: Some("UNAUTHORIZED"),
            reason: Some("invalid_credentials"),
            jti: None,
            kid: None,
            ..event(&[])
        };
        let odd = Event {
            client_ip: None,
            request_id: "line\nbreak\ttab",
            account: "ünïcode\u{2028}\u{1f}",
            service: "",
            ..event(&scopes)
        };
        let mut events = vec![event(&scopes), event(&[]), refused, odd];
        for ip in [
            "0.0.0.0",
            "192.168.10.255",
            "100.64.9.99",
            "::ffff:10.0.0.1",
        ] {
            events.push(Event {
                client_ip: Some(ip.parse().unwrap()),
                ..event(&[])
            });
        }
        for event in events {
            let mut line = Vec::new();
            write_whole(&event, &mut line);
            let expected = serde_json::to_vec(&Line {
                event: &event,
                truncated: false,
                scopes_omitted: None,
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(line).unwrap(),
                String::from_utf8(expected).unwrap()
            );
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
    fn a_line_over_the_cap_keeps_the_scopes_that_fit_and_says_it_was_cut() {
        let scope = |i: usize| ScopeDecision {
            requested: format!("repository:team/app-{i}:{}", "x".repeat(200)),
            granted: Some("pull".into()),
            rule: Some("rule 3: anyone may pull".into()),
        };
        let cases: Vec<(Vec<ScopeDecision>, String, Option<usize>)> = vec![
            ((0..3).map(scope).collect(), "alice".into(), None),
            ((0..64).map(scope).collect(), "alice".into(), Some(64)),
            (vec![], "a".repeat(20_000), Some(0)),
            ((0..64).map(scope).collect(), "a".repeat(20_000), Some(64)),
        ];
        for (scopes, account, cut) in cases {
            let mut event = event(&scopes);
            event.account = &account;
            let line = serialize_line(&event).unwrap();
            assert!(line.len() <= MAX_LINE_BYTES, "{}", line.len());
            assert_eq!(line.last(), Some(&b'\n'));
            let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let kept = value["scopes"].as_array().unwrap().len();
            match cut {
                None => {
                    assert_eq!(value.get("truncated"), None, "{value}");
                    assert_eq!(kept, scopes.len());
                }
                Some(total) => {
                    assert_eq!(value["truncated"], true, "{value}");
                    assert_eq!(value["scopes_omitted"], total - kept, "{value}");
                    assert!(kept < total || total == 0);
                    // What is kept is the first scopes, whole, and the line is still useful.
                    for (i, s) in value["scopes"].as_array().unwrap().iter().enumerate() {
                        assert_eq!(s["requested"], scopes[i].requested);
                    }
                    assert!(kept > 0 || total == 0, "{value}");
                    assert_eq!(value["request_id"], "r-1");
                    assert_eq!(value["outcome"], "issued");
                }
            }
        }
    }

    #[test]
    fn a_full_buffer_drops_and_counts_lines_instead_of_waiting_and_flush_writes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let dropped = Counter::default();
        let audit = AuditLog::open_counting(Output::File(path.clone()), dropped.clone()).unwrap();
        let scopes = [ScopeDecision {
            requested: format!("repository:a:{}", "p".repeat(1000)),
            granted: None,
            rule: None,
        }];
        let line_len = serialize_line(&event(&scopes)).unwrap().len();
        let fits = MAX_PENDING_BYTES / line_len;
        // A sink that cannot keep up: hold it, so the writer thread cannot drain the buffer.
        let held = lock(&audit.shared.sink);
        for _ in 0..fits + 10 {
            audit.write(&event(&scopes));
        }
        assert_eq!(audit.dropped(), 10);
        assert_eq!(dropped.get(), 10, "counted where the metric reads it");
        drop(held);
        audit.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().count(),
            fits,
            "every line that fit is written whole"
        );
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
        // Room again once written.
        audit.write(&event(&scopes));
        audit.flush();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            fits + 1
        );
        assert_eq!(audit.dropped(), 10);
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let err = AuditLog::open(Output::File("/nonexistent/dir/audit.log".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/dir/audit.log"), "{err}");
    }
}
