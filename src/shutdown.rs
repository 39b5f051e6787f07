//! Stopping without dropping a request: on SIGTERM or SIGINT, `/readyz` turns 503 at once
//! and every response says `Connection: close`, while the listener keeps serving for
//! `server.shutdown_delay_seconds` (load balancers take that long to stop sending); then the
//! listener closes and requests in flight get up to `server.shutdown_timeout_seconds` to
//! finish. A second signal skips the rest of the delay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
