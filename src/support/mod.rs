//! Small pieces of infrastructure that several layers share, each written once: the rustls
//! provider and trust roots ([`tls`]), a `Mutex` lock that outlives a panicked holder
//! ([`sync`]), and the case-insensitive parsing of a setting's named values ([`choice`]).

pub mod choice;
pub mod sync;
pub mod tls;
