//! The token domain: what a token says and how it is made.
//!
//! [`pipeline`] is the one issuing pipeline (validate → authenticate → authorize → build
//! claims → sign) both `/token` routes run and `regauth explain` reuses; [`scope`] parses
//! what a client asks for, [`claims`] builds the JWT claims from the granted access,
//! [`signing`] signs them with the current key, [`refresh`] makes and checks the stateless
//! refresh tokens OAuth2 clients keep, and [`trail`] gathers the audit facts of a request.

pub mod claims;
pub mod pipeline;
pub mod refresh;
pub mod scope;
pub mod signing;
pub mod trail;
