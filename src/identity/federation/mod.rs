//! Workload-token federation: a signed identity token (a Kubernetes service-account token, a
//! CI job's OIDC id_token) presented as the password is exchanged for a registry token.
//!
//! The password is taken for such a token only when it is a JWT whose `iss` is a configured
//! issuer; anything else is not this source's business (a JWT from an unknown issuer is just
//! a wrong password). A configured issuer's token must then pass every check: size, `alg`
//! in the issuer's allow-list and fitting the key's type, the signature, `exp` (required),
//! `nbf` and `iat` with leeway, `aud`, a lifetime no longer than allowed, and the issuer's
//! `required_claims`. The caller becomes the account in `account_claim`, with the groups in
//! `groups_claim`, as source `federation`: only rules that name that source or the issuer
//! ever match it (see [`crate::policy`]).
//!
//! Verification may read or fetch the issuer's JWKS ([`jwks`]), so it runs on a blocking
//! thread, as password checks do.

mod claims;
pub mod jwks;
mod settings;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use data_encoding::BASE64URL_NOPAD;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

pub use self::claims::{MAX_ACCOUNT_BYTES, MAX_GROUPS, MAX_HEADER_BYTES, Refusal};
use self::claims::{Parts, check_claims, check_required, header, map_identity};
use self::jwks::{JwksError, KeyStore, Lookup, Source};
pub use self::settings::{
    IssuerSettings, MAX_LEEWAY_SECONDS, MAX_LIFETIME_LIMIT_SECONDS, SettingsError, validate,
    warnings,
};
use self::settings::{Rules, checked};
use super::{Budget, Concurrency, Credentials, Identity, IdentitySource, Outcome, TokenClaim};
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
/// Workload-token checks running at once (they may wait on a JWKS fetch); more wait for a
/// slot up to [`jwks::FETCH_TIMEOUT`], then answer 503.
pub const CONCURRENT_CHECKS: usize = 8;
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

impl FederationError {
    /// True when the token's signature verified and a later check refused it (expiry,
    /// audience, lifetime, required claims, account, user name): the token really comes from the issuer, so
    /// the brute-force limits count it against its subject rather than the issuer.
    pub fn signature_verified(&self) -> bool {
        match self {
            FederationError::Unavailable { .. } => false,
            FederationError::Refused { refusal, .. } => match refusal {
                Refusal::Malformed(_)
                | Refusal::Critical
                | Refusal::Algorithm(_)
                | Refusal::UnknownKey(_)
                | Refusal::KeyMismatch(_)
                | Refusal::Signature => false,
                Refusal::NoExpiry
                | Refusal::NoStart
                | Refusal::Expired(_)
                | Refusal::NotYetValid(_)
                | Refusal::IssuedInFuture(_)
                | Refusal::TooLongLived(_)
                | Refusal::Audience
                | Refusal::Account(_)
                | Refusal::Groups(_)
                | Refusal::RequiredClaim { .. }
                | Refusal::UserName => true,
            },
        }
    }
}

/// A verified workload token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federated {
    /// The caller: the mapped account and groups, source `federation`, with the issuer and
    /// the token's string claims (what rules may match).
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
    /// Payloads of JWT-shaped passwords decoded (or tried) so far.
    decoded: AtomicU64,
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
        let rules_of_each = checked(settings)?;
        let mut issuers = HashMap::new();
        for (s, rules) in settings.iter().zip(rules_of_each) {
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
        Ok(Federation {
            issuers,
            clock,
            decoded: AtomicU64::new(0),
        })
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

    /// Re-reads every issuer's `jwks_file` now (SIGHUP): one phrase per file saying what it
    /// gave. URL issuers are not fetched.
    pub fn reread_files(&self) -> Vec<String> {
        let mut read: Vec<String> = self
            .issuers
            .values()
            .filter_map(|i| i.keys.reread_file())
            .collect();
        read.sort();
        read
    }

    /// Payloads of JWT-shaped passwords decoded (or tried) so far: a login decodes its
    /// token once. For tests.
    pub fn claim_sets_decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
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
        self.verify_read(issuer, parts, &claims, username, password)
            .map(Some)
    }

    /// [`Federation::verify`] of a token already read: its issuer, parts and claim set.
    fn verify_read(
        &self,
        issuer: &Issuer,
        parts: Parts<'_>,
        claims: &Map<String, Value>,
        username: &str,
        password: &str,
    ) -> Result<Federated, FederationError> {
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
        let expires_at = check_claims(claims, &issuer.rules, now).map_err(refused)?;
        check_required(claims, &issuer.rules).map_err(refused)?;
        let identity = map_identity(claims, &issuer.rules).map_err(refused)?;
        if username != TOKEN_USER && username != identity.subject() {
            return Err(refused(Refusal::UserName));
        }
        Ok(Federated {
            identity,
            issuer: issuer.rules.issuer.clone(),
            expires_at: DateTime::from_timestamp(expires_at, 0).unwrap_or(DateTime::UNIX_EPOCH),
        })
    }

    /// The configured issuer a claim set names in `iss`.
    fn issuer_of(&self, claims: &Map<String, Value>) -> Option<&Issuer> {
        self.issuers.get(claims.get("iss")?.as_str()?)
    }

    /// What a login with this source's token (of `issuer`, with `claims`) answers: the
    /// caller, or a refusal counted against the token's subject (its signature verified) or
    /// its issuer (it did not).
    fn outcome(
        &self,
        credentials: &Credentials,
        issuer: &Issuer,
        parts: Parts<'_>,
        claims: &Map<String, Value>,
    ) -> Outcome {
        let password = credentials.password.expose_secret();
        match self.verify_read(issuer, parts, claims, &credentials.username, password) {
            Ok(federated) => {
                log::debug!(
                    "workload token of {} accepted for {:?}",
                    federated.issuer,
                    federated.identity.subject()
                );
                let left = (federated.expires_at - self.clock.now())
                    .to_std()
                    .unwrap_or_default();
                Outcome::Authenticated(federated.identity.valid_until(Instant::now() + left))
            }
            Err(e @ FederationError::Refused { .. }) => {
                log::info!("{e}");
                if e.signature_verified() {
                    Outcome::RejectedAs(subject_budget(issuer, claims))
                } else {
                    Outcome::RejectedAs(Budget::Issuer(issuer.rules.issuer.clone()))
                }
            }
            Err(e @ FederationError::Unavailable { .. }) => Outcome::Unavailable(e.to_string()),
        }
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
        self.decoded.fetch_add(1, Ordering::Relaxed);
        let payload = BASE64URL_NOPAD.decode(parts.payload.as_bytes()).ok()?;
        let claims: Map<String, Value> = serde_json::from_slice(&payload).ok()?;
        let issuer = self.issuer_of(&claims)?;
        Some((issuer, parts, claims))
    }
}

/// The brute-force budget of a token of `issuer`: the issuer and the token's `sub` as the
/// token says (unverified: only failures of tokens whose signature verified ever count
/// against it).
fn subject_budget(issuer: &Issuer, claims: &Map<String, Value>) -> Budget {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Budget::Subject {
        issuer: issuer.rules.issuer.clone(),
        subject,
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

    fn token_claim(&self, credentials: &Credentials) -> Option<TokenClaim> {
        let (issuer, _, claims) = self.peek(credentials.password.expose_secret())?;
        Some(TokenClaim {
            budget: subject_budget(issuer, &claims),
            claims: Arc::new(claims),
        })
    }

    fn concurrency(&self) -> Option<Concurrency> {
        Some(Concurrency {
            checks: CONCURRENT_CHECKS,
            deadline: jwks::FETCH_TIMEOUT,
        })
    }

    fn authenticate(&self, credentials: &Credentials) -> Outcome {
        match self.peek(credentials.password.expose_secret()) {
            Some((issuer, parts, claims)) => self.outcome(credentials, issuer, parts, &claims),
            None => Outcome::NotMine,
        }
    }

    /// The claim set `token_claim` decoded for these credentials is used as it is: only the
    /// parts are split again (no decoding).
    fn authenticate_claimed(
        &self,
        credentials: &Credentials,
        claim: &TokenClaim,
        _deadline: Option<Instant>,
    ) -> Outcome {
        let parts = Parts::split(credentials.password.expose_secret());
        match (parts, self.issuer_of(&claim.claims)) {
            (Some(parts), Some(issuer)) => self.outcome(credentials, issuer, parts, &claim.claims),
            _ => Outcome::NotMine,
        }
    }
}

#[cfg(test)]
mod tests;
