//! Patterns in access rules: an exact string, a glob (`*` within one path segment, `**`
//! across segments), or `/regex/` (anchored). All compiled once, when the rules load.
//!
//! A name pattern may contain variables, resolved against the caller when a request is
//! decided:
//! - `${account}` matches the caller's account name exactly, as one path segment, so
//!   `${account}/**` gives every user a namespace of their own;
//! - `${claim.NAME}` matches the string claim `NAME` of a workload token exactly (it may hold
//!   `/`), so `${claim.repository}/**` gives each CI repository its own namespace.
//!
//! A variable's value is compared literally: `*`, `**`, regex characters or `..` in it match
//! only themselves, so a value can never widen a pattern. A pattern with variables is matched
//! piece by piece (literal text, `*`, `**`, each variable's value as literal text) instead of
//! through a regex, so the match is exact whatever the values contain.

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

/// What variables in a pattern resolve to for one caller.
pub trait Variables {
    /// The caller's account (`""` for an anonymous caller).
    fn account(&self) -> &str;
    /// The string claim `name` of the caller's workload token, if any.
    fn claim(&self, name: &str) -> Option<&str>;
}

/// Only `${account}` resolves; no claims.
struct AccountOnly<'a>(&'a str);

impl Variables for AccountOnly<'_> {
    fn account(&self) -> &str {
        self.0
    }

    fn claim(&self, _name: &str) -> Option<&str> {
        None
    }
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
    /// Anchored regex: a `/regex/`, or a glob without variables.
    Regex(Regex),
    /// A glob with variables, matched piece by piece once the variables are resolved.
    Template(Vec<Piece>),
    /// Any non-empty value.
    NonEmpty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// `*`: anything within one path segment.
    Star,
    /// `**`: anything, across segments.
    DoubleStar,
    /// `${account}`.
    Account,
    /// `${claim.NAME}`.
    Claim(String),
}

const ACCOUNT: &str = "${account}";
const CLAIM_PREFIX: &str = "${claim.";
/// Longest claim name a variable may use.
const MAX_CLAIM_NAME: usize = 128;

pub use super::{anchored_regex, regex_inside};

impl Pattern {
    /// Compiles `source`. `allow_variables` permits `${account}` and `${claim.NAME}` (name
    /// patterns only).
    pub fn new(source: &str, allow_variables: bool) -> Result<Pattern, PatternError> {
        let err = |reason: &str| PatternError {
            pattern: source.to_owned(),
            reason: reason.to_owned(),
        };
        let has_variable = source.contains(ACCOUNT) || source.contains(CLAIM_PREFIX);
        if has_variable && !allow_variables {
            return Err(err(
                "${account} and ${claim.NAME} can only be used in a name pattern",
            ));
        }
        let kind = if let Some(inner) = regex_inside(source) {
            if has_variable {
                return Err(err(
                    "${account} and ${claim.NAME} can be used in globs, not in a /regex/",
                ));
            }
            Kind::Regex(anchored_regex(inner).map_err(|e| err(&e))?)
        } else if allow_variables && source.contains("${") {
            Kind::Template(pieces(source).map_err(|e| err(&e))?)
        } else if source.contains('*') {
            let regex = Regex::new(&glob_to_regex(source)).map_err(|e| err(&e.to_string()))?;
            Kind::Regex(regex)
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

    /// True when `value` matches; `${account}` must equal `account`, and no claim resolves.
    pub fn matches(&self, value: &str, account: &str) -> bool {
        self.matches_for(value, &AccountOnly(account))
    }

    /// True when `value` matches with the variables resolved by `vars`. A variable that does
    /// not resolve (anonymous caller, missing claim) or resolves to `""` never matches;
    /// `${account}` never matches an account holding `/`.
    pub fn matches_for(&self, value: &str, vars: &dyn Variables) -> bool {
        match &self.kind {
            Kind::Exact(s) => s == value,
            Kind::NonEmpty => !value.is_empty(),
            Kind::Regex(regex) => regex.is_match(value),
            Kind::Template(pieces) => {
                let mut resolved = Vec::with_capacity(pieces.len());
                for piece in pieces {
                    let step = match piece {
                        Piece::Literal(text) => Step::Literal(text),
                        Piece::Star => Step::Star,
                        Piece::DoubleStar => Step::DoubleStar,
                        Piece::Account => match vars.account() {
                            a if a.is_empty() || a.contains('/') => return false,
                            a => Step::Literal(a),
                        },
                        Piece::Claim(name) => match vars.claim(name) {
                            Some(v) if !v.is_empty() => Step::Literal(v),
                            _ => return false,
                        },
                    };
                    resolved.push(step);
                }
                match_steps(&resolved, value.as_bytes())
            }
        }
    }

    /// True for `""`: the pattern that matches anonymous callers only.
    pub fn is_empty_exact(&self) -> bool {
        matches!(&self.kind, Kind::Exact(s) if s.is_empty())
    }

    /// True for a `/regex/` pattern.
    pub fn is_regex(&self) -> bool {
        regex_inside(&self.source).is_some()
    }

    /// True when the pattern uses `${claim.NAME}`.
    pub fn uses_claims(&self) -> bool {
        matches!(&self.kind, Kind::Template(p) if p.iter().any(|p| matches!(p, Piece::Claim(_))))
    }

    /// True when the pattern uses `${account}`.
    pub fn uses_account(&self) -> bool {
        matches!(&self.kind, Kind::Template(p) if p.contains(&Piece::Account))
    }
}

/// A glob with variables split into pieces.
fn pieces(glob: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut rest = glob;
    let flush = |literal: &mut String, out: &mut Vec<Piece>| {
        if !literal.is_empty() {
            out.push(Piece::Literal(std::mem::take(literal)));
        }
    };
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("${") {
            let (name, after) = after
                .split_once('}')
                .ok_or_else(|| "a variable is not closed with }".to_owned())?;
            let piece = if name == "account" {
                Piece::Account
            } else if let Some(claim) = name.strip_prefix("claim.") {
                if claim.is_empty()
                    || claim.len() > MAX_CLAIM_NAME
                    || !claim
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
                {
                    return Err(format!(
                        "${{claim.{claim}}}: a claim name is 1 to {MAX_CLAIM_NAME} letters, digits, '_', '-', '.' or ':'"
                    ));
                }
                Piece::Claim(claim.to_owned())
            } else {
                return Err(format!(
                    "unknown variable ${{{name}}}; use ${{account}} or ${{claim.NAME}}"
                ));
            };
            flush(&mut literal, &mut out);
            out.push(piece);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("**") {
            flush(&mut literal, &mut out);
            out.push(Piece::DoubleStar);
            rest = after;
        } else if let Some(after) = rest.strip_prefix('*') {
            flush(&mut literal, &mut out);
            out.push(Piece::Star);
            rest = after;
        } else {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                literal.push(c);
            }
            rest = chars.as_str();
        }
    }
    flush(&mut literal, &mut out);
    Ok(out)
}

/// A piece with its variable resolved.
enum Step<'a> {
    Literal(&'a str),
    Star,
    DoubleStar,
}

/// Whether `steps` match all of `value`: the set of positions reachable after each step,
/// swept once per step (time proportional to steps × length, whatever the input).
fn match_steps(steps: &[Step<'_>], value: &[u8]) -> bool {
    let n = value.len();
    let mut reach = vec![false; n + 1];
    let mut next = vec![false; n + 1];
    reach[0] = true;
    for step in steps {
        next.iter_mut().for_each(|r| *r = false);
        match step {
            Step::Literal(text) => {
                let text = text.as_bytes();
                for i in 0..=n {
                    if reach[i] && value[i..].starts_with(text) {
                        next[i + text.len()] = true;
                    }
                }
            }
            Step::Star | Step::DoubleStar => {
                let across = matches!(step, Step::DoubleStar);
                let mut on = false;
                for i in 0..=n {
                    on |= reach[i];
                    next[i] = on;
                    if !across && value.get(i) == Some(&b'/') {
                        on = false;
                    }
                }
            }
        }
        std::mem::swap(&mut reach, &mut next);
        if !reach.iter().any(|r| *r) {
            return false;
        }
    }
    reach[n]
}

/// `*` → `[^/]*`, `**` → `.*`, everything else literal.
fn glob_to_regex(glob: &str) -> String {
    let mut out = String::from("^");
    let mut rest = glob;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("**") {
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
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Caller {
        account: &'static str,
        claims: HashMap<&'static str, &'static str>,
    }

    impl Variables for Caller {
        fn account(&self) -> &str {
            self.account
        }

        fn claim(&self, name: &str) -> Option<&str> {
            self.claims.get(name).copied()
        }
    }

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
            // Exact, whatever follows the variable (a greedy capture got this wrong).
            ("${account}*", "ab", "a", true),
            ("${account}*/x", "ab/x", "a", true),
            ("${account}*/x", "ba/x", "a", false),
            // One path segment: an account holding '/' has no namespace.
            ("${account}/**", "a/b/c", "a/b", false),
            // The account is literal text, never a glob or a regex.
            ("${account}/**", "anything/x", "*", false),
            ("${account}/**", "*/x", "*", true),
            ("${account}/**", "aXb/x", "a.b", false),
            ("${account}/**", "a.b/x", "a.b", true),
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
    fn claim_variables_match_their_value_literally_and_exactly() {
        let caller = |repository: &'static str| Caller {
            account: "repo:octo-org/app:ref:refs/heads/main",
            claims: HashMap::from([("repository", repository), ("owner", "octo-org")]),
        };
        // (pattern, repository claim, value, expected)
        let cases: &[(&str, &str, &str, bool)] = &[
            (
                "${claim.repository}/**",
                "octo-org/app",
                "octo-org/app/a",
                true,
            ),
            (
                "${claim.repository}/**",
                "octo-org/app",
                "octo-org/app/a/b",
                true,
            ),
            (
                "${claim.repository}/**",
                "octo-org/app",
                "octo-org/app",
                false,
            ),
            (
                "${claim.repository}/**",
                "octo-org/app",
                "octo-org/app2/a",
                false,
            ),
            (
                "${claim.repository}/**",
                "octo-org/app",
                "octo-org/other/a",
                false,
            ),
            (
                "${claim.repository}/**",
                "octo-org/app",
                "octo-org/a",
                false,
            ),
            ("${claim.repository}", "octo-org/app", "octo-org/app", true),
            (
                "${claim.repository}",
                "octo-org/app",
                "octo-org/app/x",
                false,
            ),
            (
                "${claim.repository}/*",
                "octo-org/app",
                "octo-org/app/x",
                true,
            ),
            (
                "${claim.repository}/*",
                "octo-org/app",
                "octo-org/app/x/y",
                false,
            ),
            (
                "ci/${claim.owner}/**",
                "octo-org/app",
                "ci/octo-org/x",
                true,
            ),
            (
                "${claim.owner}/${claim.repository}",
                "octo-org/app",
                "octo-org/octo-org/app",
                true,
            ),
            // A value with glob, regex or path characters matches only itself.
            ("${claim.repository}/**", "*", "team/x", false),
            ("${claim.repository}/**", "**", "team/a/x", false),
            ("${claim.repository}/**", "**", "**/x", true),
            (
                "${claim.repository}/**",
                "octo-org/*",
                "octo-org/app/x",
                false,
            ),
            ("${claim.repository}/**", ".*", "anything/x", false),
            (
                "${claim.repository}/**",
                "o.to-org/app",
                "octo-org/app/x",
                false,
            ),
            ("${claim.repository}/**", "(a|b)", "a/x", false),
            ("${claim.repository}/**", "octo-org/..", "octo-org/x", false),
            (
                "${claim.repository}/**",
                "octo-org/..",
                "octo-org/../x",
                true,
            ),
            // An empty value never matches (it would turn `${claim.x}/**` into `/**`).
            ("${claim.repository}/**", "", "/x", false),
            // A claim the caller does not have never matches.
            (
                "${claim.missing}/**",
                "octo-org/app",
                "octo-org/app/x",
                false,
            ),
        ];
        for (pattern, repository, value, expected) in cases {
            let p = Pattern::new(pattern, true).unwrap();
            assert!(p.uses_claims(), "{pattern}");
            assert_eq!(
                p.matches_for(value, &caller(repository)),
                *expected,
                "{pattern} vs {value} with repository {repository:?}"
            );
        }
        // Without claims (a person), a claim pattern matches nothing.
        let p = Pattern::new("${claim.repository}/**", true).unwrap();
        assert!(!p.matches("octo-org/app/x", "octo-org"));
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
        // (pattern, allow variables, expected reason)
        let cases: &[(&str, bool, &str)] = &[
            ("${account}/x", false, "name pattern"),
            ("${claim.repository}/x", false, "name pattern"),
            ("/${account}/", true, "globs"),
            ("/${claim.sub}/", true, "globs"),
            ("${claim.}/x", true, "claim name"),
            ("${claim.a b}/x", true, "claim name"),
            ("${claim.repository/x", true, "not closed"),
            ("${user}/x", true, "unknown variable ${user}"),
        ];
        for (pattern, allow, expected) in cases {
            let err = Pattern::new(pattern, *allow).unwrap_err();
            assert!(err.reason.contains(expected), "{pattern}: {err:?}");
        }
    }
}
