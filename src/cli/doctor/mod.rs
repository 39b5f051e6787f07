//! `regauth doctor`: reads regauth's settings and a distribution registry's configuration and
//! reports, one line each with the fix, every mismatch that makes the registry refuse
//! regauth's tokens ("token signed by untrusted key", "invalid token") or will soon: issuer,
//! service, the bundle or JWKS file, the `kid` form the registry version looks up, certificate
//! expiry, the realm, and the next key before a rotation. With a registry URL it also does the
//! round trip a client does (see [`live`]).

mod checks;
pub mod live;
pub mod registry;
mod trust;

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use regauth::config::Validated;
pub use registry::RegistryVersion;

/// How bad a finding is. Both make `doctor` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The registry refuses regauth's tokens now.
    Error,
    /// It will (an expiring certificate, a rotation not prepared), or it cannot be told.
    Warning,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem: a stable code, what was seen, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable short name, e.g. `issuer-mismatch`.
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// What was observed, with the values and where they come from.
    pub message: String,
    /// The setting to change or the command to run.
    pub fix: String,
}

/// What the doctor found: problems, and the checks that held.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The problems, in the order found.
    pub findings: Vec<Finding>,
    /// One line per check that held.
    pub passed: Vec<String>,
    /// Facts the reader needs (the version assumed, what was not checked).
    pub notes: Vec<String>,
}

impl Report {
    pub(crate) fn error(&mut self, code: &'static str, message: String, fix: String) {
        self.push(code, Severity::Error, message, fix);
    }

    pub(crate) fn warn(&mut self, code: &'static str, message: String, fix: String) {
        self.push(code, Severity::Warning, message, fix);
    }

    fn push(&mut self, code: &'static str, severity: Severity, message: String, fix: String) {
        self.findings.push(Finding {
            code,
            severity,
            message,
            fix,
        });
    }

    pub(crate) fn ok(&mut self, line: String) {
        self.passed.push(line);
    }

    pub(crate) fn note(&mut self, line: String) {
        self.notes.push(line);
    }

    /// Codes of the errors found so far.
    pub fn error_codes(&self) -> Vec<&'static str> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.code)
            .collect()
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// True when nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// The last line: how many problems, and what they mean.
    pub fn summary(&self) -> String {
        let (errors, warnings) = (self.count(Severity::Error), self.count(Severity::Warning));
        if errors + warnings == 0 {
            return format!(
                "ok: {} checks hold; the registry accepts regauth's tokens",
                self.passed.len()
            );
        }
        let what = if errors > 0 {
            "the registry refuses regauth's tokens until they are fixed"
        } else {
            "tokens are accepted now, but fix these before they bite"
        };
        format!(
            "{errors} error{}, {warnings} warning{}: {what}",
            if errors == 1 { "" } else { "s" },
            if warnings == 1 { "" } else { "s" }
        )
    }

    /// The plain-text report: notes, passed checks, one line per finding (with its fix), and
    /// the summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        for line in &self.passed {
            out.push_str(&format!("ok: {line}\n"));
        }
        for f in &self.findings {
            out.push_str(&format!(
                "{} {}: {} -> fix: {}\n",
                f.severity.label(),
                f.code,
                f.message,
                f.fix
            ));
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// The report as JSON (`--json`).
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            ok: bool,
            summary: String,
            #[serde(flatten)]
            report: &'a Report,
        }
        serde_json::to_string_pretty(&Out {
            ok: self.is_clean(),
            summary: self.summary(),
            report: self,
        })
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode the report: {e}\"}}"))
    }
}

/// What `doctor` was asked to check.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// regauth's configuration file, to name in the fixes.
    pub config_path: Option<PathBuf>,
    /// The registry's configuration file.
    pub registry_config: PathBuf,
    /// The registry release, when known (otherwise implied by its settings).
    pub registry_version: Option<RegistryVersion>,
    /// The registry's base URL for the live round trip.
    pub registry_url: Option<String>,
    /// Credentials for the token request of the round trip.
    pub credentials: Option<(String, String)>,
    /// Bound on each HTTP request of the round trip.
    pub timeout: std::time::Duration,
}

/// Checks `config` against the registry configuration named in `options` (with the
/// `REGISTRY_AUTH_TOKEN_*` variables of `env`), then, with a URL, against the running
/// registry. An unreadable registry configuration is an error (a usage error for the CLI);
/// everything else is a finding in the report.
pub fn run(
    config: &Validated,
    options: &Options,
    env: &HashMap<String, String>,
) -> Result<Report, registry::RegistryConfigError> {
    let registry = registry::load(&options.registry_config, env)?;
    let mut report = Report::default();
    let version = match (options.registry_version, registry.implied_version()) {
        (Some(v), _) => v,
        (None, Some(v)) => {
            report.note(format!(
                "assuming registry {} (its configuration sets jwks or signingalgorithms); pass \
                 --registry-version to be exact",
                v.name()
            ));
            v
        }
        (None, None) => {
            report.note(
                "assuming registry 2.8 (no jwks or signingalgorithms in its configuration); pass \
                 --registry-version 3 for 3.x"
                    .to_owned(),
            );
            RegistryVersion::V2
        }
    };
    checks::run(config, &registry, version, &mut report);
    if let Some(url) = &options.registry_url {
        live::round_trip(url, options, &registry, &mut report);
    }
    // The fixes name regauth's own configuration file as `--config FILE`.
    if let Some(path) = &options.config_path {
        let named = format!("--config {}", path.display());
        for finding in &mut report.findings {
            finding.fix = finding.fix.replace("--config FILE", &named);
        }
    }
    Ok(report)
}
