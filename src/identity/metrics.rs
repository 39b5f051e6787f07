//! The login path's counters as Prometheus metrics, read at scrape time: registered into
//! [`crate::telemetry::metrics::Metrics`] by the server, so telemetry need not know the login
//! path.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::Logins;
use crate::telemetry::metrics::{LoginRefusals, counter};

impl LoginRefusals for Logins {
    fn limited(&self) -> u64 {
        self.stats().limited
    }

    fn shed(&self) -> u64 {
        self.stats().shed
    }
}

impl Logins {
    /// The login path's metrics (`regauth_password_checks_total`, the login cache's hits and
    /// misses, ...), read at scrape time.
    pub fn collector(self: &Arc<Self>) -> Box<dyn Collector> {
        Box::new(LoginMetrics(Arc::clone(self)))
    }
}

/// `regauth_password_checks_total`, `regauth_login_*`, `regauth_requests_*`,
/// `regauth_identity_source_unavailable_total`.
struct LoginMetrics(Arc<Logins>);

impl std::fmt::Debug for LoginMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginMetrics").finish_non_exhaustive()
    }
}

impl Collector for LoginMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let stats = self.0.stats();
        counter(
            e,
            "password_checks",
            "bcrypt password checks run (for requests and background cache refreshes).",
            stats.checks,
        )?;
        counter(
            e,
            "login_cache_hits",
            "Password logins answered from the login cache.",
            stats.cache_hits,
        )?;
        counter(
            e,
            "login_cache_misses",
            "Password logins the login cache could not answer.",
            stats.cache_misses,
        )?;
        counter(
            e,
            "requests_limited",
            "Logins refused with 429 by the brute-force limits.",
            stats.limited,
        )?;
        counter(
            e,
            "requests_shed",
            "Password checks refused with 503 because every worker was busy and the queue full.",
            stats.shed,
        )?;
        counter(
            e,
            "identity_source_unavailable",
            "Checks that an identity source (e.g. LDAP) could not answer.",
            stats.unavailable,
        )?;
        counter(
            e,
            "login_stale_answers",
            "Logins answered from an expired cache entry during its source's outage grace.",
            stats.stale_answers,
        )?;
        Ok(())
    }
}
