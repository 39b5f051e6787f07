//! Workload-token federation end to end: skopeo pushes through the registry with a
//! Kubernetes-style service-account token as its password (`--dest-creds oidc:<token>`).

use std::fs;

use jsonwebtoken::Algorithm;

use crate::clients::{assert_denied, assert_ok, assert_refused_credentials};
use crate::stack::{SERVICE, Stack, StackOptions, tools_present};
use crate::support::workload::{jwks_of, service_account_claims, workload_key};

const CLUSTER: &str = "https://kubernetes.default.svc.cluster.local";

#[test]
fn skopeo_pushes_with_a_service_account_token_to_its_namespace_only() {
    if !tools_present(&["skopeo"]) {
        return;
    }
    let key = workload_key("cluster-key", Algorithm::RS256);
    let keys_dir = tempfile::tempdir().unwrap();
    let jwks = keys_dir.path().join("cluster-jwks.json");
    fs::write(&jwks, jwks_of(&[&key])).unwrap();
    let stack = Stack::start(StackOptions {
        access_yaml: Some(format!(
            "federation:\n  - issuer: {CLUSTER}\n    jwks_file: {}\n    audiences: [{SERVICE}]\n    max_lifetime_seconds: 3600\n\
             acl:\n  - match: {{source: federation, account: '/system:serviceaccount:team-a:.+/', name: 'team-a/**'}}\n    actions: [pull, push]\n  \
             - match: {{source: federation}}\n    actions: [pull]\n",
            jwks.display()
        )),
        ..StackOptions::default()
    });
    let now = chrono::Utc::now().timestamp();
    let token = |namespace: &str| {
        key.sign(&service_account_claims(
            CLUSTER, SERVICE, namespace, "builder", now, 600,
        ))
    };
    let image = stack.image("federated", "v1");
    let push = |repo: &str, creds: &str| {
        let target = stack.registry.docker_ref(repo, "v1");
        stack.clients.push(&image, &target, Some(creds))
    };
    let team_a = format!("oidc:{}", token("team-a"));
    let own = push("team-a/app", &team_a);
    assert_ok(&stack, &own, "");
    assert_denied(&push("team-b/app", &team_a), "");
    let team_b = push("team-a/app", &format!("oidc:{}", token("team-b")));
    assert_denied(&team_b, "");
    // A token of another cluster (a key the JWKS does not have) is a wrong password.
    let stranger = workload_key("cluster-key", Algorithm::RS256);
    let forged = stranger.sign(&service_account_claims(
        CLUSTER, SERVICE, "team-a", "builder", now, 600,
    ));
    let refused = push("team-a/app", &format!("oidc:{forged}"));
    assert_refused_credentials(&refused);
    let log = stack.regauth.log();
    assert!(log.contains("bad signature"), "{log}");
    assert!(!log.contains(&forged), "no token in the log");
}
