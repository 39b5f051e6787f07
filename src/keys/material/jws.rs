//! The JWS parts a key contributes to a token: the header, encoded once per key, and the
//! signature over `header.claims` (RFC 7515). [`crate::issue::signing`] puts the compact
//! token together from these two.

use aws_lc_rs::hmac;
use aws_lc_rs::signature;
use data_encoding::BASE64URL_NOPAD;
use serde::Serialize;

use super::super::algorithm::Algorithm;
use super::{KeyError, Secret, SigningKey};

#[derive(Serialize)]
struct Header<'a> {
    typ: &'static str,
    alg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x5c: Option<Vec<String>>,
}

/// Errors while signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the crypto library failed to sign")]
pub struct SignError;

/// The base64url of the JWT header a key's tokens carry.
pub(super) fn encode_header(
    alg: Algorithm,
    kid: Option<&str>,
    x5c: Option<Vec<String>>,
) -> Result<String, KeyError> {
    let header = Header {
        typ: "JWT",
        alg: alg.as_str(),
        kid,
        x5c,
    };
    let json = serde_json::to_vec(&header).map_err(|e| KeyError::Pem(e.to_string()))?;
    Ok(BASE64URL_NOPAD.encode(&json))
}

impl SigningKey {
    /// The base64url JWT header.
    pub fn header_b64(&self) -> &str {
        &self.header_b64
    }

    /// Signs `message` (the JWS signing input) and returns the raw JWS signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.secret {
            Secret::Ec(pair, curve) => {
                let der = pair.sign(&self.rng, message).map_err(|_| SignError)?;
                fixed_from_der(der.as_ref(), curve.scalar_len()).ok_or(SignError)
            }
            Secret::Rsa(pair) => {
                let padding: &dyn signature::RsaEncoding = match self.alg {
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(padding, &self.rng, message, &mut out)
                    .map_err(|_| SignError)?;
                Ok(out)
            }
            Secret::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Secret::Hmac(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
        }
    }
}

/// The JWS form of an ECDSA signature (RFC 7518 section 3.4: `r`, then `s`, each a big-endian
/// number left-padded with zeros to the curve's `size`) from the DER `ECDSA-Sig-Value`
/// (`SEQUENCE { r INTEGER, s INTEGER }`) aws-lc signs into. aws-lc-rs's fixed-size signing
/// algorithms make the same conversion by parsing the DER back into an `ECDSA_SIG` and two
/// big numbers: about 3k more instructions and seven more allocations per ES256 token. `None` for
/// anything that is not such a value with numbers that fit in `size` bytes.
fn fixed_from_der(der: &[u8], size: usize) -> Option<Vec<u8>> {
    let (sequence, rest) = der_element(der, TAG_SEQUENCE)?;
    let (r, sequence) = der_element(sequence, TAG_INTEGER)?;
    let (s, sequence) = der_element(sequence, TAG_INTEGER)?;
    if !rest.is_empty() || !sequence.is_empty() {
        return None;
    }
    let mut fixed = Vec::with_capacity(2 * size);
    for number in [r, s] {
        // r and s are positive: DER puts a zero byte before a first byte of 0x80 or more.
        let leading_zeros = number.iter().take_while(|b| **b == 0).count();
        let digits = number.get(leading_zeros..)?;
        let padding = size.checked_sub(digits.len())?;
        fixed.resize(fixed.len() + padding, 0);
        fixed.extend_from_slice(digits);
    }
    Some(fixed)
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_INTEGER: u8 = 0x02;

/// The contents of the DER element at the start of `input` if its tag is `tag`, and what
/// follows it. Lengths come in short form or in long form of one byte (0x81 n), which covers
/// every ECDSA signature up to P-521's 139-byte sequence.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&len, rest) = rest.split_first()?;
            (usize::from(len), rest)
        }
        _ => return None,
    };
    if found != tag || rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integer(bytes: &[u8]) -> Vec<u8> {
        let mut element = vec![TAG_INTEGER, u8::try_from(bytes.len()).unwrap()];
        element.extend_from_slice(bytes);
        element
    }

    fn sequence(body: &[u8]) -> Vec<u8> {
        let mut element = vec![TAG_SEQUENCE];
        if body.len() > 0x7f {
            element.push(0x81);
        }
        element.push(u8::try_from(body.len()).unwrap());
        element.extend_from_slice(body);
        element
    }

    #[test]
    fn der_signatures_become_fixed_size_r_then_s() {
        // A high first byte carries DER's zero byte; a short number is padded on the left.
        let r = [&[0u8][..], &[0x80; 32]].concat();
        let s = [0x01, 0x02];
        let der = sequence(&[integer(&r), integer(&s)].concat());
        let fixed = fixed_from_der(&der, 32).unwrap();
        assert_eq!(fixed.len(), 64);
        assert_eq!(&fixed[..32], &[0x80; 32]);
        assert_eq!(&fixed[32..62], &[0; 30]);
        assert_eq!(&fixed[62..], &[0x01, 0x02]);

        // P-521: 66-byte numbers make a sequence over 127 bytes (long-form length).
        let r = [&[0u8][..], &[0x01], &[0xff; 65]].concat();
        let s = [&[0x01][..], &[0x22; 65]].concat();
        let der = sequence(&[integer(&r), integer(&s)].concat());
        assert_eq!(der[1], 0x81, "long form");
        let fixed = fixed_from_der(&der, 66).unwrap();
        assert_eq!(fixed, [&r[1..], &s[..]].concat());
    }

    #[test]
    fn anything_else_is_refused_without_a_panic() {
        let good = sequence(&[integer(&[1; 32]), integer(&[2; 32])].concat());
        assert!(fixed_from_der(&good, 32).is_some());
        let too_long = sequence(&[integer(&[1; 33]), integer(&[2; 32])].concat());
        let one_number = sequence(&integer(&[1; 32]));
        let three = sequence(&[integer(&[1]), integer(&[2]), integer(&[3])].concat());
        let wrong_tag = sequence(&[integer(&[1]), vec![0x04, 1, 2]].concat());
        let trailing = [good.clone(), vec![0]].concat();
        let mut cut = good.clone();
        cut.truncate(good.len() - 1);
        let long_length = [
            &[TAG_SEQUENCE, 0x82, 0, 4][..],
            &integer(&[1]),
            &integer(&[2]),
        ]
        .concat();
        for (name, der) in [
            ("a number over the curve's size", too_long),
            ("one number", one_number),
            ("three numbers", three),
            ("an OCTET STRING for s", wrong_tag),
            ("a byte after the sequence", trailing),
            ("a cut signature", cut),
            ("a two-byte length", long_length),
            ("nothing", Vec::new()),
            ("a lone tag", vec![TAG_SEQUENCE]),
        ] {
            assert_eq!(fixed_from_der(&der, 32), None, "{name}");
        }
    }
}
