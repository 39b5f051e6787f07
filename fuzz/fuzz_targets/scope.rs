//! Fuzzes the scope grammar: `ResourceScope::from_str` and `parse_all`.
//!
//! Properties: nothing panics; every accepted scope prints (Display) to text that parses back
//! to the same scope and prints the same again; `parse_all` merges scopes naming one resource,
//! and its printed result parses back to itself; `parse_limited` (the request path) agrees
//! with `parse_all` and stops past its limit; error messages stay short; no resource holds
//! more than `MAX_ACTIONS` actions and every accepted scope prints within `MAX_SCOPE_LEN`.
//!
//! Run with `-max_len=131072` (fuzz/README.md): inputs as large as a request can carry, so
//! cost that grows faster than the input shows up as a timeout. The checks below are linear
//! in the input too, so a slow input is the parser's.

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use regauth::token::scope::{
    MAX_ACTIONS, MAX_SCOPE_LEN, ResourceScope, ScopeError, ScopesError, parse_all, parse_limited,
};

/// A small limit, so the fuzzer reaches it.
const LIMIT: usize = 3;

/// Longest error message allowed: the scope is cut to 120 characters, each shown escaped by
/// `{:?}` in at most 10 bytes (`\u{10ffff}`), plus the reason and the ellipsis.
const MAX_ERROR_LEN: usize = 120 * 10 + 200;

fn check_error(e: &ScopeError) {
    let message = e.to_string();
    assert!(
        message.len() <= MAX_ERROR_LEN,
        "error too long: {}",
        message.len()
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    // One scope, the whole input.
    match text.parse::<ResourceScope>() {
        Ok(scope) => {
            let shown = scope.to_string();
            let again: ResourceScope = shown
                .parse()
                .unwrap_or_else(|e| panic!("{shown:?} was displayed but does not parse: {e}"));
            assert_eq!(again, scope, "round trip of {text:?} via {shown:?}");
            assert_eq!(again.to_string(), shown);
            assert!(!shown.contains(' '), "a scope never prints a space");
            assert!(scope.actions.len() <= MAX_ACTIONS);
            assert!(shown.len() <= MAX_SCOPE_LEN, "{} bytes printed", shown.len());
        }
        Err(e) => check_error(&e),
    }

    // Several values (a repeated `scope` parameter), one per line.
    let values: Vec<&str> = text.split('\n').collect();
    let all = parse_all(values.iter().copied());
    match (parse_limited(values.iter().copied(), LIMIT), &all) {
        (Ok(limited), Ok(all)) => assert_eq!(&limited, all),
        (Err(ScopesError::Malformed(e)), Err(all_e)) => assert_eq!(&e, all_e),
        // Past the limit parsing stops, so a malformed scope after it goes unseen.
        (Err(ScopesError::TooMany(n)), all) => {
            assert_eq!(n, LIMIT);
            if let Ok(all) = all {
                assert!(
                    all.len() > LIMIT,
                    "{} scopes refused as too many",
                    all.len()
                );
            }
        }
        (limited, all) => panic!("parse_limited {limited:?} but parse_all {all:?}"),
    }
    match all {
        Ok(scopes) => {
            let mut resources = HashSet::new();
            for scope in &scopes {
                assert!(
                    resources.insert((&scope.resource_type, &scope.name)),
                    "two scopes for one resource: {scope}"
                );
                assert!(scope.actions.len() <= MAX_ACTIONS, "{scope}");
                assert!(scope.to_string().len() <= MAX_SCOPE_LEN, "{scope}");
            }
            let shown = scopes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            let again = parse_all([shown.as_str()])
                .unwrap_or_else(|e| panic!("{shown:?} was displayed but does not parse: {e}"));
            assert_eq!(again, scopes, "round trip via {shown:?}");
        }
        Err(e) => check_error(&e),
    }
});
