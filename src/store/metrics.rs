//! `regauth_store_*` and `regauth_access_token_*`, read at scrape time.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::Store;

/// The store's metrics for [`crate::telemetry::metrics::Metrics::register_collector`].
pub struct StoreMetrics(pub Arc<Store>);

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMetrics").finish_non_exhaustive()
    }
}

impl Collector for StoreMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = self.0.counters();
        let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        crate::telemetry::metrics::counter(
            &mut encoder,
            "store_queries",
            "Database round trips made by the store (polls, batched last-use writes, changes); token sign-ins make none.",
            load(&c.queries),
        )?;
        crate::telemetry::metrics::gauge(
            &mut encoder,
            "store_up",
            "1 while the store's snapshot is fresh enough to answer token sign-ins, else 0.",
            i64::from(self.0.is_fresh()),
        )?;
        crate::telemetry::metrics::gauge(
            &mut encoder,
            "access_tokens_active",
            "Access tokens in the snapshot.",
            i64::try_from(self.0.snapshot().len()).unwrap_or(i64::MAX),
        )?;
        crate::telemetry::metrics::counter(
            &mut encoder,
            "access_token_uses",
            "Sign-ins with a valid access token.",
            load(&c.uses),
        )?;
        crate::telemetry::metrics::counter(
            &mut encoder,
            "access_token_refusals",
            "Sign-ins with a token-shaped password that is unknown, revoked, expired or another owner's.",
            load(&c.refused),
        )?;
        crate::telemetry::metrics::counter(
            &mut encoder,
            "access_token_unavailable",
            "Token sign-ins answered 503 because the store could not be read recently enough.",
            load(&c.unavailable),
        )?;
        crate::telemetry::metrics::counter(
            &mut encoder,
            "access_tokens_created",
            "Access tokens created through this process.",
            load(&c.created),
        )?;
        crate::telemetry::metrics::counter(
            &mut encoder,
            "access_tokens_revoked",
            "Access tokens revoked through this process.",
            load(&c.revoked),
        )
    }
}
