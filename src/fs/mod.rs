//! Files: watching a file for replacement ([`watch`]) and writing one atomically with owner-only
//! permissions ([`atomic_file`]).

pub mod atomic_file;
pub mod watch;
