//! Logging setup: env_logger filtered by `RUST_LOG` (default `info`), with one correction:
//! the HTTP library reports a client's protocol errors (a malformed request, a connection
//! cut mid-request) at ERROR, where they would page an operator for someone else's fault.
//! Those records are re-issued at DEBUG. A record written while a request is handled ends
//! with that request's id (`request_id=…`), so an error line can be matched to its access
//! and audit lines.

use std::fmt;

use log::{Level, Log, Metadata, Record};

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

struct Downgrading(env_logger::Logger);

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
        match crate::request_id::current() {
            Some(id) => self.emit(
                record,
                level,
                format_args!("{} request_id={id}", record.args()),
            ),
            None if level == record.level() => self.0.log(record),
            None => self.emit(record, level, *record.args()),
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

impl Downgrading {
    fn emit(&self, record: &Record<'_>, level: Level, args: fmt::Arguments<'_>) {
        self.0.log(
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
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(Downgrading(logger))).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
