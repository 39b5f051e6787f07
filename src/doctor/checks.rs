//! The checks that need no running registry: both configurations, the key files, the bundle
//! and the JWKS file, compared the way the registry compares them when a token arrives.

use std::net::IpAddr;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};

use super::Report;
use super::registry::{RegistryToken, RegistryVersion, Setting};
use crate::config::Validated;
use crate::keys::jwks::Jwk;
use crate::keys::{self, Algorithm, Curve, KeyKind, KidFormat, LoadedKey, NextKey, SigningKey};

/// A certificate expiring sooner than this is reported.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// A certificate of the registry's bundle.
struct BundleCert {
    der: Vec<u8>,
    spki: Vec<u8>,
    not_after: DateTime<Utc>,
    subject: String,
}

/// What the registry trusts: its bundle and JWKS file as far as they could be read.
struct Trusted {
    bundle: Option<Vec<BundleCert>>,
    bundle_path: String,
    jwks: Option<Vec<serde_json::Value>>,
}

/// A problem with one key's trust, before it is reported as an error (signing key) or a
/// warning (next key).
struct Problem {
    code: &'static str,
    message: String,
    fix: String,
}

/// Runs every check, adding to `report`.
pub fn run(
    config: &Validated,
    registry: &RegistryToken,
    version: RegistryVersion,
    report: &mut Report,
) {
    if !registry.has_token_auth() {
        report.error(
            "registry-no-token-auth",
            format!(
                "{} has no auth.token section{}",
                registry.path.display(),
                if registry.other_auth.is_empty() {
                    String::new()
                } else {
                    format!(" (auth: {})", registry.other_auth.join(", "))
                }
            ),
            "give the registry auth.token with realm, service, issuer and rootcertbundle \
             (docs/distribution-registry.md)"
                .into(),
        );
        return;
    }
    check_issuer(config, registry, report);
    check_service(config, registry, report);
    check_realm(config, registry, report);
    let loaded = match keys::load_from_settings(config) {
        Ok(loaded) => loaded,
        Err(e) => {
            report.error(
                "key-unusable",
                format!("regauth cannot load its signing key: {e}"),
                "point key.path at the key (or write one with regauth keygen --out DIR)".into(),
            );
            return;
        }
    };
    check_algorithm(&loaded.signing.key, registry, version, report);
    let trusted = read_trusted(registry, version, report);
    let now = Utc::now();
    match key_trust(&loaded.signing, &trusted, version) {
        Ok((how, certs)) => {
            report.ok(format!("{}: {how}", loaded.signing.role));
            check_expiry(&certs, &loaded.signing.role, false, now, report);
        }
        Err(problems) => {
            for p in problems {
                report.error(p.code, p.message, p.fix);
            }
        }
    }
    match loaded.next {
        NextKey::NotConfigured | NextKey::Missing(_) => {}
        NextKey::Unusable(e) => report.warn(
            "next-key-unusable",
            format!("key.next is set but cannot be used: {e}"),
            "fix or remove the key.next file before the rotation".into(),
        ),
        NextKey::Loaded(next) => match key_trust(&next, &trusted, version) {
            Ok((how, certs)) => {
                report.ok(format!("{}: {how} (ready for the rotation)", next.role));
                check_expiry(&certs, &next.role, true, now, report);
            }
            Err(problems) => {
                for p in problems {
                    report.warn(
                        "next-key-unpublished",
                        format!(
                            "{} is not trusted yet ({}): {}",
                            next.role, p.code, p.message
                        ),
                        format!(
                            "before moving it over key.path: {}, then restart the registry",
                            p.fix
                        ),
                    );
                }
            }
        },
    }
}

fn value_of(setting: &Option<Setting>) -> Option<&str> {
    setting.as_ref().map(|s| s.value.as_str())
}

/// How to change a registry setting: the variable when it comes from one.
fn registry_fix(setting: &Setting, key: &str, value: &str) -> String {
    if setting.from.starts_with("REGISTRY_") {
        format!(
            "set {}={value:?} in the registry's environment (it overrides auth.token.{key} \
             in the file) and restart the registry",
            setting.from
        )
    } else {
        format!("set auth.token.{key}: {value:?} in the registry's configuration and restart it")
    }
}

fn check_issuer(config: &Validated, registry: &RegistryToken, report: &mut Report) {
    let ours = &config.settings.token.issuer;
    match &registry.issuer {
        None => report.error(
            "issuer-missing",
            "the registry's auth.token.issuer is not set".into(),
            format!("set auth.token.issuer: {ours:?} in the registry's configuration"),
        ),
        Some(theirs) if theirs.value != *ours => report.error(
            "issuer-mismatch",
            format!(
                "the registry wants iss {:?} ({}), regauth signs iss {ours:?} (token.issuer)",
                theirs.value, theirs.from
            ),
            format!(
                "set token.issuer: {:?} in regauth's configuration, or {}",
                theirs.value,
                registry_fix(theirs, "issuer", ours)
            ),
        ),
        Some(theirs) => report.ok(format!("issuer {ours:?} ({})", theirs.from)),
    }
}

fn check_service(config: &Validated, registry: &RegistryToken, report: &mut Report) {
    let services = &config.settings.token.services;
    match &registry.service {
        None => report.error(
            "service-missing",
            "the registry's auth.token.service is not set".into(),
            "set auth.token.service in the registry's configuration (and list it in \
             token.services)"
                .into(),
        ),
        Some(theirs) if !services.is_empty() && !services.contains(&theirs.value) => report.error(
            "service-not-allowed",
            format!(
                "the registry's service {:?} ({}) is not in token.services {services:?}: \
                     regauth refuses its token requests",
                theirs.value, theirs.from
            ),
            format!(
                "add {:?} to token.services in regauth's configuration",
                theirs.value
            ),
        ),
        Some(theirs) => report.ok(format!(
            "service {:?} ({}){}",
            theirs.value,
            theirs.from,
            if services.is_empty() {
                ", any service allowed (token.services is empty)"
            } else {
                ", in token.services"
            }
        )),
    }
}

fn check_realm(config: &Validated, registry: &RegistryToken, report: &mut Report) {
    let Some(realm) = &registry.realm else {
        report.error(
            "realm-missing",
            "the registry's auth.token.realm is not set".into(),
            format!(
                "set auth.token.realm to regauth's token URL, e.g. http://{}/token",
                config.listen
            ),
        );
        return;
    };
    let listen = config.listen;
    let scheme_ours = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let example = format!("{scheme_ours}://{listen}/token");
    let elsewhere = |report: &mut Report, why: String| {
        report.error(
            "realm-elsewhere",
            format!(
                "the registry sends clients to {:?} ({}), {why}",
                realm.value, realm.from
            ),
            registry_fix(realm, "realm", &example),
        );
    };
    let uri: ureq::http::Uri = match realm.value.parse() {
        Ok(uri) => uri,
        Err(e) => return elsewhere(report, format!("which is not a URL ({e})")),
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return elsewhere(report, "which is not an absolute http(s) URL".into());
    };
    if uri.path() != "/token" {
        report.error(
            "realm-path",
            format!(
                "the realm {:?} ({}) has the path {:?}; regauth answers on /token",
                realm.value,
                realm.from,
                uri.path()
            ),
            registry_fix(realm, "realm", &example),
        );
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        Some(IpAddr::from([127, 0, 0, 1]))
    } else {
        host.parse::<IpAddr>().ok()
    };
    let Some(ip) = ip else {
        report.note(format!(
            "the realm's host {host:?} is a name: whether it reaches server.listen {listen} \
             (directly or through a proxy) cannot be told from the files; --registry checks it"
        ));
        return;
    };
    if scheme != scheme_ours {
        return elsewhere(
            report,
            format!("but regauth serves {scheme_ours} on {listen} (server.tls)"),
        );
    }
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    if listen.port() != 0 && port != listen.port() {
        return elsewhere(
            report,
            format!("port {port}, but regauth listens on {listen} (server.listen)"),
        );
    }
    let same_host = listen.ip().is_unspecified()
        || listen.ip() == ip
        || (listen.ip().is_loopback() && ip.is_loopback());
    if !same_host {
        return elsewhere(
            report,
            format!("host {ip}, but regauth listens on {listen} (server.listen)"),
        );
    }
    report.ok(format!(
        "realm {:?} reaches server.listen {listen}",
        realm.value
    ));
}

fn check_algorithm(
    key: &SigningKey,
    registry: &RegistryToken,
    version: RegistryVersion,
    report: &mut Report,
) {
    let alg = key.algorithm();
    let refused = match alg.key_kind() {
        KeyKind::Hmac => Some("registries cannot verify HMAC-signed tokens"),
        _ if version == RegistryVersion::V2
            && matches!(
                alg,
                Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 | Algorithm::EdDSA
            ) =>
        {
            Some("registry 2.8 accepts only RS256/384/512 and ES256/384/512")
        }
        _ => None,
    };
    if let Some(why) = refused {
        report.error(
            "algorithm-unsupported",
            format!("regauth signs with {alg}: {why}"),
            "make an ES256 key (regauth keygen --alg es256 --out DIR) and point key.path at it"
                .into(),
        );
        return;
    }
    if let Some(list) = &registry.signing_algorithms
        && !list.iter().any(|a| a.eq_ignore_ascii_case(alg.as_str()))
    {
        report.error(
            "algorithm-not-allowed",
            format!(
                "regauth signs with {alg}, not in the registry's auth.token.signingalgorithms \
                 {list:?}"
            ),
            format!("add {alg} to auth.token.signingalgorithms and restart the registry"),
        );
        return;
    }
    report.ok(format!("algorithm {alg} (registry {})", version.name()));
}

/// Reads the bundle and the JWKS file once, reporting files that are named but unusable, or
/// a bundle the registry needs but has not.
fn read_trusted(
    registry: &RegistryToken,
    version: RegistryVersion,
    report: &mut Report,
) -> Trusted {
    let mut trusted = Trusted {
        bundle: None,
        bundle_path: value_of(&registry.rootcertbundle)
            .unwrap_or("(not set)")
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
        Some(setting) => match read_bundle(Path::new(&setting.value)) {
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
        match read_jwks(Path::new(&setting.value)) {
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
        certs.push(BundleCert {
            der,
            spki,
            not_after,
            subject,
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
fn key_trust(
    loaded: &LoadedKey,
    trusted: &Trusted,
    version: RegistryVersion,
) -> Result<(String, Vec<(String, DateTime<Utc>)>), Vec<Problem>> {
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
            Some(bundle) => match bundle.iter().find(|c| c.der == *anchor) {
                Some(c) => {
                    certs.push((format!("bundle certificate {}", c.subject), c.not_after));
                    Ok((
                        format!(
                            "tokens carry x5c, whose chain ends at a certificate of the bundle ({})",
                            c.subject
                        ),
                        certs,
                    ))
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
                return Ok((
                    format!("kid {kid} is in the registry's jwks file"),
                    Vec::new(),
                ));
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
                crate::keys::kid::PublicJwk::Ec {
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
        Ok((
            format!(
                "kid {kid} ({}) matches a certificate of the bundle",
                match kid_format {
                    KidFormat::Libtrust => "libtrust",
                    _ => "thumbprint",
                }
            ),
            certs,
        ))
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

fn chain_expiry(chain: &[Vec<u8>]) -> Vec<(String, DateTime<Utc>)> {
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

fn check_expiry(
    certs: &[(String, DateTime<Utc>)],
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
