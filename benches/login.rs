//! What a login costs: bcrypt on every request versus the login cache, and an unknown user
//! (which must cost as much as a wrong password).
//!
//! `cargo bench --bench login`; compare ratios within one run.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use regauth::fs::watch::WatchOptions;
use regauth::identity::{
    Credentials, LimitSettings, LoginOptions, Logins, UserDirectory, UserSettings,
};

/// `regauth hash-password`'s default cost.
const COST: u32 = 10;

fn directory() -> Option<Arc<UserDirectory>> {
    let hash = bcrypt::hash("s3cret", COST).ok()?;
    let users: BTreeMap<String, UserSettings> = [(
        "alice".to_owned(),
        UserSettings {
            password: Some(hash.into()),
            groups: vec![],
        },
    )]
    .into();
    UserDirectory::start(users, None, WatchOptions::default())
        .ok()
        .map(Arc::new)
}

fn bench(c: &mut Criterion) {
    let Some(users) = directory() else {
        return;
    };
    let mut slow = c.benchmark_group("login/bcrypt");
    slow.sample_size(10);
    slow.bench_function("right password", |b| {
        b.iter(|| {
            users
                .verify(black_box("alice"), black_box("s3cret"))
                .is_ok()
        })
    });
    slow.bench_function("wrong password", |b| {
        b.iter(|| users.verify(black_box("alice"), black_box("nope")).is_ok())
    });
    slow.bench_function("unknown user", |b| {
        b.iter(|| {
            users
                .verify(black_box("mallory"), black_box("s3cret"))
                .is_ok()
        })
    });
    slow.finish();

    let options = LoginOptions {
        cache_ttl: Duration::from_secs(3600),
        workers: 1,
        queue: 8,
        limits: LimitSettings::default(),
    };
    let (Ok(runtime), Ok(logins)) = (
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Logins::new(Arc::clone(&users), &options),
    ) else {
        return;
    };
    let login = || {
        runtime
            .block_on(logins.login(Some(Credentials::new("alice", "s3cret")), None, None))
            .is_ok()
    };
    login();
    c.bench_function("login/cached right password", |b| {
        b.iter(|| black_box(login()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
