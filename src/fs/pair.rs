//! Reading a key file and its certificate as one pair, for the reloads that swap both at
//! once (the signing key in [`crate::keys`], the listener's certificate in
//! [`crate::server::tls`]).
//!
//! A read hashes the bytes ([`content_digest`]) and parses only content it has not seen:
//! the pair in use, or the one that failed last, is reported as such without parsing, so a
//! broken file is logged once rather than at every re-read. A key and certificate that do
//! not match are read once more after a moment ([`super::watch::read_pair_settled`]): a
//! rotation that replaces them one after the other is seen whole rather than counted as a
//! failure.

use std::time::Duration;

use aws_lc_rs::digest;

use super::watch::read_pair_settled;

/// What the content of a pair is, by its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// The pair in use.
    Current,
    /// The content that failed last.
    Failed,
    /// Neither: parse it.
    New,
}

/// What reading a pair gave: `T` parsed, or why not (`E`); `R`: why the files could not be
/// read.
#[derive(Debug)]
pub enum PairRead<T, E, R = E> {
    /// A file cannot be read.
    Unreadable(R),
    /// The same content as the pair in use.
    Current,
    /// The same content as the last failure.
    Failed,
    /// New content, parsed (or not), with its digest. Boxed: a parsed pair is large.
    New([u8; 32], Result<Box<T>, E>),
}

/// Reads a pair with `read` (the key's bytes, the certificate's if there is one), asks
/// `known` about its digest, and parses new content with `parse`. When the first read parses
/// to an error `torn` takes for a mismatched pair, the pair is read once more after `retry`.
pub fn read_pair<T, E, R>(
    retry: Duration,
    what: impl std::fmt::Display,
    read: impl Fn() -> Result<(Vec<u8>, Option<Vec<u8>>), R>,
    known: impl Fn(&[u8; 32]) -> Known,
    parse: impl Fn(&[u8], Option<&[u8]>) -> Result<T, E>,
    torn: impl Fn(&E) -> bool,
) -> PairRead<T, E, R> {
    read_pair_settled(
        retry,
        what,
        || {
            let (key, cert) = match read() {
                Ok(bytes) => bytes,
                Err(e) => return PairRead::Unreadable(e),
            };
            let digest = content_digest(&key, cert.as_deref());
            match known(&digest) {
                Known::Current => PairRead::Current,
                Known::Failed => PairRead::Failed,
                Known::New => PairRead::New(digest, parse(&key, cert.as_deref()).map(Box::new)),
            }
        },
        |read| matches!(read, PairRead::New(_, Err(e)) if torn(e)),
    )
}

/// SHA-256 over a key file's bytes and its certificate file's bytes: equal digests mean the
/// same files, so a re-read can skip parsing.
pub fn content_digest(key: &[u8], certificate: Option<&[u8]>) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&(key.len() as u64).to_be_bytes());
    ctx.update(key);
    if let Some(c) = certificate {
        ctx.update(c);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Reads the pair `key`/`cert` with `known` as the verdict on its digest, a parse that
    /// always fails (counted in `parsed`), and `torn` as the verdict on that failure.
    fn read(known: Known, torn: bool, parsed: &Cell<u32>) -> PairRead<(), &'static str> {
        read_pair(
            Duration::ZERO,
            "pair",
            || Ok((b"key".to_vec(), Some(b"cert".to_vec()))),
            |digest| {
                assert_eq!(*digest, content_digest(b"key", Some(b"cert")));
                known
            },
            |_, _| {
                parsed.set(parsed.get() + 1);
                Err("mismatch")
            },
            |_| torn,
        )
    }

    #[test]
    fn known_content_is_not_parsed_and_a_torn_pair_is_read_twice() {
        let parsed = Cell::new(0);
        assert!(matches!(
            read(Known::Current, true, &parsed),
            PairRead::Current
        ));
        assert!(matches!(
            read(Known::Failed, true, &parsed),
            PairRead::Failed
        ));
        assert_eq!(parsed.get(), 0);
        let digest = content_digest(b"key", Some(b"cert"));
        let torn = read(Known::New, true, &parsed);
        assert!(matches!(torn, PairRead::New(d, Err("mismatch")) if d == digest));
        assert_eq!(parsed.get(), 2, "a torn pair is read once more");
        assert!(matches!(
            read(Known::New, false, &parsed),
            PairRead::New(_, Err(_))
        ));
        assert_eq!(parsed.get(), 3);
        let unreadable = read_pair(
            Duration::ZERO,
            "pair",
            || Err::<(Vec<u8>, Option<Vec<u8>>), _>("gone"),
            |_| Known::New,
            |_, _| Ok::<_, &str>(()),
            |_| true,
        );
        assert!(matches!(unreadable, PairRead::Unreadable("gone")));
    }

    #[test]
    fn the_digest_tells_the_key_from_the_certificate() {
        assert_ne!(
            content_digest(b"ab", Some(b"c")),
            content_digest(b"a", Some(b"bc"))
        );
        assert_eq!(content_digest(b"a", None), content_digest(b"a", Some(b"")));
    }
}
