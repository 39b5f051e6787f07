//! What the registry trusts (its bundle and jwks file) and whether that covers a key: the
//! way the registry looks a token's key up (x5c chain, jwks kid, bundle kid per version),
//! and the expiry of the certificates that trust rests on.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};

use super::Report;
use super::registry::{RegistryToken, RegistryVersion};
use regauth::keys::jwks::Jwk;
use regauth::keys::kid::PublicJwk;
use regauth::keys::{Curve, KidFormat, LoadedKey, SigningKey};

/// A certificate expiring sooner than this is reported.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// Certificates a key's trust rests on: what they are, and when they expire.
pub type Expiring = Vec<(String, DateTime<Utc>)>;

/// How the registry trusts a key's tokens.
pub struct Trust {
    /// One line for the report.
    pub how: String,
    /// The certificates that trust rests on.
    pub certs: Expiring,
}

/// A certificate of the registry's bundle.
pub struct BundleCert {
    der: Vec<u8>,
    spki: Vec<u8>,
    not_after: DateTime<Utc>,
    subject: String,
    subject_raw: Vec<u8>,
    /// The public key's bits (EC point, PKCS#1 RSA key, Ed25519 key).
    key_bits: Vec<u8>,
}

/// What the registry trusts: its bundle and JWKS file as far as they could be read.
pub struct Trusted {
    bundle: Option<Vec<BundleCert>>,
    bundle_path: String,
    jwks: Option<Vec<serde_json::Value>>,
}

/// A problem with one key's trust, before it is reported as an error (signing key) or a
/// warning (next key).
pub struct Problem {
    pub code: &'static str,
    pub message: String,
    pub fix: String,
}

/// Reads the bundle and the JWKS file once, reporting files that are named but unusable, or
/// a bundle the registry needs but has not.
pub fn read_trusted(
    registry: &RegistryToken,
    version: RegistryVersion,
    report: &mut Report,
) -> Trusted {
    let mut trusted = Trusted {
        bundle: None,
        bundle_path: registry
            .rootcertbundle
            .as_ref()
            .map_or("(not set)", |s| s.value.as_str())
            .to_owned(),
        jwks: None,
    };
    match &registry.rootcertbundle {
        None if registry.jwks.is_none() || !version.is_v3() => report.error(
            "bundle-missing",
            "the registry's auth.token.rootcertbundle is not set: it trusts no key".into(),
            "write it with regauth bundle --config FILE > bundle.pem and set \
             auth.token.rootcertbundle to that file"
                .into(),
        ),
        None => {}
        Some(setting) => match read_bundle(&relative_note(&setting.value, report)) {
            Ok(certs) => trusted.bundle = Some(certs),
            Err((code, why)) => report.error(
                code,
                format!(
                    "the registry's bundle {} ({}) {why}",
                    setting.value, setting.from
                ),
                format!(
                    "regauth bundle --config FILE > {} (where the registry reads it), then \
                     restart the registry",
                    setting.value
                ),
            ),
        },
    }
    if let Some(setting) = &registry.jwks {
        match read_jwks(&relative_note(&setting.value, report)) {
            Ok(keys) => trusted.jwks = Some(keys),
            Err(why) => report.error(
                "jwks-unreadable",
                format!(
                    "the registry's jwks file {} ({}) {why}",
                    setting.value, setting.from
                ),
                format!(
                    "regauth jwks --config FILE > {}, then restart the registry",
                    setting.value
                ),
            ),
        }
    }
    trusted
}

/// The path as given, with a note when it is relative: doctor reads it from its own working
/// directory, the registry from its own.
fn relative_note(path: &str, report: &mut Report) -> std::path::PathBuf {
    let path = Path::new(path);
    if path.is_relative() {
        report.note(format!(
            "{} is a relative path: read from doctor's working directory, while the registry \
             resolves it from its own",
            path.display()
        ));
    }
    path.to_path_buf()
}

fn read_bundle(path: &Path) -> Result<Vec<BundleCert>, (&'static str, String)> {
    let bytes = std::fs::read(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            "bundle-missing"
        } else {
            "bundle-unreadable"
        };
        (code, format!("cannot be read: {e}"))
    })?;
    let blocks =
        pem::parse_many(&bytes).map_err(|e| ("bundle-unreadable", format!("is not PEM: {e}")))?;
    let mut certs = Vec::new();
    for block in blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE") {
        let der = block.into_contents();
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| ("bundle-unreadable", format!("holds a bad certificate: {e}")))?;
        let spki = cert.tbs_certificate.subject_pki.raw.to_vec();
        let not_after =
            DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0).unwrap_or_default();
        let subject = cert.subject().to_string();
        let subject_raw = cert.subject().as_raw().to_vec();
        let key_bits = cert.public_key().subject_public_key.data.to_vec();
        certs.push(BundleCert {
            der,
            spki,
            not_after,
            subject,
            subject_raw,
            key_bits,
        });
    }
    if certs.is_empty() {
        return Err(("bundle-unreadable", "holds no CERTIFICATE block".into()));
    }
    Ok(certs)
}

fn read_jwks(path: &Path) -> Result<Vec<serde_json::Value>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("is not JSON: {e}"))?;
    value["keys"]
        .as_array()
        .cloned()
        .ok_or_else(|| "has no \"keys\" array".to_owned())
}

/// How the registry would trust tokens signed by `loaded`, with the certificates that trust
/// rests on (for the expiry check); or every reason it would refuse them.
pub fn key_trust(
    loaded: &LoadedKey,
    trusted: &Trusted,
    version: RegistryVersion,
) -> Result<Trust, Vec<Problem>> {
    let key = &loaded.key;
    let bundle_fix = format!(
        "regauth bundle --config FILE > {} (it holds the signing and next keys' certificates), \
         then restart the registry",
        trusted.bundle_path
    );
    let problem = |code: &'static str, message: String, fix: String| Problem { code, message, fix };
    let Some(public) = key.public_key() else {
        return Err(vec![problem(
            "algorithm-unsupported",
            format!(
                "{} is an HMAC secret, which no registry can verify",
                loaded.role
            ),
            "use an asymmetric key (regauth keygen --alg es256)".into(),
        )]);
    };
    // 1. x5c: the chain must end at a certificate of the bundle (2.8 and 3.x alike).
    if key.sends_x5c() {
        let chain = key
            .certificate()
            .map(|c| c.chain_der.clone())
            .unwrap_or_default();
        let Some(anchor) = chain.last() else {
            return Err(Vec::new());
        };
        let mut certs = chain_expiry(&chain);
        return match &trusted.bundle {
            // The bundle's own problem is reported once, by read_trusted.
            None => Err(Vec::new()),
            // The chain's last certificate itself, or (when it is not self-issued) the
            // certificate named as its issuer: the registry verifies the chain up to either.
            // The issuer is matched by name here; the registry also checks the signature.
            Some(bundle) => match bundle
                .iter()
                .find(|c| c.der == *anchor)
                .or_else(|| issuer_of(anchor, bundle))
            {
                Some(c) => {
                    certs.push((format!("bundle certificate {}", c.subject), c.not_after));
                    Ok(Trust {
                        how: format!(
                            "tokens carry x5c, whose chain ends at a certificate of the bundle ({})",
                            c.subject
                        ),
                        certs,
                    })
                }
                None => Err(vec![problem(
                    "bundle-missing-key",
                    format!(
                        "tokens carry x5c, but the last certificate of the chain is not in the \
                         bundle {}: the registry answers \"token signed by untrusted key\"",
                        trusted.bundle_path
                    ),
                    bundle_fix,
                )]),
            },
        };
    }
    let kid_format = header_kid_format(key);
    let Some(kid) = key.kid() else {
        return Err(vec![problem(
            "kid-missing",
            "tokens carry neither kid nor x5c (token.kid_format: none without key.certificate), \
             so the registry cannot find their key"
                .into(),
            format!(
                "set token.kid_format: {} (or key.certificate, to send x5c)",
                if version.is_v3() {
                    "thumbprint"
                } else {
                    "libtrust"
                }
            ),
        )]);
    };
    // 2. 3.x: a jwks file entry with the token's kid.
    if version.is_v3()
        && let Some(entries) = &trusted.jwks
    {
        let ours = Jwk::of(key);
        let same = |e: &serde_json::Value| {
            ours.as_ref().is_some_and(|o| {
                let field = |name: &str| e[name].as_str().map(str::to_owned);
                field("kty").as_deref() == Some(o.kty.as_str())
                    && field("crv") == o.crv
                    && field("x") == o.x
                    && field("y") == o.y
                    && field("n") == o.n
                    && field("e") == o.e
            })
        };
        if let Some(entry) = entries.iter().find(|e| e["kid"].as_str() == Some(kid)) {
            if same(entry) {
                return Ok(Trust {
                    how: format!("kid {kid} is in the registry's jwks file"),
                    certs: Vec::new(),
                });
            }
            return Err(vec![problem(
                "jwks-missing-key",
                format!("the jwks file has kid {kid}, but with another public key"),
                "regauth jwks --config FILE > (the jwks file), then restart the registry".into(),
            )]);
        }
    }
    let in_bundle = trusted
        .bundle
        .as_ref()
        .and_then(|b| b.iter().find(|c| c.spki == public.spki_der));
    let certs = in_bundle
        .map(|c| vec![(format!("bundle certificate {}", c.subject), c.not_after)])
        .unwrap_or_default();
    let mut problems = Vec::new();
    if trusted.bundle.is_some() && in_bundle.is_none() {
        problems.push(problem(
            "bundle-missing-key",
            format!(
                "no certificate in the bundle {} holds this key ({}){}: the registry answers \
                 \"token signed by untrusted key\"",
                trusted.bundle_path,
                key.label(),
                if trusted.jwks.is_some() {
                    ", nor does the jwks file"
                } else {
                    ""
                }
            ),
            bundle_fix.clone(),
        ));
    }
    // 3. The kid form the version computes from the bundle.
    match (version, kid_format) {
        (RegistryVersion::V2, KidFormat::Libtrust) => {}
        (RegistryVersion::V2, _) => problems.push(problem(
            "kid-format",
            format!(
                "tokens carry the thumbprint kid {kid}; registry 2.8 looks up the libtrust key ID \
                 of its bundle certificates ({})",
                key.libtrust_kid().unwrap_or("?")
            ),
            "set token.kid_format: libtrust (or send x5c with key.certificate)".into(),
        )),
        (_, KidFormat::Libtrust) => problems.push(problem(
            "kid-format",
            format!(
                "tokens carry the libtrust kid {kid}; registry 3.x matches the kid against the \
                 RFC 7638 thumbprint of its bundle certificates ({}) and its jwks file's kids",
                key.thumbprint().unwrap_or("?")
            ),
            "set token.kid_format: thumbprint, or give the registry a jwks file (regauth jwks \
             --config FILE > jwks.json; auth.token.jwks), or send x5c"
                .into(),
        )),
        (RegistryVersion::V3_0, _)
            if matches!(
                public.jwk,
                PublicJwk::Ec {
                    curve: Curve::P256,
                    ..
                }
            ) =>
        {
            problems.push(problem(
                "kid-format",
                "registry 3.0.0 computes the same thumbprint for every P-256 certificate, so \
                 the kid cannot select this key"
                    .into(),
                "upgrade the registry to 3.1 or later, or send x5c (key.certificate), or use a \
                 jwks file"
                    .into(),
            ))
        }
        (_, _) => {
            if version == RegistryVersion::V3_1
                && let Some(why) = key.registry_thumbprint_problem()
            {
                problems.push(problem(
                    "kid-ec-padding",
                    why,
                    "send x5c (key.certificate, key.x5c: true), or write a jwks file with \
                     regauth jwks, or make a new key with regauth keygen"
                        .into(),
                ));
            }
        }
    }
    if problems.is_empty() && in_bundle.is_some() {
        Ok(Trust {
            how: format!(
                "kid {kid} ({}) matches a certificate of the bundle",
                match kid_format {
                    KidFormat::Libtrust => "libtrust",
                    _ => "thumbprint",
                }
            ),
            certs,
        })
    } else {
        Err(problems)
    }
}

/// Which kid form the header carries (the key knows its kid; the settings know the form, but
/// the key's own ids tell it without them).
fn header_kid_format(key: &SigningKey) -> KidFormat {
    match key.kid() {
        None => KidFormat::None,
        Some(kid) if Some(kid) == key.libtrust_kid() => KidFormat::Libtrust,
        Some(_) => KidFormat::Thumbprint,
    }
}

/// The bundle certificate that issued `der` (named as its issuer, and its signature checks
/// out), unless `der` is self-issued.
fn issuer_of<'a>(der: &[u8], bundle: &'a [BundleCert]) -> Option<&'a BundleCert> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let issuer = cert.issuer().as_raw();
    if issuer == cert.subject().as_raw() {
        return None;
    }
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    let tbs = cert.tbs_certificate.as_ref();
    let signature = cert.signature_value.data.as_ref();
    bundle
        .iter()
        .filter(|c| c.subject_raw == issuer)
        .find(|c| signed_by(&oid, tbs, signature, &c.key_bits))
}

/// True when `signature` over `tbs` verifies with `key_bits` for the signature algorithm
/// `oid` (ECDSA, RSA PKCS#1 v1.5, Ed25519).
fn signed_by(oid: &str, tbs: &[u8], signature: &[u8], key_bits: &[u8]) -> bool {
    use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
    let candidates: &[&'static dyn VerificationAlgorithm] = match oid {
        "1.2.840.10045.4.3.2" => &[&sig::ECDSA_P256_SHA256_ASN1, &sig::ECDSA_P384_SHA256_ASN1],
        "1.2.840.10045.4.3.3" => &[&sig::ECDSA_P384_SHA384_ASN1, &sig::ECDSA_P256_SHA384_ASN1],
        "1.2.840.10045.4.3.4" => &[&sig::ECDSA_P521_SHA512_ASN1],
        "1.2.840.113549.1.1.11" => &[&sig::RSA_PKCS1_2048_8192_SHA256],
        "1.2.840.113549.1.1.12" => &[&sig::RSA_PKCS1_2048_8192_SHA384],
        "1.2.840.113549.1.1.13" => &[&sig::RSA_PKCS1_2048_8192_SHA512],
        "1.3.101.112" => &[&sig::ED25519],
        _ => &[],
    };
    candidates.iter().any(|alg| {
        UnparsedPublicKey::new(*alg, key_bits)
            .verify(tbs, signature)
            .is_ok()
    })
}

fn chain_expiry(chain: &[Vec<u8>]) -> Expiring {
    chain
        .iter()
        .enumerate()
        .filter_map(|(i, der)| {
            let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
            let at = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)?;
            Some((format!("x5c certificate {i} ({})", cert.subject()), at))
        })
        .collect()
}

pub fn check_expiry(
    certs: &Expiring,
    role: &str,
    next: bool,
    now: DateTime<Utc>,
    report: &mut Report,
) {
    let fix = "renew it for the same key (or rotate to a new key, docs/rotation.md), then \
               regauth bundle --config FILE > (the bundle) and restart the registry";
    for (what, not_after) in certs {
        let when = not_after.format("%Y-%m-%d %H:%M UTC");
        if *not_after <= now {
            let message = format!("{what} for {role} expired on {when}");
            if next {
                report.warn("certificate-expired", message, fix.into());
            } else {
                report.error("certificate-expired", message, fix.into());
            }
        } else if *not_after - now < Duration::days(EXPIRY_WARNING_DAYS) {
            report.warn(
                "certificate-expiring",
                format!(
                    "{what} for {role} expires on {when}, in {} days",
                    (*not_after - now).num_days()
                ),
                fix.into(),
            );
        }
    }
}
