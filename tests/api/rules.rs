//! Access rules applied over HTTP.

use serde_json::{Value, json};

use crate::helpers::{claims, spawn_app_with, user};
use regauth::policy::RuleSettings;

async fn token_as(app: &crate::helpers::TestApp, query: &str, user: &str) -> Value {
    app.client
        .get(format!("{}/token?{query}", app.address))
        .basic_auth(user, Some("pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn rules_decide_per_scope_with_account_namespaces_groups_and_addresses() {
    let app = spawn_app_with(|s| {
        s.users.insert("alice".into(), user("pw", &["dev"]));
        s.users.insert("bob".into(), user("pw", &[]));
        s.acl = Some(vec![
            RuleSettings::new(|m| m.name = Some("${account}/**".into()), &["*"]),
            RuleSettings::new(|m| m.group = Some("dev".into()), &["pull", "push"]),
            RuleSettings::new(
                |m| {
                    m.account = Some(String::new());
                    m.ip = Some("10.0.0.0/8".into());
                },
                &["pull"],
            ),
            RuleSettings::new(
                |m| {
                    m.account = Some("/.+/".into());
                    m.resource_type = Some("repository".into());
                },
                &["pull"],
            ),
        ]);
    })
    .await;
    let scopes = "scope=repository:alice/x:pull,push,delete&scope=repository:team/app:pull,push&scope=repository:bob/y:push&service=s";
    let access = |body: Value| claims(body["token"].as_str().unwrap())["access"].clone();

    let alice = token_as(&app, scopes, "alice").await;
    assert_eq!(
        access(alice),
        json!([
            {"type": "repository", "name": "alice/x", "actions": ["pull", "push", "delete"]},
            {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
            {"type": "repository", "name": "bob/y", "actions": ["push"]},
        ])
    );
    let bob = token_as(&app, scopes, "bob").await;
    assert_eq!(
        access(bob),
        json!([
            {"type": "repository", "name": "alice/x", "actions": ["pull"]},
            {"type": "repository", "name": "team/app", "actions": ["pull"]},
            {"type": "repository", "name": "bob/y", "actions": ["push"]},
        ])
    );
    // Anonymous callers from 127.0.0.1 match no rule (the address rule is for 10/8).
    let anon: Value = app.get_token(scopes).await.json().await.unwrap();
    assert_eq!(
        access(anon),
        json!([
            {"type": "repository", "name": "alice/x", "actions": []},
            {"type": "repository", "name": "team/app", "actions": []},
            {"type": "repository", "name": "bob/y", "actions": []},
        ])
    );
}
