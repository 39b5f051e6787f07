//! Refresh tokens: opaque to clients, stateless for regauth.
//!
//! `rt2.<kid>.<payload>.<mac>`: the payload (base64url JSON) names the subject, the service,
//! the issue and expiry times, and a fingerprint of the user's password hash; the MAC is
//! HMAC-SHA256 under a refresh secret (not the signing key) over everything before it, and
//! `kid` names that secret ([`secrets::kid_of`]). So a refresh token survives restarts,
//! replicas that share the secret file, and signing-key rotations; it stops working when it
//! expires, when the user is removed, when the user's password changes, or when its secret
//! is no longer accepted. The secret file can hold a `next` and `previous` secrets beside the
//! current one ([`secrets`]), so the secret can be rotated without logging anyone out.
//! `rt1.<payload>.<mac>` tokens (before key ids) are still accepted under any accepted secret.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::hmac;
use chrono::{DateTime, Utc};
use data_encoding::{BASE64, BASE64URL_NOPAD};
use serde::{Deserialize, Serialize};

use crate::fs::atomic_file::{self, Existing, WriteError};

pub mod secrets;

use secrets::{Role, SecretFile};

/// Tokens with a key id.
const PREFIX: &str = "rt2.";
/// Tokens from before key ids: verified under every accepted secret.
const PREFIX_V1: &str = "rt1.";
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
    /// Signed under a previous refresh secret whose window has ended.
    #[error("the refresh token was signed under a previous refresh secret whose window has ended")]
    SecretEnded,
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
    /// A line of the secret file cannot be used.
    #[error("refresh secret {path} line {line}: {reason}")]
    Line {
        /// The path.
        path: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong (never the secret).
        reason: String,
    },
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

/// One accepted secret, ready to use.
struct Key {
    kid: String,
    hmac: hmac::Key,
    role: Role,
}

impl Key {
    /// Whether it verifies tokens at `now`.
    fn accepted(&self, now: DateTime<Utc>) -> bool {
        match self.role {
            Role::Current | Role::Next => true,
            Role::Previous { until } => now < until,
        }
    }

    fn password_version(&self, password_hash: &str) -> String {
        let tag = hmac::sign(&self.hmac, format!("pwv:{password_hash}").as_bytes());
        BASE64URL_NOPAD.encode(&tag.as_ref()[..12])
    }
}

/// The secrets in use: the current one first.
struct Keyring {
    keys: Vec<Key>,
    file: SecretFile,
}

impl Keyring {
    fn from_file(file: SecretFile) -> Keyring {
        let keys = file
            .entries()
            .iter()
            .map(|entry| Key {
                kid: entry.kid.clone(),
                hmac: hmac::Key::new(hmac::HMAC_SHA256, &entry.secret),
                role: entry.role,
            })
            .collect();
        Keyring { keys, file }
    }

    fn current(&self) -> &Key {
        // A secret file always holds a current secret, first.
        &self.keys[0]
    }
}

/// What `regauth logout` revoked: the refresh tokens of a user issued up to a time (the store
/// implements it; the issuing pipeline asks it on every refresh grant).
pub trait Logouts: Send + Sync {
    /// True when a refresh token of `user` issued at `issued_at` (unix seconds) was revoked.
    fn logged_out(&self, user: &str, issued_at: i64) -> bool;
}

/// Issues and checks refresh tokens.
pub struct RefreshTokens {
    ring: ArcSwap<Keyring>,
    /// The secret file, when loaded from one (re-read on SIGHUP).
    path: Option<PathBuf>,
    ttl: u64,
    ttl_seconds: i64,
}

impl std::fmt::Debug for RefreshTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokens")
            .field("ttl_seconds", &self.ttl_seconds)
            .field("kid", &self.ring.load().current().kid)
            .finish_non_exhaustive()
    }
}

impl RefreshTokens {
    /// Tokens under `secret` alone that live `ttl_seconds`.
    pub fn new(secret: &[u8], ttl_seconds: u64) -> RefreshTokens {
        RefreshTokens::with_file(SecretFile::single(secret), None, ttl_seconds)
    }

    fn with_file(file: SecretFile, path: Option<PathBuf>, ttl_seconds: u64) -> RefreshTokens {
        RefreshTokens {
            ring: ArcSwap::from_pointee(Keyring::from_file(file)),
            path,
            ttl: ttl_seconds,
            ttl_seconds: i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 2),
        }
    }

    /// Reads the secret file at `path` (see [`secrets`]).
    pub fn load(path: &Path, ttl_seconds: u64) -> Result<RefreshTokens, SecretError> {
        let file = SecretFile::read(path, Utc::now(), ttl_seconds)?;
        Ok(RefreshTokens::with_file(
            file,
            Some(path.to_path_buf()),
            ttl_seconds,
        ))
    }

    /// The key id new refresh tokens carry.
    pub fn current_kid(&self) -> String {
        self.ring.load().current().kid.clone()
    }

    /// The secrets in use, one line each (key id and role, never a secret).
    pub fn describe(&self, now: DateTime<Utc>) -> Vec<String> {
        self.ring.load().file.describe(now)
    }

    /// Re-reads the secret file (SIGHUP) and says what came of it. A file that cannot be used
    /// leaves the secrets in use as they were.
    pub fn reread(&self) -> String {
        let Some(path) = &self.path else {
            return "refresh secret: not from a file".to_owned();
        };
        let now = Utc::now();
        let before = self.describe(now);
        match SecretFile::read(path, now, self.ttl) {
            Ok(file) => {
                let after = file.describe(now);
                self.ring.store(Arc::new(Keyring::from_file(file)));
                let state = after.join(", ");
                if after == before {
                    format!("refresh secret {}: unchanged ({state})", path.display())
                } else {
                    format!("refresh secret {}: reloaded ({state})", path.display())
                }
            }
            Err(e) => format!(
                "refresh secret {}: not usable ({e}), keeping {}",
                path.display(),
                before.join(", ")
            ),
        }
    }

    /// A refresh token for `subject` (whose password hash is `password_hash`) on `service`,
    /// under the current secret.
    pub fn issue(
        &self,
        subject: &str,
        password_hash: &str,
        service: &str,
        now: DateTime<Utc>,
    ) -> String {
        let ring = self.ring.load();
        let key = ring.current();
        let payload = Payload {
            sub: subject.to_owned(),
            aud: service.to_owned(),
            iat: now.timestamp(),
            exp: now.timestamp().saturating_add(self.ttl_seconds),
            pwv: key.password_version(password_hash),
        };
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let mut token = String::from(PREFIX);
        token.push_str(&key.kid);
        token.push('.');
        BASE64URL_NOPAD.encode_append(&json, &mut token);
        let tag = hmac::sign(&key.hmac, token.as_bytes());
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
        let ring = self.ring.load();
        // The MAC is checked before anything in the payload is read.
        let (key, payload_b64) = if let Some(body) = token.strip_prefix(PREFIX) {
            let (kid, rest) = body.split_once('.').ok_or(RefreshError::Invalid)?;
            let (payload_b64, tag_b64) = rest.split_once('.').ok_or(RefreshError::Invalid)?;
            let key = ring
                .keys
                .iter()
                .find(|k| k.kid == kid)
                .ok_or(RefreshError::Invalid)?;
            let signed = &token[..PREFIX.len() + kid.len() + 1 + payload_b64.len()];
            check_mac(key, signed, tag_b64)?;
            if !key.accepted(now) {
                return Err(RefreshError::SecretEnded);
            }
            (key, payload_b64)
        } else {
            let body = token.strip_prefix(PREFIX_V1).ok_or(RefreshError::Invalid)?;
            let (payload_b64, tag_b64) = body.split_once('.').ok_or(RefreshError::Invalid)?;
            let signed = &token[..PREFIX_V1.len() + payload_b64.len()];
            let key = ring
                .keys
                .iter()
                .filter(|k| k.accepted(now))
                .find(|k| check_mac(k, signed, tag_b64).is_ok())
                .ok_or(RefreshError::Invalid)?;
            (key, payload_b64)
        };
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
        let expected = key.password_version(&current);
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

/// Whether `tag_b64` is `key`'s MAC of `signed`.
fn check_mac(key: &Key, signed: &str, tag_b64: &str) -> Result<(), RefreshError> {
    let tag = BASE64URL_NOPAD
        .decode(tag_b64.as_bytes())
        .map_err(|_| RefreshError::Invalid)?;
    hmac::verify(&key.hmac, signed.as_bytes(), &tag).map_err(|_| RefreshError::Invalid)
}

/// Writes a new secret to `path` (mode 0600) unless the name exists (as a file or a symlink,
/// which is never followed); true when it wrote one. See [`crate::fs::atomic_file`].
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
        assert!(token.starts_with(&format!("rt2.{}.", secrets::kid_of(&[7u8; 32]))));
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
        let kid = t.current_kid();
        for forged in [
            format!("rt2.{kid}.{forged_payload}.{tag}"),
            format!("rt1.{forged_payload}.{tag}"),
        ] {
            assert_eq!(
                t.verify(&forged, "s", now(), user),
                Err(RefreshError::Invalid)
            );
        }
        for junk in [
            "",
            "rt1.",
            "rt1..",
            "eyJhbGciOi.x.y",
            "rt1.!!!.@@@",
            "rt2.",
            "rt2...",
            "rt2.x.y",
            "rt3.x.y.z",
        ] {
            assert_eq!(
                t.verify(junk, "s", now(), user),
                Err(RefreshError::Invalid),
                "{junk}"
            );
        }
    }

    /// Written by regauth before key ids existed: `RefreshTokens::new(&[7; 32], 3600)`
    /// issuing for alice (`$2y$hash-v1`) on `s` at [`now`].
    const RT1: &str = "rt1.eyJzdWIiOiJhbGljZSIsImF1ZCI6InMiLCJpYXQiOjE4MDAwMDAwMDAsImV4cCI6MTgwMDAwMzYwMCwicHd2IjoiMXJVUjBnUU5QOWhjQ21uYyJ9.9-znKrAb_nd0QO9xox4PZ43mfn701llsLJFDimftr1M";

    fn ring(text: &str) -> RefreshTokens {
        let file = SecretFile::parse(text, Path::new("r"), now(), 3600).unwrap();
        RefreshTokens::with_file(file, None, 3600)
    }

    fn encoded(byte: u8) -> String {
        BASE64.encode(&[byte; 32])
    }

    #[test]
    fn an_rt1_token_from_before_key_ids_verifies_under_the_current_or_a_previous_secret() {
        let claims = tokens().verify(RT1, "s", now(), user).unwrap();
        assert_eq!(claims.subject, "alice");
        let until = "2027-01-15T08:30:00Z";
        let rotated = ring(&format!(
            "{}\n{} previous until {until}\n",
            encoded(8),
            encoded(7)
        ));
        assert!(rotated.verify(RT1, "s", now(), user).is_ok());
        let half_hour = now() + chrono::Duration::seconds(1800);
        assert_eq!(
            rotated.verify(RT1, "s", half_hour, user),
            Err(RefreshError::Invalid),
            "not after the previous secret's window"
        );
        assert_eq!(
            ring(&format!("{}\n", encoded(8))).verify(RT1, "s", now(), user),
            Err(RefreshError::Invalid)
        );
    }

    #[test]
    fn after_a_rotation_old_tokens_verify_until_the_previous_secret_ends_and_new_ones_carry_the_new_kid()
     {
        let old = tokens().issue("alice", "$2y$hash-v1", "s", now());
        let old_kid = secrets::kid_of(&[7u8; 32]);
        let new_kid = secrets::kid_of(&[8u8; 32]);
        // Stage: the new secret is accepted, the old one still signs.
        let staged = ring(&format!("{}\n{} next\n", encoded(7), encoded(8)));
        assert!(
            staged
                .issue("alice", "$2y$hash-v1", "s", now())
                .starts_with(&format!("rt2.{old_kid}."))
        );
        let by_a_promoted_replica =
            ring(&format!("{}\n", encoded(8))).issue("alice", "$2y$hash-v1", "s", now());
        assert!(
            staged
                .verify(&by_a_promoted_replica, "s", now(), user)
                .is_ok()
        );

        let rotated = ring(&format!(
            "{}\n{} previous until 2027-01-15T08:30:00Z\n",
            encoded(8),
            encoded(7)
        ));
        let new = rotated.issue("alice", "$2y$hash-v1", "s", now());
        assert!(new.starts_with(&format!("rt2.{new_kid}.")), "{new}");
        assert!(rotated.verify(&old, "s", now(), user).is_ok());
        assert!(rotated.verify(&new, "s", now(), user).is_ok());
        let end = now() + chrono::Duration::seconds(1800);
        assert_eq!(
            rotated
                .verify(&old, "s", end - chrono::Duration::seconds(1), user)
                .map(|c| c.subject),
            Ok("alice".to_owned())
        );
        assert_eq!(
            rotated.verify(&old, "s", end, user),
            Err(RefreshError::SecretEnded)
        );
        assert!(rotated.verify(&new, "s", end, user).is_ok());
        // Removed: unknown.
        let retired = ring(&format!("{}\n", encoded(8)));
        assert_eq!(
            retired.verify(&old, "s", now(), user),
            Err(RefreshError::Invalid)
        );
        // A kid changed to another accepted secret's, or to nothing known, is refused.
        for kid in [new_kid.as_str(), "AAAAAAAA", ""] {
            let tampered = old.replacen(&old_kid, kid, 1);
            assert_eq!(
                rotated.verify(&tampered, "s", now(), user),
                Err(RefreshError::Invalid),
                "{tampered}"
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
