//! Rule matching as a table: rules × requests.

use super::*;
use crate::token::scope::parse_all;

fn sample_acl() -> Acl {
    Acl::compile(&[
        // 1: admins may do anything, from the office network only
        RuleSettings::new(
            |m| {
                m.group = Some("admins".into());
                m.ip = Some("10.0.0.0/8".into());
            },
            &["*"],
        ),
        // 2: everyone signed in owns their namespace
        RuleSettings::new(
            |m| {
                m.account = Some("/.+/".into());
                m.name = Some("${account}/**".into());
            },
            &["pull", "push", "delete"],
        ),
        // 3: CI bots (regex, anchored) may push to team/*
        RuleSettings::new(
            |m| {
                m.account = Some("/ci-[0-9]+/".into());
                m.name = Some("team/*".into());
            },
            &["pull", "push"],
        ),
        // 4: nobody touches secret repos on prod
        RuleSettings::new(
            |m| {
                m.name = Some("secret/**".into());
                m.service = Some("prod.*".into());
            },
            &[],
        ),
        // 5: anonymous may pull public/**
        RuleSettings::new(
            |m| {
                m.account = Some(String::new());
                m.name = Some("public/**".into());
            },
            &["pull"],
        ),
        // 6: any signed-in user may pull repositories
        RuleSettings::new(
            |m| {
                m.account = Some("*".into());
                m.resource_type = Some("repository".into());
            },
            &["pull"],
        ),
    ])
    .unwrap()
}

/// (identity, service, ip, scope, granted, deciding rule)
type Case<'a> = (
    &'a Identity,
    &'a str,
    Option<std::net::IpAddr>,
    &'a str,
    &'a str,
    Option<usize>,
);

#[test]
fn the_first_matching_rule_decides() {
    let acl = sample_acl();
    let alice = Identity::user("alice", vec![]);
    let root = Identity::user("root", vec!["admins".into()]);
    let ci = Identity::user("ci-42", vec![]);
    let ci_bad = Identity::user("xci-42", vec![]);
    let anon = Identity::anonymous();
    let office: Option<std::net::IpAddr> = "10.1.2.3".parse().ok();
    let home: Option<std::net::IpAddr> = "192.0.2.7".parse().ok();

    let cases: Vec<Case> = vec![
        (
            &root,
            "prod.example",
            office,
            "registry:catalog:*",
            "*",
            Some(0),
        ),
        (&root, "prod.example", home, "registry:catalog:*", "", None),
        (
            &root,
            "prod.example",
            home,
            "repository:root/x:push",
            "push",
            Some(1),
        ),
        (
            &alice,
            "s",
            home,
            "repository:alice/app:pull,push,delete",
            "pull,push,delete",
            Some(1),
        ),
        (
            &alice,
            "s",
            home,
            "repository:alice/a/b/c:push",
            "push",
            Some(1),
        ),
        (
            &alice,
            "s",
            home,
            "repository:bob/app:pull,push",
            "pull",
            Some(5),
        ),
        (&alice, "s", home, "repository:alice:push", "", Some(5)),
        (
            &ci,
            "s",
            home,
            "repository:team/app:pull,push",
            "pull,push",
            Some(2),
        ),
        (&ci, "s", home, "repository:team/app/sub:push", "", Some(5)),
        (&ci_bad, "s", home, "repository:team/app:push", "", Some(5)),
        (
            &alice,
            "prod.example",
            home,
            "repository:secret/x:pull",
            "",
            Some(3),
        ),
        (
            &alice,
            "staging",
            home,
            "repository:secret/x:pull",
            "pull",
            Some(5),
        ),
        (
            &anon,
            "s",
            home,
            "repository:public/base:pull,push",
            "pull",
            Some(4),
        ),
        (&anon, "s", home, "repository:alice/app:pull", "", None),
        (&anon, "s", home, "repository:team/app:pull", "", None),
    ];
    for (identity, service, ip, scope, granted, rule) in cases {
        let ctx = RequestContext {
            identity,
            service,
            ip,
        };
        let scopes = parse_all([scope]).unwrap();
        let decision = acl.decide(&ctx, &scopes[0]);
        assert_eq!(
            decision.rule, rule,
            "{identity:?} {scope}: {}",
            decision.explanation
        );
        let entries = grant(&acl, &ctx, &scopes);
        assert_eq!(
            entries[0].actions.to_string(),
            granted,
            "{identity:?} {scope}"
        );
    }
}

#[test]
fn default_rules_let_anonymous_pull_and_users_push_repositories_only() {
    let anonymous: Actions = ["pull".parse().unwrap()].into_iter().collect();
    let acl = Acl::default_rules(&anonymous);
    let alice = Identity::user("alice", vec![]);
    let anon = Identity::anonymous();
    let scopes = parse_all(["repository:a/b:pull,push,delete registry:catalog:*"]).unwrap();
    let granted = |identity: &Identity| -> Vec<String> {
        let ctx = RequestContext {
            identity,
            service: "s",
            ip: None,
        };
        grant(&acl, &ctx, &scopes)
            .iter()
            .map(|e| e.actions.to_string())
            .collect()
    };
    assert_eq!(granted(&anon), ["pull", ""]);
    assert_eq!(granted(&alice), ["pull,push", ""]);
}

#[test]
fn bad_rules_are_named_at_load() {
    let cases: Vec<(RuleSettings, &str)> = vec![
        (
            RuleSettings::new(|m| m.ip = Some("10.0.0.0/33".into()), &["pull"]),
            "rule 1: ip",
        ),
        (
            RuleSettings::new(|m| m.account = Some("/(/".into()), &["pull"]),
            "rule 1: pattern",
        ),
        (
            RuleSettings::new(|m| m.account = Some("${account}".into()), &["pull"]),
            "name pattern",
        ),
        (RuleSettings::new(|_| {}, &["Pull"]), "action \"Pull\""),
    ];
    for (r, expected) in cases {
        let err = Acl::compile(&[r]).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn a_bare_address_is_a_single_host_range() {
    let acl = Acl::compile(&[RuleSettings::new(
        |m| m.ip = Some("127.0.0.1".into()),
        &["pull"],
    )])
    .unwrap();
    let anon = Identity::anonymous();
    let scopes = parse_all(["repository:a:pull"]).unwrap();
    for (ip, expected) in [("127.0.0.1", "pull"), ("127.0.0.2", ""), ("::1", "")] {
        let ctx = RequestContext {
            identity: &anon,
            service: "s",
            ip: ip.parse().ok(),
        };
        assert_eq!(
            grant(&acl, &ctx, &scopes)[0].actions.to_string(),
            expected,
            "{ip}"
        );
    }
}

#[test]
fn service_account_names_match_namespace_rules_and_account_substitution_exactly() {
    let acl = Acl::compile(&[
        RuleSettings::new(
            |m| {
                m.account = Some("/system:serviceaccount:team-a:.+/".into());
                m.name = Some("team-a/**".into());
            },
            &["pull", "push"],
        ),
        RuleSettings::new(|m| m.name = Some("cache/${account}/**".into()), &["*"]),
        RuleSettings::new(|m| m.account = Some("/.+/".into()), &["pull"]),
    ])
    .unwrap();
    let builder = Identity::user("system:serviceaccount:team-a:builder", vec![]);
    let other = Identity::user("system:serviceaccount:team-b:builder", vec![]);
    let lookalike = Identity::user("system:serviceaccount:team-a", vec![]);
    let cases: [(&Identity, &str, &str); 6] = [
        (&builder, "repository:team-a/app:pull,push", "pull,push"),
        (&builder, "repository:team-a/x/y:push", "push"),
        (&builder, "repository:team-b/app:pull,push", "pull"),
        (&other, "repository:team-a/app:pull,push", "pull"),
        (&lookalike, "repository:team-a/app:push", ""),
        (&builder, "repository:cache/system/x:push", ""),
    ];
    for (identity, scope, granted) in cases {
        let ctx = RequestContext {
            identity,
            service: "s",
            ip: None,
        };
        let scopes = parse_all([scope]).unwrap();
        let entries = grant(&acl, &ctx, &scopes);
        assert_eq!(
            entries[0].actions.to_string(),
            granted,
            "{} {scope}",
            identity.subject()
        );
    } // `${account}` is the whole name, colons included: no repository can be named after it
    // (the name grammar has no `:`), so such a rule grants nothing rather than too much.
    assert!(parse_all(["repository:cache/system:serviceaccount:team-a:builder/x:push"]).is_err());
}

const ISSUER_A: &str = "https://a.example";
const ISSUER_B: &str = "https://b.example";

fn person(name: &str, source: &str, groups: &[&str]) -> Identity {
    Identity::user(name, groups.iter().map(|g| g.to_string()).collect()).with_source(source)
}

fn workload(name: &str, issuer: &str, groups: &[&str], claims: &[(&str, &str)]) -> Identity {
    Identity::user(name, groups.iter().map(|g| g.to_string()).collect())
        .with_source("federation")
        .with_workload(
            issuer,
            claims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
}

fn rules_from_yaml(yaml: &str) -> Result<Acl, RuleError> {
    #[derive(serde::Deserialize)]
    struct Doc {
        acl: Vec<RuleSettings>,
    }
    let doc: Doc = config::Config::builder()
        .add_source(config::File::from_str(yaml, config::FileFormat::Yaml))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    Acl::compile(&doc.acl)
}

fn source_acl() -> Acl {
    rules_from_yaml(&format!(
        r#"
acl:
  - match: {{group: release, name: "prod/**"}}
    actions: [pull, push]
  - match: {{source: ldap, account: alice, name: "ldap-only/**"}}
    actions: ["*"]
  - match: {{issuer: "{ISSUER_A}", name: "${{claim.repository}}/**"}}
    actions: [pull, push]
  - match: {{source: federation, name: "shared/**"}}
    actions: [pull]
  - match: {{source: [users, htpasswd], name: "local/**"}}
    actions: [pull]
  - match: {{account: alice}}
    actions: [pull, push, delete]
  - match: {{source: [users, ldap, federation], name: "public/**"}}
    actions: [pull]
  - match: {{account: ""}}
    actions: [pull]
"#
    ))
    .unwrap()
}

#[test]
fn rules_are_matched_by_source_and_unsourced_rules_never_match_a_workload() {
    let acl = source_acl();
    let alice_users = person("alice", "users", &["release"]);
    let alice_htpasswd = person("alice", "htpasswd", &[]);
    let alice_ldap = person("alice", "ldap", &[]);
    let repo = [("repository", "octo/app")];
    // A workload whose account and group equal a person's.
    let wl_alice_a = workload("alice", ISSUER_A, &["release"], &repo);
    let wl_alice_b = workload("alice", ISSUER_B, &["release"], &repo);
    let anon = Identity::anonymous();
    // (identity, scope, granted, deciding rule)
    let cases: Vec<(&Identity, &str, &str, Option<usize>)> = vec![
        (
            &alice_users,
            "repository:prod/x:pull,push",
            "pull,push",
            Some(0),
        ),
        // A federated group never satisfies a rule for directory groups...
        (&wl_alice_a, "repository:prod/x:pull,push", "", None),
        // ... and a workload named alice never gets alice's grants.
        (&wl_alice_a, "repository:alice/x:pull,push,delete", "", None),
        (&wl_alice_b, "repository:ldap-only/x:pull", "", None),
        (
            &wl_alice_a,
            "repository:octo/app/x:pull,push",
            "pull,push",
            Some(2),
        ),
        (&wl_alice_a, "repository:octo/app/a/b:push", "push", Some(2)),
        (&wl_alice_a, "repository:octo/other:push", "", None),
        // The issuer must be the one the rule names.
        (&wl_alice_b, "repository:octo/app/x:pull,push", "", None),
        (
            &wl_alice_b,
            "repository:shared/x:pull,push",
            "pull",
            Some(3),
        ),
        (&wl_alice_a, "repository:public/x:pull", "pull", Some(6)),
        (
            &alice_ldap,
            "repository:ldap-only/x:delete",
            "delete",
            Some(1),
        ),
        (
            &alice_users,
            "repository:ldap-only/x:delete",
            "delete",
            Some(5),
        ),
        (
            &alice_htpasswd,
            "repository:local/x:pull,push",
            "pull",
            Some(4),
        ),
        (
            &alice_ldap,
            "repository:local/x:pull,push",
            "pull,push",
            Some(5),
        ),
        (&alice_users, "repository:shared/x:pull", "pull", Some(5)),
        // People's rules do not need a source; a source rule never matches anonymous callers.
        (&anon, "repository:public/x:pull", "pull", Some(7)),
        (&anon, "repository:shared/x:pull", "pull", Some(7)),
    ];
    for (identity, scope, granted, rule) in cases {
        let ctx = RequestContext {
            identity,
            service: "s",
            ip: None,
        };
        let scopes = parse_all([scope]).unwrap();
        let decision = acl.decide(&ctx, &scopes[0]);
        assert_eq!(
            decision.rule, rule,
            "{identity:?} {scope}: {}",
            decision.explanation
        );
        assert_eq!(
            grant(&acl, &ctx, &scopes)[0].actions.to_string(),
            granted,
            "{identity:?} {scope}"
        );
    }
    assert!(acl.names_federation());
    let explained = acl
        .decide(
            &RequestContext {
                identity: &wl_alice_a,
                service: "s",
                ip: None,
            },
            &parse_all(["repository:octo/app/x:pull"]).unwrap()[0],
        )
        .explanation;
    assert_eq!(
        explained,
        format!(
            "rule 3: match issuer=\"{ISSUER_A}\" name=\"${{claim.repository}}/**\" -> [pull,push]"
        )
    );
    let explained = acl
        .decide(
            &RequestContext {
                identity: &alice_htpasswd,
                service: "s",
                ip: None,
            },
            &parse_all(["repository:local/x:pull"]).unwrap()[0],
        )
        .explanation;
    assert_eq!(
        explained,
        "rule 5: match source=[\"users\", \"htpasswd\"] name=\"local/**\" -> [pull]"
    );
}

#[test]
fn a_claim_value_cannot_widen_a_claim_pattern() {
    let acl = source_acl();
    // (repository claim, requested repository, granted)
    let cases: &[(&str, &str, &str)] = &[
        ("octo/app", "octo/app/x", "pull,push"),
        ("octo/app", "octo/app", ""),
        ("octo/app", "octo/app2/x", ""),
        ("*", "team/x", ""),
        ("**", "team/a/x", ""),
        ("octo/*", "octo/app/x", ""),
        (".*", "team/x", ""),
        ("octo/..", "octo/x", ""),
        ("", "x/y", ""),
    ];
    for (repository, name, granted) in cases {
        let caller = workload("ci", ISSUER_A, &[], &[("repository", repository)]);
        let ctx = RequestContext {
            identity: &caller,
            service: "s",
            ip: None,
        };
        let scopes = parse_all([format!("repository:{name}:pull,push").as_str()]).unwrap();
        assert_eq!(
            grant(&acl, &ctx, &scopes)[0].actions.to_string(),
            *granted,
            "repository claim {repository:?} asking for {name}"
        );
    }
    // No such claim (or not a string, which is never kept): the rule does not match.
    let caller = workload("ci", ISSUER_A, &[], &[]);
    let ctx = RequestContext {
        identity: &caller,
        service: "s",
        ip: None,
    };
    let scopes = parse_all(["repository:octo/app/x:pull"]).unwrap();
    assert_eq!(acl.decide(&ctx, &scopes[0]).rule, None);
}

#[test]
fn default_rules_never_reach_a_workload() {
    let anonymous: Actions = ["pull".parse().unwrap()].into_iter().collect();
    let acl = Acl::default_rules(&anonymous);
    assert!(!acl.names_federation());
    let scopes = parse_all(["repository:victim/app:pull,push"]).unwrap();
    for (identity, granted) in [
        (workload("anyone", ISSUER_A, &[], &[]), ""),
        (person("alice", "users", &[]), "pull,push"),
        (person("carol", "ldap", &[]), "pull,push"),
        (Identity::anonymous(), "pull"),
    ] {
        let ctx = RequestContext {
            identity: &identity,
            service: "s",
            ip: None,
        };
        assert_eq!(
            grant(&acl, &ctx, &scopes)[0].actions.to_string(),
            granted,
            "{identity:?}"
        );
    }
}

#[test]
fn bad_source_issuer_and_claim_rules_are_named_at_load() {
    let cases: &[(&str, &str)] = &[
        (
            "{source: ldapp}",
            "rule 1: source \"ldapp\" is not one of users, htpasswd, ldap, federation",
        ),
        ("{source: []}", "source must name at least one"),
        ("{issuer: ''}", "issuer must be"),
        (
            "{source: users, issuer: 'https://a'}",
            "issuer matches workloads only",
        ),
        (
            "{source: [federation, ldap], issuer: 'https://a'}",
            "issuer matches workloads only",
        ),
        (
            "{source: [federation, users], account: alice}",
            "write separate rules",
        ),
        (
            "{source: [federation, ldap], group: release}",
            "write separate rules",
        ),
        (
            "{source: [federation, users], name: '${account}/**'}",
            "write separate rules",
        ),
        (
            "{name: '${claim.repository}/**'}",
            "source: federation or an issuer",
        ),
        (
            "{source: users, name: '${claim.repository}/**'}",
            "source: federation or an issuer",
        ),
        (
            "{source: [federation, users], name: '${claim.repository}/**'}",
            "source: federation or an issuer",
        ),
        (
            "{source: federation, account: '${claim.sub}'}",
            "name pattern",
        ),
        ("{source: federation, name: '/${claim.sub}/'}", "globs"),
    ];
    for (matches, expected) in cases {
        let err = rules_from_yaml(&format!(
            "acl:\n  - match: {matches}\n    actions: [pull]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains(expected), "{matches}: {err}");
    }
    // Accepted: the same written for workloads only, or without the account.
    for matches in [
        "{source: federation, account: alice, group: release}",
        "{source: [federation], issuer: 'https://a', name: '${claim.repository}/**'}",
        "{source: [federation, users, ldap], name: 'public/**'}",
        "{issuer: 'https://a', name: '${account}/${claim.x}'}",
    ] {
        rules_from_yaml(&format!(
            "acl:\n  - match: {matches}\n    actions: [pull]\n"
        ))
        .unwrap_or_else(|e| panic!("{matches}: {e}"));
    }
}
