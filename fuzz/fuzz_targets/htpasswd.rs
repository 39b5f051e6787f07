//! Fuzzes htpasswd parsing (`regauth::identity::htpasswd::parse`).
//!
//! Properties: nothing panics; an error names a line that exists; an accepted file holds only
//! bcrypt hashes under non-empty names, and written back as `user:hash` lines it parses to the
//! same map.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regauth::identity::htpasswd::{is_bcrypt, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Ok(users) => {
            let mut written = String::new();
            for (user, hash) in &users {
                assert!(!user.is_empty());
                assert!(!user.contains(':'), "the user name ends at the first ':'");
                assert!(is_bcrypt(hash), "{hash:?} accepted but not bcrypt");
                written.push_str(user);
                written.push(':');
                written.push_str(hash);
                written.push('\n');
            }
            let again =
                parse(&written).unwrap_or_else(|e| panic!("{written:?} written back fails: {e}"));
            assert_eq!(again, users);
        }
        Err(e) => {
            assert!(
                e.line >= 1 && e.line <= text.lines().count(),
                "line {} of {}",
                e.line,
                text.lines().count()
            );
        }
    }
});
