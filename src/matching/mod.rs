//! The value syntax that access rules ([`crate::policy`]) and workload-token claim
//! requirements ([`crate::identity::federation`]) share: one name or a list ([`OneOrMore`]),
//! and `/regex/` for an anchored regular expression ([`regex_inside`], [`anchored_regex`]).
//! It sits below both, so neither imports the other for it. [`pattern`] is the repository-name
//! pattern language (`*`, `**`, `${account}`, `${claim.NAME}`) rules and access-token scopes use.

pub mod pattern;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// One name, or a list of names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMore {
    /// A single name.
    One(String),
    /// Several names.
    More(Vec<String>),
}

impl OneOrMore {
    /// The names.
    pub fn as_slice(&self) -> &[String] {
        match self {
            OneOrMore::One(one) => std::slice::from_ref(one),
            OneOrMore::More(more) => more,
        }
    }
}

impl std::fmt::Display for OneOrMore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OneOrMore::One(one) => write!(f, "{one:?}"),
            OneOrMore::More(more) => write!(f, "{more:?}"),
        }
    }
}

/// Compiles `/inner/`'s inside as an anchored regex. The inside is compiled alone first:
/// `a)|(b` would otherwise close the anchoring group and leave each side of the `|`
/// unanchored.
pub fn anchored_regex(inner: &str) -> Result<Regex, String> {
    Regex::new(inner).map_err(|e| e.to_string())?;
    Regex::new(&format!("^(?:{inner})$")).map_err(|e| e.to_string())
}

/// The inside of `/regex/`, when `source` is written that way.
pub fn regex_inside(source: &str) -> Option<&str> {
    source
        .strip_prefix('/')
        .and_then(|s| s.strip_suffix('/'))
        .filter(|_| source.len() >= 2)
}
