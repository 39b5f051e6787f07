//! End to end: the `regauth` binary, the CNCF distribution registry 2.8 (`docker-registry`),
//! skopeo, podman, dockerd and containerd, all on loopback, Pulp as the registry
//! (tests/e2e/pulp.rs), and the container image (tests/e2e/image.rs). Each test prints why and
//! skips when a program is missing on a developer machine, and fails instead when `CI` is set
//! (`.ci/run` installs them).

// Helpers outside #[test] functions fail by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod buildah;
mod clients;
mod containerd;
mod daemons;
mod docker;
mod doctor;
mod federation;
mod image;
mod kubernetes;
mod oci;
mod pulp;
mod recorder;
mod registry;
mod rotation;
mod stack;
#[path = "../support/mod.rs"]
mod support;
mod tls;
mod tokens;

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use regauth::keys::{Algorithm, generate};
use serde_json::Value;

use clients::{
    PASSWORD, alice_access_yaml, assert_denied, assert_ok, assert_refused_credentials,
    inspect_digest, skopeo_push,
};
use stack::{KeyForm, Stack, StackOptions, challenge_params, encode, jwt_header, tools_present};

#[test]
fn anonymous_requests_go_through_the_challenge_to_the_registrys_own_answer() {
    if !tools_present(&[]) {
        return;
    }
    let stack = Stack::start(StackOptions::default());
    let registry = &stack.registry;

    let base = registry.request("GET", "/v2/", &[]).unwrap();
    assert_eq!(base.status, 401);
    let challenge = base
        .header("www-authenticate")
        .expect("challenge")
        .to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let params = challenge_params(&challenge);
    let realm = &params.iter().find(|(k, _)| k == "realm").expect("realm").1;
    assert_eq!(realm, &format!("http://{}/token", stack.regauth.addr));

    let missing = registry
        .request("GET", "/v2/team/missing/manifests/latest", &[])
        .unwrap();
    assert_eq!(missing.status, 401);
    let params = challenge_params(missing.header("www-authenticate").unwrap());
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("scope"), "repository:team/missing:pull");

    // The client's second step: ask the realm for exactly what the challenge named.
    let token = stack.regauth.token(&format!(
        "service={}&scope={}",
        encode(&get("service")),
        encode(&get("scope"))
    ));
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    assert_eq!(
        registry.request("GET", "/v2/", &auth).unwrap().status,
        200,
        "{}",
        stack.logs()
    );
    let answer = registry
        .request("GET", "/v2/team/missing/manifests/latest", &auth)
        .unwrap();
    assert_eq!(
        answer.status,
        404,
        "the registry's own answer: {}",
        answer.body_text()
    );
    let body = answer.body_text();
    assert!(
        body.contains("MANIFEST_UNKNOWN") || body.contains("NAME_UNKNOWN"),
        "{body}"
    );
}

#[test]
fn skopeo_push_then_pull_and_inspect_agree_on_the_digest() {
    if !tools_present(&["skopeo"]) {
        return;
    }
    let stack = Stack::start(StackOptions::default());
    let (digest, out) = skopeo_push(&stack, "team/app", "v1", "push-pull");
    assert_ok(&stack, &out, "");
    assert_eq!(inspect_digest(&stack, "team/app", "v1"), digest);

    let pulled = stack.dir.path().join("pulled");
    let out = stack
        .clients
        .skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &stack.registry.docker_ref("team/app", "v1"),
            &format!("oci:{}:v1", pulled.display()),
        ])
        .unwrap();
    assert_ok(&stack, &out, "");
    let index: Value =
        serde_json::from_str(&fs::read_to_string(pulled.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
}

#[test]
fn podman_push_mounting_a_blob_from_another_repository_succeeds() {
    if !tools_present(&["skopeo", "podman"]) {
        return;
    }
    let stack = Stack::start(StackOptions::default());
    let (digest, out) = skopeo_push(&stack, "team/app", "v1", "mount");
    assert_ok(&stack, &out, "");
    let image = stack.registry.image_ref("team/app", "v1");
    let pull = stack.clients.podman_pull(&image, None);
    assert_ok(&stack, &pull, "");
    let target = stack.registry.docker_ref("team/new", "v1");
    let push = stack.clients.podman_push(&image, &target, None);
    assert_ok(&stack, &push, "");
    assert_eq!(inspect_digest(&stack, "team/new", "v1"), digest);

    // The blob came by a cross-repository mount, authorized by one token request with two
    // scope parameters, which regauth logged as one grant covering both repositories.
    let log = stack.regauth.log();
    assert!(
        log.lines().any(|l| l.contains("issued token")
            && l.contains(r#""name":"team/new","actions":["pull","push"]"#)
            && l.contains(r#""name":"team/app","actions":["pull"]"#)),
        "no two-scope token in:\n{log}"
    );
    let registry_log = stack.registry.log();
    assert!(
        registry_log.contains("mount=sha256"),
        "no mount request reached the registry"
    );
}

#[test]
fn a_push_regauth_does_not_grant_is_denied_while_the_token_itself_is_accepted() {
    if !tools_present(&["skopeo"]) {
        return;
    }
    let stack = Stack::start(StackOptions {
        anonymous: &["pull"],
        ..StackOptions::default()
    });
    let (_, out) = skopeo_push(&stack, "team/ro", "v1", "denied");
    assert_denied(&out, "");

    // The registry accepts regauth's token (it is only short of actions): /v2/ says 200.
    let token = stack.regauth.token(&format!(
        "service={}&scope=repository:team/ro:pull,push",
        stack::SERVICE
    ));
    let bearer = format!("Bearer {token}");
    let base = stack
        .registry
        .request("GET", "/v2/", &[("Authorization", bearer.as_str())])
        .unwrap();
    assert_eq!(base.status, 200, "{}", stack.logs());
    assert!(
        !stack.registry.log().contains("invalid token"),
        "{}",
        stack.logs()
    );
}

fn push_and_inspect_with(key: KeyForm) {
    if !tools_present(&["skopeo"]) {
        return;
    }
    let stack = Stack::start(StackOptions {
        key,
        ..StackOptions::default()
    });
    let token = stack
        .regauth
        .token("service=registry.test&scope=repository:a:pull");
    let header = jwt_header(&token);
    match key {
        KeyForm::Libtrust(alg) => {
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["kid"].as_str().unwrap().len(), 59, "libtrust kid");
            assert!(header.get("x5c").is_none());
        }
        KeyForm::X5cUnderCa => {
            assert!(header.get("kid").is_none());
            assert_eq!(header["x5c"].as_array().unwrap().len(), 1);
        }
    }
    let (digest, out) = skopeo_push(&stack, "team/app", "v1", "keys");
    assert_ok(&stack, &out, &format!("key: {key:?}"));
    assert_eq!(inspect_digest(&stack, "team/app", "v1"), digest);
}

#[test]
fn es256_with_a_libtrust_kid_is_accepted() {
    push_and_inspect_with(KeyForm::Libtrust(Algorithm::ES256));
}

#[test]
fn rs256_with_a_libtrust_kid_is_accepted() {
    push_and_inspect_with(KeyForm::Libtrust(Algorithm::RS256));
}

#[test]
fn es384_and_es512_with_a_libtrust_kid_are_accepted() {
    push_and_inspect_with(KeyForm::Libtrust(Algorithm::ES384));
    push_and_inspect_with(KeyForm::Libtrust(Algorithm::ES512));
}

#[test]
fn x5c_with_a_leaf_signed_by_a_trusted_ca_is_accepted() {
    push_and_inspect_with(KeyForm::X5cUnderCa);
}

/// One pull the way a client does it: token from regauth, then manifest and blob.
/// Returns the token's kid on success.
fn raw_pull(stack: &Stack, repo: &str, digest: &str) -> Result<String, String> {
    let jwt = stack::pull(stack, repo, digest)?;
    Ok(jwt_header(&jwt)["kid"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[test]
fn rotating_the_key_under_a_stream_of_pulls_fails_none() {
    if !tools_present(&["skopeo"]) {
        return;
    }
    // The next key is made first, so the registry trusts both from its start.
    let next = tempfile::tempdir().unwrap();
    let next_key = generate::write(next.path(), Algorithm::ES256, false).unwrap();
    let new_kid = next_key.libtrust_kid.clone().unwrap();
    let stack = Arc::new(Stack::start(StackOptions {
        extra_trust: vec![next_key.certificate.clone().unwrap()],
        ..StackOptions::default()
    }));
    let (digest, out) = skopeo_push(&stack, "team/app", "v1", "rotation");
    assert_ok(&stack, &out, "");
    let old_kid = raw_pull(&stack, "team/app", &digest).unwrap();
    assert_ne!(old_kid, new_kid);

    // Real clients pull in a loop beside the raw pulls.
    let stop = Arc::new(AtomicBool::new(false));
    let skopeo_pulls = Arc::new(AtomicUsize::new(0));
    let skopeo_thread = {
        let (stack, stop, count) = (
            Arc::clone(&stack),
            Arc::clone(&stop),
            Arc::clone(&skopeo_pulls),
        );
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let out = stack
                    .clients
                    .inspect(&stack.registry.docker_ref("team/app", "v1"), None);
                if !out.success {
                    failures.push(out.to_string());
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            failures
        })
    };

    let mut failures = Vec::new();
    let mut pulls = 0usize;
    let mut after_swap_new = 0usize;
    let mut swapped_at: Option<Instant> = None;
    let mut first_new: Option<Duration> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while after_swap_new < 100 && Instant::now() < deadline {
        match raw_pull(&stack, "team/app", &digest) {
            Ok(kid) => {
                if kid == new_kid {
                    after_swap_new += 1;
                    if let (Some(at), None) = (swapped_at, first_new) {
                        first_new = Some(at.elapsed());
                    }
                } else {
                    assert!(
                        swapped_at.is_none() || first_new.is_none(),
                        "an old-kid token after the new kid was seen"
                    );
                }
            }
            Err(e) => failures.push(e),
        }
        pulls += 1;
        if pulls == 100 {
            // The swap: an atomic rename over the key file.
            fs::rename(&next_key.key, stack.key_path()).unwrap();
            swapped_at = Some(Instant::now());
        }
    }
    // Let the real client run on the new key: until an inspect that started after the raw
    // pulls ended has finished (the one running then counts once, the next one twice).
    let at_end = skopeo_pulls.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while skopeo_pulls.load(Ordering::Relaxed) < at_end + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let skopeo_failures = skopeo_thread.join().unwrap();

    eprintln!(
        "rotation: {pulls} raw pulls, {} skopeo inspects, new kid first seen {:?} after the rename",
        skopeo_pulls.load(Ordering::Relaxed),
        first_new
    );
    assert!(
        failures.is_empty(),
        "failed pulls: {failures:#?}\n{}",
        stack.logs()
    );
    assert!(
        skopeo_failures.is_empty(),
        "failed skopeo pulls: {skopeo_failures:#?}"
    );
    assert!(swapped_at.is_some(), "the loop ended before the swap");
    assert_eq!(
        after_swap_new, 100,
        "tokens after the swap must carry the new kid"
    );
    assert!(
        skopeo_pulls.load(Ordering::Relaxed) >= at_end + 2,
        "no skopeo inspect ran after the swap"
    );
}

#[test]
fn a_signed_in_skopeo_user_pushes_to_their_namespace_and_is_denied_elsewhere() {
    if !tools_present(&["skopeo"]) {
        return;
    }
    let stack = Stack::start(StackOptions {
        access_yaml: Some(alice_access_yaml()),
        ..StackOptions::default()
    });
    let image = stack.image("login", "v1");
    let push = |repo: &str, creds: &str| {
        let target = stack.registry.docker_ref(repo, "v1");
        stack.clients.push(&image, &target, Some(creds))
    };
    let alice = format!("alice:{PASSWORD}");
    let own = push("alice/app", &alice);
    assert_ok(&stack, &own, "");
    assert_denied(&push("bob/app", &alice), "");
    let wrong = push("alice/app", "alice:wrong");
    assert_refused_credentials(&wrong);
    // Anonymous callers may pull what alice pushed.
    assert_eq!(
        inspect_digest(&stack, "alice/app", "v1"),
        image.manifest_digest
    );
    let log = stack.regauth.log();
    // The failure is logged with the address, never with the typed name (a mistyped
    // password often lands there).
    assert!(
        log.contains("authentication failed from 127.0.0.1"),
        "{log}"
    );
    assert!(
        !log.contains(PASSWORD) && !log.contains("wrong\""),
        "no password in the log"
    );
}
