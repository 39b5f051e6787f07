//! Connections to the directory: connecting, the service bind, and the idle connections kept
//! for reuse (at most `ldap.pool_size` open at once).
//!
//! Nothing here waits for a connection. A login or an owner lookup holds one of the source's
//! `pool_size` check slots for as long as it uses the directory (taken in
//! [`crate::identity::Logins`], within the login's one deadline), so at most `pool_size`
//! connections are ever out and a checkout always finds an idle one or room to open one. The
//! only wait is the slot's. A pool crate (r2d2, deadpool, bb8) would add a second wait and a
//! connect timeout of its own, outside the login's deadline. A call made without a slot
//! (`regauth explain`) when every connection is out is answered "unavailable" at once rather
//! than queued.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::{LdapConn, LdapConnSettings, LdapError};
use secrecy::ExposeSecret;

use super::{LdapSource, Outcome};
use crate::support::sync::lock;

/// A connection and who it is bound as.
pub(super) struct Conn {
    pub(super) ldap: LdapConn,
    /// True while bound as the service account (after a user bind it is the user).
    pub(super) as_service: bool,
}

/// Why one attempt did not produce an outcome: the connection failed (`retry`: not by
/// timing out, so a fresh connection may do better).
pub(super) struct Broken(pub(super) String, pub(super) bool);

/// Idle connections, and how many are out (idle plus out is at most `size`).
pub(super) struct Pool<C = Conn> {
    slots: Mutex<Slots<C>>,
    size: usize,
}

struct Slots<C> {
    idle: Vec<C>,
    in_use: usize,
}

impl<C> Pool<C> {
    pub(super) fn new(size: usize) -> Pool<C> {
        Pool {
            slots: Mutex::new(Slots {
                idle: Vec::new(),
                in_use: 0,
            }),
            size,
        }
    }

    /// An idle connection (`Some`), or room to open one (`None`); an error when all `size`
    /// are out, which a caller holding a check slot never sees.
    fn checkout(&self) -> Result<Option<C>, String> {
        let mut slots = lock(&self.slots);
        if let Some(conn) = slots.idle.pop() {
            slots.in_use += 1;
            return Ok(Some(conn));
        }
        if slots.in_use < self.size {
            slots.in_use += 1;
            return Ok(None);
        }
        Err(format!(
            "all {} directory connections are in use (ldap.pool_size)",
            self.size
        ))
    }

    /// Gives back the room taken by [`Pool::checkout`], with the connection when it is
    /// still good.
    fn checkin(&self, conn: Option<C>) {
        let mut slots = lock(&self.slots);
        slots.in_use = slots.in_use.saturating_sub(1);
        if let Some(conn) = conn {
            slots.idle.push(conn);
        }
    }
}

impl LdapSource {
    pub(super) fn connect(&self, deadline: Instant) -> Result<Conn, Broken> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(left(deadline)?)
            .set_starttls(self.settings.start_tls);
        if let Some(config) = &self.tls {
            settings = settings.set_config(Arc::clone(config));
        }
        let ldap = LdapConn::with_settings(settings, &self.settings.url).map_err(|e| {
            Broken(
                format!("cannot connect to {}: {e}", self.settings.url),
                false,
            )
        })?;
        Ok(Conn {
            ldap,
            as_service: false,
        })
    }

    /// Binds as the service account (or anonymously without one). `Ok(Err(_))`: the
    /// directory answered and refused.
    pub(super) fn bind_service(
        &self,
        conn: &mut Conn,
        deadline: Instant,
    ) -> Result<Result<(), String>, Broken> {
        let (dn, password) = match (&self.settings.bind_dn, &self.bind_password) {
            (Some(dn), Some(password)) => (dn.as_str(), password.expose_secret()),
            _ => ("", ""),
        };
        let result = conn
            .ldap
            .with_timeout(left(deadline)?)
            .simple_bind(dn, password)
            .map_err(transport)?;
        if result.rc == 0 {
            conn.as_service = true;
            Ok(Ok(()))
        } else {
            conn.as_service = false;
            Ok(Err(format!(
                "the service account bind was refused (result code {}: {})",
                result.rc,
                result.text.trim()
            )))
        }
    }

    /// Runs `step` on a pooled connection bound as the service account. A pooled
    /// connection that turns out broken (the directory restarted, an idle timeout) is
    /// replaced by a new one once.
    pub(super) fn with_conn(
        &self,
        deadline: Instant,
        step: impl Fn(&Self, &mut Conn) -> Result<Outcome, Broken>,
    ) -> Outcome {
        for attempt in 0..2 {
            let pooled = match self.pool.checkout() {
                Ok(pooled) => pooled,
                Err(reason) => return Outcome::Unavailable(reason),
            };
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => match self.connect(deadline) {
                    Ok(conn) => conn,
                    Err(Broken(reason, _)) => {
                        self.pool.checkin(None);
                        return Outcome::Unavailable(reason);
                    }
                },
            };
            let outcome = if conn.as_service {
                step(self, &mut conn)
            } else {
                match self.bind_service(&mut conn, deadline) {
                    Ok(Ok(())) => step(self, &mut conn),
                    Ok(Err(refused)) => Ok(Outcome::Unavailable(refused)),
                    Err(broken) => Err(broken),
                }
            };
            match outcome {
                Ok(outcome) => {
                    self.pool.checkin(Some(conn));
                    return outcome;
                }
                Err(Broken(reason, retry)) => {
                    self.pool.checkin(None);
                    if reused && retry && attempt == 0 {
                        log::debug!("a pooled directory connection failed ({reason}); retrying");
                        continue;
                    }
                    return Outcome::Unavailable(reason);
                }
            }
        }
        Outcome::Unavailable("the directory connection failed twice".into())
    }
}

/// What is left of the login's deadline; past it, the directory did not answer in time.
pub(super) fn left(deadline: Instant) -> Result<Duration, Broken> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < Duration::from_millis(1) {
        return Err(Broken(
            "the directory did not answer within the login's deadline (ldap.timeout_seconds)"
                .into(),
            false,
        ));
    }
    Ok(left)
}

/// Transport failures: the directory could not be reached or did not answer in time.
pub(super) fn transport(e: LdapError) -> Broken {
    match e {
        LdapError::Timeout { .. } => Broken("the directory did not answer in time".into(), false),
        other => Broken(format!("directory connection failed: {other}"), true),
    }
}

#[cfg(test)]
mod tests {
    use super::Pool;

    #[test]
    fn at_most_size_are_out_and_a_returned_connection_is_reused() {
        let pool: Pool<&str> = Pool::new(2);
        assert_eq!(pool.checkout(), Ok(None), "room to open the first");
        assert_eq!(pool.checkout(), Ok(None), "room to open the second");
        let full = pool.checkout().unwrap_err();
        assert!(full.contains("all 2 directory connections"), "{full}");
        // A broken connection is dropped: its room comes back, not the connection.
        pool.checkin(None);
        assert_eq!(pool.checkout(), Ok(None));
        pool.checkin(Some("a"));
        pool.checkin(Some("b"));
        assert_eq!(
            pool.checkout(),
            Ok(Some("b")),
            "the last returned is reused first"
        );
        assert_eq!(pool.checkout(), Ok(Some("a")));
        assert!(pool.checkout().is_err());
    }
}
