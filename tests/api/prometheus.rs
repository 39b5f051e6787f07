//! The metrics as Prometheus itself reads them: `promtool check metrics` on a scrape, and a
//! real `prometheus` server that scrapes regauth and answers a PromQL query.
//!
//! Both need Debian's `prometheus` package; without it they say so and skip, except under
//! `CI`, where a missing tool fails the test (`.ci/run` installs it).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::helpers::{TestApp, spawn_app_with};
use crate::metrics::scrape;
use crate::support::{free_port, skip_or_fail};

/// `name` on PATH, or `None` after saying the test is skipped (a failure under `CI`).
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        skip_or_fail(&format!(
            "`{name}` is not on PATH (Debian: apt-get install -y prometheus)"
        ));
    }
    found
}

async fn app_with_tokens() -> TestApp {
    let app = spawn_app_with(|s| s.token.services = vec!["registry.test".into()]).await;
    app.pull_token().await;
    app
}

#[tokio::test]
async fn promtool_accepts_the_scraped_metrics() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let app = app_with_tokens().await;
    let text = scrape(&app.client, &app.address).await;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("promtool finishes")
        .unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed ({}):\n{}{}\non:\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // promtool prints lint findings even when it exits 0 for some of them.
    let findings = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(findings.trim().is_empty(), "promtool findings:\n{findings}");
}

#[tokio::test]
async fn a_prometheus_server_scrapes_regauth_and_answers_a_rate_query() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let app = app_with_tokens().await;
    let dir = tempfile::tempdir().unwrap();
    let target = app.address.trim_start_matches("http://");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: regauth\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut server = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // sum(rate(regauth_tokens_issued_total[30s])), percent-encoded.
    let query = format!(
        "http://127.0.0.1:{port}/api/v1/query?query=\
         sum%28rate%28regauth_tokens_issued_total%5B30s%5D%29%29"
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    // Until prometheus answers a positive rate.
    loop {
        // Keep tokens flowing so the rate between two scrapes is above zero.
        app.pull_token().await;
        if let Ok(Some(status)) = server.try_wait() {
            panic!(
                "prometheus exited ({status}):\n{}",
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
            );
        }
        if let Ok(response) = app.client.get(&query).send().await {
            let body: Value = response.json().await.unwrap_or_default();
            last = body.to_string();
            let value = body["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok());
            if value.is_some_and(|v| v > 0.0) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no positive rate from prometheus in time; last answer: {last}\nlog:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The target is up as prometheus sees it.
    let up: Value = app
        .client
        .get(format!("http://127.0.0.1:{port}/api/v1/query?query=up"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    server.kill().await.unwrap();
}
