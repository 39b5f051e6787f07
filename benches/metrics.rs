//! What metrics cost a token request (one issued-token count and one duration observation),
//! next to what a scrape costs. Compare with `sign/regauth ES256` from `--bench token`: that
//! is the floor of an anonymous token request.
//!
//! `cargo bench --bench metrics`; compare ratios within one run.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use regauth::clock::{Clock, SystemClock};
use regauth::config::Settings;
use regauth::fs::watch::WatchOptions;
use regauth::identity::{LimitSettings, LoginOptions, Logins, UserDirectory};
use regauth::keys::{self, Algorithm, generate};
use regauth::telemetry::metrics::{Grant, Metrics, TokenMethod};

/// Metrics over a fresh key and no users; `None` if the setup fails.
fn metrics(services: &[String]) -> Option<(Metrics, tempfile::TempDir)> {
    let dir = tempfile::tempdir().ok()?;
    generate::write(dir.path(), Algorithm::ES256, false).ok()?;
    let mut settings = Settings::default();
    settings.key.path = dir.path().join("signing.key");
    let config = settings.validate(false).ok()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keys = keys::provider_from_settings(
        &config.key,
        config.key_spec(),
        config.key_reload(),
        Arc::clone(&clock),
    )
    .ok()?;
    let users =
        Arc::new(UserDirectory::start(BTreeMap::new(), None, WatchOptions::default()).ok()?);
    let options = LoginOptions {
        cache_ttl: Duration::from_secs(60),
        workers: 1,
        queue: 1,
        limits: LimitSettings::default(),
    };
    let logins = Arc::new(Logins::new(users, &options).ok()?);
    let mut metrics = Metrics::new(services, logins.clone());
    metrics.register_collector(logins.collector());
    metrics.register_collector(keys::metrics::collector(keys, clock));
    Some((metrics, dir))
}

fn bench(c: &mut Criterion) {
    let (Some((open, _dir)), Some((configured, _dir2))) =
        (metrics(&[]), metrics(&["registry.test".into()]))
    else {
        eprintln!("metrics bench: setup failed");
        return;
    };
    c.bench_function("metrics/count one token request", |b| {
        b.iter(|| {
            open.token_issued(black_box("registry.test"), Grant::Anonymous);
            open.token_request(TokenMethod::Get, black_box(Duration::from_micros(300)));
        })
    });
    c.bench_function(
        "metrics/count one token request, configured services",
        |b| {
            b.iter(|| {
                configured.token_issued(black_box("registry.test"), Grant::Anonymous);
                configured.token_request(TokenMethod::Get, black_box(Duration::from_micros(300)));
            })
        },
    );
    c.bench_function("metrics/scrape", |b| {
        b.iter(|| black_box(open.encode().ok()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
