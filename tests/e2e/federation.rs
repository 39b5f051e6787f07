//! Workload-token federation end to end: skopeo pushes through the registry with a
//! Kubernetes-style service-account token as its password (`--dest-creds oidc:<token>`).

use std::fs;

use jsonwebtoken::Algorithm;

use crate::oci;
use crate::registry::DENIED_TEXT;
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
    let image = oci::write_image(&stack.dir.path().join("img"), "v1", "federated").unwrap();
    let push = |repo: &str, creds: &str| {
        stack
            .clients
            .skopeo(&[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                creds,
                &image.skopeo_ref(),
                &stack.registry.docker_ref(repo, "v1"),
            ])
            .unwrap()
    };
    let team_a = format!("oidc:{}", token("team-a"));
    let own = push("team-a/app", &team_a);
    assert!(own.success, "{own}\n{}", stack.logs());
    let elsewhere = push("team-b/app", &team_a);
    assert!(
        !elsewhere.success && elsewhere.stderr.contains(DENIED_TEXT),
        "{elsewhere}"
    );
    let team_b = push("team-a/app", &format!("oidc:{}", token("team-b")));
    assert!(
        !team_b.success && team_b.stderr.contains(DENIED_TEXT),
        "{team_b}"
    );
    // A token of another cluster (a key the JWKS does not have) is a wrong password.
    let stranger = workload_key("cluster-key", Algorithm::RS256);
    let forged = stranger.sign(&service_account_claims(
        CLUSTER, SERVICE, "team-a", "builder", now, 600,
    ));
    let refused = push("team-a/app", &format!("oidc:{forged}"));
    assert!(!refused.success, "{refused}");
    assert!(
        refused.stderr.contains("invalid username/password") || refused.stderr.contains("401"),
        "{refused}"
    );
    let log = stack.regauth.log();
    assert!(log.contains("bad signature"), "{log}");
    assert!(!log.contains(&forged), "no token in the log");
}
