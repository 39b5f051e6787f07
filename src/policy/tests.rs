//! Rule matching as a table: rules × requests.

use super::*;
use crate::scope::parse_all;

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
