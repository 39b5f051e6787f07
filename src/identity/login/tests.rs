use std::net::Ipv4Addr;

use super::*;
use crate::identity::tests::{Scripted, directory};

const A: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
const B: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));

fn options(cache_ms: u64, workers: usize, queue: usize, failures: u32) -> LoginOptions {
    LoginOptions {
        cache_ttl: Duration::from_millis(cache_ms),
        workers,
        queue,
        limits: LimitSettings {
            failures,
            ..LimitSettings::default()
        },
    }
}

fn logins(options: &LoginOptions) -> Arc<Logins> {
    let users = Arc::new(directory(
        &[("alice", "s3cret", &["dev"]), ("bob", "hunter2", &[])],
        None,
    ));
    Arc::new(Logins::new(users, options).unwrap())
}

fn creds(user: &str, password: &str) -> Option<Credentials> {
    Some(Credentials::new(user, password))
}

#[tokio::test]
async fn users_sign_in_with_their_password_and_the_account_must_match() {
    let l = logins(&options(60_000, 2, 8, 5));
    let alice = l
        .login(creds("alice", "s3cret"), Some("alice"), A)
        .await
        .unwrap();
    assert_eq!(
        (alice.subject(), alice.groups()),
        ("alice", &["dev".to_owned()][..])
    );
    assert_eq!(
        l.login(creds("alice", "wrong"), None, A).await,
        Err(LoginError::Invalid(AuthError::InvalidCredentials))
    );
    assert_eq!(
        l.login(creds("mallory", "s3cret"), None, A).await,
        Err(LoginError::Invalid(AuthError::InvalidCredentials))
    );
    assert_eq!(
        l.login(creds("alice", "s3cret"), Some("bob"), A).await,
        Err(LoginError::Invalid(AuthError::AccountMismatch))
    );
    assert!(l.login(None, None, A).await.unwrap().is_anonymous());
}

#[tokio::test]
async fn without_any_users_credentials_are_ignored() {
    let users = Arc::new(directory(&[], None));
    let l = Logins::new(users, &options(60_000, 1, 1, 5)).unwrap();
    let who = l
        .login(creds("alice", "x"), Some("alice"), A)
        .await
        .unwrap();
    assert!(who.is_anonymous());
    assert_eq!(l.stats().checks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_logins_with_the_same_credentials_share_one_check() {
    let l = logins(&options(60_000, 2, 64, 5));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let l = Arc::clone(&l);
            tokio::spawn(async move { l.login(creds("alice", "s3cret"), None, A).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().subject(), "alice");
    }
    assert_eq!(l.stats().checks, 1, "{:?}", l.stats());
    l.login(creds("alice", "s3cret"), None, B).await.unwrap();
    let stats = l.stats();
    assert_eq!(stats.checks, 1, "a later login is a cache hit: {stats:?}");
    assert!(stats.cache_hits >= 1);
}

#[tokio::test]
async fn failures_are_never_cached_and_a_new_password_is_checked() {
    let l = logins(&options(60_000, 1, 8, 0));
    for _ in 0..3 {
        assert!(l.login(creds("alice", "wrong"), None, A).await.is_err());
    }
    assert_eq!(l.stats().checks, 3);
    assert!(l.login(creds("alice", "s3cret"), None, A).await.is_ok());
    assert_eq!(l.stats().checks, 4);
}

#[tokio::test]
async fn without_a_cache_every_login_is_checked() {
    let l = logins(&options(0, 1, 8, 0));
    for _ in 0..3 {
        assert!(l.login(creds("alice", "s3cret"), None, A).await.is_ok());
    }
    assert_eq!(l.stats().checks, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_sheds_instead_of_queueing_without_bound() {
    // One worker and one waiting place: of 40 distinct checks at once, most are shed.
    let l = logins(&options(60_000, 1, 1, 0));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let l = Arc::clone(&l);
            tokio::spawn(async move { l.login(creds("bob", &format!("guess{i}")), None, A).await })
        })
        .collect();
    let mut busy = 0;
    for t in tasks {
        match t.await.unwrap() {
            Err(LoginError::Busy) => busy += 1,
            Err(LoginError::Invalid(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let stats = l.stats();
    assert!(busy > 0, "{stats:?}");
    assert_eq!(stats.shed, busy);
    assert_eq!(
        stats.checks + busy,
        40,
        "every request was either checked or shed"
    );
}

#[tokio::test]
async fn the_limit_refuses_one_ip_for_one_name_without_a_check_and_a_success_resets_it() {
    let l = logins(&options(60_000, 1, 8, 3));
    for _ in 0..3 {
        assert!(matches!(
            l.login(creds("alice", "wrong"), None, A).await,
            Err(LoginError::Invalid(_))
        ));
    }
    let checks = l.stats().checks;
    // Locked out, even with the right password: the limiter must not be an oracle.
    assert!(matches!(
        l.login(creds("alice", "s3cret"), None, A).await,
        Err(LoginError::Limited { retry_after }) if retry_after > Duration::ZERO
    ));
    assert_eq!(l.stats().checks, checks, "a refused attempt runs no check");
    assert_eq!(l.stats().limited, 1);
    // Another IP, and another name from the same IP, are unaffected.
    assert!(l.login(creds("alice", "s3cret"), None, B).await.is_ok());
    assert!(l.login(creds("bob", "hunter2"), None, A).await.is_ok());
    // Unknown names are limited exactly like known ones.
    for _ in 0..3 {
        let _ = l.login(creds("nobody", "x"), None, B).await;
    }
    assert!(matches!(
        l.login(creds("nobody", "x"), None, B).await,
        Err(LoginError::Limited { .. })
    ));
}

#[tokio::test]
async fn a_success_clears_earlier_failures() {
    let l = logins(&options(60_000, 1, 8, 3));
    for _ in 0..2 {
        let _ = l.login(creds("alice", "wrong"), None, A).await;
    }
    assert!(l.login(creds("alice", "s3cret"), None, A).await.is_ok());
    for _ in 0..2 {
        let _ = l.login(creds("alice", "wrong"), None, A).await;
    }
    assert!(
        l.login(creds("alice", "s3cret"), None, A).await.is_ok(),
        "two failures after a success are under the limit of three"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_in_use_is_refreshed_before_it_expires() {
    // A life long enough that the hit below lands between three quarters of it (when a hit
    // starts a refresh) and its end (when it would be a miss) on a loaded machine too; the
    // counters then say which it was, so an overshoot fails instead of passing unrefreshed.
    let ttl = Duration::from_secs(4);
    let l = logins(&options(4_000, 1, 8, 0));
    l.login(creds("alice", "s3cret"), None, A).await.unwrap();
    let first = Instant::now();
    assert_eq!((l.stats().checks, l.stats().cache_misses), (1, 1));
    tokio::time::sleep_until((first + ttl.mul_f64(0.78)).into()).await;
    l.login(creds("alice", "s3cret"), None, A).await.unwrap();
    let hit = l.stats();
    assert_eq!(
        (hit.cache_hits, hit.cache_misses),
        (1, 1),
        "answered from the entry, {:?} after it was cached: {hit:?}",
        first.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while l.stats().checks < 2 {
        assert!(Instant::now() < deadline, "no refresh ran: {:?}", l.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(l.stats().cache_misses, 1, "a background check, not a miss");
    // Past the first entry's end, the refreshed entry answers.
    tokio::time::sleep_until((first + ttl.mul_f64(1.1)).into()).await;
    l.login(creds("alice", "s3cret"), None, A).await.unwrap();
    let after = l.stats();
    assert_eq!((after.cache_hits, after.cache_misses), (2, 1), "{after:?}");
    assert!(
        after.checks <= 3,
        "at most one more background refresh: {after:?}"
    );
}

fn with_ldap(cache_ms: u64, failures: u32, grace: Duration) -> (Arc<Logins>, Arc<Scripted>) {
    let users = Arc::new(directory(&[("alice", "s3cret", &["dev"])], None));
    let ldap = Arc::new(Scripted::new("ldap", &[("carol", "pw", &["ops"])], grace));
    let users_source: Arc<dyn IdentitySource> = users.clone();
    let sources = Sources::standard(None, users_source, Some(ldap.clone()));
    let l = Logins::with_sources(users, sources, &options(cache_ms, 2, 8, failures)).unwrap();
    (Arc::new(l), ldap)
}

#[tokio::test]
async fn an_unavailable_source_answers_unavailable_and_never_counts_as_a_failed_login() {
    let (l, ldap) = with_ldap(60_000, 2, Duration::ZERO);
    ldap.set_down(true);
    for _ in 0..5 {
        assert_eq!(
            l.login(creds("carol", "pw"), None, A).await,
            Err(LoginError::Unavailable("ldap".into()))
        );
    }
    assert_eq!(l.stats().unavailable, 5);
    assert_eq!(l.stats().limited, 0);
    ldap.set_down(false);
    let carol = l.login(creds("carol", "pw"), None, A).await.unwrap();
    assert_eq!(carol.source(), "ldap", "no lockout after the outage");
    // Wrong passwords do count.
    for _ in 0..2 {
        assert!(matches!(
            l.login(creds("carol", "bad"), None, A).await,
            Err(LoginError::Invalid(_))
        ));
    }
    assert!(matches!(
        l.login(creds("carol", "pw"), None, A).await,
        Err(LoginError::Limited { .. })
    ));
}

#[tokio::test]
async fn without_a_grace_an_expired_login_is_not_used_during_an_outage() {
    let (l, ldap) = with_ldap(200, 0, Duration::ZERO);
    l.login(creds("carol", "pw"), None, A).await.unwrap();
    ldap.set_down(true);
    assert!(
        l.login(creds("carol", "pw"), None, A).await.is_ok(),
        "a fresh entry answers without asking the source"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        l.login(creds("carol", "pw"), None, A).await,
        Err(LoginError::Unavailable("ldap".into()))
    );
    assert_eq!(l.stats().stale_answers, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_the_grace_an_expired_login_answers_only_while_its_source_is_down() {
    let (l, ldap) = with_ldap(200, 0, Duration::from_secs(30));
    l.login(creds("carol", "pw"), None, A).await.unwrap();
    ldap.set_down(true);
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The first use after expiry asks the source, finds it down, and answers from the entry.
    let calls = ldap.calls();
    let carol = l.login(creds("carol", "pw"), None, A).await.unwrap();
    assert_eq!(carol.source(), "ldap");
    assert_eq!(ldap.calls(), calls + 1);
    // Now the source is known down: the entry answers at once.
    for _ in 0..5 {
        assert!(l.login(creds("carol", "pw"), None, A).await.is_ok());
    }
    assert!(
        ldap.calls() <= calls + 2,
        "re-checks are spaced out: {}",
        ldap.calls()
    );
    assert_eq!(l.stats().stale_answers, 6);
    // A password never seen before is not in the cache: unavailable.
    assert_eq!(
        l.login(creds("carol", "other"), None, A).await,
        Err(LoginError::Unavailable("ldap".into()))
    );
    // The source comes back; a later use (after the probe interval) re-checks and the entry
    // is fresh again.
    ldap.set_down(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while l.sources().is_down("ldap") {
        assert!(Instant::now() < deadline, "the source was never re-checked");
        l.login(creds("carol", "pw"), None, A).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = l.stats();
    l.login(creds("carol", "pw"), None, A).await.unwrap();
    let after = l.stats();
    assert_eq!(after.cache_hits, before.cache_hits + 1, "{after:?}");
    assert_eq!(after.stale_answers, before.stale_answers);
}

#[tokio::test]
async fn within_the_grace_a_source_that_answers_decides() {
    let (l, ldap) = with_ldap(200, 0, Duration::from_secs(30));
    l.login(creds("carol", "pw"), None, A).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let calls = ldap.calls();
    assert!(l.login(creds("carol", "pw"), None, A).await.is_ok());
    assert_eq!(
        ldap.calls(),
        calls + 1,
        "an expired entry with the source up is re-checked"
    );
    assert_eq!(l.stats().stale_answers, 0);
}
