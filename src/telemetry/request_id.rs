//! Request ids: the caller's `X-Request-Id` when it is a sane one, otherwise a fresh random
//! id; carried for the length of the request so every log line written while handling it
//! (see [`current`]) can name it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use data_encoding::BASE64URL_NOPAD;

/// Longest `X-Request-Id` accepted from a caller.
pub const MAX_LEN: usize = 128;

/// Random bytes in a generated id (16 base64url characters).
const GENERATED_BYTES: usize = 12;

/// An id of 1 to [`MAX_LEN`] characters of `[A-Za-z0-9._:-]`: safe in a log line, a header
/// and JSON without escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

tokio::task_local! {
    static CURRENT: RequestId;
}

impl RequestId {
    /// The caller's id when it is valid.
    pub fn parse(value: &[u8]) -> Option<RequestId> {
        let valid = (1..=MAX_LEN).contains(&value.len())
            && value
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if !valid {
            return None;
        }
        std::str::from_utf8(value).ok().map(|s| RequestId(s.into()))
    }

    /// A new random id.
    pub fn generate() -> RequestId {
        let mut bytes = [0u8; GENERATED_BYTES];
        if crate::support::random::fill(&mut bytes).is_err() {
            // The system RNG failed: ids need only be unique here, not secret.
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default();
            bytes[..8].copy_from_slice(&n.to_be_bytes());
            bytes[8..].copy_from_slice(&nanos.to_be_bytes());
        }
        RequestId(BASE64URL_NOPAD.encode(&bytes).into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs `fut` with `id` as the [`current`] request id.
pub async fn scope<F: Future>(id: RequestId, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_ids_are_taken_only_when_short_and_plain() {
        let long = "a".repeat(MAX_LEN);
        let too_long = "a".repeat(MAX_LEN + 1);
        let cases: &[(&str, bool)] = &[
            ("abc-123", true),
            ("0f8e2a5c.b1:x_y", true),
            (&long, true),
            ("", false),
            (&too_long, false),
            ("has space", false),
            ("quote\"", false),
            ("new\nline", false),
            ("é", false),
            ("{\"json\":1}", false),
        ];
        for (value, ok) in cases {
            assert_eq!(
                RequestId::parse(value.as_bytes()).is_some(),
                *ok,
                "{value:?}"
            );
        }
    }

    #[test]
    fn generated_ids_are_valid_and_differ() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 16);
        assert!(RequestId::parse(a.as_str().as_bytes()).is_some(), "{a}");
    }

    #[tokio::test]
    async fn the_current_id_is_visible_inside_the_scope_only() {
        assert_eq!(current(), None);
        let id = RequestId::parse(b"req-1").unwrap();
        let seen = scope(id.clone(), async { current() }).await;
        assert_eq!(seen, Some(id));
        assert_eq!(current(), None);
    }
}
