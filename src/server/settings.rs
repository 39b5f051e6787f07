//! `server.*`: the listeners, forwarded headers, shutdown pacing and HTTPS files. The types
//! belong to the server; [`crate::config`] composes them into its settings and checks them.

use std::path::PathBuf;

use serde::Deserialize;

use crate::server::proxy::ForwardedHeader;

/// `server.*`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port to listen on.
    pub listen: String,
    /// On SIGTERM or SIGINT: seconds `/readyz` answers 503 while the listener keeps serving,
    /// so load balancers stop sending new connections before it closes.
    pub shutdown_delay_seconds: u64,
    /// After the delay: seconds requests in flight get to finish before the process exits.
    pub shutdown_timeout_seconds: u64,
    /// A second address for `/metrics`, `/readyz` and `/healthz`; when set, the main listener
    /// no longer serves `/metrics` and `/readyz`.
    pub admin_listen: Option<String>,
    /// Reverse proxies (CIDR ranges or addresses) whose `client_ip_header` names the client.
    /// Empty: the TCP peer is the client and forwarding headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// `x-forwarded-for` or `forwarded`: the header the trusted proxies append to.
    pub client_ip_header: ForwardedHeader,
    /// HTTPS for the main listener (see [`crate::server::tls`]); the admin listener stays HTTP.
    pub tls: TlsSettings,
}

/// `server.tls.*`: both files, or neither (plain HTTP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub certificate: Option<PathBuf>,
    /// PEM private key of the leaf certificate.
    pub key: Option<PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:5001".into(),
            shutdown_delay_seconds: 5,
            shutdown_timeout_seconds: 30,
            admin_listen: None,
            trusted_proxies: Vec::new(),
            client_ip_header: ForwardedHeader::default(),
            tls: TlsSettings::default(),
        }
    }
}
