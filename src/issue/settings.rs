//! `token.*`: what tokens say and how long they live. [`crate::config`] composes this section
//! into its settings and checks it.

use serde::Deserialize;

use crate::keys::KidFormat;

/// `token.*`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// `iss`; must equal the registry's `auth.token.issuer`.
    pub issuer: String,
    /// Token lifetime in seconds, at least 60.
    pub ttl_seconds: u32,
    /// Which `kid` the header carries.
    pub kid_format: KidFormat,
    /// Services tokens may be issued for; empty means any.
    pub services: Vec<String>,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            issuer: "regauth".into(),
            ttl_seconds: 300,
            kid_format: KidFormat::Libtrust,
            services: Vec::new(),
        }
    }
}
