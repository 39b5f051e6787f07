//! Bounded parsing over real sockets: the 16 000-action scope and the other oversized
//! requests are refused with JSON before any work, repeats collapse, the largest legitimate
//! request still gets a token, and the audit log never holds an oversized line. (HTTP/2 is
//! in `tls.rs`, where the HTTPS listener is set up.)

use std::path::PathBuf;

use serde_json::Value;

use crate::audit::wait_for_lines;
use crate::helpers::{TestApp, app_with_alice, claims};

/// `n` distinct actions, `a,b,...,z,aa,ab,...`, the shape of the attack.
pub fn distinct_actions(n: usize) -> String {
    (0..n)
        .map(|mut i| {
            let mut word = Vec::new();
            loop {
                word.push(b'a' + (i % 26) as u8);
                i /= 26;
                if i == 0 {
                    break;
                }
                i -= 1;
            }
            String::from_utf8(word).unwrap()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The attack: one anonymous `GET /token` whose one scope carries 16 000 distinct
/// actions, about 64 KiB.
pub fn sixteen_thousand_actions() -> String {
    let query = format!(
        "service=registry.test&scope=repository:team/app:{}",
        distinct_actions(16_000)
    );
    assert!(query.len() > 60 * 1024, "{}", query.len());
    query
}

async fn audited() -> (TestApp, PathBuf) {
    let app = app_with_alice(|s| {
        s.audit.enabled = true;
        s.audit.output = s.key.path.with_file_name("audit.log").display().to_string();
    })
    .await;
    let path = app.dir.path().join("audit.log");
    (app, path)
}

/// Status and error code of a JSON error answer (fails on anything else).
async fn json_error(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "status {status}"
    );
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["errors"][0]["code"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_sixteen_thousand_action_scope_and_scopes_over_the_action_cap_are_json_errors() {
    let (app, path) = audited().await;
    let url = |query: &str| format!("{}/token?{query}", app.address);
    // The whole attack is over the query limit: refused before it is parsed at all.
    let response = app
        .client
        .get(url(&sixteen_thousand_actions()))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_error(response).await, (414, "URI_TOO_LONG".into()));
    // Within the query limit, the action cap refuses what the old parser spent its time on:
    // 6 000 distinct actions (24 KiB) in one scope, 17 in one scope, 17 over repeats.
    let spread: String = distinct_actions(17)
        .split(',')
        .map(|a| format!("&scope=repository:team/app:{a}"))
        .collect();
    for query in [
        format!(
            "service=registry.test&scope=repository:team/app:{}",
            distinct_actions(6_000)
        ),
        format!(
            "service=registry.test&scope=repository:team/app:{}",
            distinct_actions(17)
        ),
        format!("service=registry.test{spread}"),
    ] {
        assert!(query.len() <= regauth::http::limits::MAX_QUERY_BYTES);
        let response = app
            .client
            .get(url(&query))
            .basic_auth("alice", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            json_error(response).await,
            (400, "INVALID_SCOPE".into()),
            "{}",
            &query[..80]
        );
    }
    assert_eq!(
        app.logins.stats().checks,
        0,
        "refused before any password check"
    );

    // A request that is answered after them, so every line before it is written too.
    let ok = app
        .client
        .get(url("service=registry.test&scope=repository:team/app:pull"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // The three scope refusals and the token are audited; the 414 never reached a handler.
    let lines = wait_for_lines(&path, 4);
    assert_eq!(lines.len(), 4, "{lines:?}");
    for line in &lines[..3] {
        assert_eq!(line["outcome"], "refused");
        assert_eq!(line["error"], "INVALID_SCOPE");
        assert_eq!(line["reason"], "invalid_scope");
    }
    let text = std::fs::read_to_string(&path).unwrap();
    for line in text.lines() {
        assert!(
            line.len() < regauth::telemetry::audit::MAX_LINE_BYTES,
            "{} bytes",
            line.len()
        );
    }
    assert!(
        !text.contains(&distinct_actions(17)),
        "no action list in full"
    );
}

#[tokio::test]
async fn repeated_actions_collapse_and_the_largest_legitimate_request_gets_a_token() {
    let app = app_with_alice(|_| {}).await;
    // 150 repeats of pull in one scope, and the same resource asked 100 times more.
    let repeats = vec!["pull"; 150].join(",");
    let again = "&scope=repository:team/app:pull".repeat(100);
    let response = app
        .get_token(&format!(
            "service=registry.test&scope=repository:team/app:{repeats}{again}"
        ))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let access = &claims(body["token"].as_str().unwrap())["access"];
    assert_eq!(access.as_array().unwrap().len(), 1, "{access}");
    assert_eq!(access[0]["actions"], serde_json::json!(["pull"]));

    // 64 scopes (the scope limit) of ~256 bytes each, percent-encoded as docker sends them.
    let scopes: String = (0..regauth::token::scope::MAX_SCOPES)
        .map(|i| {
            let name = format!("team-{i:02}/{}", "a".repeat(230));
            format!(
                "&scope=repository%3A{}%3Apull%2Cpush",
                name.replace('/', "%2F")
            )
        })
        .collect();
    let query = format!("service=registry.test{scopes}");
    assert!(query.len() > 16 * 1024, "{}", query.len());
    let response = app
        .client
        .get(format!("{}/token?{query}", app.address))
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let access = &claims(body["token"].as_str().unwrap())["access"];
    assert_eq!(
        access.as_array().unwrap().len(),
        regauth::token::scope::MAX_SCOPES
    );
}

#[tokio::test]
async fn an_oversized_path_query_header_or_header_list_is_a_json_414_or_431() {
    use regauth::http::limits::{
        MAX_HEADER_LIST_BYTES, MAX_HEADER_VALUE_BYTES, MAX_PATH_BYTES, MAX_QUERY_BYTES,
    };
    let app = app_with_alice(|_| {}).await;
    let token = format!("{}/token", app.address);
    let long_path = format!("{}/{}", app.address, "p".repeat(MAX_PATH_BYTES));
    let query_over = format!(
        "{token}?service=registry.test&pad={}",
        "q".repeat(MAX_QUERY_BYTES)
    );
    let value = |n: usize| "v".repeat(n);
    let many = (0..MAX_HEADER_LIST_BYTES / MAX_HEADER_VALUE_BYTES + 1).fold(
        app.client.get(format!("{token}?service=registry.test")),
        |r, i| r.header(format!("x-pad-{i}"), value(MAX_HEADER_VALUE_BYTES)),
    );
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("long path", app.client.get(&long_path), 414, "URI_TOO_LONG"),
        (
            "long query",
            app.client.get(&query_over),
            414,
            "URI_TOO_LONG",
        ),
        (
            "long header value",
            app.client
                .get(format!("{token}?service=registry.test"))
                .header("x-pad", value(MAX_HEADER_VALUE_BYTES + 1)),
            431,
            "HEADERS_TOO_LARGE",
        ),
        (
            "long Authorization",
            app.client
                .get(format!("{token}?service=registry.test"))
                .basic_auth("alice", Some(value(MAX_HEADER_VALUE_BYTES))),
            431,
            "HEADERS_TOO_LARGE",
        ),
        ("header list", many, 431, "HEADERS_TOO_LARGE"),
        (
            "long POST query",
            app.client
                .post(&query_over)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=password"),
            414,
            "URI_TOO_LONG",
        ),
    ];
    for (what, request, status, code) in cases {
        let response = request.send().await.unwrap();
        assert!(response.headers().contains_key("x-request-id"), "{what}");
        assert_eq!(json_error(response).await, (status, code.into()), "{what}");
    }
    // Each limit admits its own size.
    let at_limit = format!(
        "{token}?service=registry.test&pad={}",
        "q".repeat(MAX_QUERY_BYTES - "service=registry.test&pad=".len())
    );
    let response = app
        .client
        .get(&at_limit)
        .header("x-pad", value(MAX_HEADER_VALUE_BYTES))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.logins.stats().checks, 0);
}

#[tokio::test]
async fn a_request_head_over_actix_own_limit_gets_a_431_and_a_closed_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = app_with_alice(|_| {}).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    // 200 KiB of query: past actix's 128 KiB request-head buffer.
    let head = format!(
        "GET /token?service=registry.test&pad={} HTTP/1.1\r\nHost: t\r\n\r\n",
        "q".repeat(200 * 1024)
    );
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // The server may answer and close before it has read everything: a failed write is fine.
    let _ = stream.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the connection is closed, not left hanging");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // And the server goes on answering.
    assert_eq!(app.get_token("service=registry.test").await.status(), 200);
}

#[tokio::test]
async fn the_dropped_audit_line_counter_is_exported_from_the_start() {
    let (app, _path) = audited().await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.lines().any(|l| l == "regauth_audit_dropped_total 0"),
        "{text}"
    );
    assert_eq!(app.audit.as_ref().unwrap().dropped(), 0);
}
