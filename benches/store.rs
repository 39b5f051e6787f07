//! What an access-token sign-in costs next to a cached password (the goal: within 2×), and
//! how many database calls the hot path makes (the goal: none).
//!
//! `cargo bench --bench store`. The store is SQLite in a temp dir; its poller reads the
//! revision counter every 2 s in the background, which is the only database traffic while
//! the sign-ins run: the figure printed at the end says how many calls there were per
//! sign-in, all causes included.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use regauth::fs::watch::WatchOptions;
use regauth::identity::tokens::AccessTokens;
use regauth::identity::{
    Credentials, LimitSettings, LoginOptions, Logins, UserDirectory, UserSettings,
};
use regauth::store::{Mode, Store, StoreSettings};
use secrecy::ExposeSecret;

fn bench(c: &mut Criterion) {
    let Ok(hash) = bcrypt::hash("s3cret", 4) else {
        return;
    };
    let users: BTreeMap<String, UserSettings> = [(
        "alice".to_owned(),
        UserSettings {
            password: Some(hash.into()),
            groups: vec![],
        },
    )]
    .into();
    let Ok(users) = UserDirectory::start(users, None, WatchOptions::default()) else {
        return;
    };
    let options = LoginOptions {
        cache_ttl: Duration::from_secs(3600),
        workers: 1,
        queue: 8,
        // Off, so that the wrong-token case is not locked out after five tries.
        limits: LimitSettings {
            failures: 0,
            ..LimitSettings::default()
        },
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    let settings = StoreSettings {
        url: format!("sqlite:{}", dir.path().join("bench.db").display()),
        poll_seconds: 2,
        stale_seconds: 60,
    };
    let (Ok(runtime), Ok(logins), Ok(store)) = (
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Logins::new(Arc::new(users), &options),
        Store::open(&settings, Mode::Serve),
    ) else {
        return;
    };
    let scopes = ["repository:alice/*:pull".to_owned()];
    let Ok(created) = runtime.block_on(store.create("alice", false, "bench", &scopes, None)) else {
        return;
    };
    let secret = created.secret.expose_secret().to_owned();
    logins.set_access_tokens(Arc::clone(&store) as Arc<dyn AccessTokens>);
    let Some(wrong) = regauth::store::secret::generate() else {
        return;
    };
    let login = |password: &str| {
        runtime
            .block_on(logins.login(Some(Credentials::new("alice", password)), None, None))
            .is_ok()
    };
    assert!(login("s3cret") && login(&secret) && !login(&wrong));
    c.bench_function("login/cached right password", |b| {
        b.iter(|| login(black_box("s3cret")))
    });
    c.bench_function("login/access token", |b| {
        b.iter(|| login(black_box(&secret)))
    });
    c.bench_function("login/wrong access token", |b| {
        b.iter(|| login(black_box(&wrong)))
    });

    let n = 100_000u64;
    let before = store.counters().queries.load(Ordering::Relaxed);
    let start = Instant::now();
    for _ in 0..n {
        login(&secret);
    }
    let elapsed = start.elapsed();
    let calls = store.counters().queries.load(Ordering::Relaxed) - before;
    println!(
        "store: {n} access-token sign-ins in {:.2} s made {calls} database calls in all \
         ({:.6} per sign-in; the poller's reads every {} s included)",
        elapsed.as_secs_f64(),
        calls as f64 / n as f64,
        settings.poll_seconds
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
