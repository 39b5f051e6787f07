//! Patterns in access rules: an exact string, a glob (`*` within one path segment, `**`
//! across segments), or `/regex/` (anchored). All compiled once, when the rules load.
//!
//! A name pattern may contain `${account}`, which matches the caller's account name exactly
//! (one path segment), so `${account}/**` gives every user a namespace of their own.

use regex::Regex;

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong.
    pub reason: String,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Exact(String),
    /// Anchored regex; `account_groups` counts the `${account}` captures to check.
    Regex {
        regex: Regex,
        account_groups: usize,
    },
    /// Any non-empty value.
    NonEmpty,
}

const ACCOUNT: &str = "${account}";

impl Pattern {
    /// Compiles `source`. `allow_account` permits `${account}` (name patterns only).
    pub fn new(source: &str, allow_account: bool) -> Result<Pattern, PatternError> {
        let err = |reason: &str| PatternError {
            pattern: source.to_owned(),
            reason: reason.to_owned(),
        };
        if source.contains(ACCOUNT) && !allow_account {
            return Err(err("${account} can only be used in a name pattern"));
        }
        let kind = if let Some(inner) = source
            .strip_prefix('/')
            .and_then(|s| s.strip_suffix('/'))
            .filter(|_| source.len() >= 2)
        {
            if inner.contains(ACCOUNT) {
                return Err(err("${account} can be used in globs, not in a /regex/"));
            }
            // Compiled alone first: `a)|(b` would otherwise close the anchoring group and
            // leave each side of the `|` unanchored.
            Regex::new(inner).map_err(|e| err(&e.to_string()))?;
            let regex = Regex::new(&format!("^(?:{inner})$")).map_err(|e| err(&e.to_string()))?;
            Kind::Regex {
                regex,
                account_groups: 0,
            }
        } else if source.contains('*') || source.contains(ACCOUNT) {
            let (regex, account_groups) = glob_to_regex(source);
            let regex = Regex::new(&regex).map_err(|e| err(&e.to_string()))?;
            Kind::Regex {
                regex,
                account_groups,
            }
        } else {
            Kind::Exact(source.to_owned())
        };
        Ok(Pattern {
            source: source.to_owned(),
            kind,
        })
    }

    /// A pattern matching exactly `value` (no glob or regex), which cannot fail.
    pub fn exact(value: &str) -> Pattern {
        Pattern {
            source: value.to_owned(),
            kind: Kind::Exact(value.to_owned()),
        }
    }

    /// A pattern matching any non-empty value: every signed-in account. Cannot fail.
    pub fn any_signed_in() -> Pattern {
        Pattern {
            source: "**".to_owned(),
            kind: Kind::NonEmpty,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when `value` matches; `${account}` must equal `account`.
    pub fn matches(&self, value: &str, account: &str) -> bool {
        match &self.kind {
            Kind::Exact(s) => s == value,
            Kind::NonEmpty => !value.is_empty(),
            Kind::Regex {
                regex,
                account_groups: 0,
            } => regex.is_match(value),
            Kind::Regex { regex, .. } => {
                if account.is_empty() {
                    return false;
                }
                regex.captures(value).is_some_and(|caps| {
                    caps.iter().skip(1).flatten().all(|m| m.as_str() == account)
                })
            }
        }
    }

    /// True for `""`: the pattern that matches anonymous callers only.
    pub fn is_empty_exact(&self) -> bool {
        matches!(&self.kind, Kind::Exact(s) if s.is_empty())
    }

    /// True for a `/regex/` pattern.
    pub fn is_regex(&self) -> bool {
        self.source.len() >= 2 && self.source.starts_with('/') && self.source.ends_with('/')
    }
}

/// `*` → `[^/]*`, `**` → `.*`, `${account}` → `([^/]+)`, everything else literal.
fn glob_to_regex(glob: &str) -> (String, usize) {
    let mut out = String::from("^");
    let mut groups = 0;
    let mut rest = glob;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(ACCOUNT) {
            out.push_str("([^/]+)");
            groups += 1;
            rest = after;
        } else if let Some(after) = rest.strip_prefix("**") {
            out.push_str(".*");
            rest = after;
        } else if let Some(after) = rest.strip_prefix('*') {
            out.push_str("[^/]*");
            rest = after;
        } else {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push_str(&regex::escape(c.encode_utf8(&mut [0u8; 4])));
            }
            rest = chars.as_str();
        }
    }
    out.push('$');
    (out, groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_a_table() {
        // (pattern, value, account, expected)
        let cases: &[(&str, &str, &str, bool)] = &[
            ("team/app", "team/app", "", true),
            ("team/app", "team/app2", "", false),
            ("team/*", "team/app", "", true),
            ("team/*", "team/app/sub", "", false),
            ("team/**", "team/app/sub", "", true),
            ("team/**", "team", "", false),
            ("**", "anything/at/all", "", true),
            ("*", "", "", true),
            ("*-dev", "app-dev", "", true),
            ("a.b", "aXb", "", false),
            ("/team/(app|web)/", "team/web", "", true),
            ("/team/(app|web)/", "team/web2", "", false),
            ("/app/", "myapp", "", false),
            ("/.+/", "", "", false),
            ("${account}/**", "alice/app", "alice", true),
            ("${account}/**", "alice/app", "bob", false),
            ("${account}/**", "alice/app", "", false),
            ("${account}/**", "alice2/app", "alice", false),
            ("users/${account}", "users/alice", "alice", true),
            ("${account}-${account}/*", "a-a/x", "a", true),
            ("${account}-${account}/*", "a-b/x", "a", false),
        ];
        for (pattern, value, account, expected) in cases {
            let p = Pattern::new(pattern, true).unwrap();
            assert_eq!(
                p.matches(value, account),
                *expected,
                "{pattern} vs {value} as {account:?}"
            );
        }
    }

    #[test]
    fn bad_patterns_are_load_errors() {
        let escape = Pattern::new("/a)|(b/", false).unwrap_err();
        assert!(escape.reason.contains("regex"), "{escape:?}");
        assert!(
            Pattern::new("/(unclosed/", false)
                .unwrap_err()
                .reason
                .contains("regex")
        );
        assert!(
            Pattern::new("${account}/x", false)
                .unwrap_err()
                .reason
                .contains("name pattern")
        );
        assert!(
            Pattern::new("/${account}/", true)
                .unwrap_err()
                .reason
                .contains("globs")
        );
    }
}
