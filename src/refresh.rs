//! Refresh tokens: opaque to clients, stateless for regauth.
//!
//! `rt1.<payload>.<mac>`: the payload (base64url JSON) names the subject, the service, the
//! issue and expiry times, and a fingerprint of the user's password hash; the MAC is
//! HMAC-SHA256 under a secret that is not the signing key. So a refresh token survives
//! restarts, replicas that share the secret, and signing-key rotations; it stops working
//! when it expires, when the user is removed, or when the user's password changes.

use std::path::Path;

use aws_lc_rs::hmac;
use chrono::{DateTime, Utc};
use data_encoding::{BASE64, BASE64_NOPAD, BASE64URL_NOPAD};
use serde::{Deserialize, Serialize};

use crate::atomic_file::{self, Existing, WriteError};

const PREFIX: &str = "rt1.";
/// Shortest refresh secret accepted, in bytes.
pub const MIN_SECRET: usize = 32;

/// Why a refresh token is refused. All variants answer the same way; these are for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// Not a refresh token of ours, or tampered with.
    #[error("the refresh token is malformed or its signature does not verify")]
    Invalid,
    /// Past its expiry.
    #[error("the refresh token has expired")]
    Expired,
    /// Issued for another service.
    #[error("the refresh token was issued for another service")]
    WrongService,
    /// The user no longer exists, or changed password.
    #[error("the refresh token's user is gone or changed password")]
    UserChanged,
}

/// Why the secret cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Cannot read the file.
    #[error("cannot read refresh secret {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not base64, or too short.
    #[error("refresh secret {0} must hold base64 of at least {MIN_SECRET} random bytes")]
    Format(String),
    /// The system's random source failed while making a new secret.
    #[error("cannot make a random refresh secret")]
    Random,
    /// A new secret could not be written.
    #[error("cannot write refresh secret {path}: {source}")]
    Write {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    /// Fingerprint of the user's password hash.
    pwv: String,
}

/// What a valid refresh token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshClaims {
    /// The user.
    pub subject: String,
    /// The service it was issued for.
    pub service: String,
    /// Expiry.
    pub expires: DateTime<Utc>,
    /// Issue time, unix seconds (`regauth logout` voids those issued up to then).
    pub issued_at: i64,
}

/// Issues and checks refresh tokens.
pub struct RefreshTokens {
    key: hmac::Key,
    ttl_seconds: i64,
}

impl std::fmt::Debug for RefreshTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokens")
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl RefreshTokens {
    /// Tokens under `secret` that live `ttl_seconds`.
    pub fn new(secret: &[u8], ttl_seconds: u64) -> RefreshTokens {
        RefreshTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            ttl_seconds: i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 2),
        }
    }

    /// Reads the base64 secret in `path`.
    pub fn load(path: &Path, ttl_seconds: u64) -> Result<RefreshTokens, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let trimmed = text.trim().as_bytes();
        let secret = BASE64
            .decode(trimmed)
            .or_else(|_| BASE64_NOPAD.decode(trimmed))
            .map_err(|_| SecretError::Format(path.display().to_string()))?;
        if secret.len() < MIN_SECRET {
            return Err(SecretError::Format(path.display().to_string()));
        }
        Ok(RefreshTokens::new(&secret, ttl_seconds))
    }

    fn password_version(&self, password_hash: &str) -> String {
        let tag = hmac::sign(&self.key, format!("pwv:{password_hash}").as_bytes());
        BASE64URL_NOPAD.encode(&tag.as_ref()[..12])
    }

    /// A refresh token for `subject` (whose password hash is `password_hash`) on `service`.
    pub fn issue(
        &self,
        subject: &str,
        password_hash: &str,
        service: &str,
        now: DateTime<Utc>,
    ) -> String {
        let payload = Payload {
            sub: subject.to_owned(),
            aud: service.to_owned(),
            iat: now.timestamp(),
            exp: now.timestamp().saturating_add(self.ttl_seconds),
            pwv: self.password_version(password_hash),
        };
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let mut token = String::from(PREFIX);
        BASE64URL_NOPAD.encode_append(&json, &mut token);
        let tag = hmac::sign(&self.key, token.as_bytes());
        token.push('.');
        BASE64URL_NOPAD.encode_append(tag.as_ref(), &mut token);
        token
    }

    /// Checks `token` for `service` at `now`. `password_hash_of` gives the current password
    /// hash of a user, or `None` when the user is gone.
    pub fn verify(
        &self,
        token: &str,
        service: &str,
        now: DateTime<Utc>,
        password_hash_of: impl Fn(&str) -> Option<String>,
    ) -> Result<RefreshClaims, RefreshError> {
        let body = token.strip_prefix(PREFIX).ok_or(RefreshError::Invalid)?;
        let (payload_b64, tag_b64) = body.split_once('.').ok_or(RefreshError::Invalid)?;
        let tag = BASE64URL_NOPAD
            .decode(tag_b64.as_bytes())
            .map_err(|_| RefreshError::Invalid)?;
        let signed = &token[..PREFIX.len() + payload_b64.len()];
        hmac::verify(&self.key, signed.as_bytes(), &tag).map_err(|_| RefreshError::Invalid)?;
        let json = BASE64URL_NOPAD
            .decode(payload_b64.as_bytes())
            .map_err(|_| RefreshError::Invalid)?;
        let payload: Payload = serde_json::from_slice(&json).map_err(|_| RefreshError::Invalid)?;
        if now.timestamp() >= payload.exp {
            return Err(RefreshError::Expired);
        }
        if payload.aud != service {
            return Err(RefreshError::WrongService);
        }
        let current = password_hash_of(&payload.sub).ok_or(RefreshError::UserChanged)?;
        let expected = self.password_version(&current);
        if aws_lc_rs::constant_time::verify_slices_are_equal(
            expected.as_bytes(),
            payload.pwv.as_bytes(),
        )
        .is_err()
        {
            return Err(RefreshError::UserChanged);
        }
        Ok(RefreshClaims {
            subject: payload.sub,
            service: payload.aud,
            // `exp` is after `now`; one beyond chrono's range is as late as a date can be.
            expires: DateTime::from_timestamp(payload.exp, 0).unwrap_or(DateTime::<Utc>::MAX_UTC),
            issued_at: payload.iat,
        })
    }
}

/// Writes a new secret to `path` (mode 0600) unless the name exists (as a file or a symlink,
/// which is never followed); true when it wrote one. See [`crate::atomic_file`].
pub fn write_secret(path: &Path) -> Result<bool, SecretError> {
    let write_error = |source| SecretError::Write {
        path: path.display().to_string(),
        source,
    };
    let secret = new_secret().ok_or(SecretError::Random)?;
    std::fs::create_dir_all(atomic_file::directory_of(path)).map_err(write_error)?;
    match atomic_file::write(path, secret.as_bytes(), 0o600, Existing::Keep) {
        Ok(()) => Ok(true),
        Err(WriteError::Exists(_)) => Ok(false),
        Err(WriteError::Io { source, .. }) => Err(write_error(source)),
    }
}

/// A new random secret, base64, for a refresh secret file.
pub fn new_secret() -> Option<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(format!("{}\n", BASE64.encode(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> RefreshTokens {
        RefreshTokens::new(&[7u8; 32], 3600)
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn user(name: &str) -> Option<String> {
        (name == "alice").then(|| "$2y$hash-v1".to_owned())
    }

    #[test]
    fn a_refresh_token_verifies_for_its_user_and_service_until_it_expires() {
        let t = tokens();
        let token = t.issue("alice", "$2y$hash-v1", "registry.test", now());
        assert!(token.starts_with("rt1."));
        let claims = t.verify(&token, "registry.test", now(), user).unwrap();
        assert_eq!(claims.subject, "alice");
        let later = now() + chrono::Duration::seconds(3599);
        assert!(t.verify(&token, "registry.test", later, user).is_ok());
        let expired = now() + chrono::Duration::seconds(3600);
        assert_eq!(
            t.verify(&token, "registry.test", expired, user),
            Err(RefreshError::Expired)
        );
        assert_eq!(
            t.verify(&token, "other", now(), user),
            Err(RefreshError::WrongService)
        );
    }

    #[test]
    fn removed_users_changed_passwords_tampering_and_other_secrets_are_refused() {
        let t = tokens();
        let token = t.issue("alice", "$2y$hash-v1", "s", now());
        assert_eq!(
            t.verify(&token, "s", now(), |_| None),
            Err(RefreshError::UserChanged)
        );
        assert_eq!(
            t.verify(&token, "s", now(), |_| Some("$2y$hash-v2".into())),
            Err(RefreshError::UserChanged)
        );
        let other = RefreshTokens::new(&[8u8; 32], 3600);
        assert_eq!(
            other.verify(&token, "s", now(), user),
            Err(RefreshError::Invalid)
        );
        // Swap in a payload for bob, keep alice's MAC.
        let (_, tag) = token.rsplit_once('.').unwrap();
        let forged_payload = BASE64URL_NOPAD
            .encode(br#"{"sub":"bob","aud":"s","iat":0,"exp":9999999999,"pwv":"x"}"#);
        let forged = format!("rt1.{forged_payload}.{tag}");
        assert_eq!(
            t.verify(&forged, "s", now(), user),
            Err(RefreshError::Invalid)
        );
        for junk in ["", "rt1.", "rt1..", "eyJhbGciOi.x.y", "rt1.!!!.@@@"] {
            assert_eq!(
                t.verify(junk, "s", now(), user),
                Err(RefreshError::Invalid),
                "{junk}"
            );
        }
    }

    #[test]
    fn a_lifetime_past_the_last_date_chrono_holds_reports_an_expiry_after_now() {
        // Found by fuzz/refresh_token (fuzz/regressions/refresh_token/): the expiry of a valid
        // token fell back to 1970 when its `exp` was beyond what chrono can represent.
        for ttl in [10_248_974_852_235_560, u64::MAX] {
            let t = RefreshTokens::new(&[7u8; 32], ttl);
            let token = t.issue("alice", "$2y$hash-v1", "s", now());
            let claims = t.verify(&token, "s", now(), user).unwrap();
            assert!(claims.expires > now(), "ttl {ttl}: {}", claims.expires);
        }
    }

    #[test]
    fn secrets_load_from_files_and_short_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refresh.secret");
        std::fs::write(&path, new_secret().unwrap()).unwrap();
        assert!(RefreshTokens::load(&path, 60).is_ok());
        std::fs::write(&path, "c2hvcnQ=\n").unwrap();
        assert!(
            RefreshTokens::load(&path, 60)
                .unwrap_err()
                .to_string()
                .contains("at least 32")
        );
        assert!(RefreshTokens::load(&dir.path().join("missing"), 60).is_err());
    }
}
