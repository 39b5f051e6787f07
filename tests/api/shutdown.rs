//! Stopping without dropping requests, over real sockets: in process through
//! `Shutdown::begin`, and the real binary under SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::{signal, spawn_app_with, start_serve_logging};
use crate::support::wait_for_async;

/// What one request on a keep-alive connection came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A full response (200, or 503 at the very end); `close` when it said
    /// `Connection: close`.
    Answered { close: bool },
    /// The connection was closed or reset after the request was written: a dropped request.
    Dropped,
}

/// Writes one request on `stream` and reads one response (bodies are small and sized).
fn exchange(stream: &mut TcpStream, host: &str) -> Outcome {
    let request = format!(
        "GET /token?service=registry.test&scope=repository:a:pull HTTP/1.1\r\nHost: {host}\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return Outcome::Dropped;
    }
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return Outcome::Dropped,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => head.push_str(&line.to_ascii_lowercase()),
        }
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return Outcome::Dropped;
    }
    // 503 is the answer a connection queued in the kernel at the very end gets.
    assert!(
        head.starts_with("http/1.1 200") || head.starts_with("http/1.1 503"),
        "{head}"
    );
    Outcome::Answered {
        close: head.contains("connection: close"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_turns_readyz_503_closes_keep_alive_connections_cleanly_and_drops_nothing() {
    let app = spawn_app_with(|s| {
        s.server.shutdown_delay_seconds = 2;
        s.server.shutdown_timeout_seconds = 5;
    })
    .await;
    let host = app.address.trim_start_matches("http://").to_owned();
    let dropped = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let closed_cleanly = Arc::new(AtomicUsize::new(0));
    // The load balancer in front: it routes new connections until it sees /readyz fail.
    let routed = Arc::new(AtomicBool::new(true));
    // Eight keep-alive clients; told to close, they reconnect while the balancer routes.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (host, dropped, answered, closed_cleanly, routed) = (
                host.clone(),
                Arc::clone(&dropped),
                Arc::clone(&answered),
                Arc::clone(&closed_cleanly),
                Arc::clone(&routed),
            );
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                'connect: while Instant::now() < deadline && routed.load(Ordering::Acquire) {
                    let mut stream = TcpStream::connect(&host).expect("listening while routed");
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    while Instant::now() < deadline {
                        match exchange(&mut stream, &host) {
                            Outcome::Answered { close } => {
                                answered.fetch_add(1, Ordering::Relaxed);
                                if close {
                                    closed_cleanly.fetch_add(1, Ordering::Relaxed);
                                    continue 'connect;
                                }
                            }
                            Outcome::Dropped => {
                                dropped.fetch_add(1, Ordering::Relaxed);
                                continue 'connect;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    wait_for_async(
        Duration::from_secs(10),
        Duration::from_millis(10),
        async || (answered.load(Ordering::Relaxed) >= 200).then_some(()),
        || "no traffic".into(),
    )
    .await;
    assert_eq!(
        closed_cleanly.load(Ordering::Relaxed),
        0,
        "keep-alive before shutdown"
    );
    let at_begin = answered.load(Ordering::Relaxed);
    app.shutdown.begin();
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "readyz turns 503 at once");
    // The balancer probes a few times before it stops routing; traffic goes on meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    routed.store(false, Ordering::Release);
    for client in clients {
        client.join().unwrap();
    }
    // A straggler that still reaches the listener during the delay is served.
    let mut late = TcpStream::connect(&host).expect("the listener stays open for the delay");
    late.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        exchange(&mut late, &host),
        Outcome::Answered { close: true }
    );
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        0,
        "no request that reached the server was dropped"
    );
    assert!(
        answered.load(Ordering::Relaxed) > at_begin,
        "requests kept being answered after shutdown began"
    );
    assert!(
        closed_cleanly.load(Ordering::Relaxed) >= 8,
        "each connection was told to close"
    );
    // After the delay the listener closes: connections are refused, not reset.
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(&host).is_ok() {
        assert!(Instant::now() < deadline, "the listener never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn sigterm_drains_then_exits_zero_and_client_protocol_errors_are_not_logged_as_errors() {
    let (mut child, addr, log) = start_serve_logging(
        &[
            ("REGAUTH_SERVER__SHUTDOWN_DELAY_SECONDS", "1"),
            ("RUST_LOG", "info"),
        ],
        None,
        &[],
    );
    // A request line that is not HTTP, and one far over the access log's cut.
    let mut garbage = TcpStream::connect(&addr).unwrap();
    garbage
        .write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
        .unwrap();
    let mut ignored = Vec::new();
    let _ = garbage.read_to_end(&mut ignored);
    let long_path = format!("/token?service=x&pad={}", "a".repeat(4000));
    let mut long = TcpStream::connect(&addr).unwrap();
    write!(
        long,
        "GET {long_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    long.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    signal(&child, "TERM");
    // During the drain delay the listener still answers, with readyz at 503 once the signal
    // is handled.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut probe = TcpStream::connect(&addr).expect("still listening during the delay");
        write!(
            probe,
            "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut ready = String::new();
        probe.read_to_string(&mut ready).unwrap();
        if ready.starts_with("HTTP/1.1 503") {
            break;
        }
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        assert!(Instant::now() < deadline, "readyz never turned 503");
        std::thread::sleep(Duration::from_millis(20));
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "regauth did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let lines = log.rest();
    let text = lines.join("\n");
    assert!(!lines.iter().any(|l| l.contains(" ERROR ")), "{text}");
    let access = lines
        .iter()
        .find(|l| l.contains("pad=aaaa"))
        .expect("the long request is in the access log");
    assert!(
        access.len() < 1300,
        "the request line is cut: {} bytes",
        access.len()
    );
    assert!(text.contains("SIGTERM received"), "{text}");
}
