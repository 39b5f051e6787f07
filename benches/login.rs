//! What a login costs: bcrypt on every request versus the verified-credentials cache, and an
//! unknown user (which must cost as much as a wrong password).
//!
//! `cargo bench --bench login`; compare ratios within one run.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use regauth::identity::{UserDirectory, UserSettings};
use regauth::watch::WatchOptions;

/// `regauth hash-password`'s default cost.
const COST: u32 = 10;

fn directory(cache: Duration) -> Option<UserDirectory> {
    let hash = bcrypt::hash("s3cret", COST).ok()?;
    let users: BTreeMap<String, UserSettings> = [(
        "alice".to_owned(),
        UserSettings {
            password: Some(hash),
            groups: vec![],
        },
    )]
    .into();
    UserDirectory::start(users, None, cache, WatchOptions::default()).ok()
}

fn bench(c: &mut Criterion) {
    let (Some(uncached), Some(cached)) = (
        directory(Duration::ZERO),
        directory(Duration::from_secs(3600)),
    ) else {
        return;
    };
    let mut slow = c.benchmark_group("login/bcrypt");
    slow.sample_size(10);
    slow.bench_function("right password, no cache", |b| {
        b.iter(|| {
            uncached
                .verify(black_box("alice"), black_box("s3cret"))
                .is_ok()
        })
    });
    slow.bench_function("wrong password", |b| {
        b.iter(|| cached.verify(black_box("alice"), black_box("nope")).is_ok())
    });
    slow.bench_function("unknown user", |b| {
        b.iter(|| {
            cached
                .verify(black_box("mallory"), black_box("s3cret"))
                .is_ok()
        })
    });
    slow.finish();
    let _ = cached.verify("alice", "s3cret");
    c.bench_function("login/cached right password", |b| {
        b.iter(|| {
            cached
                .verify(black_box("alice"), black_box("s3cret"))
                .is_ok()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
