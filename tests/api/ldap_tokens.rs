//! Access tokens owned by LDAP users, against a real `slapd` ([`crate::ldap::Slapd`]) and a
//! SQLite store: the owner's lookup is cached for `auth.cache_seconds` (one directory search
//! per owner per window, however many sign-ins), a change in the directory reaches the token
//! once the window has passed, a directory outage with nothing cached is a 503 that the
//! brute-force limits never count, and concurrent sign-ins of one owner share one lookup that
//! a hung directory ends at `ldap.timeout_seconds`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use regauth::identity::LdapSettings;
use serde_json::Value;

use crate::helpers::TestApp;
use crate::ldap::{BASE, Slapd, app, silent_directory};
use crate::store::{config_file, create, granted, sign_in, sqlite_store, store_url, wait_active};

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";
/// The user search a lookup of alice runs (the default `ldap.user_filter`).
const ALICE_SEARCH: &str = "(uid=alice)";
const SCOPE: &str = "repository:team/app:pull,push";

/// A token for alice (in group `devs`, which the rules of [`app`] give push on `team/*`),
/// seen by the server.
async fn alice_token(app: &TestApp) -> String {
    let config = config_file(app, &store_url(app));
    let secret = create(
        &config,
        &[
            "--user",
            "alice",
            "--name",
            "ci",
            "--scope",
            "repository:team/*:pull,push",
        ],
    );
    wait_active(&app.address, 1).await;
    secret
}

/// Polls the token sign-in until it answers `status` (and, for 200, `actions`), within 20 s.
async fn until(app: &TestApp, secret: &str, status: u16, actions: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = sign_in(&app.address, "alice", secret, SCOPE).await;
        let got = response.status().as_u16();
        if got == status && (status != 200 || granted(response).await == actions) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {got}, expected {status} {actions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_with_an_ldap_owned_token_search_the_directory_once_per_cache_window() {
    let Some(slapd) = Slapd::start() else { return };
    let app = app(slapd.settings(), |s| {
        s.auth.cache_seconds = 600;
        sqlite_store(s);
    })
    .await;
    let secret = alice_token(&app).await;
    assert_eq!(
        slapd.searches(ALICE_SEARCH),
        0,
        "nothing looked alice up yet"
    );

    for _ in 0..8 {
        assert_eq!(
            granted(sign_in(&app.address, "alice", &secret, SCOPE).await).await,
            ["pull", "push"]
        );
    }
    let concurrent: Vec<_> = (0..8)
        .map(|_| {
            let (address, secret) = (app.address.clone(), secret.clone());
            tokio::spawn(
                async move { granted(sign_in(&address, "alice", &secret, SCOPE).await).await },
            )
        })
        .collect();
    for sign_in in concurrent {
        assert_eq!(sign_in.await.unwrap(), ["pull", "push"]);
    }
    // The stats line of a search is written when slapd takes the operation: before the
    // answer that the first sign-in waited for.
    let deadline = Instant::now() + Duration::from_secs(10);
    while slapd.searches(ALICE_SEARCH) == 0 {
        assert!(
            Instant::now() < deadline,
            "slapd logged no search for alice"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        slapd.searches(ALICE_SEARCH),
        1,
        "16 token sign-ins within auth.cache_seconds: one directory search"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_change_reaches_the_token_after_the_window_and_an_outage_is_a_503() {
    let Some(mut slapd) = Slapd::start() else {
        return;
    };
    let app = app(slapd.settings(), |s| {
        s.auth.cache_seconds = 1;
        s.auth.limits.failures = 2;
        sqlite_store(s);
    })
    .await;
    let secret = alice_token(&app).await;
    assert_eq!(
        granted(sign_in(&app.address, "alice", &secret, SCOPE).await).await,
        ["pull", "push"]
    );

    // Alice leaves devs: once the owner's cached lookup is past auth.cache_seconds, her
    // token loses push with her.
    // (groupOfNames needs a member: bob joins first.)
    slapd.add_member("devs", "uid=bob,ou=people,dc=example,dc=org");
    slapd.remove_member("devs", ALICE_DN);
    until(&app, &secret, 200, &["pull"]).await;

    // The directory goes away: once nothing cached answers, the token sign-in is
    // unavailable, as a password login is, and never counted as a failure.
    slapd.stop();
    until(&app, &secret, 503, &[]).await;
    for _ in 0..4 {
        crate::ldap::assert_unavailable(sign_in(&app.address, "alice", &secret, SCOPE).await).await;
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("regauth_auth_failures_total{reason=\"source_unavailable\"}"),
        "{metrics}"
    );
    let unavailable: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("regauth_identity_source_unavailable_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(unavailable >= 5, "each 503 is counted: {metrics}");

    slapd.run();
    // Five 503s with failures: 2 would have locked the token out if they counted.
    until(&app, &secret, 200, &["pull"]).await;
    assert_eq!(app.logins.stats().limited, 0);
}

// Concurrent sign-ins of one owner share one lookup, which runs on the directory's slots
// within ldap.timeout_seconds: against a directory that accepts and never answers, with
// room for two connections, three sign-ins open one connection and all end as 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sign_ins_of_one_owner_share_one_lookup_that_a_hung_directory_ends_at_its_deadline()
 {
    let (port, accepted) = silent_directory();
    let settings = LdapSettings {
        url: format!("ldap://127.0.0.1:{port}"),
        base_dn: BASE.into(),
        timeout_seconds: 2,
        pool_size: 2,
        ..LdapSettings::default()
    };
    let app = app(settings, |s| {
        s.auth.cache_seconds = 60;
        s.auth.limits.failures = 2;
        sqlite_store(s);
    })
    .await;
    let secret = alice_token(&app).await;
    let sign_ins: Vec<_> = (0..3)
        .map(|_| {
            let (address, secret) = (app.address.clone(), secret.clone());
            tokio::spawn(async move {
                let response = sign_in(&address, "alice", &secret, SCOPE).await;
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap();
                (status, body["errors"][0]["code"].clone())
            })
        })
        .collect();
    for sign_in in sign_ins {
        assert_eq!(sign_in.await.unwrap(), (503, Value::from("UNAVAILABLE")));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one lookup for three concurrent sign-ins"
    );
    assert_eq!(app.logins.stats().limited, 0);
}
