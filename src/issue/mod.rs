//! The token domain: what a token says and how it is made.
//!
//! [`scope`] parses what a client asks for, [`claims`] builds the JWT claims from the granted
//! access, [`signing`] signs them with the current key, and [`refresh`] makes and checks the
//! stateless refresh tokens OAuth2 clients keep.

pub mod claims;
pub mod refresh;
pub mod scope;
mod settings;
pub mod signing;

pub use settings::TokenSettings;
