//! Files: watching a file for replacement ([`watch`]), reading a key and its certificate as
//! one pair for a reload ([`pair`]) and writing one atomically with owner-only permissions
//! ([`atomic_file`]).

pub mod atomic_file;
pub mod pair;
pub mod watch;
