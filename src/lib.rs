//! regauth: a token authentication server for container registries.
//!
//! A registry answers an unauthenticated client with a `Bearer` challenge that points at
//! regauth. The client asks regauth for a token; regauth parses the requested
//! [`scope`]s, decides who the caller is ([`identity`]) and what it may do ([`policy`]),
//! builds the [`claims`], signs them ([`signing`]) with a hot-reloaded key ([`keys`]) and
//! answers in the shape the distribution token spec defines ([`http`]). OAuth2 clients get
//! stateless [`refresh`] tokens; key and password files reload through [`watch`]. [`publish`]
//! says what registries and verifiers should trust (`regauth bundle`, `regauth jwks`);
//! [`metrics`] is what `GET /metrics` shows Prometheus; [`probe`] is the health check the
//! container image runs; [`tls`] serves HTTPS; [`doctor`] checks regauth and a registry
//! against each other.

pub mod atomic_file;
pub mod audit;
pub mod claims;
pub mod clock;
pub mod config;
pub mod doctor;
pub mod echo;
pub mod hangup;
pub mod http;
pub mod identity;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod probe;
pub mod proxy;
pub mod publish;
pub mod refresh;
pub mod request_id;
pub mod scope;
pub mod shutdown;
pub mod signing;
pub mod startup;
pub mod store;
pub mod tls;
pub mod watch;

#[cfg(test)]
pub(crate) mod test_support;
