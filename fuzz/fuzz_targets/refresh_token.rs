//! Fuzzes refresh-token decoding and verification (`RefreshTokens::verify`) under a fixed
//! secret and a fixed clock.
//!
//! The first byte picks a mode:
//! - raw: the rest is the token; nothing panics, and without the secret nothing verifies;
//! - signed: the rest is the payload JSON, signed with the secret the way `issue` signs, so
//!   the fuzzer gets past the MAC into JSON decoding, the expiry, service and password checks;
//!   `PWV` in it is replaced by alice's password fingerprint, so valid payloads are reachable;
//!   the verdict is compared with one computed here from the payload;
//! - round trip: the rest gives a lifetime (8 bytes), a user, a password hash and a service; a
//!   token issued for them verifies now, names them, reports an expiry after now (the issue
//!   time plus the lifetime when that is a date chrono can hold), and is refused once expired,
//!   for another service, after a password change, or under another secret.

#![no_main]

use aws_lc_rs::hmac;
use chrono::{DateTime, Utc};
use data_encoding::BASE64URL_NOPAD;
use libfuzzer_sys::fuzz_target;
use regauth::clock::{Clock, FixedClock};
use regauth::issue::refresh::{RefreshError, RefreshTokens};
use serde::Deserialize;

const SECRET: [u8; 32] = [0x5a; 32];
const TTL: u64 = 3600;
const SERVICE: &str = "registry.test";
const USER: &str = "alice";
const HASH: &str = "$2y$04$Q0BM5JqJyp/ocGdwb0dGEeLxnSp0bn0ExqzKBCXjbk5MKYSRj3ZUS";

fn now() -> DateTime<Utc> {
    let instant = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    FixedClock(instant).now()
}

fn lookup(name: &str) -> Option<String> {
    (name == USER).then(|| HASH.to_owned())
}

/// The password fingerprint `issue` writes, computed independently.
fn fingerprint(key: &hmac::Key, hash: &str) -> String {
    let tag = hmac::sign(key, format!("pwv:{hash}").as_bytes());
    BASE64URL_NOPAD.encode(&tag.as_ref()[..12])
}

fn split3(data: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let mut parts = data.splitn(3, |&b| b == 0);
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tokens = RefreshTokens::new(&SECRET, TTL);
    let key = hmac::Key::new(hmac::HMAC_SHA256, &SECRET);
    match mode % 3 {
        0 => {
            let Ok(token) = std::str::from_utf8(rest) else {
                return;
            };
            // A fuzzer cannot forge HMAC-SHA256: anything that verifies was signed by us,
            // which only the seed corpus can provide.
            let _ = tokens.verify(token, SERVICE, now(), lookup);
        }
        1 => {
            let payload = replace_placeholder(rest, &fingerprint(&key, HASH));
            let rest = payload.as_slice();
            let mut token = String::from("rt1.");
            BASE64URL_NOPAD.encode_append(rest, &mut token);
            let tag = hmac::sign(&key, token.as_bytes());
            token.push('.');
            BASE64URL_NOPAD.encode_append(tag.as_ref(), &mut token);
            let verdict = tokens.verify(&token, SERVICE, now(), lookup);
            let expected = expected_verdict(&key, rest);
            match (&verdict, &expected) {
                (Ok(claims), Ok(())) => {
                    assert_eq!(claims.subject, USER);
                    assert_eq!(claims.service, SERVICE);
                    assert!(
                        claims.expires > now(),
                        "a valid token reports expiry {} for payload {:?}",
                        claims.expires,
                        String::from_utf8_lossy(rest)
                    );
                }
                (Err(got), Err(want)) => assert_eq!(got, want),
                _ => panic!(
                    "payload {:?}: got {verdict:?}, expected {expected:?}",
                    String::from_utf8_lossy(rest)
                ),
            }
        }
        _ => {
            let (ttl, rest) = match rest.split_first_chunk::<8>() {
                Some((ttl, rest)) => (u64::from_le_bytes(*ttl), rest),
                None => (TTL, rest),
            };
            let (user, hash, service) = split3(rest);
            let (Ok(user), Ok(hash), Ok(service)) = (
                std::str::from_utf8(user),
                std::str::from_utf8(hash),
                std::str::from_utf8(service),
            ) else {
                return;
            };
            let tokens = RefreshTokens::new(&SECRET, ttl);
            let token = tokens.issue(user, hash, service, now());
            let found = |name: &str| (name == user).then(|| hash.to_owned());
            if ttl == 0 {
                // Configuration asks for at least 60 s; a zero lifetime expires at once.
                assert_eq!(
                    tokens.verify(&token, service, now(), found),
                    Err(RefreshError::Expired)
                );
                return;
            }
            let claims = tokens
                .verify(&token, service, now(), found)
                .unwrap_or_else(|e| {
                    panic!("a fresh token for {user:?} on {service:?} (ttl {ttl}) was refused: {e}")
                });
            assert_eq!(claims.subject, user);
            assert_eq!(claims.service, service);
            assert!(
                claims.expires > now(),
                "a token with ttl {ttl} reports expiry {} before its issue time {}",
                claims.expires,
                now()
            );
            let expiry = i64::try_from(ttl)
                .ok()
                .and_then(|ttl| now().timestamp().checked_add(ttl))
                .and_then(|exp| DateTime::from_timestamp(exp, 0));
            if let Some(expiry) = expiry {
                assert_eq!(claims.expires, expiry, "ttl {ttl}");
                assert_eq!(
                    tokens.verify(&token, service, expiry, found),
                    Err(RefreshError::Expired)
                );
            }
            let other_service = format!("{service}.other");
            assert_eq!(
                tokens.verify(&token, &other_service, now(), found),
                Err(RefreshError::WrongService)
            );
            let changed = |name: &str| (name == user).then(|| format!("{hash}2"));
            assert_eq!(
                tokens.verify(&token, service, now(), changed),
                Err(RefreshError::UserChanged)
            );
            assert_eq!(
                tokens.verify(&token, service, now(), |_| None),
                Err(RefreshError::UserChanged)
            );
            let other = RefreshTokens::new(&[0xa5; 32], ttl);
            assert_eq!(
                other.verify(&token, service, now(), found),
                Err(RefreshError::Invalid)
            );
        }
    }
});

/// `payload` with every `PWV` replaced by `fingerprint`.
fn replace_placeholder(payload: &[u8], fingerprint: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut i = 0;
    while i < payload.len() {
        if payload[i..].starts_with(b"PWV") {
            out.extend_from_slice(fingerprint.as_bytes());
            i += 3;
        } else {
            out.push(payload[i]);
            i += 1;
        }
    }
    out
}

/// The payload as `issue` writes it, restated here so the fuzzer's JSON is judged by the same
/// serde rules (duplicate keys, sequences, integer forms) as regauth's own decoding.
#[derive(Deserialize)]
struct Payload {
    sub: String,
    aud: String,
    #[allow(dead_code)]
    iat: i64,
    exp: i64,
    pwv: String,
}

/// What `verify` must answer for a signed payload.
fn expected_verdict(key: &hmac::Key, json: &[u8]) -> Result<(), RefreshError> {
    let payload: Payload = serde_json::from_slice(json).map_err(|_| RefreshError::Invalid)?;
    if now().timestamp() >= payload.exp {
        return Err(RefreshError::Expired);
    }
    if payload.aud != SERVICE {
        return Err(RefreshError::WrongService);
    }
    match lookup(&payload.sub) {
        Some(hash) if fingerprint(key, &hash) == payload.pwv => Ok(()),
        _ => Err(RefreshError::UserChanged),
    }
}
