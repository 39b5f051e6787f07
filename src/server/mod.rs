//! The process around the HTTP routes: building and running the service (key provider, shared
//! state, listeners), TLS ([`tls`]), trusted proxies ([`proxy`]), SIGHUP ([`hangup`]) and the
//! zero-drop shutdown ([`shutdown`]).

pub mod hangup;
pub mod proxy;
pub mod settings;
pub mod shutdown;
pub mod tls;

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, Service};
use actix_web::http::ConnectionType;
use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;

use crate::clock::{Clock, SystemClock};
use crate::config::Validated;
use crate::http::{self, AppState};
use crate::identity::federation::Federation;
use crate::identity::{IdentitySource, LdapSource, LoginOptions, Logins, Sources, UserDirectory};
use crate::issue::refresh::{self, RefreshTokens};
use crate::keys::{self, KeyProvider, KeySource, KeySpec, generate};
use crate::server::hangup::{Hangups, Reload};
use crate::server::shutdown::{Seal, Shutdown};
use crate::server::tls::TlsCertificates;
use crate::telemetry::audit::AuditLog;
use crate::telemetry::metrics::Metrics;
use crate::token::claims::ClaimsBuilder;

/// A built service, bound to its port, not yet running.
pub struct Application {
    port: u16,
    server: Server,
    /// The `server.admin_listen` server and its port.
    admin: Option<(Server, u16)>,
    keys: Arc<dyn KeyProvider>,
    logins: Arc<Logins>,
    shutdown: Arc<Shutdown>,
    shutdown_delay: Duration,
    seal: Seal,
    audit: Option<Arc<AuditLog>>,
    tls: Option<Arc<TlsCertificates>>,
    /// What SIGHUP re-reads, and its handler (installed before the server listens).
    reload: Arc<Reload>,
    hangups: Hangups,
    /// The token store, when `store` is configured.
    store: Option<Arc<crate::store::Store>>,
}

impl Application {
    /// Builds the service from validated settings with the system clock.
    pub fn build(config: Validated) -> anyhow::Result<Application> {
        Application::build_with_clock(config, Arc::new(SystemClock))
    }

    /// Builds the service with an explicit clock (tests pin time).
    pub fn build_with_clock(
        config: Validated,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        let keys = key_provider(&config, Arc::clone(&clock))?;
        let users = Arc::new(UserDirectory::start(
            config.users.clone(),
            config.auth.htpasswd.clone(),
            config.watch_options(),
        )?);
        let users_source: Arc<dyn IdentitySource> = users.clone();
        if let Some(ldap) = &config.ldap
            && ldap.sends_plaintext()
        {
            log::warn!("ldap: {}", crate::identity::ldap::PLAINTEXT_WARNING);
        }
        let ldap = config
            .ldap
            .clone()
            .map(LdapSource::new)
            .transpose()?
            .map(|source| Arc::new(source) as Arc<dyn IdentitySource>);
        let federation = federation(&config, &clock)?;
        let sources = Sources::standard(
            federation.clone().map(|f| f as Arc<dyn IdentitySource>),
            users_source,
            ldap,
        );
        log::info!("identity sources, in order: {}", sources.names().join(", "));
        let logins = Arc::new(Logins::with_sources(
            Arc::clone(&users),
            sources,
            &login_options(&config),
        )?);
        let store = crate::store::open_for_serve(config.store.as_ref(), &logins)?;
        let refresh = refresh_tokens(&config)?.map(Arc::new);
        let shutdown = Arc::new(Shutdown::default());
        let tls = crate::server::tls::from_settings(
            config.tls.as_ref(),
            config.watch_options(),
            Arc::clone(&clock),
        )?;
        let mut metrics = Metrics::new(&config.token.services, logins.clone());
        metrics.register_collector(logins.collector());
        metrics.register_collector(keys::metrics::collector(
            Arc::clone(&keys),
            Arc::clone(&clock),
        ));
        if let Some(tls) = &tls {
            metrics.register_collector(tls.collector());
        }
        if let Some(store) = &store {
            metrics.register_collector(Box::new(crate::store::StoreMetrics(Arc::clone(store))));
        }
        let audit = AuditLog::from_settings(&config.audit, metrics.audit_dropped())?;
        let metrics = Arc::new(metrics);
        let reload = Arc::new(Reload::new(
            Arc::clone(&keys),
            tls.clone(),
            Arc::clone(&users),
            federation,
            audit.clone(),
            refresh.clone(),
        ));
        // Before the server listens: from then on SIGHUP re-reads, never stops the process.
        let hangups = Hangups::install(Arc::clone(&reload));
        let state = web::Data::new(AppState {
            metrics,
            keys: Arc::clone(&keys),
            claims: ClaimsBuilder::new(config.token.issuer.clone(), config.token.ttl_seconds),
            clock,
            policy: Arc::new(config.acl.clone()),
            services: config.token.services.iter().cloned().collect(),
            logins: Arc::clone(&logins),
            refresh,
            shutdown: Arc::clone(&shutdown),
            proxies: config.proxies.clone(),
            audit: audit.clone(),
            tls: tls.clone(),
            store: store.clone(),
        });
        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {} (server.listen)", config.listen))?;
        let addr = listener.local_addr()?;
        let seal = Seal::new(&listener)
            .context("keeping a handle on the listener")?
            .with_tls(
                tls.as_deref()
                    .map(TlsCertificates::seal_config)
                    .transpose()?,
            );
        let admin = config
            .admin_listen
            .map(|addr| admin_server(addr, state.clone(), config.shutdown_timeout.as_secs()))
            .transpose()?;
        let routes: fn(&mut web::ServiceConfig) = match admin {
            Some(_) => http::public_routes,
            None => http::routes,
        };
        let draining = Arc::clone(&shutdown);
        let server = HttpServer::new(move || {
            let draining = Arc::clone(&draining);
            App::new()
                .wrap(middleware::ErrorHandlers::new().default_handler(http::json_fallback))
                // Oversized paths, queries and headers are refused before any handler, inside
                // the access log and the request id (see `http::limits`).
                .wrap(middleware::from_fn(http::limits))
                // While shutting down, each response closes its connection, so keep-alive
                // clients reconnect (to another replica) instead of being cut off later.
                .wrap_fn(move |req, srv| {
                    let fut = srv.call(req);
                    let draining = Arc::clone(&draining);
                    async move {
                        let mut res = fut.await?;
                        if draining.is_draining() {
                            res.response_mut()
                                .head_mut()
                                .set_connection_type(ConnectionType::Close);
                        }
                        Ok(res)
                    }
                })
                // Only when its lines are written: it works for every request whatever the level.
                .wrap(middleware::Condition::new(
                    http::access_log_on(),
                    middleware::Logger::new(r#"%{client}xi "%{request}xi" %s %b %Dms %{id}xi"#)
                        .custom_request_replace("client", http::log_client)
                        .custom_request_replace("id", http::log_request_id)
                        .custom_request_replace("request", http::log_request_line)
                        .exclude("/healthz"),
                ))
                // Outermost: the request id and client address, for everything inside.
                .wrap(middleware::from_fn(http::tag))
                .app_data(state.clone())
                .configure(routes)
        })
        .disable_signals()
        .shutdown_timeout(config.shutdown_timeout.as_secs());
        let server = match &tls {
            Some(tls) => server.listen_rustls_0_23(listener, tls.server_config()?)?,
            None => server.listen(listener)?,
        }
        .run();
        // Scripts and tests read the address from this line; HTTPS is said by `crate::server::tls`.
        log::info!("listening on {addr}");
        log_summary(&config, addr, keys.as_ref());
        Ok(Application {
            port: addr.port(),
            server,
            admin,
            keys,
            logins,
            shutdown,
            shutdown_delay: config.shutdown_delay,
            seal,
            audit,
            tls,
            reload,
            hangups,
            store,
        })
    }

    /// What SIGHUP re-reads ([`Reload::reread`] is what it does).
    pub fn reload(&self) -> Arc<Reload> {
        Arc::clone(&self.reload)
    }

    /// The token store, when `store` is configured.
    pub fn store(&self) -> Option<Arc<crate::store::Store>> {
        self.store.clone()
    }

    /// The served TLS certificate, when `server.tls` is set.
    pub fn tls(&self) -> Option<Arc<TlsCertificates>> {
        self.tls.clone()
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin listener's port, when `server.admin_listen` is set.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin.as_ref().map(|(_, port)| *port)
    }

    /// The key provider, for inspection.
    pub fn keys(&self) -> Arc<dyn KeyProvider> {
        Arc::clone(&self.keys)
    }

    /// The login path, for inspection (checks run, cache hits).
    pub fn logins(&self) -> Arc<Logins> {
        Arc::clone(&self.logins)
    }

    /// The audit log, when on (SIGHUP reopens a file, see [`crate::server::hangup`]).
    pub fn audit(&self) -> Option<Arc<AuditLog>> {
        self.audit.clone()
    }

    /// Shutdown state; [`Shutdown::begin`] stops the server as SIGTERM would.
    pub fn shutdown(&self) -> Arc<Shutdown> {
        Arc::clone(&self.shutdown)
    }

    /// Serves until SIGTERM, SIGINT or [`Shutdown::begin`], then drains (see
    /// [`crate::server::shutdown`]) and returns once the server has stopped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let shutdown = Arc::clone(&self.shutdown);
        let delay = self.shutdown_delay;
        let seal = self.seal;
        let (admin, admin_handle) = match self.admin {
            Some((server, _)) => {
                let handle = server.handle();
                (Some(server), Some(handle))
            }
            None => (None, None),
        };
        let audit = self.audit;
        tokio::spawn(self.hangups.run());
        tokio::spawn(async move {
            shutdown.wait(delay).await;
            // Shrink the kernel's queue, stop accepting, seal the queue, give accepted
            // connections a moment to reach their workers (a stopping worker drops
            // connections still queued to it), then stop: requests in flight finish, the
            // listener closes.
            seal.shrink();
            handle.pause().await;
            let sealed = tokio::task::spawn_blocking(move || seal.seal()).await;
            tokio::time::sleep(WORKER_HANDOFF).await;
            handle.stop(true).await;
            drop(sealed);
            // The admin listener kept answering (`/readyz` 503) through the drain.
            if let Some(admin) = admin_handle {
                admin.stop(true).await;
            }
        });
        let admin = async move {
            match admin {
                Some(server) => server.await,
                None => Ok(()),
            }
        };
        let (result, admin_result) = tokio::join!(self.server, admin);
        // Every queued audit line is written before the process exits.
        if let Some(audit) = &audit {
            audit.flush();
        }
        log::info!("stopped");
        result.and(admin_result)
    }
}

/// The `server.admin_listen` server: `/metrics`, `/readyz`, `/healthz` on one worker, not
/// access-logged (scrapes and probes would fill the log).
fn admin_server(
    addr: std::net::SocketAddr,
    state: web::Data<AppState>,
    shutdown_timeout: u64,
) -> anyhow::Result<(Server, u16)> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} (server.admin_listen)"))?;
    let bound = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(middleware::ErrorHandlers::new().default_handler(http::json_fallback))
            // Request ids here too, so a failed scrape can be found in the log.
            .wrap(middleware::from_fn(http::tag))
            .app_data(state.clone())
            .configure(http::admin_routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(shutdown_timeout)
    .listen(listener)?
    .run();
    log::info!("admin listener (/metrics, /readyz, /healthz) on {bound}");
    Ok((server, bound.port()))
}

/// Time for connections already accepted to reach their worker before workers stop.
const WORKER_HANDOFF: Duration = Duration::from_millis(100);

/// How password logins are bounded and cached, from `auth.*`.
fn login_options(config: &Validated) -> LoginOptions {
    let auth = &config.auth;
    let workers = match auth.check_workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    LoginOptions {
        cache_ttl: Duration::from_secs(auth.cache_seconds),
        workers,
        queue: auth.check_queue,
        limits: auth.limits.clone(),
    }
}

/// The workload-token issuers, when `federation` lists any. JWKS files are read now (an
/// unusable one stops the start); URL keys are fetched in the background, so the first
/// token need not wait for them.
fn federation(
    config: &Validated,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<Option<Arc<Federation>>> {
    let issuers = &config.federation;
    if issuers.is_empty() {
        return Ok(None);
    }
    let federation = Arc::new(Federation::new(issuers, Arc::clone(clock))?);
    for status in federation.issuers() {
        log::info!(
            "workload tokens of issuer {:?} accepted, keys from {}",
            status.issuer,
            status.source
        );
    }
    let prefetch = Arc::clone(&federation);
    std::thread::Builder::new()
        .name("regauth-jwks".into())
        .spawn(move || prefetch.prefetch())
        .context("starting the JWKS fetch thread")?;
    Ok(Some(federation))
}

/// The key provider from the settings (see [`keys::provider_from_settings`]); a first start
/// without configuration generates the default key first.
fn key_provider(config: &Validated, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<dyn KeyProvider>> {
    let key = &config.key;
    if config.zero_config && key.source == KeySource::File && !key.path.exists() {
        generate_default_key(&key.path, config.key_spec())?;
    }
    Ok(keys::provider_from_settings(
        key,
        config.key_spec(),
        config.key_reload(),
        clock,
    )?)
}

/// Refresh tokens are issued while the secret file exists; a first start without
/// configuration creates it.
fn refresh_tokens(config: &Validated) -> anyhow::Result<Option<RefreshTokens>> {
    let auth = &config.auth;
    let path = &config.refresh_secret_file();
    if !path.exists() {
        if !config.zero_config {
            log::info!(
                "refresh tokens are off: {0} does not exist (`regauth keygen --refresh-secret` writes one beside a new key; for the current key: head -c 32 /dev/urandom | base64 > {0}; replicas must share it)",
                path.display()
            );
            return Ok(None);
        }
        refresh::write_secret(path)
            .with_context(|| format!("writing a refresh secret to {}", path.display()))?;
        log::warn!("generated a refresh token secret at {}", path.display());
    }
    let tokens = RefreshTokens::load(path, auth.refresh_ttl_seconds)?;
    let secrets = tokens.describe(chrono::Utc::now()).join(", ");
    log::info!("refresh secrets: {secrets}");
    Ok(Some(tokens))
}

/// First start without configuration: make `keys/signing.key` and its certificate.
fn generate_default_key(path: &Path, spec: KeySpec) -> anyhow::Result<()> {
    let dir = crate::fs::atomic_file::directory_of(path);
    let alg = spec.algorithm.unwrap_or(crate::keys::Algorithm::ES256);
    let written = generate::write(&dir, alg, false)
        .with_context(|| format!("generating a first signing key in {}", dir.display()))?;
    log::warn!(
        "no signing key at {}: generated a new {alg} key there and its certificate {}; \
         put the certificate in the registry's rootcertbundle",
        written.key.display(),
        written
            .certificate
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    Ok(())
}

fn log_summary(config: &Validated, addr: std::net::SocketAddr, keys: &dyn KeyProvider) {
    let key = keys.signing_key();
    log::info!(
        "issuer {:?}, tokens live {} s, signing {} from {}",
        config.token.issuer,
        config.token.ttl_seconds,
        key.label(),
        keys.status().source
    );
    let service = config
        .token
        .services
        .first()
        .cloned()
        .unwrap_or_else(|| "registry.example.com".into());
    // An absolute path: the registry does not run in regauth's working directory.
    let absolute = |path: &Path| {
        std::path::absolute(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string()
    };
    let bundle = match (&config.key.certificate, config.key.source) {
        (Some(cert), _) => absolute(cert),
        (None, KeySource::File) => absolute(&keys::certificate_beside(&config.key.path)),
        (None, KeySource::Env) => "<certificate of the signing key>".into(),
    };
    // The placeholder is marked as one, so it is not mistaken for a configured name.
    let service = if config.token.services.is_empty() {
        format!("{service}   # token.services is empty: any service; use the registry's name")
    } else {
        service
    };
    let host = if addr.ip().is_unspecified() {
        format!("<this host>:{}", addr.port())
    } else {
        addr.to_string()
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    log::info!(
        "registry configuration to pair with this server:\n\
         auth:\n  token:\n    realm: {scheme}://{host}/token\n    service: {service}\n    \
         issuer: {}\n    rootcertbundle: {bundle}",
        config.token.issuer
    );
    log::info!(
        "{} access rules{}",
        config.acl.len(),
        if config.default_rules.is_some() {
            " (the defaults: anonymous may pull, users may pull and push)"
        } else {
            ""
        }
    );
    for warning in
        crate::identity::federation::warnings(&config.federation, config.acl.names_federation())
    {
        log::warn!("{warning}");
    }
    let proxies = &config.proxies;
    if !proxies.is_empty() {
        log::info!(
            "client addresses: from {} when the peer is one of {:?}",
            proxies.header().name(),
            config.trusted_proxies
        );
    }
    if let Some(all) = proxies.everything() {
        log::warn!(
            "server.trusted_proxies includes {all}: any client that reaches regauth directly chooses the address ip rules and login limits see"
        );
    }
    if key.algorithm().is_hmac() {
        log::warn!(
            "signing with {}: the distribution registry cannot verify HMAC tokens; use an EC or RSA key for it",
            key.algorithm()
        );
    }
}
