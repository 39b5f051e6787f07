//! Telling whether a key (or TLS) file pair changed: one SHA-256 over both files' bytes, used
//! by the key provider and the TLS certificates to skip parsing an unchanged pair on re-read.

use aws_lc_rs::digest;

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
    use super::content_digest;

    #[test]
    fn the_digest_changes_with_either_file_and_with_where_the_key_ends() {
        let base = content_digest(b"key", Some(b"cert"));
        assert_eq!(base, content_digest(b"key", Some(b"cert")));
        assert_ne!(base, content_digest(b"key", Some(b"cert2")));
        assert_ne!(base, content_digest(b"key2", Some(b"cert")));
        assert_ne!(base, content_digest(b"key", None));
        // The key's length is hashed first, so bytes cannot move between the two files.
        assert_ne!(base, content_digest(b"keyc", Some(b"ert")));
    }
}
