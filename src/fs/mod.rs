//! Files: watching a file for replacement ([`watch`]), writing one atomically with owner-only
//! permissions ([`atomic_file`]), and telling whether a file pair changed ([`digest`]).

pub mod atomic_file;
pub mod digest;
pub mod watch;
