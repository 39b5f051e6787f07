//! Access token secrets: `rgat_` + 52 characters of base32 (32 random bytes) + 7 characters
//! of checksum (the first 4 bytes of SHA-256 of what precedes it), lowercase, 64 characters in
//! all. Secret scanners match `rgat_[0-9a-v]{59}` and can check the checksum offline; regauth
//! checks it before anything else, so a mistyped password never reaches the token lookup.
//!
//! The store keeps only SHA-256 of the whole secret: 256 random bits need no slow hash, and
//! a wrong secret costs one SHA-256 and a map lookup (microseconds).

use aws_lc_rs::digest;
use data_encoding::BASE32_DNSSEC;

/// What every access token starts with.
pub const PREFIX: &str = "rgat_";
/// Random bytes in a secret.
const RANDOM_BYTES: usize = 32;
/// Characters of the random part (base32 of 32 bytes, no padding).
const BODY_CHARS: usize = 52;
/// Characters of the checksum (base32 of 4 bytes, no padding).
const CHECK_CHARS: usize = 7;
/// Length of a whole secret.
pub const SECRET_LEN: usize = PREFIX.len() + BODY_CHARS + CHECK_CHARS;

/// SHA-256 of a secret: what the store keeps and looks tokens up by.
pub type SecretHash = [u8; 32];

fn checksum(body: &str) -> String {
    let sum = digest::digest(&digest::SHA256, body.as_bytes());
    BASE32_DNSSEC.encode(&sum.as_ref()[..4])
}

/// A new secret, or `None` if the system random generator failed.
pub fn generate() -> Option<String> {
    let mut random = [0u8; RANDOM_BYTES];
    aws_lc_rs::rand::fill(&mut random).ok()?;
    let mut secret = String::with_capacity(SECRET_LEN);
    secret.push_str(PREFIX);
    BASE32_DNSSEC.encode_append(&random, &mut secret);
    let sum = checksum(&secret);
    secret.push_str(&sum);
    Some(secret)
}

/// True when `text` has the shape of a secret: prefix, length, alphabet and checksum.
pub fn is_well_formed(text: &str) -> bool {
    if text.len() != SECRET_LEN || !text.starts_with(PREFIX) {
        return false;
    }
    if !text[PREFIX.len()..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
    {
        return false;
    }
    let (body, sum) = text.split_at(PREFIX.len() + BODY_CHARS);
    aws_lc_rs::constant_time::verify_slices_are_equal(checksum(body).as_bytes(), sum.as_bytes())
        .is_ok()
}

/// SHA-256 of `secret`.
pub fn hash(secret: &str) -> SecretHash {
    let sum = digest::digest(&digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(sum.as_ref());
    out
}

/// Lowercase hex of a hash, as the database stores it.
pub fn to_hex(hash: &SecretHash) -> String {
    data_encoding::HEXLOWER.encode(hash)
}

/// The hash a stored hex string holds, if it is one.
pub fn from_hex(text: &str) -> Option<SecretHash> {
    let bytes = data_encoding::HEXLOWER.decode(text.as_bytes()).ok()?;
    bytes.try_into().ok()
}

/// A new public token id (16 hex characters).
pub fn new_id() -> Option<String> {
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).ok()?;
    Some(data_encoding::HEXLOWER.encode(&random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_prefixed_and_carry_a_checksum() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), SECRET_LEN);
        assert!(a.starts_with("rgat_"));
        assert!(is_well_formed(&a), "{a}");
        // One character changed: the checksum no longer fits.
        let mut bytes = a.clone().into_bytes();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        assert!(!is_well_formed(&String::from_utf8(bytes).unwrap()));
        for junk in [
            "",
            "rgat_",
            "s3cret",
            &a[..SECRET_LEN - 1],
            &a.to_uppercase(),
        ] {
            assert!(!is_well_formed(junk), "{junk}");
        }
        assert_eq!(from_hex(&to_hex(&hash(&a))), Some(hash(&a)));
        assert_ne!(hash(&a), hash(&b));
    }
}
