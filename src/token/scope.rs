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

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Longest resource name accepted; distribution caps repository names at 255 characters.
pub const MAX_NAME_LEN: usize = 255;
/// Longest action accepted (`delete` is the longest action a registry knows).
pub const MAX_ACTION_LEN: usize = 32;
/// Most distinct actions one resource may carry, after repeats collapse and scopes naming the
/// same resource merge. Clients ask for at most `pull,push,delete` or `*`
/// (`registry:catalog:*` has one); the cap leaves room for registries with actions of their
/// own while keeping the work per scope small and fixed.
pub const MAX_ACTIONS: usize = 16;
/// Longest resource type accepted (after a deprecated class is dropped): `repository`,
/// `registry` and the like.
pub const MAX_TYPE_LEN: usize = 64;
/// Longest single scope accepted, checked before anything else is read of it. Every scope the
/// other caps allow prints within `MAX_TYPE_LEN + MAX_NAME_LEN + MAX_ACTIONS *
/// (MAX_ACTION_LEN + 1) + 1` = 848 bytes, so this refuses only padding (runs of repeated or
/// empty actions) and a merged scope always prints as a scope this parser takes back.
pub const MAX_SCOPE_LEN: usize = 1024;

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
/// The usual ones are held as static text, so parsing and copying them never allocates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Action(Cow<'static, str>);

/// Actions held without an allocation.
const STATIC_ACTIONS: [&str; 4] = ["pull", "push", "delete", "*"];

impl Action {
    /// The wildcard action that covers every action.
    pub fn all() -> Self {
        Action(Cow::Borrowed("*"))
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
        Ok(match STATIC_ACTIONS.iter().find(|known| **known == s) {
            Some(known) => Action(Cow::Borrowed(known)),
            None => Action(Cow::Owned(s.to_owned())),
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The empty action list, for answers that borrow one.
pub static NO_ACTIONS: Actions = Actions {
    order: Vec::new(),
    seen: None,
};

/// Actions an [`Actions`] holds before it builds its set: up to here a scan of the list is
/// cheaper than a tree (a request's scope holds at most [`MAX_ACTIONS`]).
const LINEAR_ACTIONS: usize = MAX_ACTIONS;

/// An ordered set of actions: the first occurrence of each action is kept, repeats collapse,
/// and the order of first occurrence is the order shown (in tokens, the audit log and the
/// OAuth2 `scope` answer).
///
/// Membership is a scan of the list while it holds at most 16 actions (what a request's
/// scope may carry), and a sorted set beside the list past that: adding an action costs at
/// most 16 comparisons or O(log n), however many are already held.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Actions {
    /// The actions in order of first occurrence.
    order: Vec<Action>,
    /// The same actions, for membership, once there are more than [`LINEAR_ACTIONS`] (only
    /// a rule's list can be that long: a request's scope is capped at [`MAX_ACTIONS`]).
    #[serde(skip)]
    seen: Option<BTreeSet<Action>>,
}

/// Equal when the same actions are listed in the same order (`seen` only mirrors `order`).
impl PartialEq for Actions {
    fn eq(&self, other: &Actions) -> bool {
        self.order == other.order
    }
}

impl Eq for Actions {}

/// Adding an action would take a resource past [`MAX_ACTIONS`] distinct actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a resource may carry at most {MAX_ACTIONS} distinct actions")]
pub struct TooManyActions;

impl Actions {
    /// An empty action list.
    pub fn none() -> Self {
        Actions::default()
    }

    /// Adds an action unless it is already present.
    pub fn insert(&mut self, action: Action) {
        if self.holds(&action) {
            return;
        }
        match &mut self.seen {
            Some(seen) => {
                seen.insert(action.clone());
            }
            None if self.order.len() >= LINEAR_ACTIONS => {
                let mut seen: BTreeSet<Action> = self.order.iter().cloned().collect();
                seen.insert(action.clone());
                self.seen = Some(seen);
            }
            None => {}
        }
        self.order.push(action);
    }

    /// True when `action` itself is listed (no wildcard reading).
    fn holds(&self, action: &Action) -> bool {
        match &self.seen {
            Some(seen) => seen.contains(action),
            None => self.order.contains(action),
        }
    }

    /// Adds an action unless it is already present, refusing to hold more than
    /// [`MAX_ACTIONS`] distinct ones (what parsing a request uses).
    pub fn try_insert(&mut self, action: Action) -> Result<(), TooManyActions> {
        if self.holds(&action) {
            return Ok(());
        }
        if self.order.len() >= MAX_ACTIONS {
            return Err(TooManyActions);
        }
        self.insert(action);
        Ok(())
    }

    /// True when the list holds `*`.
    pub fn has_wildcard(&self) -> bool {
        // `*` sorts before every lowercase action, so it is first when present.
        match &self.seen {
            Some(seen) => seen.first().is_some_and(Action::is_wildcard),
            None => self.order.iter().any(Action::is_wildcard),
        }
    }

    /// True when `action` is in the list or the list holds `*`.
    pub fn allows(&self, action: &Action) -> bool {
        self.has_wildcard() || self.holds(action)
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
        self.order
            .iter()
            .filter(|a| allowed.holds(a))
            .cloned()
            .collect()
    }

    /// Adds every action of `other`.
    pub fn extend(&mut self, other: &Actions) {
        for action in &other.order {
            self.insert(action.clone());
        }
    }

    /// Adds every action of `other`, refusing to hold more than [`MAX_ACTIONS`] distinct
    /// ones; on refusal `self` holds the actions added before the one over the cap.
    pub fn try_extend(&mut self, other: &Actions) -> Result<(), TooManyActions> {
        for action in &other.order {
            self.try_insert(action.clone())?;
        }
        Ok(())
    }

    /// True when no action is listed.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// How many distinct actions are listed.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// The actions in order.
    pub fn iter(&self) -> impl Iterator<Item = &Action> {
        self.order.iter()
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
        for (i, action) in self.order.iter().enumerate() {
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
        // Before anything else is read: every later step is linear in what is left.
        if s.len() > MAX_SCOPE_LEN {
            return Err(err("a scope is longer than 1024 bytes"));
        }
        let (resource_type, rest) = s
            .split_once(':')
            .ok_or_else(|| err("expected type:name:actions"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| err("expected type:name:actions"))?;
        let resource_type = parse_type(resource_type).map_err(err)?;
        validate_name(name).map_err(err)?;
        let mut collected = Actions::none();
        for action in actions.split(',').filter(|a| !a.is_empty()) {
            let action = action.parse().map_err(err)?;
            collected
                .try_insert(action)
                .map_err(|_| err(TOO_MANY_ACTIONS))?;
        }
        Ok(ResourceScope {
            resource_type,
            name: name.to_owned(),
            actions: collected,
        })
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.resource_type, self.name, self.actions)
    }
}

/// Why a scope with too many distinct actions is refused (also for a merge of scopes).
const TOO_MANY_ACTIONS: &str = "a resource may carry at most 16 distinct actions";

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

/// Distinct resources merged by a scan before [`parse_limited`] builds its index.
const LINEAR_SCOPES: usize = 8;

/// Parses every resource scope in `values`; each value may hold several, space-separated.
/// Scopes naming the same resource are merged into one, their actions joined (at most
/// [`MAX_ACTIONS`] distinct ones). Parsing stops at the first scope over a cap: more than
/// `max` distinct resources, a scope longer than [`MAX_SCOPE_LEN`], or a resource with more
/// than [`MAX_ACTIONS`] actions.
///
/// The work is linear in the size of `values`: each scope is read once, looked up by resource
/// (a scan while there are at most 8 distinct ones, a hash map past that), and each of its
/// actions costs a lookup among at most [`MAX_ACTIONS`] entries. The size of `values`
/// itself is bounded by the request limits (`crate::http::limits`), not here.
pub fn parse_limited<'a, I>(values: I, max: usize) -> Result<Vec<ResourceScope>, ScopesError>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut scopes: Vec<ResourceScope> = Vec::new();
    // Where each resource is in `scopes`, built once there are more than a few: up to
    // `LINEAR_SCOPES` a scan is cheaper than hashing and copying the keys, and past them the
    // index keeps the merge linear whatever `max` is.
    let mut index: Option<HashMap<(String, String), usize>> = None;
    for value in values {
        for item in value.split(' ').filter(|s| !s.is_empty()) {
            let scope: ResourceScope = item.parse()?;
            let found = match &index {
                Some(index) => index
                    .get(&(scope.resource_type.clone(), scope.name.clone()))
                    .copied(),
                None => scopes
                    .iter()
                    .position(|s| s.resource_type == scope.resource_type && s.name == scope.name),
            };
            match found.and_then(|i| scopes.get_mut(i)) {
                Some(existing) => existing
                    .actions
                    .try_extend(&scope.actions)
                    .map_err(|_| ScopeError::new(item, TOO_MANY_ACTIONS))?,
                None => {
                    if scopes.len() >= max {
                        return Err(ScopesError::TooMany(max));
                    }
                    let key = || (scope.resource_type.clone(), scope.name.clone());
                    match &mut index {
                        Some(index) => {
                            index.insert(key(), scopes.len());
                        }
                        None if scopes.len() >= LINEAR_SCOPES => {
                            let mut built: HashMap<(String, String), usize> = scopes
                                .iter()
                                .enumerate()
                                .map(|(i, s)| ((s.resource_type.clone(), s.name.clone()), i))
                                .collect();
                            built.insert(key(), scopes.len());
                            index = Some(built);
                        }
                        None => {}
                    }
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
    if base.len() > MAX_TYPE_LEN {
        return Err("resource type is longer than 64 characters");
    }
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
    fn merging_finds_the_same_resource_before_and_after_the_index_is_built() {
        // 3 × LINEAR_SCOPES resources asked for pull, then each again for push, in reverse:
        // the early ones are found by the scan's index positions, the later ones by the map.
        let n = 3 * LINEAR_SCOPES;
        let pulls: Vec<String> = (0..n).map(|i| format!("repository:r{i}:pull")).collect();
        let pushes: Vec<String> = (0..n)
            .rev()
            .map(|i| format!("repository:r{i}:push"))
            .collect();
        let scopes =
            parse_limited(pulls.iter().chain(&pushes).map(String::as_str), MAX_SCOPES).unwrap();
        let shown: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        let expected: Vec<String> = (0..n)
            .map(|i| format!("repository:r{i}:pull,push"))
            .collect();
        assert_eq!(shown, expected);
        // The limit counts distinct resources, whichever way they were found.
        assert!(matches!(
            parse_limited(pulls.iter().chain(&pushes).map(String::as_str), n - 1),
            Err(ScopesError::TooMany(_))
        ));
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

    /// `n` distinct actions: `a`, `b`, ..., `z`, `aa`, `ab`, ...
    fn distinct_actions(n: usize) -> String {
        (0..n)
            .map(|mut i| {
                let mut word = Vec::new();
                loop {
                    word.push(b'a' + (i % 26) as u8);
                    i /= 26;
                    if i == 0 {
                        break;
                    }
                    i -= 1;
                }
                String::from_utf8(word).unwrap()
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn every_cap_admits_its_size_and_refuses_one_more() {
        let name_at = "n".repeat(MAX_NAME_LEN);
        let type_at = "t".repeat(MAX_TYPE_LEN);
        let action_at = "a".repeat(MAX_ACTION_LEN);
        // Repeats of one action padded to the scope cap, exactly, and one byte over.
        let padded = |len: usize| {
            let head = "repository:x:pull";
            let mut s = head.to_owned();
            while s.len() + ",pull".len() <= len {
                s.push_str(",pull");
            }
            s.push_str(&",".repeat(len - s.len()));
            s
        };
        let cases: Vec<(String, Option<&str>)> = vec![
            (
                format!("repository:x:{}", distinct_actions(MAX_ACTIONS)),
                None,
            ),
            (
                format!("repository:x:{}", distinct_actions(MAX_ACTIONS + 1)),
                Some("at most 16 distinct actions"),
            ),
            (
                format!("repository:x:{}", distinct_actions(16_000)),
                Some("longer than 1024 bytes"),
            ),
            (format!("repository:x:{action_at}"), None),
            (
                format!("repository:x:{action_at}a"),
                Some("action is too long"),
            ),
            (format!("repository:{name_at}:pull"), None),
            (format!("repository:{name_at}n:pull"), Some("255")),
            (format!("{type_at}:x:pull"), None),
            (format!("{type_at}t:x:pull"), Some("longer than 64")),
            (padded(MAX_SCOPE_LEN), None),
            (padded(MAX_SCOPE_LEN + 1), Some("longer than 1024 bytes")),
        ];
        for (input, refusal) in cases {
            let got = input.parse::<ResourceScope>();
            match refusal {
                None => assert!(got.is_ok(), "{}: {got:?}", crate::echo::shorten(&input)),
                Some(reason) => {
                    let err = got.expect_err(&input);
                    assert!(err.reason.contains(reason), "{input}: {:?}", err.reason);
                    assert!(err.scope.chars().count() <= crate::echo::MAX_ECHO_CHARS + 1);
                }
            }
        }
        // The messages name the caps they enforce.
        assert!(TOO_MANY_ACTIONS.contains(&MAX_ACTIONS.to_string()));
        let over = "x".repeat(MAX_SCOPE_LEN + 1).parse::<ResourceScope>();
        assert!(
            over.unwrap_err()
                .reason
                .contains(&MAX_SCOPE_LEN.to_string())
        );
    }

    #[test]
    fn the_largest_scope_the_caps_allow_prints_within_the_scope_cap() {
        let actions: Vec<String> = (0..MAX_ACTIONS)
            .map(|i| {
                format!(
                    "{}{}",
                    "a".repeat(MAX_ACTION_LEN - 1),
                    (b'a' + i as u8) as char
                )
            })
            .collect();
        let largest = format!(
            "{}:{}:{}",
            "t".repeat(MAX_TYPE_LEN),
            "n".repeat(MAX_NAME_LEN),
            actions.join(",")
        );
        assert_eq!(largest.len(), 848);
        let scope: ResourceScope = largest.parse().unwrap();
        assert_eq!(scope.actions.len(), MAX_ACTIONS);
        assert!(scope.to_string().len() <= MAX_SCOPE_LEN);
    }

    #[test]
    fn a_long_rule_list_keeps_order_repeats_and_membership_past_the_scan() {
        // A rule may list more actions than a request may ask for: past LINEAR_ACTIONS the
        // list gets its set, and answers the same.
        let names: Vec<String> = (0..3 * LINEAR_ACTIONS)
            .map(|i| format!("a{}", char::from(b'a' + (i % 26) as u8)).repeat(i / 26 + 1))
            .collect();
        let mut long = Actions::none();
        for name in names.iter().chain(&names) {
            long.insert(name.parse().unwrap());
        }
        let shown: Vec<&str> = long.iter().map(Action::as_str).collect();
        assert_eq!(shown, names.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(long.seen.is_some(), "the set is built past the scan");
        let last: Action = names.last().unwrap().parse().unwrap();
        assert!(long.allows(&last));
        assert!(!long.allows(&"pull".parse().unwrap()));
        assert!(!long.has_wildcard());
        long.insert(Action::all());
        assert!(long.has_wildcard() && long.allows(&"pull".parse().unwrap()));

        // Intersections and equality read the list, whichever way membership is kept.
        let asked: Actions = ["pull", names[0].as_str(), last.as_str()]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let mut without_wildcard = Actions::none();
        for name in &names {
            without_wildcard.insert(name.parse().unwrap());
        }
        let granted = asked.intersect(&without_wildcard);
        assert_eq!(granted.to_string(), format!("{},{}", names[0], last));
        assert_eq!(without_wildcard, without_wildcard.clone());
        assert_ne!(without_wildcard, long);
        // The usual actions are static text; others are owned, and both compare as text.
        assert!(matches!(
            "pull".parse::<Action>().unwrap().0,
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            "mount".parse::<Action>().unwrap().0,
            Cow::Owned(_)
        ));
        assert_eq!(
            "pull".parse::<Action>().unwrap(),
            Action(Cow::Owned("pull".into()))
        );
    }

    #[test]
    fn repeats_collapse_within_a_scope_and_across_merged_scopes_within_the_action_cap() {
        let cases: Vec<(Vec<String>, Result<&str, &str>)> = vec![
            // 150 repeats of pull in one scope: one action.
            (
                vec![format!("repository:x:{}", vec!["pull"; 150].join(","))],
                Ok("repository:x:pull"),
            ),
            // The same resource asked 500 times: one scope, first-seen order kept.
            (
                (0..500)
                    .map(|i| {
                        ["repository:x:push,pull", "repository:x:pull,delete"][i % 2].to_owned()
                    })
                    .collect(),
                Ok("repository:x:push,pull,delete"),
            ),
            // 16 distinct actions spread over scopes of one resource merge to the cap...
            (
                distinct_actions(MAX_ACTIONS)
                    .split(',')
                    .map(|a| format!("repository:x:{a}"))
                    .collect(),
                Ok("16 actions"),
            ),
            // ...and a 17th is refused like one scope carrying 17.
            (
                distinct_actions(MAX_ACTIONS + 1)
                    .split(',')
                    .map(|a| format!("repository:x:{a}"))
                    .collect(),
                Err("at most 16 distinct actions"),
            ),
        ];
        for (values, expected) in cases {
            let got = parse_limited(values.iter().map(String::as_str), MAX_SCOPES);
            match expected {
                Ok("16 actions") => {
                    let scopes = got.unwrap();
                    assert_eq!(scopes.len(), 1);
                    assert_eq!(scopes[0].actions.len(), MAX_ACTIONS);
                }
                Ok(shown) => {
                    let scopes = got.unwrap();
                    assert_eq!(scopes.len(), 1, "{shown}");
                    assert_eq!(scopes[0].to_string(), shown);
                }
                Err(reason) => match got {
                    Err(ScopesError::Malformed(e)) => assert!(e.reason.contains(reason), "{e}"),
                    other => panic!("expected {reason:?}, got {other:?}"),
                },
            }
        }
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
