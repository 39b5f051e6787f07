//! SIGHUP: re-read every watched file now and reopen the audit file.
//!
//! The files are the ones the file watches reload on their own (the signing key, the next
//! key and their certificates, the TLS pair, the htpasswd file) and the federation
//! `jwks_file`s, and the refresh secret file (read again on SIGHUP only); SIGHUP runs the same
//! reload each of them runs after a file event, so a file that cannot be used keeps the last
//! good content, as always. An audit file is reopened by
//! its path (after logrotate moved it). The settings are not read again: changing them takes
//! a restart.
//!
//! The handler is installed whatever the settings, so SIGHUP never ends the process; each
//! SIGHUP logs one line saying what was read and what came of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::identity::UserDirectory;
use crate::identity::federation::Federation;
use crate::keys::KeyProvider;
use crate::server::tls::TlsCertificates;
use crate::telemetry::audit::{AuditLog, Output};

/// Everything SIGHUP re-reads.
pub struct Reload {
    /// The signing keys.
    pub keys: Arc<dyn KeyProvider>,
    /// The served TLS pair, when `server.tls` is set.
    pub tls: Option<Arc<TlsCertificates>>,
    /// The users, with the htpasswd file when there is one.
    pub users: Arc<UserDirectory>,
    /// The workload-token issuers, when `federation` lists any.
    pub federation: Option<Arc<Federation>>,
    /// The audit log, when on.
    pub audit: Option<Arc<AuditLog>>,
    /// The refresh secrets, when refresh tokens are on.
    pub refresh: Option<Arc<crate::issue::refresh::RefreshTokens>>,
    /// SIGHUPs handled so far.
    handled: AtomicU64,
}

impl Reload {
    /// What SIGHUP re-reads.
    pub fn new(
        keys: Arc<dyn KeyProvider>,
        tls: Option<Arc<TlsCertificates>>,
        users: Arc<UserDirectory>,
        federation: Option<Arc<Federation>>,
        audit: Option<Arc<AuditLog>>,
        refresh: Option<Arc<crate::issue::refresh::RefreshTokens>>,
    ) -> Reload {
        Reload {
            keys,
            tls,
            users,
            federation,
            audit,
            refresh,
            handled: AtomicU64::new(0),
        }
    }

    /// SIGHUPs handled so far.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Acquire)
    }

    /// Re-reads every file now (blocking: file I/O, and a key pair caught halfway through a
    /// rotation is read once more after a moment) and returns what was read and the outcome,
    /// one phrase per file, `; `-separated.
    pub fn reread(&self) -> String {
        let mut done: Vec<String> = Vec::new();
        done.extend(self.keys.reread());
        if let Some(tls) = &self.tls {
            done.push(tls.reread());
        }
        if let Some(path) = self.users.htpasswd_path() {
            let reloaded = self.users.reload_now();
            let (users, _) = self.users.counts();
            let outcome = match (reloaded, self.users.reload_status().last_error) {
                (true, _) => format!("reloaded, {users} users"),
                (false, Some(error)) => {
                    format!("not usable ({error}), keeping the {users} users known")
                }
                (false, None) => format!("unchanged, {users} users"),
            };
            done.push(format!("htpasswd file {}: {outcome}", path.display()));
        }
        if let Some(federation) = &self.federation {
            done.extend(federation.reread_files());
        }
        if let Some(refresh) = &self.refresh {
            done.push(refresh.reread());
        }
        if let Some(audit) = &self.audit
            && let Output::File(path) = audit.output()
        {
            let outcome = match audit.reopen() {
                Ok(()) => "reopened".to_owned(),
                Err(e) => format!("not reopened ({e}), still writing to the old file"),
            };
            done.push(format!("audit file {}: {outcome}", path.display()));
        }
        self.handled.fetch_add(1, Ordering::AcqRel);
        if done.is_empty() {
            "nothing (no watched file is configured)".to_owned()
        } else {
            done.join("; ")
        }
    }
}

/// The SIGHUP handler, installed when built (so a SIGHUP that arrives before the server runs
/// is already caught); [`Hangups::run`] answers them.
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
    reload: Arc<Reload>,
}

impl Hangups {
    /// Installs the handler (inside the Tokio runtime). When it cannot be installed the
    /// reason is logged and SIGHUP keeps its default action.
    pub fn install(reload: Arc<Reload>) -> Hangups {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            // Outside a Tokio runtime `signal` would panic; the server cannot run there anyway.
            let signal = match tokio::runtime::Handle::try_current() {
                Ok(_) => signal(SignalKind::hangup())
                    .map_err(|e| log::warn!("cannot handle SIGHUP ({e}); it would stop the server"))
                    .ok(),
                Err(_) => {
                    log::warn!("no Tokio runtime: SIGHUP is not handled");
                    None
                }
            };
            Hangups { signal, reload }
        }
        #[cfg(not(unix))]
        Hangups { reload }
    }

    /// Re-reads the files on every SIGHUP, for as long as the process runs.
    pub async fn run(self) {
        #[cfg(unix)]
        {
            let Some(mut signal) = self.signal else {
                return;
            };
            while signal.recv().await.is_some() {
                let reload = Arc::clone(&self.reload);
                match tokio::task::spawn_blocking(move || reload.reread()).await {
                    Ok(done) => log::info!("SIGHUP re-read: {done}"),
                    Err(e) => log::error!("SIGHUP: the files were not all re-read: {e}"),
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = self.reload;
        }
    }
}
