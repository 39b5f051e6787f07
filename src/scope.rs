//! The resource-scope grammar of the distribution token spec: parsing, validation and display.
//!
//! ```text
//! scope         := resourcescope [ ' ' resourcescope ]*
//! resourcescope := resourcetype ":" resourcename ":" action [ ',' action ]*
//! resourcetype  := resourcetypevalue [ '(' resourcetypevalue ')' ]
//! resourcename  := [ hostname '/' ] component [ '/' component ]*
//! action        := /[a-z]*/ | '*'
//! ```
//!
//! The type runs to the first colon and the actions follow the last colon, so a name that
//! carries a registry host with a port (`localhost:5000/team/app`) parses. The deprecated class
//! in `repository(plugin)` is accepted and dropped.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Longest resource name accepted; distribution caps repository names at 255 characters.
pub const MAX_NAME_LEN: usize = 255;
/// Longest action accepted.
const MAX_ACTION_LEN: usize = 32;

/// Why a resource scope was rejected. The message names the offending scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed scope {scope:?}: {reason}")]
pub struct ScopeError {
    /// The scope as received, shortened to a readable length.
    pub scope: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ScopeError {
    fn new(scope: &str, reason: &'static str) -> Self {
        ScopeError {
            scope: crate::echo::shorten(scope),
            reason,
        }
    }
}

/// One action of a resource scope: `pull`, `push`, `delete`, `*` or another lowercase word.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Action(String);

impl Action {
    /// The wildcard action that covers every action.
    pub fn all() -> Self {
        Action("*".to_owned())
    }

    /// True for `*`.
    pub fn is_wildcard(&self) -> bool {
        self.0 == "*"
    }

    /// The action's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Action {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            return Ok(Action::all());
        }
        if s.is_empty() {
            return Err("an action is empty");
        }
        if s.len() > MAX_ACTION_LEN {
            return Err("an action is too long");
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err("actions are lowercase letters or '*'");
        }
        Ok(Action(s.to_owned()))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The empty action list, for answers that borrow one.
pub static NO_ACTIONS: Actions = Actions(Vec::new());

/// An ordered set of actions: the first occurrence of each action is kept, repeats collapse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Actions(Vec<Action>);

impl Actions {
    /// An empty action list.
    pub fn none() -> Self {
        Actions(Vec::new())
    }

    /// Adds an action unless it is already present.
    pub fn insert(&mut self, action: Action) {
        if !self.0.contains(&action) {
            self.0.push(action);
        }
    }

    /// True when the list holds `*`.
    pub fn has_wildcard(&self) -> bool {
        self.0.iter().any(Action::is_wildcard)
    }

    /// True when `action` is in the list or the list holds `*`.
    pub fn allows(&self, action: &Action) -> bool {
        self.has_wildcard() || self.0.contains(action)
    }

    /// The actions of `self` that `allowed` permits.
    ///
    /// A requested `*` is granted as `*` only when `allowed` holds `*`; otherwise it is
    /// narrowed to the explicit actions `allowed` lists.
    pub fn intersect(&self, allowed: &Actions) -> Actions {
        if allowed.has_wildcard() {
            return self.clone();
        }
        if self.has_wildcard() {
            return allowed.clone();
        }
        Actions(
            self.0
                .iter()
                .filter(|a| allowed.0.contains(a))
                .cloned()
                .collect(),
        )
    }

    /// Adds every action of `other`.
    pub fn extend(&mut self, other: &Actions) {
        for action in &other.0 {
            self.insert(action.clone());
        }
    }

    /// True when no action is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The actions in order.
    pub fn iter(&self) -> impl Iterator<Item = &Action> {
        self.0.iter()
    }
}

impl FromIterator<Action> for Actions {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Self {
        let mut actions = Actions::none();
        for action in iter {
            actions.insert(action);
        }
        actions
    }
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, action) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(action.as_str())?;
        }
        Ok(())
    }
}

/// One resource scope, such as `repository:team/app:pull,push`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScope {
    /// The resource type (`repository`, `registry`, ...), without a deprecated class.
    pub resource_type: String,
    /// The resource name (`team/app`, `localhost:5000/team/app`, `catalog`).
    pub name: String,
    /// The requested actions, repeats collapsed.
    pub actions: Actions,
}

impl FromStr for ResourceScope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ScopeError::new(s, reason);
        let (resource_type, rest) = s
            .split_once(':')
            .ok_or_else(|| err("expected type:name:actions"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| err("expected type:name:actions"))?;
        let resource_type = parse_type(resource_type).map_err(err)?;
        validate_name(name).map_err(err)?;
        let actions = actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(Action::from_str)
            .collect::<Result<Actions, _>>()
            .map_err(err)?;
        Ok(ResourceScope {
            resource_type,
            name: name.to_owned(),
            actions,
        })
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.resource_type, self.name, self.actions)
    }
}

/// Most resource scopes one token request may carry, after merging repeats of a resource.
pub const MAX_SCOPES: usize = 64;

/// Why a list of scopes was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopesError {
    /// One scope is malformed.
    #[error(transparent)]
    Malformed(#[from] ScopeError),
    /// More distinct resources than the limit; parsing stopped at the first one over it.
    #[error("too many scopes in one request; at most {0}")]
    TooMany(usize),
}

/// Parses every resource scope in `values` with no limit on their number (for the CLI and
/// tests; requests go through [`parse_limited`]).
pub fn parse_all<'a, I>(values: I) -> Result<Vec<ResourceScope>, ScopeError>
where
    I: IntoIterator<Item = &'a str>,
{
    parse_limited(values, usize::MAX).map_err(|e| match e {
        ScopesError::Malformed(e) => e,
        // Unreachable with no limit; keep a scope error rather than panic.
        ScopesError::TooMany(_) => ScopeError::new("", "too many scopes"),
    })
}

/// Parses every resource scope in `values`; each value may hold several, space-separated.
/// Scopes naming the same resource are merged into one, their actions joined. Parsing stops
/// as soon as more than `max` distinct resources are seen, so the work done for a request is
/// bounded by the limit, not by the request's size.
pub fn parse_limited<'a, I>(values: I, max: usize) -> Result<Vec<ResourceScope>, ScopesError>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut scopes: Vec<ResourceScope> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for value in values {
        for item in value.split(' ').filter(|s| !s.is_empty()) {
            let scope: ResourceScope = item.parse()?;
            let key = (scope.resource_type.clone(), scope.name.clone());
            match index.get(&key).and_then(|&i| scopes.get_mut(i)) {
                Some(existing) => existing.actions.extend(&scope.actions),
                None => {
                    if scopes.len() >= max {
                        return Err(ScopesError::TooMany(max));
                    }
                    index.insert(key, scopes.len());
                    scopes.push(scope);
                }
            }
        }
    }
    Ok(scopes)
}

fn is_lower_alnum(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn parse_type(s: &str) -> Result<String, &'static str> {
    let base = match s.split_once('(') {
        None => s,
        Some((base, class)) => {
            let class = class
                .strip_suffix(')')
                .ok_or("resource class must be closed with ')'")?;
            if !is_lower_alnum(class) {
                return Err("resource class must be lowercase letters and digits");
            }
            base
        }
    };
    if !is_lower_alnum(base) {
        return Err("resource type must be lowercase letters and digits");
    }
    Ok(base.to_owned())
}

/// `component := alnum [ separator alnum ]*` with `separator := [_.] | '__' | '-'+`.
fn is_path_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or any number of '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `hostname := hostcomponent [ '.' hostcomponent ]* [ ':' port ]`.
fn is_hostname(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|part| {
            let bytes = part.as_bytes();
            !part.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes.first() != Some(&b'-')
                && bytes.last() != Some(&b'-')
        })
}

fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("resource name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("resource name is longer than 255 characters");
    }
    let mut components = name.split('/');
    let first = components.next().unwrap_or_default();
    let rest: Vec<&str> = components.collect();
    // The first component may be a registry host (`localhost:5000`, `registry.example.com`)
    // when more components follow it.
    let first_ok = is_path_component(first) || (!rest.is_empty() && is_hostname(first));
    if !first_ok || !rest.iter().all(|c| is_path_component(c)) {
        return Err("resource name must be lowercase path components separated by '/'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> (String, String, Vec<String>) {
        let scope: ResourceScope = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
        let actions = scope.actions.iter().map(|a| a.to_string()).collect();
        (scope.resource_type, scope.name, actions)
    }

    #[test]
    fn valid_scopes_parse_into_type_name_and_actions() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            (
                "repository:team/app:pull",
                "repository",
                "team/app",
                &["pull"],
            ),
            (
                "repository:team/app:pull,push",
                "repository",
                "team/app",
                &["pull", "push"],
            ),
            (
                "repository:samalba/my-app:push",
                "repository",
                "samalba/my-app",
                &["push"],
            ),
            (
                "repository:localhost:5000/team/app:pull",
                "repository",
                "localhost:5000/team/app",
                &["pull"],
            ),
            (
                "repository:registry.example.com:443/a/b:pull",
                "repository",
                "registry.example.com:443/a/b",
                &["pull"],
            ),
            (
                "repository:Registry.Example.com/lib:pull",
                "repository",
                "Registry.Example.com/lib",
                &["pull"],
            ),
            (
                "repository(plugin):vieux/sshfs:pull",
                "repository",
                "vieux/sshfs",
                &["pull"],
            ),
            ("registry:catalog:*", "registry", "catalog", &["*"]),
            ("repository:team/app:*", "repository", "team/app", &["*"]),
            ("repository:team/app:", "repository", "team/app", &[]),
            (
                "repository:team/app:pull,pull,push,pull",
                "repository",
                "team/app",
                &["pull", "push"],
            ),
            (
                "repository:team/app:pull,",
                "repository",
                "team/app",
                &["pull"],
            ),
            (
                "repository:a__b/c.d/e---f/g_h:delete",
                "repository",
                "a__b/c.d/e---f/g_h",
                &["delete"],
            ),
            (
                "repository:library/ubuntu:pull",
                "repository",
                "library/ubuntu",
                &["pull"],
            ),
            ("repository:x:pull", "repository", "x", &["pull"]),
        ];
        for (input, ty, name, actions) in cases {
            let (t, n, a) = parsed(input);
            assert_eq!((t.as_str(), n.as_str()), (*ty, *name), "{input}");
            assert_eq!(
                a,
                actions.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{input}"
            );
        }
    }

    #[test]
    fn malformed_scopes_are_rejected_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "expected type:name:actions"),
            ("repository", "expected type:name:actions"),
            ("repository:team/app", "expected type:name:actions"),
            ("repository::pull", "resource name is empty"),
            (":team/app:pull", "resource type must be"),
            ("Repository:team/app:pull", "resource type must be"),
            (
                "repository(plugin:team/app:pull",
                "resource class must be closed",
            ),
            ("repository():team/app:pull", "resource class must be"),
            ("repository:Team/App:pull", "resource name must be"),
            ("repository:team//app:pull", "resource name must be"),
            ("repository:/team/app:pull", "resource name must be"),
            ("repository:team/app/:pull", "resource name must be"),
            ("repository:team/-app:pull", "resource name must be"),
            ("repository:team/a..b:pull", "resource name must be"),
            ("repository:team/a___b:pull", "resource name must be"),
            ("repository:localhost:/team:pull", "resource name must be"),
            (
                "repository:localhost:99999x/team:pull",
                "resource name must be",
            ),
            ("repository:team/app:Pull", "lowercase letters"),
            ("repository:team/app:pu-ll", "lowercase letters"),
            ("repository:team/app:pull;rm", "lowercase letters"),
            ("repository:team/app:**", "lowercase letters"),
        ];
        for (input, reason) in cases {
            let err = input.parse::<ResourceScope>().expect_err(input);
            assert!(err.reason.contains(reason), "{input}: got {:?}", err.reason);
            assert!(err.to_string().contains("malformed scope"), "{input}");
        }
    }

    #[test]
    fn an_overlong_name_is_rejected() {
        let name = "a/".repeat(130) + "b";
        let err = format!("repository:{name}:pull")
            .parse::<ResourceScope>()
            .unwrap_err();
        assert!(err.reason.contains("255"));
        assert!(err.scope.ends_with('…'), "the echoed scope is shortened");
    }

    #[test]
    fn display_round_trips_what_from_str_reads() {
        for s in [
            "repository:team/app:pull,push",
            "repository:localhost:5000/team/app:pull",
            "registry:catalog:*",
            "repository:team/app:",
            "repository:a/b/c:delete,pull",
        ] {
            let scope: ResourceScope = s.parse().unwrap();
            assert_eq!(scope.to_string(), s);
            assert_eq!(scope.to_string().parse::<ResourceScope>().unwrap(), scope);
        }
        let collapsed: ResourceScope = "repository(plugin):a/b:pull,pull".parse().unwrap();
        assert_eq!(collapsed.to_string(), "repository:a/b:pull");
    }

    #[test]
    fn parse_all_splits_on_spaces_and_merges_the_same_resource() {
        let scopes = parse_all([
            "repository:team/new:pull,push repository:team/app:pull",
            "repository:team/app:delete",
            "  ",
        ])
        .unwrap();
        let shown: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "repository:team/new:pull,push",
                "repository:team/app:pull,delete"
            ]
        );
        assert!(parse_all(Vec::<&str>::new()).unwrap().is_empty());
        assert!(parse_all(["repository:ok:pull bad"]).is_err());
    }

    #[test]
    fn the_scope_limit_counts_distinct_resources_and_stops_parsing_at_the_first_one_over() {
        let at_limit: Vec<String> = (0..MAX_SCOPES)
            .map(|i| format!("repository:r{i}:pull"))
            .collect();
        let parsed = parse_limited(at_limit.iter().map(String::as_str), MAX_SCOPES).unwrap();
        assert_eq!(parsed.len(), MAX_SCOPES);
        // Repeats of one resource merge and never count twice.
        let repeats = vec!["repository:same:pull"; 10 * MAX_SCOPES];
        assert_eq!(parse_limited(repeats, MAX_SCOPES).unwrap().len(), 1);
        // One more distinct resource is refused before the malformed scope after it is read.
        let mut over = at_limit.clone();
        over.push("repository:one-more:pull".into());
        over.push("not a scope".into());
        assert_eq!(
            parse_limited(over.iter().map(String::as_str), MAX_SCOPES),
            Err(ScopesError::TooMany(MAX_SCOPES))
        );
    }

    #[test]
    fn intersection_follows_the_wildcard_rules() {
        let acts = |s: &str| -> Actions {
            s.split(',')
                .filter(|a| !a.is_empty())
                .map(|a| a.parse().unwrap())
                .collect()
        };
        let cases = [
            ("pull,push", "pull", "pull"),
            ("pull,push", "*", "pull,push"),
            ("*", "pull", "pull"),
            ("*", "*", "*"),
            ("push", "pull", ""),
            ("", "*", ""),
            ("delete,pull", "pull,push,delete", "delete,pull"),
        ];
        for (requested, allowed, granted) in cases {
            assert_eq!(
                acts(requested).intersect(&acts(allowed)).to_string(),
                granted,
                "{requested} ∩ {allowed}"
            );
        }
    }

    #[test]
    fn random_input_never_panics_and_every_accepted_scope_round_trips() {
        // A small xorshift generator keeps the test deterministic without a dependency.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Pieces of real scopes and of broken ones, glued at random.
        let pieces = [
            "repository",
            "registry",
            "(plugin)",
            ":",
            ":",
            "team",
            "app",
            "/",
            "/",
            "localhost:5000",
            "pull",
            "push",
            "delete",
            ",",
            "*",
            " ",
            "-",
            ".",
            "__",
            "é",
            "A",
            "(",
            ")",
            "\u{0}",
            "%",
        ];
        let mut accepted = 0;
        for _ in 0..200_000 {
            let len = (next() % 10) as usize;
            let input: String = (0..len)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            if let Ok(scopes) = parse_all([input.as_str()]) {
                for scope in scopes {
                    accepted += 1;
                    let shown = scope.to_string();
                    assert_eq!(shown.parse::<ResourceScope>().unwrap(), scope, "{input:?}");
                }
            }
        }
        assert!(
            accepted > 200,
            "the generator should hit valid scopes too ({accepted})"
        );
    }
}
