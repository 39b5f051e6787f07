//! regauth: a token authentication server for container registries.
//!
//! A registry answers an unauthenticated client with a `Bearer` challenge that points at
//! regauth. The client asks regauth for a token; regauth parses the requested scopes, decides
//! who the caller is and what it may do, builds the claims, signs them with a hot-reloaded key
//! and answers in the shape the distribution token spec defines.
//!
//! The modules, from the outside in (`docs/architecture.md` walks a request through them):
//! - [`server`]: the process: builds the shared state from the validated settings, binds the
//!   listeners (plain or [`server::tls`]), trusts forwarded headers from [`server::proxy`]s,
//!   re-reads files on SIGHUP ([`server::hangup`]) and drains on shutdown
//!   ([`server::shutdown`]).
//! - [`config`]: loads `regauth.yaml` and `REGAUTH_*` variables and validates them into
//!   [`config::Validated`].
//! - [`http`]: the routes (`/token` GET and POST, `/jwks.json`, health, metrics), request
//!   limits, the client-address and request-id middleware, and the JSON error shape.
//! - [`issue`]: the one issuing pipeline ([`issue::pipeline`]: validate, authenticate,
//!   authorize, build claims, sign, audit) that both `/token` routes and `regauth explain` run;
//!   [`issue::signing`] and stateless [`issue::refresh`] tokens.
//! - [`token`]: what a token says: the [`token::scope`] grammar and the [`token::claims`].
//! - [`identity`]: who the caller is: local users and htpasswd, LDAP, workload-token
//!   federation, behind one login path with brute-force limits and a cache.
//! - [`policy`]: what the caller may do: the ordered access rules.
//! - [`store`]: access tokens, robots and logouts kept in SQLite or PostgreSQL, read through
//!   an in-memory snapshot so a sign-in makes no database call.
//! - [`keys`]: the signing keys: the [`keys::KeyProvider`] backends (file, environment),
//!   key material, key ids, the published key set.
//! - [`telemetry`]: logs, request ids, Prometheus metrics and the audit log; a lower layer
//!   the others register into.
//! - [`fs`]: watching files for replacement, reading a key and certificate as one pair,
//!   and writing files atomically.
//! - [`support`]: infrastructure several layers share: the rustls provider and trust
//!   roots, a poison-tolerant lock, case-insensitive setting values, random bytes for
//!   identifiers (`jti`, request ids) drawn a block at a time.
//! - [`clock`] (time, so tests can move it, and its RFC 3339 text), [`echo`] (shortening client input before it
//!   is echoed in logs and errors) and [`matching`] (the one-or-more and `/regex/` syntax
//!   access rules and federation's claim requirements share).
//!
//! The command line (`regauth check`, `explain`, `doctor`, `bundle`, `probe`, …) lives in the
//! binary, not in this library.

pub mod clock;
pub mod config;
pub mod echo;
pub mod fs;
pub mod http;
pub mod identity;
pub mod issue;
pub mod keys;
pub mod matching;
pub mod policy;
pub mod server;
pub mod store;
pub mod support;
pub mod telemetry;
pub mod token;

#[cfg(test)]
pub(crate) mod test_support;
