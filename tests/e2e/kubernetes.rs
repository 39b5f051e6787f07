//! `deploy/kubernetes/`: strict schema validation for a named Kubernetes version
//! (`scripts/validate-kubernetes.sh`, kubernetes-validate from PyPI), proof that a typo fails
//! it, and the settings and timings the manifests carry checked against regauth itself.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::registry::{CmdOutput, require_tool, run_with_input};

const VALIDATOR: &str = "kubernetes-validate";

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

fn validate(dir: &Path) -> CmdOutput {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/validate-kubernetes.sh");
    run_with_input(
        &script.to_string_lossy(),
        &[&dir.to_string_lossy()],
        &[],
        None,
        Duration::from_secs(120),
    )
    .expect("validate-kubernetes.sh runs")
}

/// A copy of the manifests with `edit` applied to `file`.
fn mutated(file: &str, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(manifests()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // An overlay (ingress/), validated on its own.
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(&path).unwrap();
        let text = if name == file { edit(&text) } else { text };
        fs::write(dir.path().join(&name), text).unwrap();
    }
    dir
}

#[test]
fn the_manifests_pass_strict_validation_and_a_typo_a_wrong_type_or_an_unlisted_file_fail_it() {
    if !require_tool(VALIDATOR) {
        return;
    }
    let ok = validate(&manifests());
    assert!(ok.success, "{ok}");
    assert!(ok.stdout.contains("4 manifests valid"), "{ok}");
    // The Ingress overlay: its own manifest, with the base (..) as a kustomize resource.
    let ingress = validate(&manifests().join("ingress"));
    assert!(ingress.success, "{ingress}");
    assert!(ingress.stdout.contains("1 manifests valid"), "{ingress}");

    let cases: [(&str, &str, &str, &str); 3] = [
        (
            "deployment.yaml",
            "readinessProbe:",
            "readinesProbe:",
            "'readinesProbe' was unexpected",
        ),
        (
            "pdb.yaml",
            "minAvailable: 1",
            "minAvailable: [1]",
            "minAvailable",
        ),
        (
            "service.yaml",
            "targetPort: http",
            "targetPort: http\n      nodePort: nope",
            "nodePort",
        ),
    ];
    for (file, from, to, expected) in cases {
        let copy = mutated(file, |text| {
            assert!(text.contains(from), "{file} has no {from:?}");
            text.replacen(from, to, 1)
        });
        let out = validate(copy.path());
        assert!(!out.success, "{file}: {to:?} passed:\n{out}");
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains(expected),
            "{file}: {expected:?} not in:\n{out}"
        );
    }

    let extra = mutated("service.yaml", str::to_owned);
    fs::write(
        extra.path().join("extra.yaml"),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n",
    )
    .unwrap();
    let out = validate(extra.path());
    assert!(!out.success, "{out}");
    assert!(out.stderr.contains("extra.yaml is not listed"), "{out}");
}

/// The literal block of `key: |` in `text`, unindented.
fn literal_block(text: &str, key: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let header = lines.next().expect("the block's key");
    let indent = header.len() - header.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The number after the first `key:` at or after the line that contains `after`.
fn number_after(text: &str, after: &str, key: &str) -> u64 {
    text.lines()
        .skip_while(|l| !l.contains(after))
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} after {after}"))
        .trim()
        .parse()
        .unwrap()
}

/// The ConfigMap's `regauth.yaml` in a file, and the environment the image sets (Dockerfile),
/// which the file does not repeat.
fn shipped_settings() -> (tempfile::NamedTempFile, HashMap<String, String>) {
    let configmap = fs::read_to_string(manifests().join("configmap.yaml")).unwrap();
    let settings_file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    fs::write(
        settings_file.path(),
        literal_block(&configmap, "regauth.yaml"),
    )
    .unwrap();
    let dockerfile =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let env: HashMap<String, String> = dockerfile
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| k.starts_with("REGAUTH_") && k.contains("__"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (settings_file, env)
}

#[test]
fn the_postgres_overlay_hands_the_store_url_from_a_secret_to_a_setting_regauth_reads() {
    let overlay = fs::read_to_string(manifests().join("postgres/kustomization.yaml")).unwrap();
    assert!(overlay.lines().any(|l| l.trim() == "- ../"), "{overlay}");
    // The patch targets the base's Deployment and its container by name.
    let deployment = fs::read_to_string(manifests().join("deployment.yaml")).unwrap();
    assert!(deployment.contains("\n  name: regauth\n"), "{deployment}");
    assert!(deployment.contains("- name: regauth\n"), "{deployment}");
    assert!(overlay.contains("name: regauth\n") && overlay.contains("kind: Deployment"));
    let variables: Vec<&str> = overlay
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .filter(|name| name.starts_with("REGAUTH_"))
        .collect();
    assert_eq!(variables, ["REGAUTH_STORE__URL"], "{overlay}");
    assert!(overlay.contains("name: regauth-store") && overlay.contains("key: url"));
    // With the shipped settings and the image's environment, the variable is the store's URL
    // (a mistyped name would stop the start as an unknown REGAUTH_ variable).
    let (settings_file, mut env) = shipped_settings();
    let url = "postgres://regauth:pw@127.0.0.1:5432/regauth";
    env.insert(variables[0].to_owned(), url.to_owned());
    let config = regauth::config::load_with_env(Some(settings_file.path()), &env)
        .unwrap_or_else(|e| panic!("the shipped settings with the overlay's variable: {e}"));
    assert_eq!(config.store.expect("a store").url, url);
}

#[test]
fn the_configmap_settings_load_and_the_grace_period_covers_the_prestop_sleep_and_the_drain() {
    let dir = manifests();
    let configmap = fs::read_to_string(dir.join("configmap.yaml")).unwrap();
    let (settings_file, env) = shipped_settings();
    assert_eq!(env["REGAUTH_SERVER__LISTEN"], "0.0.0.0:5001", "{env:?}");
    let config = regauth::config::load_with_env(Some(settings_file.path()), &env)
        .unwrap_or_else(|e| panic!("the ConfigMap's settings: {e}"));
    assert_eq!(config.key.path, Path::new("/etc/regauth/keys/signing.key"));
    assert_eq!(config.listen.port(), 5001);
    // Rules as shipped, so adding one (what docs/kubernetes.md asks for) keeps the start
    // working: access.anonymous beside acl would stop it.
    assert!(config.default_rules.is_none());
    assert_eq!(config.acl.len(), 3);
    let settings = literal_block(&configmap, "regauth.yaml");
    let acl_line = settings
        .lines()
        .position(|l| l.trim() == "acl:")
        .expect("the ConfigMap lists its rules under acl");
    let mut lines: Vec<&str> = settings.lines().collect();
    lines.insert(
        acl_line + 1,
        "  - match: {account: ci, type: repository, name: team/**}\n    actions: [pull, push]",
    );
    fs::write(settings_file.path(), lines.join("\n")).unwrap();
    let with_rule = regauth::config::load_with_env(Some(settings_file.path()), &env)
        .unwrap_or_else(|e| panic!("the ConfigMap's settings with a rule added: {e}"));
    assert_eq!(with_rule.acl.len(), 4);

    let deployment = fs::read_to_string(dir.join("deployment.yaml")).unwrap();
    let grace = number_after(&deployment, "", "terminationGracePeriodSeconds");
    let pre_stop = number_after(&deployment, "preStop:", "seconds");
    let (delay, timeout) = (
        config.shutdown_delay.as_secs(),
        config.shutdown_timeout.as_secs(),
    );
    assert!(
        grace > pre_stop + delay + timeout,
        "terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} + delay {delay} + timeout {timeout}"
    );
    // Readiness fails within the drain delay, so balancers stop routing before the close.
    let period = number_after(&deployment, "readinessProbe:", "periodSeconds");
    let failures = number_after(&deployment, "readinessProbe:", "failureThreshold");
    assert!(period * failures <= delay);
    assert_eq!(number_after(&deployment, "", "replicas"), 2);
    assert_eq!(
        number_after(&deployment, "securityContext:", "runAsUser"),
        65532
    );
}
