//! `GET /metrics`: counters move with the requests that should move them, key figures are
//! read at scrape time, and `server.admin_listen` moves the operator endpoints off the main
//! listener.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use regauth::clock::{Clock, ManualClock};

use crate::helpers::{TestApp, app_with_alice, spawn_app_with, spawn_app_with_clock};

/// The metrics text from `base` (the main or the admin address).
pub async fn scrape(client: &reqwest::Client, base: &str) -> String {
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    response.text().await.unwrap()
}

/// The value of one series, written as it appears: `name{label="v",...}` or `name`.
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            (name == series).then(|| v.parse::<f64>().unwrap())
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

fn issued(service: &str, grant: &str) -> String {
    format!("regauth_tokens_issued_total{{service=\"{service}\",grant_type=\"{grant}\"}}")
}

fn failures(reason: &str) -> String {
    format!("regauth_auth_failures_total{{reason=\"{reason}\"}}")
}

const GET_COUNT: &str = "regauth_token_request_duration_seconds_count{method=\"GET\"}";
const POST_COUNT: &str = "regauth_token_request_duration_seconds_count{method=\"POST\"}";

async fn post_form(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(format!("{}/token", app.address))
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn issuing_tokens_and_failing_logins_move_their_counters() {
    let app = app_with_alice(|_| {}).await;
    let before = scrape(&app.client, &app.address).await;
    assert_eq!(value(&before, &issued("registry.test", "anonymous")), 0.0);
    assert_eq!(value(&before, &issued("other", "anonymous")), 0.0);

    let query = "service=registry.test&scope=repository:team/app:pull";
    assert_eq!(app.get_token(query).await.status(), 200);
    let basic = |user: &str, password: &str| {
        app.client
            .get(format!("{}/token?{query}", app.address))
            .basic_auth(user, Some(password))
    };
    assert_eq!(basic("alice", "s3cret").send().await.unwrap().status(), 200);
    assert_eq!(basic("alice", "wrong").send().await.unwrap().status(), 401);
    let malformed = app
        .client
        .get(format!("{}/token?{query}", app.address))
        .header("Authorization", "Basic !!!")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 401);
    let mismatch = app
        .client
        .get(format!("{}/token?{query}&account=bob", app.address))
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(mismatch.status(), 401);

    let login = post_form(
        &app,
        &[
            ("grant_type", "password"),
            ("service", "registry.test"),
            ("client_id", "docker"),
            ("access_type", "offline"),
            ("username", "alice"),
            ("password", "s3cret"),
        ],
    )
    .await;
    assert_eq!(login.status(), 200);
    let refresh = login.json::<serde_json::Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (token, status) in [(refresh.as_str(), 200), ("not-a-token", 401)] {
        let response = post_form(
            &app,
            &[
                ("grant_type", "refresh_token"),
                ("service", "registry.test"),
                ("client_id", "docker"),
                ("refresh_token", token),
            ],
        )
        .await;
        assert_eq!(response.status(), status);
    }

    let after = scrape(&app.client, &app.address).await;
    let delta = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(delta(&issued("registry.test", "anonymous")), 1.0);
    assert_eq!(delta(&issued("registry.test", "basic")), 1.0);
    assert_eq!(delta(&issued("registry.test", "password")), 1.0);
    assert_eq!(delta(&issued("registry.test", "refresh_token")), 1.0);
    assert_eq!(delta(&failures("invalid_credentials")), 1.0);
    assert_eq!(delta(&failures("malformed_header")), 1.0);
    assert_eq!(delta(&failures("account_mismatch")), 1.0);
    assert_eq!(delta(&failures("limited")), 0.0);
    assert_eq!(delta("regauth_refresh_tokens_issued_total"), 1.0);
    assert_eq!(delta("regauth_refresh_tokens_refused_total"), 1.0);
    // alice/s3cret is checked once and then cached; alice/wrong is checked once.
    assert_eq!(delta("regauth_password_checks_total"), 2.0);
    assert!(delta("regauth_login_cache_hits_total") >= 2.0, "{after}");
    assert_eq!(delta("regauth_login_cache_misses_total"), 2.0);
    assert_eq!(delta(GET_COUNT), 5.0);
    assert_eq!(delta(POST_COUNT), 3.0);
    assert!(
        value(
            &after,
            "regauth_token_request_duration_seconds_sum{method=\"GET\"}"
        ) > 0.0
    );
}

#[tokio::test]
async fn limited_logins_count_as_limited_failures_and_429s() {
    let app = app_with_alice(|s| {
        s.auth.limits.failures = 1;
        s.auth.limits.backoff_seconds = 60;
    })
    .await;
    let wrong = || {
        app.client
            .get(format!("{}/token?service=registry.test", app.address))
            .basic_auth("alice", Some("wrong"))
            .send()
    };
    assert_eq!(wrong().await.unwrap().status(), 401);
    assert_eq!(wrong().await.unwrap().status(), 429);
    let text = scrape(&app.client, &app.address).await;
    assert_eq!(value(&text, "regauth_requests_limited_total"), 1.0);
    assert_eq!(value(&text, &failures("limited")), 1.0);
    assert_eq!(value(&text, &failures("invalid_credentials")), 1.0);
    assert_eq!(value(&text, "regauth_requests_shed_total"), 0.0);
}

#[tokio::test]
async fn key_figures_and_build_info_are_read_when_scraped() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let app = spawn_app_with_clock(|_| {}, Arc::clone(&clock) as Arc<dyn Clock>).await;
    let version = env!("CARGO_PKG_VERSION");
    let text = scrape(&app.client, &app.address).await;
    assert_eq!(
        value(
            &text,
            &format!("regauth_build_info{{version=\"{version}\"}}")
        ),
        1.0
    );
    let age = value(&text, "regauth_key_age_seconds");
    assert!((0.0..5.0).contains(&age), "{age}");
    assert_eq!(value(&text, "regauth_key_reload_failures_total"), 0.0);
    assert_eq!(value(&text, "regauth_next_key_present"), 0.0);
    assert_eq!(value(&text, "regauth_retired_keys_published"), 0.0);
    let loaded_at = app.keys.status().loaded_at.timestamp() as f64;
    assert_eq!(
        value(&text, "regauth_key_last_reload_timestamp_seconds"),
        loaded_at
    );

    clock.advance(TimeDelta::seconds(3600));
    let text = scrape(&app.client, &app.address).await;
    let age = value(&text, "regauth_key_age_seconds");
    assert!((3600.0..3605.0).contains(&age), "{age}");
}

#[tokio::test]
async fn without_configured_services_unknown_services_get_a_bounded_number_of_series() {
    let app = spawn_app_with(|s| s.token.services.clear()).await;
    for i in 0..regauth::telemetry::metrics::MAX_SERVICE_LABELS + 3 {
        let response = app.get_token(&format!("service=svc{i}.test")).await;
        assert_eq!(response.status(), 200);
    }
    let text = scrape(&app.client, &app.address).await;
    assert_eq!(value(&text, &issued("svc0.test", "anonymous")), 1.0);
    assert_eq!(value(&text, &issued("other", "anonymous")), 3.0);
    let series = text
        .lines()
        .filter(|l| l.starts_with("regauth_tokens_issued_total{"))
        .count();
    assert_eq!(
        series,
        (regauth::telemetry::metrics::MAX_SERVICE_LABELS + 1) * 4
    );
}

#[tokio::test]
async fn admin_listen_takes_metrics_and_readyz_off_the_main_port_and_drains_with_it() {
    let app = spawn_app_with(|s| {
        s.server.admin_listen = Some("127.0.0.1:0".into());
        s.server.shutdown_delay_seconds = 2;
    })
    .await;
    let admin = app.admin_address.clone().expect("an admin listener");
    assert!(!app.pull_token().await.is_empty());

    for path in ["/metrics", "/readyz"] {
        let main = app.get(path).await;
        assert_eq!(main.status(), 404, "{path} on the main listener");
        assert_eq!(main.headers()["content-type"], "application/json");
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
    let get = |path: &str| app.client.get(format!("{admin}{path}")).send();
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/token?service=x").await.unwrap().status(), 404);
    // The admin listener tags its answers like the main one: a caller's id comes back, and
    // a fresh one is made otherwise.
    let tagged = app
        .client
        .get(format!("{admin}/readyz"))
        .header("X-Request-Id", "scrape-42")
        .send()
        .await
        .unwrap();
    assert_eq!(tagged.headers()["x-request-id"], "scrape-42");
    let untagged = get("/metrics").await.unwrap();
    assert!(!untagged.headers()["x-request-id"].is_empty());
    let text = scrape(&app.client, &admin).await;
    assert_eq!(value(&text, GET_COUNT), 1.0);

    app.shutdown.begin();
    let deadline = Instant::now() + Duration::from_secs(20);
    let fresh = reqwest::Client::new();
    // During the drain delay the admin listener still answers, and says not ready.
    let draining = fresh.get(format!("{admin}/readyz")).send().await.unwrap();
    assert_eq!(draining.status(), 503);
    loop {
        let main_down = fresh
            .get(format!("{}/healthz", app.address))
            .send()
            .await
            .is_err();
        let admin_down = fresh.get(format!("{admin}/healthz")).send().await.is_err();
        if main_down && admin_down {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still serving after shutdown: main down {main_down}, admin down {admin_down}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn without_admin_listen_everything_is_on_the_main_listener() {
    let app = spawn_app_with(|_| {}).await;
    assert!(app.admin_address.is_none());
    assert_eq!(app.get("/readyz").await.status(), 200);
    let text = scrape(&app.client, &app.address).await;
    assert!(
        text.contains("# TYPE regauth_tokens_issued_total counter"),
        "{text}"
    );
}
