//! Stopping without dropping a request: on SIGTERM or SIGINT, `/readyz` turns 503 at once
//! and every response says `Connection: close`, while the listener keeps serving for
//! `server.shutdown_delay_seconds` (load balancers take that long to stop sending); then the
//! listener is sealed and closed, and requests in flight get up to
//! `server.shutdown_timeout_seconds` to finish. A second signal skips the rest of the delay.
//!
//! Closing a listening socket resets every connection the kernel has completed but the
//! server has not accepted yet: those clients sent a request and get a reset. [`Seal`] avoids
//! that: it shrinks the accept queue to its one mandatory slot and fills that slot with a
//! connection of its own, so the kernel stops completing handshakes (clients later see their
//! connection refused, before sending anything), and answers with a 503 any connection that
//! was already queued (over TLS when the listener serves HTTPS, see [`Seal::with_tls`]).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Shared shutdown state: set once, read by every response.
#[derive(Debug, Default)]
pub struct Shutdown {
    draining: AtomicBool,
    requested: Notify,
}

impl Shutdown {
    /// True once shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Begins shutdown as a signal would (for tests and embedding).
    pub fn begin(&self) {
        self.draining.store(true, Ordering::Release);
        self.requested.notify_one();
    }

    /// Waits for SIGTERM, SIGINT or [`Shutdown::begin`], then for the drain delay (cut short
    /// by a second signal). Returns when the listener should close.
    pub async fn wait(&self, delay: Duration) {
        let mut signals = Signals::new();
        tokio::select! {
            name = signals.next() => log::info!("{name} received"),
            () = self.requested.notified() => {}
        }
        self.draining.store(true, Ordering::Release);
        log::info!(
            "shutting down: /readyz answers 503 and connections close after their next response; \
             the listener stays open for {} s",
            delay.as_secs()
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            name = signals.next() => log::info!("{name} received again: closing the listener now"),
        }
    }
}

/// SIGTERM and SIGINT; a signal that cannot be installed is never received.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let install = |kind, name| {
                signal(kind)
                    .map_err(|e| log::warn!("cannot handle {name}: {e}"))
                    .ok()
            };
            Signals {
                term: install(SignalKind::terminate(), "SIGTERM"),
                int: install(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(&mut self.term) => "SIGTERM",
                () = recv(&mut self.int) => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// A second handle on the listening socket, to seal it before the server closes it.
pub struct Seal {
    socket: socket2::Socket,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// What sealing left behind: the connection that holds the queue slot. Drop it after the
/// server has closed its listener.
#[derive(Debug)]
pub struct Sealed {
    _slot: Option<TcpStream>,
    /// Connections that were queued before the seal, answered 503.
    pub answered: usize,
}

/// How long sealing may take, answering the queued connections included: a slow client
/// cannot hold the shutdown longer.
const SEAL_TIMEOUT: Duration = Duration::from_secs(2);
/// The most time one queued connection gets to send its request (and finish the TLS
/// handshake), all reads together.
const READ_BUDGET: Duration = Duration::from_millis(500);
/// The most time writing the 503 to one queued connection may take, all writes together.
const WRITE_BUDGET: Duration = Duration::from_millis(500);

impl Seal {
    /// Keeps a handle on `listener` (the server gets the listener itself).
    pub fn new(listener: &TcpListener) -> std::io::Result<Seal> {
        Ok(Seal {
            socket: socket2::Socket::from(listener.try_clone()?),
            tls: None,
        })
    }

    /// For an HTTPS listener: queued connections get their 503 after a TLS handshake with
    /// `config` (which must offer only `http/1.1` by ALPN).
    pub fn with_tls(mut self, config: Option<std::sync::Arc<rustls::ServerConfig>>) -> Seal {
        self.tls = config;
        self
    }

    /// Shrinks the kernel's accept queue to its one mandatory slot, while the server still
    /// accepts: from now on few connections can be waiting when it stops.
    pub fn shrink(&self) {
        if let Err(e) = self.socket.listen(0) {
            log::warn!(
                "cannot shrink the listen queue ({e}); connections queued at close may be reset"
            );
        }
    }

    /// Stops the kernel completing new connections. Call it once the server has stopped
    /// accepting (paused): it answers what is queued itself. Blocking; bounded by
    /// `SEAL_TIMEOUT`.
    pub fn seal(self) -> Sealed {
        let mut sealed = Sealed {
            _slot: None,
            answered: 0,
        };
        let Some(addr) = self.socket.local_addr().ok().and_then(|a| a.as_socket()) else {
            return sealed;
        };
        let target = SocketAddr::new(
            match addr.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            },
            addr.port(),
        );
        if let Err(e) = self
            .socket
            .listen(0)
            .and_then(|()| self.socket.set_nonblocking(true))
        {
            log::warn!("cannot seal the listener ({e}); connections queued at close may be reset");
            return sealed;
        }
        let deadline = Instant::now() + SEAL_TIMEOUT;
        while Instant::now() < deadline {
            while Instant::now() < deadline
                && let Ok((conn, _)) = self.socket.accept()
            {
                answer_shutting_down(TcpStream::from(conn), self.tls.as_ref(), deadline);
                sealed.answered += 1;
            }
            // With a backlog of 0 the kernel still queues one connection; ours takes it.
            if let Ok(slot) = TcpStream::connect_timeout(&target, Duration::from_millis(50)) {
                sealed._slot = Some(slot);
                break;
            }
        }
        if sealed.answered > 0 {
            log::info!(
                "{} connection(s) queued at shutdown answered 503",
                sealed.answered
            );
        }
        sealed
    }
}

/// Reads the request head (for at most [`READ_BUDGET`], never past `deadline`) and answers
/// 503 with `Connection: close` (within [`WRITE_BUDGET`] more), over TLS with `tls`.
fn answer_shutting_down(
    conn: TcpStream,
    tls: Option<&std::sync::Arc<rustls::ServerConfig>>,
    deadline: Instant,
) {
    let _ = conn.set_nonblocking(false);
    let read_until = deadline.min(Instant::now() + READ_BUDGET);
    let conn = Bounded {
        conn,
        read_until,
        write_until: read_until + WRITE_BUDGET,
    };
    match tls {
        None => respond_503(conn),
        Some(config) => match rustls::ServerConnection::new(std::sync::Arc::clone(config)) {
            Ok(session) => respond_503(rustls::StreamOwned::new(session, conn)),
            Err(e) => log::warn!("cannot answer a queued TLS connection: {e}"),
        },
    }
}

/// A connection whose reads, all together, end at `read_until`, and writes at `write_until`:
/// a client that trickles bytes cannot stretch the time it gets.
struct Bounded {
    conn: TcpStream,
    read_until: Instant,
    write_until: Instant,
}

/// The time left until `until`, or a timeout error once it has passed.
fn left(until: Instant) -> std::io::Result<Duration> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(std::io::ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.conn.set_read_timeout(Some(left(self.read_until)?))?;
        self.conn.read(buf)
    }
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.conn.set_write_timeout(Some(left(self.write_until)?))?;
        self.conn.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.conn.flush()
    }
}

fn respond_503(mut conn: impl Read + Write) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    let body =
        r#"{"errors":[{"code":"UNAVAILABLE","message":"the server is shutting down; retry"}]}"#;
    let _ = write!(
        conn,
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_listener_answers_what_was_queued_and_completes_no_new_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seal = Seal::new(&listener).unwrap();
        // Queued by the kernel, never accepted by the server, request sent.
        let mut queued = TcpStream::connect(addr).unwrap();
        queued
            .write_all(b"GET /token HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        seal.shrink();
        let sealed = seal.seal();
        assert_eq!(sealed.answered, 1);
        let mut answer = String::new();
        queued
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        queued.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        // The one queue slot is taken: a new handshake does not complete.
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
            "a sealed listener completed a new connection"
        );
        drop(listener);
        drop(sealed);
        // Closed: refused outright.
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
    }

    #[test]
    fn a_client_that_trickles_its_request_cannot_hold_the_seal() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seal = Seal::new(&listener).unwrap();
        // Queued first: one byte every 100 ms, never a whole request head (each read would
        // get a byte well within any per-read timeout).
        let slow = TcpStream::connect(addr).unwrap();
        let mut trickle = slow.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            for _ in 0..1200 {
                if trickle.write_all(b"X").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // Queued behind it, with a whole request.
        let mut prompt = TcpStream::connect(addr).unwrap();
        prompt
            .write_all(b"GET /token HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        seal.shrink();
        let (done, sealed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(seal.seal());
        });
        // Without a total deadline this takes 16 KiB x 100 ms (27 minutes).
        let sealed = sealed
            .recv_timeout(Duration::from_secs(60))
            .expect("the seal returned despite the slow client");
        assert_eq!(sealed.answered, 2, "both queued connections answered");
        for (what, mut conn) in [("slow", slow), ("prompt", prompt)] {
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut answer = Vec::new();
            let _ = conn.read_to_end(&mut answer);
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 503"), "{what}: {answer:?}");
        }
        drop(sealed);
        drop(listener);
        writer.join().unwrap();
    }

    #[test]
    fn a_sealed_https_listener_answers_what_was_queued_over_tls() {
        use std::sync::Arc;
        let ca = crate::test_support::new_ca();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let client = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seal = Seal::new(&listener)
            .unwrap()
            .with_tls(Some(Arc::new(server)));
        // Queued by the kernel, never accepted by the server; the client's handshake waits
        // for the seal to answer it.
        let queued = TcpStream::connect(addr).unwrap();
        queued
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let reader = std::thread::spawn(move || {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(client, name).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, queued);
            tls.write_all(b"GET /token HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut answer = Vec::new();
            let _ = tls.read_to_end(&mut answer);
            String::from_utf8_lossy(&answer).into_owned()
        });
        seal.shrink();
        let sealed = seal.seal();
        assert_eq!(sealed.answered, 1);
        let answer = reader.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
        assert!(answer.contains("connection: close"), "{answer}");
    }
}
