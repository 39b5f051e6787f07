//! htpasswd files: `user:hash` lines, bcrypt hashes only.

use std::collections::BTreeMap;

/// A line that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct HtpasswdError {
    /// Line number, from 1.
    pub line: usize,
    /// What is wrong (never the hash or a password).
    pub reason: String,
}

/// True for a bcrypt hash regauth can verify (`$2a$`, `$2b$`, `$2y$`).
pub fn is_bcrypt(hash: &str) -> bool {
    (hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"))
        && hash.parse::<bcrypt::HashParts>().is_ok()
}

/// Parses an htpasswd file into user → bcrypt hash. Blank lines and `#` comments are skipped.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, HtpasswdError> {
    let mut users = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let entry = raw.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        let err = |reason: &str| HtpasswdError {
            line,
            reason: reason.to_owned(),
        };
        let (user, hash) = entry
            .split_once(':')
            .ok_or_else(|| err("expected user:hash"))?;
        if user.is_empty() {
            return Err(err("the user name is empty"));
        }
        if !is_bcrypt(hash) {
            return Err(err(&format!(
                "the hash for {user:?} is not bcrypt ($2y$/$2b$/$2a$); create it with `htpasswd -B` or `regauth hash-password`"
            )));
        }
        if users.insert(user.to_owned(), hash.to_owned()).is_some() {
            return Err(err(&format!("{user:?} appears twice")));
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$04$Q0BM5JqJyp/ocGdwb0dGEeLxnSp0bn0ExqzKBCXjbk5MKYSRj3ZUS";

    #[test]
    fn bcrypt_lines_load_and_comments_are_skipped() {
        let text = format!(
            "# users\n\nalice:{HASH}\nbob:{}\n",
            HASH.replace("$2y$", "$2b$")
        );
        let users = parse(&text).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users["alice"], HASH);
    }

    #[test]
    fn other_hashes_and_broken_lines_name_the_line() {
        let cases = [
            ("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", 1, "not bcrypt"),
            ("alice:$apr1$abc$def", 1, "not bcrypt"),
            ("alice:plaintext", 1, "not bcrypt"),
            ("# c\nalice", 2, "expected user:hash"),
            (":$2y$04$x", 1, "empty"),
            ("alice:$2y$04$short", 1, "not bcrypt"),
        ];
        for (text, line, reason) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text}");
            assert!(err.reason.contains(reason), "{text}: {}", err.reason);
            assert!(!err.to_string().contains("W6ph5"), "no hash in messages");
        }
        let twice = format!("a:{HASH}\na:{HASH}\n");
        assert!(parse(&twice).unwrap_err().reason.contains("twice"));
    }
}
