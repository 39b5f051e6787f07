//! Integration tests over real HTTP on port 0.
//!
//! `TEST_LOG=1` (with `-- --nocapture`) shows the servers' log; `RUST_LOG` sets the level.

// Helpers outside #[test] functions fail by panicking too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]

mod audit;
mod cli;
mod doctor;
mod errors;
mod federation;
mod hangup;
mod hardening;
mod health;
mod helpers;
mod jwks;
mod ldap;
mod ldap_tokens;
mod limits;
mod metrics;
mod oauth;
mod probe;
mod prometheus;
mod proxies;
mod publish_cli;
mod refresh_rotation;
mod reload;
mod robots_alone;
mod rules;
mod secrets;
mod serve_log;
mod server_errors;
mod shutdown;
mod store;
#[path = "../support/mod.rs"]
mod support;
mod tls;
mod token;
mod users;
