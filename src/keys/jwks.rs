//! Published keys as a JWK Set (RFC 7517/7518): what `GET /.well-known/jwks.json` and
//! `regauth jwks` answer, and what a registry 3.x `jwks` file holds.
//!
//! Only public keys are published: an HMAC secret never appears. Every JWK has a `kid`: the
//! one tokens carry, or the RFC 7638 thumbprint with `token.kid_format: none`, so verifiers
//! can always select a key.

use std::sync::Arc;

use data_encoding::BASE64URL_NOPAD;
use serde::{Deserialize, Serialize};

use super::kid::PublicJwk;
use super::{CertificateInfo, SigningKey};

/// How long verifiers may cache the JWKS, in seconds. A verifier that caches it sees a newly
/// published next key within this time, so publish `key.next` at least this long before
/// moving it over `key.path`. Replaced keys stay published far longer (token lifetime + 60 s,
/// at least 120 s), so a cached copy never lacks a key whose tokens are still valid.
pub const MAX_AGE_SECONDS: u32 = 60;

/// One public key, members in the usual order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `EC`, `RSA` or `OKP`.
    pub kty: String,
    /// `P-256`, `P-384`, `P-521` or `Ed25519`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crv: Option<String>,
    /// EC x coordinate or Ed25519 public key, base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub x: Option<String>,
    /// EC y coordinate, base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub y: Option<String>,
    /// RSA modulus, base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub n: Option<String>,
    /// RSA public exponent, base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub e: Option<String>,
    /// Key id: the token header's `kid`, or the thumbprint when tokens carry none.
    pub kid: String,
    /// The algorithm the key signs with.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// The certificate chain, standard base64 DER, leaf first, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub x5c: Option<Vec<String>>,
}

/// A JWK Set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys, signing key first.
    pub keys: Vec<Jwk>,
}

impl Jwk {
    /// The JWK of an asymmetric key; `None` for an HMAC secret, which is never published.
    pub fn of(key: &SigningKey) -> Option<Jwk> {
        let public = key.public_key()?;
        let kid = key.published_id()?.to_owned();
        let b64 = |b: &[u8]| Some(BASE64URL_NOPAD.encode(b));
        let mut jwk = Jwk {
            kty: String::new(),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            kid,
            alg: key.algorithm().as_str().to_owned(),
            use_: "sig".to_owned(),
            x5c: key.certificate().map(CertificateInfo::x5c),
        };
        match &public.jwk {
            PublicJwk::Ec { curve, x, y } => {
                jwk.kty = "EC".into();
                jwk.crv = Some(curve.jwk_name().to_owned());
                jwk.x = b64(x);
                jwk.y = b64(y);
            }
            PublicJwk::Rsa { n, e } => {
                jwk.kty = "RSA".into();
                jwk.n = b64(n);
                jwk.e = b64(e);
            }
            PublicJwk::Ed25519 { x } => {
                jwk.kty = "OKP".into();
                jwk.crv = Some("Ed25519".into());
                jwk.x = b64(x);
            }
        }
        Some(jwk)
    }
}

impl Jwks {
    /// The set of the publishable keys among `keys`, in order; HMAC secrets are left out.
    pub fn of(keys: &[Arc<SigningKey>]) -> Jwks {
        Jwks {
            keys: keys.iter().filter_map(|k| Jwk::of(k)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, KeySpec, KidFormat};
    use aws_lc_rs::digest;
    use serde_json::Value;

    fn key(alg: Algorithm, kid_format: KidFormat, with_cert: bool) -> Arc<SigningKey> {
        let spec = KeySpec {
            kid_format,
            ..KeySpec::default()
        };
        crate::test_support::key_with(alg, spec, with_cert)
    }

    /// RFC 7638 computed from the published JSON alone: the required members, sorted,
    /// no whitespace, SHA-256, base64url.
    fn thumbprint_of_published(jwk: &Value) -> String {
        let required: &[&str] = match jwk["kty"].as_str().unwrap() {
            "EC" => &["crv", "kty", "x", "y"],
            "RSA" => &["e", "kty", "n"],
            "OKP" => &["crv", "kty", "x"],
            other => panic!("unexpected kty {other}"),
        };
        let members: Vec<String> = required
            .iter()
            .map(|m| format!("\"{m}\":\"{}\"", jwk[*m].as_str().unwrap()))
            .collect();
        let canonical = format!("{{{}}}", members.join(","));
        BASE64URL_NOPAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    }

    #[test]
    fn each_key_type_has_the_rfc_7518_members_and_nothing_private() {
        let cases: &[(Algorithm, &str, &[&str], &[&str])] = &[
            (Algorithm::ES256, "EC", &["crv", "x", "y"], &["n", "e", "d"]),
            (Algorithm::ES384, "EC", &["crv", "x", "y"], &["n", "e", "d"]),
            (Algorithm::ES512, "EC", &["crv", "x", "y"], &["n", "e", "d"]),
            (
                Algorithm::RS256,
                "RSA",
                &["n", "e"],
                &["crv", "x", "y", "d", "p"],
            ),
            (
                Algorithm::PS256,
                "RSA",
                &["n", "e"],
                &["crv", "x", "y", "d", "p"],
            ),
            (
                Algorithm::EdDSA,
                "OKP",
                &["crv", "x"],
                &["y", "n", "e", "d"],
            ),
        ];
        for (alg, kty, present, absent) in cases {
            let k = key(*alg, KidFormat::Libtrust, false);
            let jwk = serde_json::to_value(Jwk::of(&k).unwrap()).unwrap();
            assert_eq!(jwk["kty"], *kty, "{alg}");
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["kid"], k.kid().unwrap());
            for m in *present {
                assert!(jwk[*m].is_string(), "{alg}: {m} missing in {jwk}");
            }
            for m in *absent {
                assert!(jwk.get(*m).is_none(), "{alg}: {m} present in {jwk}");
            }
            assert!(jwk.get("x5c").is_none());
        }
        let ed = serde_json::to_value(
            Jwk::of(&key(Algorithm::EdDSA, KidFormat::Libtrust, false)).unwrap(),
        )
        .unwrap();
        assert_eq!(ed["crv"], "Ed25519");
    }

    #[test]
    fn the_thumbprint_kid_equals_the_thumbprint_of_the_published_jwk() {
        for alg in [
            Algorithm::ES256,
            Algorithm::ES512,
            Algorithm::RS256,
            Algorithm::EdDSA,
        ] {
            for format in [KidFormat::Thumbprint, KidFormat::None] {
                let k = key(alg, format, false);
                let jwk = serde_json::to_value(Jwk::of(&k).unwrap()).unwrap();
                assert_eq!(
                    jwk["kid"].as_str().unwrap(),
                    thumbprint_of_published(&jwk),
                    "{alg} {format:?}"
                );
            }
        }
    }

    #[test]
    fn hmac_secrets_are_never_published() {
        let secret = key(Algorithm::HS256, KidFormat::Libtrust, false);
        assert!(Jwk::of(&secret).is_none());
        let ec = key(Algorithm::ES256, KidFormat::Libtrust, false);
        let set = Jwks::of(&[secret, Arc::clone(&ec)]);
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].kid, ec.kid().unwrap());
    }

    #[test]
    fn a_configured_certificate_is_published_as_standard_base64_x5c() {
        let k = key(Algorithm::ES256, KidFormat::Libtrust, true);
        let jwk = Jwk::of(&k).unwrap();
        let x5c = jwk.x5c.unwrap();
        assert_eq!(x5c.len(), 1);
        assert_eq!(
            data_encoding::BASE64.decode(x5c[0].as_bytes()).unwrap(),
            k.certificate().unwrap().chain_der[0]
        );
    }
}
