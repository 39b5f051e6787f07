//! The checks that need no running registry: both configurations, the key files, the bundle
//! and the JWKS file, compared the way the registry compares them when a token arrives.

use std::net::IpAddr;

use chrono::Utc;

use super::Report;
use super::registry::{RegistryToken, RegistryVersion, Setting};
use super::trust::{check_expiry, key_trust, read_trusted};
use regauth::config::Validated;
use regauth::keys::{self, Algorithm, KeyKind, NextKey, SigningKey};

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
    let loaded = match keys::load_from_settings(&config.key, config.key_spec()) {
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
        Ok(trust) => {
            report.ok(format!("{}: {}", loaded.signing.role, trust.how));
            check_expiry(&trust.certs, &loaded.signing.role, false, now, report);
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
            Ok(trust) => {
                report.ok(format!(
                    "{}: {} (ready for the rotation)",
                    next.role, trust.how
                ));
                check_expiry(&trust.certs, &next.role, true, now, report);
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
    let ours = &config.token.issuer;
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
    let services = &config.token.services;
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
