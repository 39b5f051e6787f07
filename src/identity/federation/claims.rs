//! What a token says: its parts, header and claims, checked against an issuer's rules, and
//! why a token is refused.

use std::str::FromStr;

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::SOURCE_FEDERATION;
use super::settings::Rules;
use crate::echo::shorten;
use crate::identity::Identity;

/// Largest decoded JOSE header accepted.
pub const MAX_HEADER_BYTES: usize = 1024;
/// Longest account name taken from a claim.
pub const MAX_ACCOUNT_BYTES: usize = 256;
/// Most groups taken from a claim.
pub const MAX_GROUPS: usize = 256;

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
    /// A `required_claims` condition is not met: the claim is missing, not a string, or holds
    /// a value the condition does not accept (shown shortened).
    #[error("claim {claim:?} does not meet required_claims ({found})")]
    RequiredClaim {
        /// The claim's name.
        claim: String,
        /// What the token holds instead: `missing`, `not a string`, or the value, shortened.
        found: String,
    },
    /// The user name is neither `oidc` nor the mapped account.
    #[error("the user name is neither \"oidc\" nor the token's account")]
    UserName,
}

/// The three dot-separated parts of a compact JWS.
#[derive(Debug, Clone, Copy)]
pub(super) struct Parts<'a> {
    pub(super) header: &'a str,
    pub(super) payload: &'a str,
    pub(super) signature: &'a str,
}

impl<'a> Parts<'a> {
    pub(super) fn split(token: &'a str) -> Option<Parts<'a>> {
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
pub(super) fn header(encoded: &str, rules: &Rules) -> Result<(Algorithm, Option<String>), Refusal> {
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
pub(super) fn check_claims(
    claims: &Map<String, Value>,
    rules: &Rules,
    now: i64,
) -> Result<i64, Refusal> {
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

/// Every `required_claims` condition of the issuer holds.
pub(super) fn check_required(claims: &Map<String, Value>, rules: &Rules) -> Result<(), Refusal> {
    for required in &rules.required {
        let refused = |found: String| Refusal::RequiredClaim {
            claim: shorten(&required.claim),
            found,
        };
        match claims.get(&required.claim) {
            None => return Err(refused("missing".into())),
            Some(Value::String(value)) if required.accepts(value) => {}
            Some(Value::String(value)) => return Err(refused(format!("{:?}", shorten(value)))),
            Some(_) => return Err(refused("not a string".into())),
        }
    }
    Ok(())
}

/// The caller from the account and groups claims, as source `federation`, carrying the
/// issuer and the string claims for the rules.
pub(super) fn map_identity(
    claims: &Map<String, Value>,
    rules: &Rules,
) -> Result<Identity, Refusal> {
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
    // Only strings short enough to be part of a resource name can ever matter to a rule;
    // the rest would only make each cached login bigger.
    let strings = claims
        .iter()
        .filter_map(|(name, value)| {
            let text = value
                .as_str()
                .filter(|t| t.len() <= crate::token::scope::MAX_NAME_LEN)?;
            Some((name.clone(), text.to_owned()))
        })
        .collect();
    Ok(Identity::user(account, groups)
        .with_source(SOURCE_FEDERATION)
        .with_workload(&rules.issuer, strings))
}

fn usable_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_ACCOUNT_BYTES && !name.chars().any(char::is_control)
}
