//! Prometheus metrics (`GET /metrics`, text format 0.0.4, every name prefixed `regauth_`):
//! counters the request path bumps (tokens issued, authentication failures, refresh tokens,
//! request durations), and values read only when scraped, which the domains register as
//! collectors ([`Metrics::register_collector`]): the login path's counters, the key
//! provider's status, the TLS certificate's. This module knows none of them: it sits below
//! them, and the login path's refusals reach `regauth_auth_failures_total` through
//! [`LoginRefusals`].
//!
//! Label values come from small fixed sets, except `service`: with `token.services` set it is
//! one of them; without, services are whatever clients send, so only the first
//! [`MAX_SERVICE_LABELS`] distinct names (of at most [`MAX_SERVICE_LABEL_BYTES`] bytes) get a
//! series of their own and every other one counts as `other`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Distinct client-supplied services counted under their own name when `token.services` is
/// empty; later ones count as `other`.
pub const MAX_SERVICE_LABELS: usize = 32;
/// Longer client-supplied service names count as `other`.
pub const MAX_SERVICE_LABEL_BYTES: usize = 128;
/// The `service` label of tokens for services past the cap.
pub const OTHER_SERVICE: &str = "other";

/// Upper bounds of the token request duration buckets, in seconds: an anonymous token takes
/// well under a millisecond, a password check tens to hundreds.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How a token was asked for: the `grant_type` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `GET /token` without credentials (or with credentials on a server without users).
    Anonymous,
    /// `GET /token` with Basic credentials.
    Basic,
    /// `POST /token`, `grant_type=password`.
    Password,
    /// `POST /token`, `grant_type=refresh_token`.
    RefreshToken,
}

impl Grant {
    const ALL: [Grant; 4] = [
        Grant::Anonymous,
        Grant::Basic,
        Grant::Password,
        Grant::RefreshToken,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Grant::Anonymous => "anonymous",
            Grant::Basic => "basic",
            Grant::Password => "password",
            Grant::RefreshToken => "refresh_token",
        }
    }
}

/// Why authentication failed, where the request path decides it: the `reason` label of
/// `regauth_auth_failures_total` (`limited` and `shed` come from the login counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Unknown user or wrong password.
    InvalidCredentials,
    /// An `Authorization` header that is not one valid `Basic` header.
    MalformedHeader,
    /// The `account` parameter names someone else than the credentials.
    AccountMismatch,
    /// An identity source could not answer (503).
    SourceUnavailable,
}

impl AuthFailure {
    const ALL: [AuthFailure; 4] = [
        AuthFailure::InvalidCredentials,
        AuthFailure::MalformedHeader,
        AuthFailure::AccountMismatch,
        AuthFailure::SourceUnavailable,
    ];

    fn as_str(self) -> &'static str {
        match self {
            AuthFailure::InvalidCredentials => "invalid_credentials",
            AuthFailure::MalformedHeader => "malformed_header",
            AuthFailure::AccountMismatch => "account_mismatch",
            AuthFailure::SourceUnavailable => "source_unavailable",
        }
    }
}

/// The `method` label of the duration histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenMethod {
    /// `GET /token`.
    Get,
    /// `POST /token`.
    Post,
}

impl prometheus_client::encoding::EncodeLabelSet for TokenMethod {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        let method = match self {
            TokenMethod::Get => "GET",
            TokenMethod::Post => "POST",
        };
        prometheus_client::encoding::EncodeLabelSet::encode(&[("method", method)], encoder)
    }
}

/// One counter per grant type.
type PerGrant = [AtomicU64; Grant::ALL.len()];

/// Tokens issued, by service and grant type, with the service cap.
#[derive(Debug)]
struct IssuedTokens {
    services: RwLock<HashMap<Box<str>, PerGrant>>,
    other: PerGrant,
    /// True when services are client input (no `token.services`).
    open: bool,
}

impl IssuedTokens {
    fn new(configured: &[String]) -> IssuedTokens {
        IssuedTokens {
            services: RwLock::new(
                configured
                    .iter()
                    .map(|s| (s.as_str().into(), PerGrant::default()))
                    .collect(),
            ),
            other: PerGrant::default(),
            open: configured.is_empty(),
        }
    }

    fn count(&self, service: &str, grant: Grant) {
        let index = grant as usize;
        let full = {
            let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(counters) = services.get(service) {
                bump(counters, index);
                return;
            }
            services.len() >= MAX_SERVICE_LABELS
        };
        // Past the cap, unknown names never take the write lock.
        if self.open && !full && service.len() <= MAX_SERVICE_LABEL_BYTES {
            let mut services = self
                .services
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if services.len() < MAX_SERVICE_LABELS || services.contains_key(service) {
                bump(services.entry(service.into()).or_default(), index);
                return;
            }
        }
        bump(&self.other, index);
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut rows: Vec<(String, [u64; Grant::ALL.len()])> = {
            let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
            services
                .iter()
                .map(|(name, counters)| (name.to_string(), load(counters)))
                .collect()
        };
        rows.sort();
        rows.push((OTHER_SERVICE.to_owned(), load(&self.other)));
        let mut metric = encoder.encode_descriptor(
            "tokens_issued",
            "Tokens issued, by service and grant type.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (service, counts) in &rows {
            for grant in Grant::ALL {
                let labels = [
                    ("service", service.as_str()),
                    ("grant_type", grant.as_str()),
                ];
                ConstCounter::new(counts[grant as usize]).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn bump(counters: &PerGrant, index: usize) {
    if let Some(c) = counters.get(index) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

fn load(counters: &PerGrant) -> [u64; Grant::ALL.len()] {
    std::array::from_fn(|i| counters.get(i).map_or(0, |c| c.load(Ordering::Relaxed)))
}

/// Logins the login path refused on its own, read at scrape time into the `limited` and
/// `shed` series of `regauth_auth_failures_total` (the login path implements it).
pub trait LoginRefusals: Send + Sync {
    /// Logins refused by the brute-force limits so far.
    fn limited(&self) -> u64;
    /// Password checks refused because every worker was busy and the queue full, so far.
    fn shed(&self) -> u64;
}

/// The tokens issued and the authentication failures, summed at scrape time.
struct Scraped {
    issued: Arc<IssuedTokens>,
    failures: Arc<[AtomicU64; AuthFailure::ALL.len()]>,
    refusals: Arc<dyn LoginRefusals>,
}

impl std::fmt::Debug for Scraped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraped").finish_non_exhaustive()
    }
}

/// Writes one counter (`_total` is appended) with `help`.
pub(crate) fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Writes one gauge with `help`.
pub(crate) fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.issued.encode(&mut encoder)?;

        let mut failures = encoder.encode_descriptor(
            "auth_failures",
            "Requests refused while deciding who the caller is, by reason.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for reason in AuthFailure::ALL {
            let value = self
                .failures
                .get(reason as usize)
                .map_or(0, |c| c.load(Ordering::Relaxed));
            ConstCounter::new(value)
                .encode(failures.encode_family(&[("reason", reason.as_str())])?)?;
        }
        ConstCounter::new(self.refusals.limited())
            .encode(failures.encode_family(&[("reason", "limited")])?)?;
        ConstCounter::new(self.refusals.shed())
            .encode(failures.encode_family(&[("reason", "shed")])?)?;
        Ok(())
    }
}

/// The metrics registry and the handles the request path uses.
pub struct Metrics {
    registry: Registry,
    issued: Arc<IssuedTokens>,
    failures: Arc<[AtomicU64; AuthFailure::ALL.len()]>,
    /// The duration histograms of `GET` and `POST` (in [`TokenMethod`] order), looked up in
    /// their family once: a request observes into its own without the family's lock and hash.
    durations: [Histogram; 2],
    refresh_issued: Counter,
    refresh_refused: Counter,
    audit_dropped: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl Metrics {
    /// Metrics for a server issuing tokens for `services` (empty: any), whose login path
    /// counts its own refusals (`refusals`). The domains' scrape-time values are added with
    /// [`Metrics::register_collector`].
    pub fn new(services: &[String], refusals: Arc<dyn LoginRefusals>) -> Metrics {
        let mut registry = Registry::with_prefix("regauth");
        registry.register(
            "build",
            "Build information; the value is always 1",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let durations: Family<TokenMethod, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "token_request_duration_seconds",
            "Time to answer a /token request (any outcome), in seconds",
            durations.clone(),
        );
        let refresh_issued = Counter::default();
        registry.register(
            "refresh_tokens_issued",
            "Refresh tokens handed out (password grants with offline access, docker login)",
            refresh_issued.clone(),
        );
        let refresh_refused = Counter::default();
        registry.register(
            "refresh_tokens_refused",
            "Refresh grants refused: invalid, expired, for another service or an old password",
            refresh_refused.clone(),
        );
        let audit_dropped = Counter::default();
        registry.register(
            "audit_dropped",
            "Audit lines dropped because the audit output could not keep up (its buffer was full)",
            audit_dropped.clone(),
        );
        let issued = Arc::new(IssuedTokens::new(services));
        let failures = Arc::new(Default::default());
        registry.register_collector(Box::new(Scraped {
            issued: Arc::clone(&issued),
            failures: Arc::clone(&failures),
            refusals,
        }));
        // Both methods exist from the start, so a rate over them never starts from nothing.
        let durations = [TokenMethod::Get, TokenMethod::Post]
            .map(|method| durations.get_or_create(&method).clone());
        Metrics {
            registry,
            issued,
            failures,
            durations,
            refresh_issued,
            refresh_refused,
            audit_dropped,
        }
    }

    /// The counter of dropped audit lines, for [`crate::telemetry::audit::AuditLog`] to count in.
    pub fn audit_dropped(&self) -> Counter {
        self.audit_dropped.clone()
    }

    /// Adds metrics read at scrape time: how the domains publish their state (the login
    /// path's counters, the key provider's status, the TLS certificate's).
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// Counts a token issued for `service`.
    pub fn token_issued(&self, service: &str, grant: Grant) {
        self.issued.count(service, grant);
    }

    /// Counts a request refused while authenticating.
    pub fn auth_failed(&self, reason: AuthFailure) {
        if let Some(c) = self.failures.get(reason as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records how long a `/token` request took.
    pub fn token_request(&self, method: TokenMethod, took: Duration) {
        let histogram = match method {
            TokenMethod::Get => &self.durations[0],
            TokenMethod::Post => &self.durations[1],
        };
        histogram.observe(took.as_secs_f64());
    }

    /// Counts a refresh token handed out.
    pub fn refresh_issued(&self) {
        self.refresh_issued.inc();
    }

    /// Counts a refused refresh grant.
    pub fn refresh_refused(&self) {
        self.refresh_refused.inc();
    }

    /// Everything, in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests;
