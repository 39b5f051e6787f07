//! The key provider's state as Prometheus metrics, read at scrape time: registered into
//! [`crate::telemetry::metrics::Metrics`] by the server, so telemetry need not know the keys.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::KeyProvider;
use crate::clock::Clock;
use crate::telemetry::metrics::{counter, gauge};

/// The key metrics of `keys` (`regauth_key_age_seconds`, reload times and failures, the next
/// and retired keys, the signing certificate's expiry), read at scrape time; ages by `clock`.
pub fn collector(keys: Arc<dyn KeyProvider>, clock: Arc<dyn Clock>) -> Box<dyn Collector> {
    Box::new(KeyMetrics { keys, clock })
}

/// `regauth_key_*`, `regauth_next_key_present`, `regauth_retired_keys_published`,
/// `regauth_signing_certificate_expiry_timestamp_seconds`.
struct KeyMetrics {
    keys: Arc<dyn KeyProvider>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for KeyMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMetrics").finish_non_exhaustive()
    }
}

impl Collector for KeyMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let status = self.keys.status();
        let now = self.clock.now();
        gauge(
            e,
            "key_age_seconds",
            "Seconds since the signing key was loaded.",
            status.key_age(now).num_seconds(),
        )?;
        gauge(
            e,
            "key_last_reload_timestamp_seconds",
            "Unix time of the last successful key (re)load (the start when nothing was reloaded yet).",
            status.last_reload.unwrap_or(status.loaded_at).timestamp(),
        )?;
        counter(
            e,
            "key_reload_failures",
            "Key reloads that found content that could not be used (the last good key keeps signing).",
            status.failed_reloads,
        )?;
        gauge(
            e,
            "next_key_present",
            "1 when a next key is configured and loaded, else 0.",
            i64::from(status.next_kid.is_some()),
        )?;
        gauge(
            e,
            "retired_keys_published",
            "Replaced keys still published (JWKS, bundle) until the tokens they signed expire.",
            i64::try_from(status.retired).unwrap_or(i64::MAX),
        )?;
        if let Some(cert) = self.keys.signing_key().certificate() {
            gauge(
                e,
                "signing_certificate_expiry_timestamp_seconds",
                "Unix time the signing key's certificate expires.",
                cert.not_after.timestamp(),
            )?;
        }
        Ok(())
    }
}
