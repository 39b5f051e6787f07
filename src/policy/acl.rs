//! Ordered access rules: the first rule whose `match` fits the request decides the actions.
//!
//! Sources are kept apart: a rule that names neither `source` nor `issuer` is a rule for
//! people (and anonymous callers) and never matches a caller who signed in with a workload
//! token. Workloads get exactly what rules naming `source: federation` or an `issuer` give.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{Decision, Policy, RequestContext};
use crate::identity::federation::SOURCE_FEDERATION;
use crate::identity::tokens::{SOURCE_ROBOT, SOURCE_TOKENS};
use crate::identity::{Identity, SOURCE_HTPASSWD, SOURCE_LDAP, SOURCE_USERS};
use crate::matching::pattern::{Pattern, PatternError, Variables};
use crate::token::scope::{Action, Actions, NO_ACTIONS, ResourceScope};

/// The identity sources a rule's `source` may name.
pub const SOURCE_NAMES: [&str; 6] = [
    SOURCE_USERS,
    SOURCE_HTPASSWD,
    SOURCE_LDAP,
    SOURCE_FEDERATION,
    SOURCE_TOKENS,
    SOURCE_ROBOT,
];

/// A rule as written in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// What the request must look like; every given field must match.
    #[serde(rename = "match", default)]
    pub matches: MatchSettings,
    /// Actions allowed: `["*"]` for all, `[]` to deny.
    pub actions: Vec<String>,
    /// Free text shown by `regauth explain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl RuleSettings {
    /// A rule allowing `actions` to requests that fit the match `fill` writes (an untouched
    /// match fits every request): rules built in code, as tests and tools write them.
    pub fn new(fill: impl FnOnce(&mut MatchSettings), actions: &[&str]) -> RuleSettings {
        let mut matches = MatchSettings::default();
        fill(&mut matches);
        RuleSettings {
            matches,
            actions: actions.iter().map(|a| a.to_string()).collect(),
            comment: None,
        }
    }
}

pub use crate::matching::OneOrMore;

/// The `match` of a rule. Omitted fields match anything, except that a rule naming neither
/// `source` nor `issuer` never matches a workload (a caller of source `federation`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchSettings {
    /// The identity source(s) that signed the caller in: `users`, `htpasswd`, `ldap`,
    /// `federation`; one name or a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<OneOrMore>,
    /// The issuer (`iss`, exactly) of the caller's workload token; implies `source:
    /// federation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Account: exact, glob or `/regex/`. `""` is the anonymous caller; globs never match it.
    pub account: Option<String>,
    /// A group the user belongs to (exact).
    pub group: Option<String>,
    /// Resource type (exact), e.g. `repository` or `registry`.
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    /// Resource name: exact, glob, `/regex/`; may use `${account}`.
    pub name: Option<String>,
    /// Service: exact, glob or `/regex/`.
    pub service: Option<String>,
    /// Client address range (CIDR), e.g. `10.0.0.0/8`; a bare address is a /32 or /128.
    pub ip: Option<String>,
}

/// A rule that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {index}: {reason}")]
pub struct RuleError {
    /// Position in the list, from 1.
    pub index: usize,
    /// What is wrong.
    pub reason: String,
}

/// Which callers a rule is for, by where they signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Callers {
    /// No `source` and no `issuer`: everyone but workloads.
    People,
    /// `source`: callers of these sources (anonymous callers have none).
    Sources(Vec<&'static str>),
    /// `issuer`: workloads whose token this issuer signed.
    Issuer(String),
}

#[derive(Debug, Clone)]
struct Rule {
    callers: Callers,
    account: Option<Pattern>,
    group: Option<String>,
    resource_type: Option<String>,
    name: Option<Pattern>,
    service: Option<Pattern>,
    ip: Option<IpNet>,
    actions: Actions,
    text: String,
}

/// Compiled rules, in order.
#[derive(Debug, Clone)]
pub struct Acl {
    rules: Vec<Rule>,
}

fn pattern(
    index: usize,
    source: &Option<String>,
    allow_account: bool,
) -> Result<Option<Pattern>, RuleError> {
    source
        .as_deref()
        .map(|s| Pattern::new(s, allow_account))
        .transpose()
        .map_err(|e: PatternError| RuleError {
            index,
            reason: e.to_string(),
        })
}

impl Acl {
    /// Compiles every rule; the first error names the rule.
    pub fn compile(settings: &[RuleSettings]) -> Result<Acl, RuleError> {
        let mut rules = Vec::with_capacity(settings.len());
        for (i, rule) in settings.iter().enumerate() {
            let index = i + 1;
            let m = &rule.matches;
            let ip =
                m.ip.as_deref()
                    .map(|s| {
                        parse_net(s).ok_or_else(|| RuleError {
                            index,
                            reason: format!(
                                "ip {s:?} is not an address or CIDR range such as 10.0.0.0/8"
                            ),
                        })
                    })
                    .transpose()?;
            let actions = rule
                .actions
                .iter()
                .map(|a| {
                    a.parse::<Action>().map_err(|reason| RuleError {
                        index,
                        reason: format!("action {a:?}: {reason}"),
                    })
                })
                .collect::<Result<Actions, _>>()?;
            let name = pattern(index, &m.name, true)?;
            let callers = callers(index, m, name.as_ref())?;
            rules.push(Rule {
                callers,
                account: pattern(index, &m.account, false)?,
                group: m.group.clone(),
                resource_type: m.resource_type.clone(),
                name,
                service: pattern(index, &m.service, false)?,
                ip,
                actions,
                text: describe(index, rule),
            });
        }
        Ok(Acl { rules })
    }

    /// The rules used when none are configured: anonymous callers get `anonymous` on
    /// repositories, signed-in users `pull` and `push` on repositories.
    pub fn default_rules(anonymous: &Actions) -> Acl {
        // `account: Some(..)` always: `None` would mean "any caller".
        let repo = |account: Pattern, actions: Actions, text: &str| Rule {
            callers: Callers::People,
            account: Some(account),
            group: None,
            resource_type: Some("repository".into()),
            name: None,
            service: None,
            ip: None,
            actions,
            text: text.into(),
        };
        let pull_push: Actions = ["pull", "push"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        Acl {
            rules: vec![
                repo(
                    Pattern::exact(""),
                    anonymous.clone(),
                    &format!(
                        "default rule: anonymous callers may {} repositories",
                        display(anonymous)
                    ),
                ),
                repo(
                    Pattern::any_signed_in(),
                    pull_push.clone(),
                    "default rule: signed-in users may pull and push repositories",
                ),
                // Robots never match rules for people; without rules they get their scopes.
                Rule {
                    callers: Callers::Sources(vec![SOURCE_ROBOT]),
                    ..repo(
                        Pattern::any_signed_in(),
                        pull_push,
                        "default rule: robots may pull and push repositories (within their scopes)",
                    )
                },
            ],
        }
    }

    /// True when some rule is written for workloads (names `source: federation` or an
    /// `issuer`): without one, callers signed in with a workload token get nothing.
    pub fn names_federation(&self) -> bool {
        self.rules.iter().any(|r| match &r.callers {
            Callers::People => false,
            Callers::Sources(sources) => sources.contains(&SOURCE_FEDERATION),
            Callers::Issuer(_) => true,
        })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True without rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Who a rule is for, from `source` and `issuer`, checked against what the rule matches.
fn callers(index: usize, m: &MatchSettings, name: Option<&Pattern>) -> Result<Callers, RuleError> {
    let fail = |reason: String| RuleError { index, reason };
    let mut sources = Vec::new();
    if let Some(list) = &m.source {
        if list.as_slice().is_empty() {
            return Err(fail(format!(
                "source must name at least one of {}",
                SOURCE_NAMES.join(", ")
            )));
        }
        for written in list.as_slice() {
            let known = SOURCE_NAMES
                .iter()
                .find(|s| **s == written.as_str())
                .ok_or_else(|| {
                    fail(format!(
                        "source {written:?} is not one of {}",
                        SOURCE_NAMES.join(", ")
                    ))
                })?;
            if !sources.contains(known) {
                sources.push(*known);
            }
        }
    }
    let workloads_only = sources == [SOURCE_FEDERATION];
    let callers = match &m.issuer {
        Some(issuer) if issuer.trim().is_empty() => {
            return Err(fail(
                "issuer must be the `iss` of a configured federation issuer".into(),
            ));
        }
        Some(_) if !sources.is_empty() && !workloads_only => {
            return Err(fail(
                "issuer matches workloads only: write source: federation or leave source out"
                    .into(),
            ));
        }
        Some(issuer) => Callers::Issuer(issuer.clone()),
        None if sources.is_empty() => Callers::People,
        None => Callers::Sources(sources.clone()),
    };
    let mixed = sources.contains(&SOURCE_FEDERATION) && !workloads_only;
    if mixed
        && (m.account.is_some() || m.group.is_some() || name.is_some_and(Pattern::uses_account))
    {
        return Err(fail(
            "source lists federation with other sources in a rule that matches an account or              group: a workload's account or group must never satisfy a rule meant for people;              write separate rules"
                .into(),
        ));
    }
    let for_workloads = matches!(callers, Callers::Issuer(_)) || workloads_only;
    if name.is_some_and(Pattern::uses_claims) && !for_workloads {
        return Err(fail(
            "${claim.NAME} is a claim of a workload token: use it in a rule with              source: federation or an issuer"
                .into(),
        ));
    }
    Ok(callers)
}

fn display(actions: &Actions) -> String {
    if actions.is_empty() {
        "do nothing with".into()
    } else {
        actions.to_string()
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

fn describe(index: usize, rule: &RuleSettings) -> String {
    let m = &rule.matches;
    let mut parts = Vec::new();
    if let Some(source) = &m.source {
        parts.push(format!("source={source}"));
    }
    let fields = [
        ("issuer", &m.issuer),
        ("account", &m.account),
        ("group", &m.group),
        ("type", &m.resource_type),
        ("name", &m.name),
        ("service", &m.service),
        ("ip", &m.ip),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            parts.push(format!("{key}={v:?}"));
        }
    }
    let matched = if parts.is_empty() {
        "anything".into()
    } else {
        parts.join(" ")
    };
    let comment = rule
        .comment
        .as_deref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    format!(
        "rule {index}: match {matched} -> [{}]{comment}",
        rule.actions.join(",")
    )
}

impl Variables for Identity {
    fn account(&self) -> &str {
        self.subject()
    }

    fn claim(&self, name: &str) -> Option<&str> {
        Identity::claim(self, name)
    }
}

impl Callers {
    fn admit(&self, identity: &Identity) -> bool {
        match self {
            // Robots, like workloads, get only what rules naming them give.
            Callers::People => ![SOURCE_FEDERATION, SOURCE_ROBOT].contains(&identity.source()),
            // A user's access token acts for its owner: rules for the owner's source apply.
            Callers::Sources(sources) => {
                sources.contains(&identity.source())
                    || identity
                        .token_owner_source()
                        .is_some_and(|owner| sources.contains(&owner))
            }
            Callers::Issuer(issuer) => {
                identity.source() == SOURCE_FEDERATION && identity.issuer() == Some(issuer)
            }
        }
    }
}

impl Rule {
    fn matches(&self, ctx: &RequestContext<'_>, scope: &ResourceScope) -> bool {
        if !self.callers.admit(ctx.identity) {
            return false;
        }
        let account = ctx.identity.subject();
        let account_ok = match &self.account {
            None => true,
            // Globs and exact names never match the anonymous caller; only "" or a regex can.
            Some(p) if account.is_empty() => {
                p.is_empty_exact() || (p.is_regex() && p.matches("", ""))
            }
            Some(p) => p.matches(account, account),
        };
        account_ok
            && self
                .group
                .as_ref()
                .is_none_or(|g| ctx.identity.groups().iter().any(|x| x == g))
            && self
                .resource_type
                .as_ref()
                .is_none_or(|t| *t == scope.resource_type)
            && self
                .name
                .as_ref()
                .is_none_or(|p| p.matches_for(&scope.name, ctx.identity))
            && self
                .service
                .as_ref()
                .is_none_or(|p| p.matches(ctx.service, account))
            && self
                .ip
                .as_ref()
                .is_none_or(|net| ctx.ip.is_some_and(|ip| net.contains(&ip)))
    }
}

impl Policy for Acl {
    fn decide(&self, ctx: &RequestContext<'_>, scope: &ResourceScope) -> Decision<'_> {
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.matches(ctx, scope) {
                return Decision {
                    allowed: &rule.actions,
                    rule: Some(index),
                    explanation: &rule.text,
                };
            }
        }
        Decision {
            allowed: &NO_ACTIONS,
            rule: None,
            explanation: "no rule matched: nothing granted",
        }
    }
}
