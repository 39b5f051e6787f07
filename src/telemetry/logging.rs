//! Logging setup: env_logger filtered by `RUST_LOG` (default `info`), with one correction:
//! the HTTP library reports a client's protocol errors (a malformed request, a connection
//! cut mid-request) at ERROR, where they would page an operator for someone else's fault.
//! Those records are re-issued at DEBUG. A record written while a request is handled ends
//! with that request's id (`request_id=…`), so an error line can be matched to its access
//! and audit lines.
//!
//! `log.format: json` switches to one JSON object per line (`time`, `level`, `target`,
//! `message`, and `request_id` during a request) for log shippers. The switch happens once
//! the settings are read; anything logged before (a bad config file) stays text.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, Log, Metadata, Record};
use serde::{Deserialize, Serialize};

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum LogFormat {
    /// env_logger's human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl TryFrom<String> for LogFormat {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let choices = [("text", LogFormat::Text), ("json", LogFormat::Json)];
        crate::support::choice::one_of("log.format", &s, &choices)
    }
}

/// `log.*` ([`crate::config`] composes this section into its settings and checks it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` or `json`; the level comes from `RUST_LOG`.
    pub format: LogFormat,
}

/// Set by [`set_format`]; read on every record.
static JSON: AtomicBool = AtomicBool::new(false);

/// Switches the installed logger's format.
pub fn set_format(format: LogFormat) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
}

/// One JSON log line.
#[derive(Serialize)]
struct JsonRecord<'a> {
    time: String,
    level: &'a str,
    target: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

/// `record` as one JSON line, without the newline.
pub fn json_line(record: &Record<'_>, request_id: Option<&str>) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&JsonRecord {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        level: record.level().as_str(),
        target: record.target(),
        message: record.args().to_string(),
        request_id: request_id.map(str::to_owned),
    })
}

/// Targets whose ERROR records describe the client's connection, not the server.
const CLIENT_PROTOCOL_TARGETS: &[&str] = &["actix_http::h1", "actix_http::h2"];

/// The level a record is logged at: ERROR from the HTTP library's connection handling
/// becomes DEBUG; everything else keeps its level.
pub fn effective_level(target: &str, level: Level) -> Level {
    if level == Level::Error
        && CLIENT_PROTOCOL_TARGETS
            .iter()
            .any(|t| target.starts_with(t))
    {
        Level::Debug
    } else {
        level
    }
}

/// The filter and level correction around two formats: env_logger's text (`0`) and the
/// JSON one (`1`), picked per record by [`set_format`].
struct Downgrading(env_logger::Logger, env_logger::Logger);

impl Log for Downgrading {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let level = effective_level(metadata.target(), metadata.level());
        self.0.enabled(
            &Metadata::builder()
                .level(level)
                .target(metadata.target())
                .build(),
        )
    }

    fn log(&self, record: &Record<'_>) {
        let level = effective_level(record.target(), record.level());
        if JSON.load(Ordering::Relaxed) {
            // The JSON format adds the request id as a field itself.
            return self.emit(&self.1, record, level, *record.args());
        }
        match crate::telemetry::request_id::current() {
            Some(id) => self.emit(
                &self.0,
                record,
                level,
                format_args!("{} request_id={id}", record.args()),
            ),
            None if level == record.level() => self.0.log(record),
            None => self.emit(&self.0, record, level, *record.args()),
        }
    }

    fn flush(&self) {
        self.0.flush();
        self.1.flush();
    }
}

impl Downgrading {
    fn emit(
        &self,
        logger: &env_logger::Logger,
        record: &Record<'_>,
        level: Level,
        args: fmt::Arguments<'_>,
    ) {
        logger.log(
            &Record::builder()
                .args(args)
                .level(level)
                .target(record.target())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }
}

/// Installs the logger; a second call does nothing.
pub fn init() {
    let env = || env_logger::Env::default().default_filter_or("info");
    let logger = env_logger::Builder::from_env(env()).build();
    let json = env_logger::Builder::from_env(env())
        .format(|buf, record| {
            let id = crate::telemetry::request_id::current();
            let line = json_line(record, id.as_ref().map(|i| i.as_str()))
                .map_err(std::io::Error::other)?;
            buf.write_all(&line)?;
            buf.write_all(b"\n")
        })
        .build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(Downgrading(logger, json))).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_level_target_message_and_the_request_id() {
        let record = Record::builder()
            .args(format_args!("refused \"x\"\n"))
            .level(Level::Warn)
            .target("regauth::http")
            .build();
        let line: serde_json::Value =
            serde_json::from_slice(&json_line(&record, Some("r-9")).unwrap()).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "regauth::http");
        assert_eq!(line["message"], "refused \"x\"\n");
        assert_eq!(line["request_id"], "r-9");
        chrono::DateTime::parse_from_rfc3339(line["time"].as_str().unwrap()).unwrap();
        let line: serde_json::Value =
            serde_json::from_slice(&json_line(&record, None).unwrap()).unwrap();
        assert!(line.get("request_id").is_none(), "{line}");
    }

    #[test]
    fn client_protocol_errors_are_debug_and_everything_else_keeps_its_level() {
        assert_eq!(
            effective_level("actix_http::h1::dispatcher", Level::Error),
            Level::Debug
        );
        assert_eq!(
            effective_level("actix_http::h1::dispatcher", Level::Warn),
            Level::Warn
        );
        assert_eq!(effective_level("regauth::http", Level::Error), Level::Error);
        assert_eq!(
            effective_level("actix_server::worker", Level::Error),
            Level::Error
        );
    }
}
