//! Small pieces of infrastructure that several layers share, each written once: the rustls
//! provider and trust roots ([`tls`]), a `Mutex` lock that outlives a panicked holder
//! ([`sync`]), the case-insensitive parsing of a setting's named values ([`choice`]), and
//! random bytes for identifiers (`jti`, request ids) drawn a block at a time ([`random`]).

pub mod choice;
pub mod random;
pub mod sync;
pub mod tls;
