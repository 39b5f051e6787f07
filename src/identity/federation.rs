//! Workload-token federation: a signed identity token (a Kubernetes service-account token, a
//! CI job's OIDC id_token) presented as the password is exchanged for a registry token.
//!
//! The password is taken for such a token only when it is a JWT whose `iss` is a configured
//! issuer; anything else is not this source's business (a JWT from an unknown issuer is just
//! a wrong password). A configured issuer's token must then pass every check: size, `alg`
//! in the issuer's allow-list and fitting the key's type, the signature, `exp` (required),
//! `nbf` and `iat` with leeway, `aud`, and a lifetime no longer than allowed. The caller
//! becomes the account in `account_claim`, with the groups in `groups_claim`.
//!
//! Verification may read or fetch the issuer's JWKS ([`jwks`]), so it runs on a blocking
//! thread, as password checks do.

pub mod jwks;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use secrecy::ExposeSecret;

use self::jwks::{JwksError, KeyStore, Lookup, Source};
use super::{Credentials, Identity, IdentitySource, Outcome};
use crate::clock::Clock;
use crate::echo::shorten;

/// The user name a client gives with a workload token (it may also give the mapped account).
pub const TOKEN_USER: &str = "oidc";
/// The identity source's name, as logs, `regauth explain` and identities show it.
pub const SOURCE_FEDERATION: &str = "federation";
/// Longest password looked at as a token; longer ones are not tokens.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest decoded claim set accepted.
pub const MAX_CLAIMS_BYTES: usize = 8 * 1024;
/// Largest decoded JOSE header accepted.
const MAX_HEADER_BYTES: usize = 1024;
/// Longest account name taken from a claim.
pub const MAX_ACCOUNT_BYTES: usize = 256;
/// Most groups taken from a claim.
pub const MAX_GROUPS: usize = 256;
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
        }
    }
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
struct Rules {
    issuer: String,
    audiences: HashSet<String>,
    algorithms: Vec<Algorithm>,
    account_claim: String,
    groups_claim: Option<String>,
    leeway: i64,
    max_lifetime: i64,
}

/// Checks every entry; the first problem is returned.
pub fn validate(issuers: &[IssuerSettings]) -> Result<(), SettingsError> {
    let mut seen = HashSet::new();
    for (index, settings) in issuers.iter().enumerate() {
        let rules = check(index, settings)?;
        if !seen.insert(rules.issuer.clone()) {
            return Err(error(
                index,
                settings,
                "the same issuer is configured twice; keep one entry",
            ));
        }
    }
    Ok(())
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

fn check(index: usize, s: &IssuerSettings) -> Result<Rules, SettingsError> {
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
    Ok(Rules {
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

fn is_loopback(host: &str) -> bool {
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

/// Why a token was refused. Each is a wrong password to the client (401); the text is for
/// the log and never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The header is not a JOSE header this server reads.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header has `crit`: extensions this server does not understand.
    #[error("the token has critical header extensions")]
    Critical,
    /// `alg` not in the issuer's allow-list (this includes `none` and HMAC).
    #[error("algorithm {0:?} is not allowed for this issuer")]
    Algorithm(String),
    /// No key with the token's `kid`, even after a refresh.
    #[error("no key with kid {0:?}")]
    UnknownKey(String),
    /// The key named cannot verify this `alg`.
    #[error("the key does not fit algorithm {0:?}")]
    KeyMismatch(String),
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// No `exp`, or not a number.
    #[error("the token has no exp")]
    NoExpiry,
    /// Neither `iat` nor `nbf`: the lifetime cannot be bounded.
    #[error("the token has neither iat nor nbf")]
    NoStart,
    /// `exp` passed (beyond the leeway).
    #[error("the token expired at {0}")]
    Expired(i64),
    /// `nbf` still ahead (beyond the leeway).
    #[error("the token is not valid before {0}")]
    NotYetValid(i64),
    /// `iat` ahead (beyond the leeway).
    #[error("the token was issued in the future ({0})")]
    IssuedInFuture(i64),
    /// Valid for longer than `max_lifetime_seconds`.
    #[error("the token is valid for {0} s, more than allowed")]
    TooLongLived(i64),
    /// No accepted `aud`.
    #[error("the token is not meant for this server (aud)")]
    Audience,
    /// The account claim is missing, not a string, empty, too long or has control characters.
    #[error("claim {0:?} does not hold a usable account name")]
    Account(String),
    /// The groups claim is not a string or an array of strings, or too large.
    #[error("claim {0:?} does not hold groups (a string or an array of strings)")]
    Groups(String),
    /// The user name is neither `oidc` nor the mapped account.
    #[error("the user name is neither \"oidc\" nor the token's account")]
    UserName,
}

/// Why a configured issuer's token did not sign anyone in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// The token was refused (401).
    #[error("workload token from {issuer} refused: {refusal}")]
    Refused {
        /// The issuer.
        issuer: String,
        /// Why.
        refusal: Refusal,
    },
    /// The issuer's keys could never be loaded (503).
    #[error("keys of issuer {issuer} are unavailable: {error}")]
    Unavailable {
        /// The issuer.
        issuer: String,
        /// Why.
        error: JwksError,
    },
}

/// A verified workload token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federated {
    /// The caller: the mapped account and groups.
    pub identity: Identity,
    /// The issuer that vouched for it.
    pub issuer: String,
    /// The token's `exp`: nothing derived from it may outlive it.
    pub expires_at: DateTime<Utc>,
}

/// An issuer as `regauth check` and the start-up log show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerStatus {
    /// The `iss`.
    pub issuer: String,
    /// The JWKS file or URL.
    pub source: String,
    /// Keys loaded now.
    pub keys: usize,
}

struct Issuer {
    rules: Rules,
    keys: KeyStore,
}

/// The configured issuers.
pub struct Federation {
    issuers: HashMap<String, Issuer>,
    clock: Arc<dyn Clock>,
}

/// Errors building the issuers from valid settings (a JWKS file or CA file that cannot be
/// used).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The settings are invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A key source cannot be used.
    #[error("federation issuer {issuer:?}: {error}")]
    Keys {
        /// The issuer.
        issuer: String,
        /// Why.
        error: JwksError,
    },
}

impl Federation {
    /// The issuers in `settings`. JWKS files are read now; URLs on first use (or
    /// [`Federation::prefetch`]).
    pub fn new(settings: &[IssuerSettings], clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        validate(settings)?;
        let mut issuers = HashMap::new();
        for (index, s) in settings.iter().enumerate() {
            let rules = check(index, s)?;
            let keys_error = |error| StartError::Keys {
                issuer: s.issuer.clone(),
                error,
            };
            let source = match (&s.jwks_file, &s.jwks_url) {
                (Some(path), _) => Source::File(path.clone()),
                (None, Some(url)) => Source::url(url, s.ca_file.as_deref()).map_err(keys_error)?,
                (None, None) => continue,
            };
            let keys = KeyStore::new(source, Arc::clone(&clock)).map_err(keys_error)?;
            issuers.insert(s.issuer.clone(), Issuer { rules, keys });
        }
        Ok(Federation { issuers, clock })
    }

    /// No issuers: nothing to do.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// The configured issuers, where their keys come from and how many are loaded.
    pub fn issuers(&self) -> Vec<IssuerStatus> {
        let mut list: Vec<_> = self
            .issuers
            .values()
            .map(|i| IssuerStatus {
                issuer: i.rules.issuer.clone(),
                source: i.keys.source().describe(),
                keys: i.keys.len(),
            })
            .collect();
        list.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        list
    }

    /// Loads of `issuer`'s keys so far, for tests and logs.
    pub fn key_stats(&self, issuer: &str) -> Option<jwks::KeyStats> {
        self.issuers.get(issuer).map(|i| i.keys.stats())
    }

    /// Fetches the keys of URL issuers that have none yet (blocking; failures are logged
    /// and retried on use).
    pub fn prefetch(&self) {
        for issuer in self.issuers.values() {
            if issuer.keys.is_empty() {
                let _ = issuer.keys.refresh();
            }
        }
    }

    /// The issuer a password names when it is a JWT from a configured issuer; `None` for
    /// every other password (cheap: a length check, or one base64 and JSON decode).
    pub fn claims_issuer(&self, password: &str) -> Option<&str> {
        self.peek(password)
            .map(|(issuer, _, _)| issuer.rules.issuer.as_str())
    }

    /// `Ok(None)` when `password` is not a token of a configured issuer; the caller when it
    /// is one and passes every check; why not otherwise. `username` must be `oidc` or the
    /// account the token maps to. May load keys (blocking).
    pub fn verify(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Federated>, FederationError> {
        let Some((issuer, parts, claims)) = self.peek(password) else {
            return Ok(None);
        };
        let refused = |refusal| FederationError::Refused {
            issuer: issuer.rules.issuer.clone(),
            refusal,
        };
        let (alg, kid) = header(parts.header, &issuer.rules).map_err(refused)?;
        let candidates = match issuer.keys.lookup(kid.as_deref(), alg) {
            Lookup::Found(keys) => keys,
            Lookup::Mismatch => return Err(refused(Refusal::KeyMismatch(format!("{alg:?}")))),
            Lookup::Unknown => {
                return Err(refused(Refusal::UnknownKey(
                    kid.map(|k| shorten(&k)).unwrap_or_default(),
                )));
            }
            Lookup::Unavailable(error) => {
                return Err(FederationError::Unavailable {
                    issuer: issuer.rules.issuer.clone(),
                    error,
                });
            }
        };
        let message = &password[..parts.header.len() + 1 + parts.payload.len()];
        let verified = candidates.iter().any(|key| {
            jsonwebtoken::crypto::verify(parts.signature, message.as_bytes(), &key.key, alg)
                .unwrap_or(false)
        });
        if !verified {
            return Err(refused(Refusal::Signature));
        }
        let now = self.clock.now().timestamp();
        let expires_at = check_claims(&claims, &issuer.rules, now).map_err(refused)?;
        let identity = map_identity(&claims, &issuer.rules).map_err(refused)?;
        if username != TOKEN_USER && username != identity.subject() {
            return Err(refused(Refusal::UserName));
        }
        Ok(Some(Federated {
            identity,
            issuer: issuer.rules.issuer.clone(),
            expires_at: DateTime::from_timestamp(expires_at, 0).unwrap_or(DateTime::UNIX_EPOCH),
        }))
    }

    /// The issuer, the three parts and the claims of a password that is a JWT from a
    /// configured issuer.
    fn peek<'a>(&self, password: &'a str) -> Option<(&Issuer, Parts<'a>, Map<String, Value>)> {
        if self.issuers.is_empty() || password.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let parts = Parts::split(password)?;
        if parts.payload.len() > MAX_CLAIMS_BYTES.div_ceil(3) * 4 {
            return None;
        }
        let payload = BASE64URL_NOPAD.decode(parts.payload.as_bytes()).ok()?;
        let claims: Map<String, Value> = serde_json::from_slice(&payload).ok()?;
        let iss = claims.get("iss")?.as_str()?;
        let issuer = self.issuers.get(iss)?;
        Some((issuer, parts, claims))
    }
}

/// The identity source: asked first, it claims only passwords that are tokens of a
/// configured issuer. A login it authenticates is never kept in the login cache past the
/// token's `exp`.
impl IdentitySource for Federation {
    fn name(&self) -> &str {
        SOURCE_FEDERATION
    }

    fn is_configured(&self) -> bool {
        !self.is_empty()
    }

    fn authenticate(&self, credentials: &Credentials) -> Outcome {
        match self.verify(&credentials.username, credentials.password.expose_secret()) {
            Ok(None) => Outcome::NotMine,
            Ok(Some(federated)) => {
                log::debug!(
                    "workload token of {} accepted for {:?}",
                    federated.issuer,
                    federated.identity.subject()
                );
                let left = (federated.expires_at - self.clock.now())
                    .to_std()
                    .unwrap_or_default();
                Outcome::Authenticated(
                    federated
                        .identity
                        .with_source(SOURCE_FEDERATION)
                        .valid_until(std::time::Instant::now() + left),
                )
            }
            Err(e @ FederationError::Refused { .. }) => {
                log::info!("{e}");
                Outcome::Rejected
            }
            Err(e @ FederationError::Unavailable { .. }) => Outcome::Unavailable(e.to_string()),
        }
    }
}

/// The three dot-separated parts of a compact JWS.
#[derive(Debug, Clone, Copy)]
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

impl<'a> Parts<'a> {
    fn split(token: &'a str) -> Option<Parts<'a>> {
        let mut it = token.split('.');
        let (header, payload, signature) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || header.is_empty() || payload.is_empty() {
            return None;
        }
        let base64url = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        (base64url(header) && base64url(payload) && base64url(signature)).then_some(Parts {
            header,
            payload,
            signature,
        })
    }
}

/// `alg` (allowed for this issuer) and `kid` from the header.
fn header(encoded: &str, rules: &Rules) -> Result<(Algorithm, Option<String>), Refusal> {
    #[derive(Deserialize)]
    struct Header {
        alg: String,
        #[serde(default)]
        kid: Option<String>,
        #[serde(default)]
        crit: Option<Value>,
    }
    if encoded.len() > MAX_HEADER_BYTES.div_ceil(3) * 4 {
        return Err(Refusal::Malformed("header too large"));
    }
    let bytes = BASE64URL_NOPAD
        .decode(encoded.as_bytes())
        .map_err(|_| Refusal::Malformed("header is not base64url"))?;
    let header: Header = serde_json::from_slice(&bytes)
        .map_err(|_| Refusal::Malformed("header is not a JSON object with alg"))?;
    if header.crit.is_some() {
        return Err(Refusal::Critical);
    }
    let alg = Algorithm::from_str(&header.alg)
        .ok()
        .filter(|a| rules.algorithms.contains(a))
        .ok_or_else(|| Refusal::Algorithm(shorten(&header.alg)))?;
    Ok((alg, header.kid))
}

/// A number of seconds: an integer, or a finite number rounded down.
fn seconds(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            .or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e15)
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or(Refusal::Malformed("a time claim is not a number")),
    }
}

/// Time, lifetime and audience checks; returns `exp`.
fn check_claims(claims: &Map<String, Value>, rules: &Rules, now: i64) -> Result<i64, Refusal> {
    let exp = seconds(claims, "exp")
        .map_err(|_| Refusal::NoExpiry)?
        .ok_or(Refusal::NoExpiry)?;
    let nbf = seconds(claims, "nbf")?;
    let iat = seconds(claims, "iat")?;
    let leeway = rules.leeway;
    if now.saturating_sub(leeway) > exp {
        return Err(Refusal::Expired(exp));
    }
    if let Some(nbf) = nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(Refusal::NotYetValid(nbf));
    }
    if let Some(iat) = iat
        && iat > now.saturating_add(leeway)
    {
        return Err(Refusal::IssuedInFuture(iat));
    }
    let start = match (iat, nbf) {
        (Some(iat), Some(nbf)) => iat.min(nbf),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return Err(Refusal::NoStart),
    };
    let lifetime = exp.saturating_sub(start);
    if lifetime > rules.max_lifetime {
        return Err(Refusal::TooLongLived(lifetime));
    }
    let accepted = match claims.get("aud") {
        Some(Value::String(aud)) => rules.audiences.contains(aud),
        Some(Value::Array(auds)) => auds
            .iter()
            .any(|a| a.as_str().is_some_and(|a| rules.audiences.contains(a))),
        _ => false,
    };
    if !accepted {
        return Err(Refusal::Audience);
    }
    Ok(exp)
}

/// The caller from the account and groups claims.
fn map_identity(claims: &Map<String, Value>, rules: &Rules) -> Result<Identity, Refusal> {
    let account = claims
        .get(&rules.account_claim)
        .and_then(Value::as_str)
        .filter(|a| usable_name(a))
        .ok_or_else(|| Refusal::Account(shorten(&rules.account_claim)))?;
    let groups = match &rules.groups_claim {
        None => Vec::new(),
        Some(claim) => {
            let bad = || Refusal::Groups(shorten(claim));
            match claims.get(claim) {
                None => Vec::new(),
                Some(Value::String(group)) if usable_name(group) => vec![group.clone()],
                Some(Value::Array(values)) if values.len() <= MAX_GROUPS => values
                    .iter()
                    .map(|v| v.as_str().filter(|g| usable_name(g)).map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(bad)?,
                Some(_) => return Err(bad()),
            }
        }
    };
    Ok(Identity::user(account, groups))
}

fn usable_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_ACCOUNT_BYTES && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests;
