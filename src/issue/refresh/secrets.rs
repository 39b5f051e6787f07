//! The refresh secret file: the secret that signs new refresh tokens, and the secrets still
//! (or already) accepted, each known by a key id derived from it.
//!
//! One secret per line, base64 of at least [`MIN_SECRET`] bytes, optionally followed by its
//! role; blank lines and lines starting with `#` are ignored:
//!
//! ```text
//! <base64>                                     the current secret: signs (exactly one)
//! <base64> next                                accepted, signs after the next rotation (at most one)
//! <base64> previous until 2027-03-02T15:00:00Z accepted until then (any number)
//! ```
//!
//! A file with one bare line (what `regauth keygen --refresh-secret` writes, and every file
//! before key ids existed) is a current secret alone. A `previous` secret must end within
//! `auth.refresh_ttl_seconds` of now: a file that keeps one longer is refused.
//!
//! The key id is the first 6 bytes of SHA-256 over a fixed label and the secret, base64url
//! (8 characters): it names a secret without revealing anything about it.

use std::path::Path;

use aws_lc_rs::digest;
use chrono::{DateTime, SecondsFormat, Utc};
use data_encoding::{BASE64, BASE64_NOPAD, BASE64URL_NOPAD};

use super::{MIN_SECRET, SecretError, new_secret};
use crate::fs::atomic_file::{self, Existing, WriteError};

/// What a secret is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Signs new refresh tokens, and verifies them.
    Current,
    /// Verifies refresh tokens; becomes the current one at the next rotation. Lets every
    /// replica accept a secret before any of them signs with it.
    Next,
    /// Verifies refresh tokens until `until`.
    Previous {
        /// The end of its window.
        until: DateTime<Utc>,
    },
}

/// One secret of the file.
#[derive(Clone)]
pub struct Entry {
    /// The secret's bytes.
    pub(super) secret: Vec<u8>,
    /// Its key id.
    pub kid: String,
    /// Its role.
    pub role: Role,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("kid", &self.kid)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The secrets of a refresh secret file, the current one first.
#[derive(Debug, Clone)]
pub struct SecretFile {
    /// Every secret, the current one first (never empty), then a next one if any, then
    /// previous ones.
    entries: Vec<Entry>,
}

/// The key id of `secret`: 8 base64url characters of a hash, never the secret.
pub fn kid_of(secret: &[u8]) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(b"regauth refresh secret id\0");
    context.update(secret);
    BASE64URL_NOPAD.encode(&context.finish().as_ref()[..6])
}

fn decode_secret(text: &str) -> Option<Vec<u8>> {
    let bytes = BASE64
        .decode(text.as_bytes())
        .or_else(|_| BASE64_NOPAD.decode(text.as_bytes()))
        .ok()?;
    (bytes.len() >= MIN_SECRET).then_some(bytes)
}

impl SecretFile {
    /// One current secret.
    pub fn single(secret: &[u8]) -> SecretFile {
        SecretFile {
            entries: vec![Entry {
                secret: secret.to_vec(),
                kid: kid_of(secret),
                role: Role::Current,
            }],
        }
    }

    /// Parses the file's text (`path` only names it in errors). A `previous` secret that
    /// ends later than `ttl_seconds` after `now` is refused.
    pub fn parse(
        text: &str,
        path: &Path,
        now: DateTime<Utc>,
        ttl_seconds: u64,
    ) -> Result<SecretFile, SecretError> {
        let line_error = |line: usize, reason: String| SecretError::Line {
            path: path.display().to_string(),
            line,
            reason,
        };
        let latest = i64::try_from(ttl_seconds)
            .ok()
            .and_then(|ttl| now.checked_add_signed(chrono::Duration::try_seconds(ttl)?))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut current = None;
        let mut next = None;
        let mut previous = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let encoded = words.next().unwrap_or_default();
            let secret = decode_secret(encoded).ok_or_else(|| {
                line_error(
                    number,
                    format!("a secret must be base64 of at least {MIN_SECRET} random bytes"),
                )
            })?;
            let kid = kid_of(&secret);
            let role: Vec<&str> = words.collect();
            let slot = match role.as_slice() {
                [] => &mut current,
                ["next"] => &mut next,
                ["previous", "until", time] => {
                    let until = DateTime::parse_from_rfc3339(time)
                        .map_err(|_| {
                            line_error(
                                number,
                                format!(
                                    "{time:?} is not a time like 2027-03-02T15:00:00Z (kid {kid})"
                                ),
                            )
                        })?
                        .with_timezone(&Utc);
                    if until > latest {
                        return Err(line_error(
                            number,
                            format!(
                                "the previous secret {kid} is accepted until {}, more than auth.refresh_ttl_seconds ({ttl_seconds} s) from now; a previous secret must end by {}",
                                until.to_rfc3339_opts(SecondsFormat::Secs, true),
                                latest.to_rfc3339_opts(SecondsFormat::Secs, true)
                            ),
                        ));
                    }
                    previous.push(Entry {
                        secret,
                        kid,
                        role: Role::Previous { until },
                    });
                    continue;
                }
                _ => {
                    return Err(line_error(
                        number,
                        format!(
                            "after the secret (kid {kid}) expected nothing, `next`, or `previous until TIME`"
                        ),
                    ));
                }
            };
            if slot.is_some() {
                let what = if role.is_empty() {
                    "current secret (a line without a role)"
                } else {
                    "`next` secret"
                };
                return Err(line_error(number, format!("a second {what}")));
            }
            let role = if role.is_empty() {
                Role::Current
            } else {
                Role::Next
            };
            *slot = Some(Entry { secret, kid, role });
        }
        let current = current.ok_or_else(|| {
            SecretError::Format(format!(
                "{} (no current secret: one line must hold a secret without a role)",
                path.display()
            ))
        })?;
        let mut entries = vec![current];
        entries.extend(next);
        entries.extend(previous);
        for (i, entry) in entries.iter().enumerate() {
            if entries[..i].iter().any(|e| e.kid == entry.kid) {
                return Err(SecretError::Format(format!(
                    "{} (the secret {} is listed twice)",
                    path.display(),
                    entry.kid
                )));
            }
        }
        Ok(SecretFile { entries })
    }

    /// Reads and parses `path`.
    pub fn read(
        path: &Path,
        now: DateTime<Utc>,
        ttl_seconds: u64,
    ) -> Result<SecretFile, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            path: path.display().to_string(),
            source,
        })?;
        SecretFile::parse(&text, path, now, ttl_seconds)
    }

    /// Every secret: the current one first, then a next one if any, then previous ones.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The current secret.
    pub fn current(&self) -> &Entry {
        // Every constructor in this module puts the current secret first.
        &self.entries[0]
    }

    /// The secret waiting to become current, if any.
    pub fn next(&self) -> Option<&Entry> {
        self.entries.iter().find(|e| e.role == Role::Next)
    }

    /// The file's text: a comment, then one line per secret.
    pub fn render(&self) -> String {
        let mut text = String::from(
            "# regauth refresh secrets (see docs/operations.md#rotating-the-refresh-secret).\n\
             # The line without a role signs; `next` and `previous until TIME` lines are accepted.\n",
        );
        for entry in &self.entries {
            text.push_str(&BASE64.encode(&entry.secret));
            match entry.role {
                Role::Current => {}
                Role::Next => text.push_str(" next"),
                Role::Previous { until } => {
                    text.push_str(" previous until ");
                    text.push_str(&until.to_rfc3339_opts(SecondsFormat::Secs, true));
                }
            }
            text.push('\n');
        }
        text
    }

    /// One line per secret for people: key id and role, never the secret.
    pub fn describe(&self, now: DateTime<Utc>) -> Vec<String> {
        self.entries
            .iter()
            .map(|entry| {
                let role = match entry.role {
                    Role::Current => "current: signs new refresh tokens".to_owned(),
                    Role::Next => "next: accepted, signs after `rotate`".to_owned(),
                    Role::Previous { until } if until > now => format!(
                        "previous: accepted until {}",
                        until.to_rfc3339_opts(SecondsFormat::Secs, true)
                    ),
                    Role::Previous { until } => format!(
                        "previous: ended {}, no longer accepted",
                        until.to_rfc3339_opts(SecondsFormat::Secs, true)
                    ),
                };
                format!("{} {role}", entry.kid)
            })
            .collect()
    }
}

fn random_entry(role: Role) -> Result<Entry, SecretError> {
    let encoded = new_secret().ok_or(SecretError::Random)?;
    let secret = decode_secret(encoded.trim()).ok_or(SecretError::Random)?;
    Ok(Entry {
        kid: kid_of(&secret),
        secret,
        role,
    })
}

/// `add`: a new `next` secret, accepted at once (after a reload), signing after `rotate`.
/// Refused when one is already waiting.
pub fn add(path: &Path, now: DateTime<Utc>, ttl_seconds: u64) -> Result<SecretFile, SecretError> {
    let mut file = SecretFile::read(path, now, ttl_seconds)?;
    if let Some(next) = file.next() {
        return Err(SecretError::Format(format!(
            "{} (the next secret {} is already waiting; `rotate` makes it current)",
            path.display(),
            next.kid
        )));
    }
    file.entries.insert(1, random_entry(Role::Next)?);
    write(path, &file)?;
    Ok(file)
}

/// `rotate`: the next secret (or, without one, a new secret) becomes current; the current one
/// becomes previous, accepted for `ttl_seconds` more; previous secrets that ended are dropped.
pub fn rotate(
    path: &Path,
    now: DateTime<Utc>,
    ttl_seconds: u64,
) -> Result<SecretFile, SecretError> {
    let old = SecretFile::read(path, now, ttl_seconds)?;
    let until = i64::try_from(ttl_seconds)
        .ok()
        .and_then(|ttl| now.checked_add_signed(chrono::Duration::try_seconds(ttl)?))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let mut current = match old.next() {
        Some(next) => next.clone(),
        None => random_entry(Role::Current)?,
    };
    current.role = Role::Current;
    let mut entries = vec![current];
    for entry in old.entries {
        match entry.role {
            Role::Current => entries.push(Entry {
                role: Role::Previous { until },
                ..entry
            }),
            Role::Previous { until } if until > now => entries.push(entry),
            Role::Previous { .. } | Role::Next => {}
        }
    }
    let file = SecretFile { entries };
    write(path, &file)?;
    Ok(file)
}

/// `retire`: drops every previous secret now (after a leak, or when their window may end
/// early). The refresh tokens they signed stop working once the servers reload.
pub fn retire(
    path: &Path,
    now: DateTime<Utc>,
    ttl_seconds: u64,
) -> Result<SecretFile, SecretError> {
    let mut file = SecretFile::read(path, now, ttl_seconds)?;
    file.entries
        .retain(|e| !matches!(e.role, Role::Previous { .. }));
    write(path, &file)?;
    Ok(file)
}

/// Replaces `path` atomically, keeping the old file's permission bits and, where allowed,
/// its owner and group (so a server that reads it through a group still can).
fn write(path: &Path, file: &SecretFile) -> Result<(), SecretError> {
    let write_error = |source| SecretError::Write {
        path: path.display().to_string(),
        source,
    };
    let old = std::fs::metadata(path).map_err(write_error)?;
    #[cfg(unix)]
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        old.permissions().mode() & 0o777
    };
    #[cfg(not(unix))]
    let mode = 0o600;
    match atomic_file::write(path, file.render().as_bytes(), mode, Existing::Replace) {
        Ok(()) => {}
        Err(WriteError::Io { source, .. }) => return Err(write_error(source)),
        Err(WriteError::Exists(_)) => {
            return Err(write_error(std::io::ErrorKind::AlreadyExists.into()));
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::metadata(path).map_err(write_error)?;
        if (now.uid(), now.gid()) != (old.uid(), old.gid()) {
            std::os::unix::fs::chown(path, Some(old.uid()), Some(old.gid())).map_err(|source| {
                SecretError::Write {
                    path: format!(
                        "{} (written, but it could not get the old owner {}:{} back; chown it)",
                        path.display(),
                        old.uid(),
                        old.gid()
                    ),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn secret(byte: u8) -> String {
        BASE64.encode(&[byte; 32])
    }

    fn parse(text: &str) -> Result<SecretFile, SecretError> {
        SecretFile::parse(text, Path::new("r.secret"), now(), 3600)
    }

    #[test]
    fn a_single_line_is_the_current_secret_and_roles_are_read() {
        let one = parse(&format!("{}\n", secret(1))).unwrap();
        assert_eq!(one.entries.len(), 1);
        assert_eq!(one.current().role, Role::Current);
        assert_eq!(one.current().kid, kid_of(&[1; 32]));
        assert_eq!(one.current().kid.len(), 8);
        assert!(!one.current().kid.contains(&secret(1)[..8]));

        let text = format!(
            "# comment\n\n{} previous until 2027-01-15T08:00:00Z\n{} next\n{}\n",
            secret(3),
            secret(2),
            secret(1)
        );
        let file = parse(&text).unwrap();
        let kids: Vec<_> = file.entries.iter().map(|e| e.kid.clone()).collect();
        assert_eq!(kids, [kid_of(&[1; 32]), kid_of(&[2; 32]), kid_of(&[3; 32])]);
        assert_eq!(file.next().unwrap().kid, kid_of(&[2; 32]));
        // What render writes parses to the same.
        let again = parse(&file.render()).unwrap();
        assert_eq!(
            again.describe(now()),
            file.describe(now()),
            "{}",
            file.render()
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_line_and_never_the_secret() {
        let cases = [
            (String::new(), "no current secret"),
            (format!("{} next\n", secret(1)), "no current secret"),
            (
                format!("{}\n{}\n", secret(1), secret(2)),
                "line 2: a second current",
            ),
            (
                format!("{}\n{} next\n{} next\n", secret(1), secret(2), secret(3)),
                "line 3: a second `next`",
            ),
            (
                format!("{}\n{}  next\n", secret(1), secret(1)),
                "listed twice",
            ),
            (
                format!("{}\n{} later\n", secret(1), secret(2)),
                "line 2: after the secret",
            ),
            (
                format!("{}\n{} previous until tomorrow\n", secret(1), secret(2)),
                "\"tomorrow\" is not a time",
            ),
            // 2027-01-15T08:00:00Z is now (2027-01-15T08:00:00Z) + 0; one hour and a second
            // later is past the 3600 s lifetime.
            (
                format!(
                    "{}\n{} previous until 2027-01-15T09:00:01Z\n",
                    secret(1),
                    secret(2)
                ),
                "must end by 2027-01-15T09:00:00Z",
            ),
            (
                "c2hvcnQ=\n".to_owned(),
                "line 1: a secret must be base64 of at least 32",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.contains(&secret(2)), "{error}");
        }
        // The bound is inclusive.
        let text = format!(
            "{}\n{} previous until 2027-01-15T09:00:00Z\n",
            secret(1),
            secret(2)
        );
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn add_rotate_and_retire_move_secrets_through_their_roles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refresh.secret");
        std::fs::write(&path, format!("{}\n", secret(1))).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        let first = kid_of(&[1; 32]);

        let added = add(&path, now(), 3600).unwrap();
        let next = added.next().unwrap().kid.clone();
        assert_eq!(added.current().kid, first, "add does not change the signer");
        assert!(
            add(&path, now(), 3600)
                .unwrap_err()
                .to_string()
                .contains("already waiting")
        );

        let rotated = rotate(&path, now(), 3600).unwrap();
        assert_eq!(
            rotated.current().kid,
            next,
            "rotate promotes the next secret"
        );
        assert_eq!(rotated.entries[1].kid, first);
        let until = now() + chrono::Duration::seconds(3600);
        assert_eq!(rotated.entries[1].role, Role::Previous { until });
        let read = SecretFile::read(&path, now(), 3600).unwrap();
        assert_eq!(read.describe(now()), rotated.describe(now()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "the file keeps its mode");
        }

        // Without a next secret, rotate makes one; a previous that ended is dropped.
        let later = until + chrono::Duration::seconds(1);
        let again = rotate(&path, later, 3600).unwrap();
        assert_eq!(again.entries.len(), 2, "{:?}", again.entries);
        assert_eq!(again.entries[1].kid, next);
        assert_ne!(again.current().kid, next);

        let retired = retire(&path, later, 3600).unwrap();
        assert_eq!(retired.entries.len(), 1);
        assert_eq!(retired.current().kid, again.current().kid);

        assert!(rotate(&dir.path().join("missing"), now(), 60).is_err());
    }
}
