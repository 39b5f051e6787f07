//! `regauth probe URL`, the container health check, run as a binary against a live app.

use std::time::Duration;

use crate::helpers::spawn_app_with;

const BIN: &str = env!("CARGO_BIN_EXE_regauth");

struct Probed {
    success: bool,
    stdout: String,
    stderr: String,
}

async fn probe(url: &str) -> Probed {
    probe_with(&[url], &[]).await
}

/// Runs the binary without blocking the runtime the app is served on.
async fn probe_with(args: &[&str], envs: &[(&str, &str)]) -> Probed {
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(BIN)
            .args(["probe", "--timeout", "5"])
            .args(args)
            .env_remove("REGAUTH_CONFIG")
            .envs(envs.iter().copied())
            .output(),
    )
    .await
    .expect("probe exits")
    .expect("probe runs");
    Probed {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_exits_zero_on_healthz_and_fails_with_the_status_line_on_a_404() {
    let app = spawn_app_with(|_| {}).await;
    let ok = probe(&format!("{}/healthz", app.address)).await;
    assert!(ok.success, "{}", ok.stderr);
    assert!(ok.stdout.starts_with("HTTP/1.1 200"), "{}", ok.stdout);

    let missing = probe(&format!("{}/no-such-path", app.address)).await;
    assert!(!missing.success);
    assert_eq!(missing.stderr.lines().count(), 1, "{}", missing.stderr);
    assert!(missing.stderr.contains("404"), "{}", missing.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_fails_on_readyz_while_the_server_drains() {
    let app = spawn_app_with(|s| {
        s.server.shutdown_delay_seconds = 30;
        s.server.shutdown_timeout_seconds = 1;
    })
    .await;
    let readyz = format!("{}/readyz", app.address);
    let ready = probe(&readyz).await;
    assert!(ready.success, "{}", ready.stderr);
    app.shutdown.begin();
    let draining = probe(&readyz).await;
    assert!(!draining.success);
    assert!(draining.stderr.contains("503"), "{}", draining.stderr);
    // Liveness stays green through the drain: the process is fine, it is just leaving.
    let healthz = probe(&format!("{}/healthz", app.address)).await;
    assert!(healthz.success, "{}", healthz.stderr);
}

#[tokio::test]
async fn probe_says_connection_refused_when_nothing_listens() {
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = probe(&format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("connect") && refused.stderr.contains("refused"),
        "{}",
        refused.stderr
    );
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
}

#[tokio::test]
async fn probe_refuses_https_urls_with_a_clear_reason() {
    let out = probe("https://127.0.0.1:1/healthz").await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("https is not supported"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_without_a_url_checks_healthz_on_the_listener_the_settings_name() {
    let app = spawn_app_with(|_| {}).await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    // As in the image: the listener comes from the environment, on the unspecified address.
    let listen = format!("0.0.0.0:{port}");
    let ok = probe_with(&[], &[("REGAUTH_SERVER__LISTEN", &listen)]).await;
    assert!(ok.success, "{}", ok.stderr);
    assert!(ok.stdout.starts_with("HTTP/1.1 200"), "{}", ok.stdout);

    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = format!("0.0.0.0:{}", elsewhere.local_addr().unwrap().port());
    drop(elsewhere);
    let refused = probe_with(&[], &[("REGAUTH_SERVER__LISTEN", &other)]).await;
    assert!(!refused.success, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("/healthz") || refused.stderr.contains("refused"),
        "{}",
        refused.stderr
    );
}
