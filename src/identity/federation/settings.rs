//! The `federation` settings: one entry per trusted issuer, checked at load with messages
//! that say what to change.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;

use jsonwebtoken::Algorithm;
use regex::Regex;
use serde::Deserialize;

use crate::matching::{OneOrMore, anchored_regex, regex_inside};

/// Longest leeway accepted in the settings.
pub const MAX_LEEWAY_SECONDS: u64 = 600;
/// Longest `max_lifetime_seconds` accepted in the settings (a year).
pub const MAX_LIFETIME_LIMIT_SECONDS: u64 = 366 * 86_400;

/// Algorithms an issuer may allow: public-key signatures only.
const SUPPORTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// One trusted issuer, as configured under `federation:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSettings {
    /// The `iss` its tokens carry, exactly.
    pub issuer: String,
    /// A JWK Set file with its public keys (re-read when it changes).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A URL serving its JWK Set (https, or http on a loopback address).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM CA certificates to trust for `jwks_url` instead of the built-in web roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accepted `aud` values; a token must name at least one. Required.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted `alg` values.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim holding the account name.
    #[serde(default = "default_account_claim")]
    pub account_claim: String,
    /// The claim holding the groups (a string or an array of strings).
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Longest lifetime (`exp` minus `iat`, or `nbf`) accepted.
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_seconds: u64,
    /// Conditions every token must meet: claim name → a value, a list of values (any of
    /// them), or an anchored `/regex/`; the claim must be a string.
    #[serde(default)]
    pub required_claims: BTreeMap<String, OneOrMore>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}

fn default_account_claim() -> String {
    "sub".into()
}

fn default_leeway() -> u64 {
    60
}

fn default_max_lifetime() -> u64 {
    86_400
}

impl IssuerSettings {
    /// Settings for `issuer` with the defaults, keys from `jwks_file`, for `audiences`.
    pub fn new(issuer: &str, audiences: &[&str]) -> IssuerSettings {
        IssuerSettings {
            issuer: issuer.to_owned(),
            jwks_file: None,
            jwks_url: None,
            ca_file: None,
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            algorithms: default_algorithms(),
            account_claim: default_account_claim(),
            groups_claim: None,
            leeway_seconds: default_leeway(),
            max_lifetime_seconds: default_max_lifetime(),
            required_claims: BTreeMap::new(),
        }
    }
}

/// Issuers whose tokens any of their many customers can get: without `required_claims`, every
/// workflow or pipeline on the service is trusted alike.
const MULTI_TENANT: &[(&str, &str)] = &[
    (
        "https://token.actions.githubusercontent.com",
        "GitHub Actions: every workflow on github.com",
    ),
    (
        "https://gitlab.com",
        "gitlab.com: every pipeline on gitlab.com",
    ),
];

/// What is risky about the federation settings together with the rules (`rules_name_it`:
/// some rule names `source: federation` or an issuer), one warning per line, for
/// `regauth check` and the start-up log.
pub fn warnings(issuers: &[IssuerSettings], rules_name_it: bool) -> Vec<String> {
    let mut out = Vec::new();
    if issuers.is_empty() {
        return out;
    }
    if !rules_name_it {
        out.push(
            "federation is configured but no access rule names `source: federation` or an \
             `issuer`: workloads would get nothing (rules for people never match them)"
                .to_owned(),
        );
    }
    for s in issuers {
        let iss = s.issuer.trim_end_matches('/');
        let tenant = MULTI_TENANT.iter().find(|(public, _)| {
            iss == *public
                || iss
                    .strip_prefix(public)
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        if let Some((_, who)) = tenant
            && s.required_claims.is_empty()
        {
            out.push(format!(
                "federation issuer {:?} is shared by many tenants ({who}) and has no \
                 required_claims: add one such as repository_owner or namespace_path",
                s.issuer
            ));
        }
    }
    out
}

/// A `federation` entry that cannot be used; the text says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {index}{named}: {message}")]
pub struct SettingsError {
    index: usize,
    named: String,
    message: String,
}

/// An issuer's settings, checked.
#[derive(Debug, Clone)]
pub(super) struct Rules {
    pub(super) issuer: String,
    pub(super) audiences: HashSet<String>,
    pub(super) algorithms: Vec<Algorithm>,
    pub(super) account_claim: String,
    pub(super) groups_claim: Option<String>,
    pub(super) leeway: i64,
    pub(super) max_lifetime: i64,
    /// `required_claims`, compiled.
    pub(super) required: Vec<Required>,
}

/// One `required_claims` condition: the claim must be a string that one of `accepted` fits.
#[derive(Debug, Clone)]
pub(super) struct Required {
    pub(super) claim: String,
    pub(super) accepted: Vec<Accepted>,
}

/// A value a required claim may have.
#[derive(Debug, Clone)]
pub(super) enum Accepted {
    Exact(String),
    Regex(Regex),
}

impl Required {
    pub(super) fn accepts(&self, value: &str) -> bool {
        self.accepted.iter().any(|a| match a {
            Accepted::Exact(exact) => exact == value,
            Accepted::Regex(regex) => regex.is_match(value),
        })
    }
}

/// Checks every entry; the first problem is returned.
pub fn validate(issuers: &[IssuerSettings]) -> Result<(), SettingsError> {
    checked(issuers).map(|_| ())
}

/// Checks every entry and returns the rules of each, in order; the first problem is returned.
pub(super) fn checked(issuers: &[IssuerSettings]) -> Result<Vec<Rules>, SettingsError> {
    let mut seen = HashSet::new();
    let mut checked = Vec::with_capacity(issuers.len());
    for (index, settings) in issuers.iter().enumerate() {
        let rules = check(index, settings)?;
        if !seen.insert(rules.issuer.clone()) {
            return Err(error(
                index,
                settings,
                "the same issuer is configured twice; keep one entry",
            ));
        }
        checked.push(rules);
    }
    Ok(checked)
}

fn error(index: usize, settings: &IssuerSettings, message: impl Into<String>) -> SettingsError {
    SettingsError {
        index,
        named: if settings.issuer.is_empty() {
            String::new()
        } else {
            format!(" (issuer {:?})", settings.issuer)
        },
        message: message.into(),
    }
}

pub(super) fn check(index: usize, s: &IssuerSettings) -> Result<Rules, SettingsError> {
    let fail = |m: String| error(index, s, m);
    if s.issuer.trim().is_empty() {
        return Err(fail(
            "issuer must be set to the `iss` its tokens carry".into(),
        ));
    }
    match (&s.jwks_file, &s.jwks_url) {
        (Some(_), Some(_)) => {
            return Err(fail("set jwks_file or jwks_url, not both".into()));
        }
        (None, None) => {
            return Err(fail(
                "set jwks_file (a JWK Set file) or jwks_url (where the issuer publishes it)".into(),
            ));
        }
        (Some(path), None) if path.as_os_str().is_empty() => {
            return Err(fail("jwks_file must name a file".into()));
        }
        (Some(_), None) if s.ca_file.is_some() => {
            return Err(fail("ca_file applies to jwks_url only".into()));
        }
        (_, Some(url)) => check_url(url).map_err(fail)?,
        _ => {}
    }
    if s.audiences.is_empty() {
        return Err(fail(
            "audiences must list at least one accepted `aud` (e.g. the registry's name); \
             a token meant for another service must not work here"
                .into(),
        ));
    }
    if s.audiences.iter().any(|a| a.trim().is_empty()) {
        return Err(fail("audiences must not contain an empty value".into()));
    }
    if s.algorithms.is_empty() {
        return Err(fail("algorithms must list at least one algorithm".into()));
    }
    let mut algorithms = Vec::new();
    for name in &s.algorithms {
        algorithms.push(algorithm(name).map_err(fail)?);
    }
    if s.account_claim.trim().is_empty() {
        return Err(fail(
            "account_claim must name a claim (default: sub)".into(),
        ));
    }
    if s.groups_claim
        .as_deref()
        .is_some_and(|g| g.trim().is_empty())
    {
        return Err(fail(
            "groups_claim must name a claim, or be left out".into(),
        ));
    }
    if s.leeway_seconds > MAX_LEEWAY_SECONDS {
        return Err(fail(format!(
            "leeway_seconds {} is more than {MAX_LEEWAY_SECONDS}",
            s.leeway_seconds
        )));
    }
    if !(60..=MAX_LIFETIME_LIMIT_SECONDS).contains(&s.max_lifetime_seconds) {
        return Err(fail(format!(
            "max_lifetime_seconds must be at least 60 and at most {MAX_LIFETIME_LIMIT_SECONDS} (a year)"
        )));
    }
    let mut required = Vec::with_capacity(s.required_claims.len());
    for (claim, values) in &s.required_claims {
        if claim.trim().is_empty() {
            return Err(fail(
                "required_claims: a claim name must not be empty".into(),
            ));
        }
        if values.as_slice().is_empty() {
            return Err(fail(format!(
                "required_claims.{claim}: list at least one accepted value"
            )));
        }
        let mut accepted = Vec::new();
        for value in values.as_slice() {
            if value.is_empty() {
                return Err(fail(format!(
                    "required_claims.{claim}: an accepted value must not be empty"
                )));
            }
            accepted.push(match regex_inside(value) {
                Some(inner) => {
                    Accepted::Regex(anchored_regex(inner).map_err(|e| {
                        fail(format!("required_claims.{claim}: regex {value:?}: {e}"))
                    })?)
                }
                None => Accepted::Exact(value.clone()),
            });
        }
        required.push(Required {
            claim: claim.clone(),
            accepted,
        });
    }
    Ok(Rules {
        required,
        issuer: s.issuer.clone(),
        audiences: s.audiences.iter().cloned().collect(),
        algorithms,
        account_claim: s.account_claim.clone(),
        groups_claim: s.groups_claim.clone(),
        // Both are bounded above, so they fit.
        leeway: i64::try_from(s.leeway_seconds).unwrap_or(0),
        max_lifetime: i64::try_from(s.max_lifetime_seconds).unwrap_or(0),
    })
}

/// `https://...`, or `http://` to a loopback address: keys fetched in clear text from
/// anywhere else could be swapped on the way, and with them every token.
fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|_| format!("jwks_url {url:?} is not a URL"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(format!(
            "jwks_url {url:?} is plain http: use https (http is accepted for loopback addresses only)"
        )),
        _ => Err(format!("jwks_url {url:?} must be an https:// URL")),
    }
}

/// `localhost` or a loopback address (`[::1]` with or without brackets).
pub(super) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    if name.eq_ignore_ascii_case("none") {
        return Err(
            "algorithm \"none\" is never accepted: an unsigned token proves nothing".into(),
        );
    }
    if name.to_ascii_uppercase().starts_with("HS") {
        return Err(format!(
            "algorithm {name:?} is never accepted: HMAC needs a secret shared with the issuer, \
             and a key from a JWKS is public, so anyone could sign with it"
        ));
    }
    Algorithm::from_str(name)
        .ok()
        .filter(|a| SUPPORTED.contains(a))
        .ok_or_else(|| {
            format!(
                "algorithm {name:?} is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
            )
        })
}
