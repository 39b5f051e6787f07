//! Fuzzes `Authorization: Basic` parsing (`regauth::identity::parse_basic`).
//!
//! The first byte picks a mode. Raw mode feeds the rest as the header value: nothing panics,
//! accepted credentials, encoded again, parse to the same user and password, and their `Debug`
//! is the same whatever the password. Build mode splits the rest at the first NUL into a user
//! name and a password, encodes them the way a client does (with the scheme in a fuzzed case
//! and optional surrounding blanks) and checks that they come back unchanged.

#![no_main]

use data_encoding::BASE64;
use libfuzzer_sys::fuzz_target;
use regauth::identity::{Credentials, parse_basic};
use secrecy::ExposeSecret;

fn encode(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        BASE64.encode(format!("{user}:{password}").as_bytes())
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(creds) = parse_basic(rest) {
            let password = creds.password.expose_secret();
            assert!(
                !creds.username.contains(':'),
                "the user name ends at the first ':'"
            );
            let again = parse_basic(encode(&creds.username, password).as_bytes())
                .unwrap_or_else(|e| panic!("re-encoded credentials refused: {e}"));
            assert_eq!(again.username, creds.username);
            assert_eq!(again.password.expose_secret(), password);
            let blank = Credentials::new(creds.username.clone(), "");
            assert_eq!(
                format!("{creds:?}"),
                format!("{blank:?}"),
                "Debug shows the password"
            );
        }
        return;
    }
    let (user, password) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
    else {
        return;
    };
    if user.contains(':') {
        return;
    }
    let mut value = encode(user, password);
    if mode & 2 != 0 {
        value.replace_range(..5, "bAsIc");
    }
    if mode & 4 != 0 {
        value = format!("  {value}\t ");
    }
    let creds = parse_basic(value.as_bytes())
        .unwrap_or_else(|e| panic!("well-formed header {value:?} refused: {e}"));
    assert_eq!(creds.username, user);
    assert_eq!(creds.password.expose_secret(), password);
});
