//! Ordered access rules: the first rule whose `match` fits the request decides the actions.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::pattern::{Pattern, PatternError};
use super::{Decision, Policy, RequestContext};
use crate::scope::{Action, Actions, NO_ACTIONS, ResourceScope};

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

/// The `match` of a rule. Omitted fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchSettings {
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

#[derive(Debug, Clone)]
struct Rule {
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
            rules.push(Rule {
                account: pattern(index, &m.account, false)?,
                group: m.group.clone(),
                resource_type: m.resource_type.clone(),
                name: pattern(index, &m.name, true)?,
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
                    pull_push,
                    "default rule: signed-in users may pull and push repositories",
                ),
            ],
        }
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
    let fields = [
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

impl Rule {
    fn matches(&self, ctx: &RequestContext<'_>, scope: &ResourceScope) -> bool {
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
                .is_none_or(|p| p.matches(&scope.name, account))
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
