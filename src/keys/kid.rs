//! Key identifiers: the libtrust form registry 2.8 looks up, the RFC 7638 thumbprint
//! registry 3.x computes, and the id of an HMAC secret.

use aws_lc_rs::{digest, hmac};
use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use serde::{Deserialize, Serialize};

use super::algorithm::Curve;

/// Which `kid` the JWT header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum KidFormat {
    /// libtrust key ID (`ABCD:EFGH:...`), what registry 2.8 matches against its bundle.
    #[default]
    Libtrust,
    /// RFC 7638 JWK SHA-256 thumbprint, base64url; what registry 3.x matches.
    Thumbprint,
    /// No `kid` header (use with `x5c`).
    None,
}

impl TryFrom<String> for KidFormat {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let choices = [
            ("libtrust", KidFormat::Libtrust),
            ("thumbprint", KidFormat::Thumbprint),
            ("none", KidFormat::None),
        ];
        crate::support::choice::one_of("token.kid_format", &s, &choices)
    }
}

/// The public parameters of an asymmetric key, as a JWK carries them (base64url).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicJwk {
    /// `kty: EC`.
    Ec {
        /// The curve.
        curve: Curve,
        /// `x` coordinate, big-endian, padded to the field size.
        x: Vec<u8>,
        /// `y` coordinate.
        y: Vec<u8>,
    },
    /// `kty: RSA`.
    Rsa {
        /// Modulus, big-endian without leading zeros.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519 {
        /// The 32-byte public key.
        x: Vec<u8>,
    },
}

impl PublicJwk {
    /// The JWK members that define the key, as a JSON object, members in lexical order
    /// (the RFC 7638 canonical form).
    pub fn canonical_json(&self) -> String {
        let b64 = |b: &[u8]| BASE64URL_NOPAD.encode(b);
        match self {
            PublicJwk::Ec { curve, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                curve.jwk_name(),
                b64(x),
                b64(y)
            ),
            PublicJwk::Rsa { n, e } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n))
            }
            PublicJwk::Ed25519 { x } => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(x))
            }
        }
    }
}

impl PublicJwk {
    /// The EC coordinate (`x` or `y`) that starts with a 0x00 byte, if any. RFC 7518 keeps
    /// such bytes (coordinates are padded to the field size), but registry 3.1.x drops them
    /// when it computes the thumbprint of a certificate, so it names such a key differently.
    pub fn zero_led_coordinate(&self) -> Option<&'static str> {
        match self {
            PublicJwk::Ec { x, .. } if x.first() == Some(&0) => Some("x"),
            PublicJwk::Ec { y, .. } if y.first() == Some(&0) => Some("y"),
            _ => None,
        }
    }
}

/// What to tell an operator whose tokens name an EC key by a thumbprint that registry 3.1.x
/// computes differently (see [`PublicJwk::zero_led_coordinate`]).
pub fn unpadded_thumbprint_problem(coordinate: &str) -> String {
    format!(
        "the key's {coordinate} coordinate starts with a 0x00 byte: registry 3.1.x computes the \
         RFC 7638 thumbprint of its rootcertbundle certificates without left-padding the \
         coordinates, so with token.kid_format: thumbprint it will refuse every token as signed \
         by an untrusted key; send the certificate as x5c (key.certificate, key.x5c: true) or \
         give the registry a jwks file (regauth jwks), both of which work, or make a new key \
         with regauth keygen, which never writes such keys"
    )
}

/// The libtrust key ID of a DER SubjectPublicKeyInfo: SHA-256, first 240 bits, base32,
/// twelve groups of four joined by `:`.
pub fn libtrust(spki_der: &[u8]) -> String {
    let hash = digest::digest(&digest::SHA256, spki_der);
    let encoded = BASE32_NOPAD.encode(&hash.as_ref()[..30]);
    let mut out = String::with_capacity(59);
    for (i, c) in encoded.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(':');
        }
        out.push(c);
    }
    out
}

/// The RFC 7638 SHA-256 thumbprint of a public key, base64url without padding.
pub fn thumbprint(jwk: &PublicJwk) -> String {
    let hash = digest::digest(&digest::SHA256, jwk.canonical_json().as_bytes());
    BASE64URL_NOPAD.encode(hash.as_ref())
}

/// An id for an HMAC secret that reveals nothing usable about it: a keyed hash of a fixed
/// label, so a published `kid` cannot be used to test guesses of a weak secret offline.
pub fn hmac_id(secret: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, b"regauth key id v1");
    format!("hmac-{}", BASE64URL_NOPAD.encode(&tag.as_ref()[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64url(s: &str) -> Vec<u8> {
        BASE64URL_NOPAD.decode(s.as_bytes()).unwrap()
    }

    /// The EC P-256 key of the jwt.md example in the distribution spec.
    fn spec_key() -> (Vec<u8>, Vec<u8>) {
        (
            b64url("m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q"),
            b64url("dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc"),
        )
    }

    #[test]
    fn libtrust_kid_matches_the_spec_example() {
        let (x, y) = spec_key();
        // SubjectPublicKeyInfo prefix for an uncompressed P-256 point.
        let mut spki = data_encoding::HEXLOWER
            .decode(b"3059301306072a8648ce3d020106082a8648ce3d030107034200")
            .unwrap();
        spki.push(0x04);
        spki.extend_from_slice(&x);
        spki.extend_from_slice(&y);
        assert_eq!(
            libtrust(&spki),
            "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6"
        );
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        let n = b64url(concat!(
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP",
            "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY",
            "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f",
            "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ));
        let jwk = PublicJwk::Rsa {
            n,
            e: b64url("AQAB"),
        };
        assert_eq!(
            thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn thumbprint_of_the_spec_ec_key_matches_a_known_answer() {
        let (x, y) = spec_key();
        let jwk = PublicJwk::Ec {
            curve: Curve::P256,
            x,
            y,
        };
        assert_eq!(
            jwk.canonical_json(),
            concat!(
                r#"{"crv":"P-256","kty":"EC","x":"m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q","#,
                r#""y":"dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc"}"#
            )
        );
        // Computed outside regauth from the RFC 7638 members written by hand:
        //   printf %s '<the JSON above>' | openssl dgst -sha256 -binary | basenc --base64url
        // (and the same with Python's hashlib.sha256 + base64.urlsafe_b64encode), with the
        // trailing `=` removed.
        assert_eq!(
            thumbprint(&jwk),
            "8qjioA3ZA7ti2JIE7c-U8smBFuZolQZvhSHDPU3hhB8"
        );
        assert_eq!(jwk.zero_led_coordinate(), None);
    }

    #[test]
    fn thumbprint_matches_the_rfc_8037_ed25519_example() {
        let jwk = PublicJwk::Ed25519 {
            x: b64url("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
        };
        assert_eq!(
            thumbprint(&jwk),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn a_zero_led_coordinate_is_named_and_kept_in_the_thumbprint() {
        // A P-256 point whose x starts with 0x00 (tests/fixtures/ec256-x-leading-zero.pem).
        let point = data_encoding::HEXLOWER
            .decode(
                b"00ff711ba237fea7d0d756157b7ef1a69e3b4487eb94350ebce70340ce3913fa\
                  35bd444cb11d9a99bb3342e4c3ec7e390f3ef68ec31cc2aecc2769ca403b30d5",
            )
            .unwrap();
        let (x, y) = point.split_at(32);
        let jwk = PublicJwk::Ec {
            curve: Curve::P256,
            x: x.to_vec(),
            y: y.to_vec(),
        };
        assert_eq!(jwk.zero_led_coordinate(), Some("x"));
        // Padded, as RFC 7518 says (known answers computed with Python hashlib); the
        // unpadded form registry 3.1.x computes is NtXJnj8I7gXACUkyuCe2NrVgMPl6lhDiqOa-iAnY_uU.
        assert_eq!(
            thumbprint(&jwk),
            "zg9qfwo6ZfN0ihG9LfvxwWu8QO0PRDGfC88NCnKx_LQ"
        );
        let swapped = PublicJwk::Ec {
            curve: Curve::P256,
            x: y.to_vec(),
            y: x.to_vec(),
        };
        assert_eq!(swapped.zero_led_coordinate(), Some("y"));
        assert!(unpadded_thumbprint_problem("y").contains("registry 3.1.x"));
    }

    #[test]
    fn hmac_id_differs_per_secret_and_does_not_contain_it() {
        let a = hmac_id(b"0123456789abcdef0123456789abcdef");
        let b = hmac_id(b"0123456789abcdef0123456789abcdeX");
        assert_ne!(a, b);
        assert!(a.starts_with("hmac-"));
        assert!(!a.contains("0123456789"));
    }
}
