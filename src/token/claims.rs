//! The JWT claim set of a registry token and the builder that fills it.

use chrono::{DateTime, SecondsFormat, Utc};
use data_encoding::BASE64URL_NOPAD;
use serde::Serialize;

use crate::clock::Clock;
use crate::token::scope::{Actions, ResourceScope};

/// Bytes of randomness in a `jti` (144 bits).
const JTI_BYTES: usize = 18;

/// One entry of the `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessEntry {
    /// Resource type, e.g. `repository`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Resource name, e.g. `team/app`.
    pub name: String,
    /// Granted actions; may be empty.
    pub actions: Actions,
}

impl AccessEntry {
    /// The entry granting `actions` on the resource of `scope`.
    pub fn new(scope: &ResourceScope, actions: Actions) -> Self {
        AccessEntry {
            resource_type: scope.resource_type.clone(),
            name: scope.name.clone(),
            actions,
        }
    }
}

/// The claims of a registry token, in the order the spec lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// Issuer; the registry compares it with `auth.token.issuer`.
    pub iss: String,
    /// Subject; `""` for an anonymous caller.
    pub sub: String,
    /// Audience: the requested service, one string (registry 2.8 rejects an array).
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Not before, seconds since the epoch.
    pub nbf: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Unique token id from a CSPRNG.
    pub jti: String,
    /// Granted access.
    pub access: Vec<AccessEntry>,
}

impl Claims {
    /// The claims as the JWT's JSON: the same bytes as `serde_json::to_vec` (pinned by a
    /// test), written field by field ([`crate::support::json`]) because every token pays for
    /// it (through `serde_json` it took about twice the instructions).
    pub fn to_json(&self) -> Vec<u8> {
        use crate::support::json::{push_field, push_i64, push_str};
        let names: usize = self.access.iter().map(|a| a.name.len() + 48).sum();
        let mut out = Vec::with_capacity(160 + self.iss.len() + self.sub.len() + names);
        push_field(&mut out, b"{\"iss\":", &self.iss);
        push_field(&mut out, b",\"sub\":", &self.sub);
        push_field(&mut out, b",\"aud\":", &self.aud);
        for (key, n) in [
            (b",\"exp\":", self.exp),
            (b",\"nbf\":", self.nbf),
            (b",\"iat\":", self.iat),
        ] {
            out.extend_from_slice(key);
            push_i64(&mut out, n);
        }
        push_field(&mut out, b",\"jti\":", &self.jti);
        out.extend_from_slice(b",\"access\":[");
        for (i, entry) in self.access.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_field(&mut out, b"{\"type\":", &entry.resource_type);
            push_field(&mut out, b",\"name\":", &entry.name);
            out.extend_from_slice(b",\"actions\":[");
            for (j, action) in entry.actions.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                push_str(&mut out, action.as_str());
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// `iat` as RFC 3339 UTC, for the `issued_at` field of the token response.
    pub fn issued_at(&self) -> crate::clock::Rfc3339 {
        let at = DateTime::<Utc>::from_timestamp(self.iat, 0).unwrap_or_default();
        crate::clock::rfc3339(&at, SecondsFormat::Secs)
    }
}

/// Errors building claims.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// Fills claims from the fixed settings and one request's subject, service and grant.
#[derive(Debug, Clone)]
pub struct ClaimsBuilder {
    issuer: String,
    ttl_seconds: i64,
}

impl ClaimsBuilder {
    /// A builder for tokens from `issuer` that live `ttl_seconds`.
    pub fn new(issuer: impl Into<String>, ttl_seconds: u32) -> Self {
        ClaimsBuilder {
            issuer: issuer.into(),
            ttl_seconds: i64::from(ttl_seconds),
        }
    }

    /// The token lifetime in seconds.
    pub fn ttl_seconds(&self) -> i64 {
        self.ttl_seconds
    }

    /// Claims for `subject` on `service` granting `access`, issued now by `clock`.
    pub fn build(
        &self,
        clock: &dyn Clock,
        subject: &str,
        service: &str,
        access: Vec<AccessEntry>,
    ) -> Result<Claims, ClaimsError> {
        let iat = clock.now().timestamp();
        Ok(Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: service.to_owned(),
            exp: iat + self.ttl_seconds,
            nbf: iat,
            iat,
            jti: new_jti()?,
            access,
        })
    }
}

/// A fresh token id: 144 bits of CSPRNG output ([`crate::support::random`]), base64url.
fn new_jti() -> Result<String, ClaimsError> {
    let mut bytes = [0u8; JTI_BYTES];
    crate::support::random::fill(&mut bytes).map_err(|_| ClaimsError::Random)?;
    Ok(BASE64URL_NOPAD.encode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use std::collections::HashSet;

    fn clock() -> FixedClock {
        FixedClock(DateTime::from_timestamp(1_415_387_015, 0).unwrap())
    }

    #[test]
    fn claims_under_a_fixed_clock_carry_the_expected_times_and_audience() {
        let scope: ResourceScope = "repository:samalba/my-app:pull,push".parse().unwrap();
        let entry = AccessEntry::new(&scope, scope.actions.clone());
        let claims = ClaimsBuilder::new("auth.docker.com", 300)
            .build(&clock(), "", "registry.docker.com", vec![entry])
            .unwrap();
        assert_eq!(claims.iat, 1_415_387_015);
        assert_eq!(claims.nbf, claims.iat);
        assert_eq!(claims.exp, claims.iat + 300);
        assert_eq!(claims.issued_at().as_str(), "2014-11-07T19:03:35Z");

        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["iss"], "auth.docker.com");
        assert_eq!(json["sub"], "");
        assert_eq!(json["aud"], "registry.docker.com", "aud is one string");
        assert_eq!(
            json["access"],
            serde_json::json!([{"type": "repository", "name": "samalba/my-app", "actions": ["pull", "push"]}])
        );
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"] {
            assert!(keys.contains(&key), "{key} missing");
        }
    }

    #[test]
    fn jti_is_long_url_safe_and_unique() {
        let builder = ClaimsBuilder::new("i", 60);
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let jti = builder.build(&clock(), "", "s", vec![]).unwrap().jti;
            assert_eq!(jti.len(), 24, "144 bits in base64url");
            assert!(
                jti.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert!(seen.insert(jti), "jti repeated");
        }
    }

    #[test]
    fn the_claims_json_is_what_serde_json_writes() {
        let scopes: Vec<ResourceScope> = [
            "repository:team/app:pull,push,delete",
            "repository:localhost:5000/x:*",
            "registry:catalog:*",
            "repository:x:",
            "repository:a.b-c_d/e:custom",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let access: Vec<AccessEntry> = scopes
            .iter()
            .map(|s| AccessEntry::new(s, s.actions.clone()))
            .collect();
        let builder = ClaimsBuilder::new("https://auth.example/\"q\"", 300);
        for (subject, access) in [
            ("", vec![]),
            ("alice", access.clone()),
            ("cn=O'Brien \"Jr\",ou=people\\x\t\u{1}", access.clone()),
            ("ünïcode \u{2028}", access[..1].to_vec()),
        ] {
            let mut claims = builder
                .build(&clock(), subject, "registry.test", access)
                .unwrap();
            assert_eq!(
                String::from_utf8(claims.to_json()).unwrap(),
                serde_json::to_string(&claims).unwrap()
            );
            claims.iat = -1;
            assert_eq!(claims.to_json(), serde_json::to_vec(&claims).unwrap());
        }
    }

    #[test]
    fn an_empty_grant_serializes_as_an_empty_list() {
        let claims = ClaimsBuilder::new("i", 60)
            .build(&clock(), "", "s", vec![])
            .unwrap();
        assert_eq!(
            serde_json::to_value(&claims).unwrap()["access"],
            serde_json::json!([])
        );
    }
}
