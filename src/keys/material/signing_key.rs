//! [`SigningKey`]: a parsed private key with its algorithm, key ids, certificate and
//! encoded JWS header, built once per key file.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;

use super::super::algorithm::Algorithm;
use super::super::kid::{self, KidFormat};
use super::certificate::{CertificateInfo, parse_chain};
use super::pem::{decoded_secret, parse_hmac_secret, parse_pem_key};
use super::{KeyError, PublicKeyInfo, Secret, jws};
use crate::fs::pair::content_digest;

/// What to build a key into.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Algorithm override; `None` picks the key's natural algorithm (RS256 for RSA).
    pub algorithm: Option<Algorithm>,
    /// Which `kid` to put in the header.
    pub kid_format: KidFormat,
    /// Whether the header carries the certificate chain as `x5c` (default: yes). Without it
    /// the certificate is kept for the registry's bundle and the JWKS only.
    pub x5c: bool,
}

impl Default for KeySpec {
    fn default() -> Self {
        KeySpec {
            algorithm: None,
            kid_format: KidFormat::default(),
            x5c: true,
        }
    }
}

/// A signing key ready to use: parsed private key, algorithm, ids and the encoded JWT header.
pub struct SigningKey {
    pub(super) alg: Algorithm,
    kid: Option<String>,
    /// The libtrust id and thumbprint are both kept for display, whatever the header carries.
    libtrust_kid: Option<String>,
    thumbprint: Option<String>,
    pub(super) secret: Secret,
    public: Option<PublicKeyInfo>,
    certificate: Option<CertificateInfo>,
    /// base64url of the JWT header, computed once per key.
    pub(super) header_b64: String,
    /// Whether the header carries the certificate chain (`x5c`).
    sends_x5c: bool,
    /// SHA-256 over the key and certificate bytes it was loaded from.
    fingerprint: [u8; 32],
    pub(super) rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("x5c", &self.certificate.is_some())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Builds a key from a key file's bytes and, optionally, a PEM certificate chain.
    pub fn from_bytes(
        key: &[u8],
        certificate: Option<&[u8]>,
        spec: KeySpec,
    ) -> Result<SigningKey, KeyError> {
        let certificate_pem = certificate;
        let text = String::from_utf8_lossy(key);
        let (secret, alg, public) = if text.contains("-----BEGIN") {
            parse_pem_key(key, spec.algorithm)?
        } else {
            match spec.algorithm {
                Some(alg) if alg.is_hmac() => parse_hmac_secret(&text, alg)?,
                _ => return Err(KeyError::NoPrivateKey),
            }
        };
        let certificate = match certificate {
            None => None,
            Some(_) if public.is_none() => return Err(KeyError::CertificateWithSecret),
            Some(pem) => Some(parse_chain(pem, public.as_ref())?),
        };
        let libtrust_kid = public.as_ref().map(|p| kid::libtrust(&p.spki_der));
        let thumbprint = public.as_ref().map(|p| kid::thumbprint(&p.jwk));
        let kid = match (spec.kid_format, &secret) {
            (KidFormat::None, _) => None,
            (_, Secret::Hmac(_)) => Some(kid::hmac_id(&decoded_secret(&text))),
            (KidFormat::Libtrust, _) => libtrust_kid.clone(),
            (KidFormat::Thumbprint, _) => thumbprint.clone(),
        };
        let x5c = certificate
            .as_ref()
            .filter(|_| spec.x5c)
            .map(CertificateInfo::x5c);
        let sends_x5c = x5c.is_some();
        let header_b64 = jws::encode_header(alg, kid.as_deref(), x5c)?;
        let fingerprint = content_digest(key, certificate_pem);
        Ok(SigningKey {
            alg,
            kid,
            libtrust_kid,
            thumbprint,
            secret,
            public,
            certificate,
            header_b64,
            sends_x5c,
            fingerprint,
            rng: SystemRandom::new(),
        })
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The `kid` the header carries, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The libtrust key ID of an asymmetric key, whatever the header carries.
    pub fn libtrust_kid(&self) -> Option<&str> {
        self.libtrust_kid.as_deref()
    }

    /// The id verifiers select this key by: the header `kid`, else the thumbprint (with
    /// `kid_format: none`). `None` only for an HMAC secret without a kid.
    pub fn published_id(&self) -> Option<&str> {
        self.kid().or(self.thumbprint())
    }

    /// The RFC 7638 thumbprint of an asymmetric key, whatever the header carries.
    pub fn thumbprint(&self) -> Option<&str> {
        self.thumbprint.as_deref()
    }

    /// Why registry 3.1.x will refuse every token this key signs, if it will: the tokens
    /// name the key by its thumbprint alone (no `x5c`), and one of its EC coordinates starts
    /// with a 0x00 byte, which that registry drops (see [`kid::unpadded_thumbprint_problem`]).
    pub fn registry_thumbprint_problem(&self) -> Option<String> {
        let by_thumbprint = self.kid.is_some() && self.kid == self.thumbprint;
        if !by_thumbprint || self.sends_x5c {
            return None;
        }
        let coordinate = self.public.as_ref()?.jwk.zero_led_coordinate()?;
        Some(kid::unpadded_thumbprint_problem(coordinate))
    }

    /// Whether tokens carry the certificate chain as `x5c` (a certificate is configured and
    /// `key.x5c` is on).
    pub fn sends_x5c(&self) -> bool {
        self.sends_x5c
    }

    /// The public key, for asymmetric keys.
    pub fn public_key(&self) -> Option<&PublicKeyInfo> {
        self.public.as_ref()
    }

    /// The certificate chain sent as `x5c`, if configured.
    pub fn certificate(&self) -> Option<&CertificateInfo> {
        self.certificate.as_ref()
    }

    /// `content_digest` of the bytes the key was loaded from (SHA-256 over the key and
    /// certificate bytes).
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// A short label for logs: algorithm and kid (never key material).
    pub fn label(&self) -> String {
        match (&self.kid, &self.thumbprint) {
            (Some(kid), _) => format!("{} kid {kid}", self.alg),
            (None, Some(t)) => format!("{} thumbprint {t}", self.alg),
            (None, None) => self.alg.to_string(),
        }
    }
}
