//! Issuing tokens: how a request becomes a signed token.
//!
//! [`pipeline`] is the one issuing pipeline (validate → authenticate → authorize → build
//! claims → sign) both `/token` routes run and `regauth explain` reuses; [`signing`] signs the
//! claims ([`crate::token::claims`]) with the current key, [`refresh`] makes and checks the
//! stateless refresh tokens OAuth2 clients keep, and [`trail`] gathers the audit facts of a
//! request.

pub mod pipeline;
pub mod refresh;
mod settings;
pub mod signing;
pub mod trail;

pub use settings::TokenSettings;
