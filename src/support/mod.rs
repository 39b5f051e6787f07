//! Small pieces of infrastructure that several layers share, each written once: the rustls
//! provider and trust roots ([`tls`]), a `Mutex` lock that outlives a panicked holder
//! ([`sync`]), the case-insensitive parsing of a setting's named values ([`choice`]),
//! random bytes for identifiers (`jti`, request ids) drawn a block at a time ([`random`]),
//! and JSON written field by field for the documents every token request writes ([`json`]).

pub mod choice;
pub mod json;
pub mod random;
pub mod sync;
pub mod tls;
