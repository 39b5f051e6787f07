//! The three rotation recipes of docs/rotation.md against the real registry, with pulls and
//! pushes running throughout, and every one of them must succeed.
//!
//! 1. kid mode: the next certificate is in the registry's bundle from its start (made by
//!    `regauth bundle`), the key files are swapped by rename, and the bundle made afterwards
//!    no longer holds the old certificate: a registry started with it accepts new tokens and
//!    refuses the old key's.
//! 2. x5c mode: only the CA in the bundle; the leaf key and certificate rotate several times
//!    (Kubernetes-style `..data` swap) with no registry change.
//! 3. JWKS: a small verifier that re-reads `/.well-known/jwks.json` when it meets an unknown
//!    `kid` verifies every token across repeated swaps of a pre-published next key, including
//!    tokens signed before each swap.
//!
//! Recipe 1 runs a second time with docker pulling in a loop (dockerd from `daemons.rs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jsonwebtoken as jwt;
use regauth::clock::SystemClock;
use regauth::keys::{Algorithm, KeySpec, SigningKey, generate};
use regauth::token::claims::ClaimsBuilder;
use serde_json::Value;

use crate::clients::skopeo_push;
use crate::stack::{
    ISSUER, SERVICE, Stack, jwt_header, pull, start_registry, token, tools_present,
};
use crate::support::{certificates_der, k8s_swap, leaf_signed_by, new_ca, replace_file, wait_for};

/// Longest wait for regauth to sign with a new key.
const SWAP_DEADLINE: Duration = Duration::from_secs(10);
/// Hard cap on a background loop, whatever happens (the steps themselves wait for counts of
/// pulls and pushes, each within [`PROGRESS_DEADLINE`]).
const TRAFFIC_CAP: Duration = Duration::from_secs(120);
/// Longest wait for the background traffic to make the progress a step asks for.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// background traffic
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Tally {
    pulls: usize,
    pushes: usize,
    failures: Vec<String>,
    /// Every token the pulls were given (for the JWKS verifier).
    tokens: Vec<String>,
}

/// Pull loops (raw client: token, then manifest) and a push loop (skopeo copy of a fresh
/// image each time), running until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Tally>>,
    /// Pulls and pushes finished so far, for [`Traffic::run_for`].
    done: Arc<[AtomicUsize; 2]>,
}

impl Traffic {
    fn start(stack: &Arc<Stack>, digest: &str, name: &str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let mut threads = Vec::new();
        for _ in 0..2 {
            let (stack, stop, digest) = (Arc::clone(stack), Arc::clone(&stop), digest.to_owned());
            let done = Arc::clone(&done);
            threads.push(std::thread::spawn(move || {
                let mut tally = Tally::default();
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < TRAFFIC_CAP {
                    match pull(&stack, "team/app", &digest) {
                        Ok(jwt) => tally.tokens.push(jwt),
                        Err(e) => tally.failures.push(format!("pull: {e}")),
                    }
                    tally.pulls += 1;
                    done[0].fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                }
                tally
            }));
        }
        let (stack, stop2, name) = (Arc::clone(stack), Arc::clone(&stop), name.to_owned());
        let pushed = Arc::clone(&done);
        threads.push(std::thread::spawn(move || {
            let mut tally = Tally::default();
            let started = Instant::now();
            while !stop2.load(Ordering::Relaxed) && started.elapsed() < TRAFFIC_CAP {
                let n = tally.pushes;
                let (_, out) = skopeo_push(
                    &stack,
                    "team/pushed",
                    &format!("t{n}"),
                    &format!("{name}-{n}"),
                );
                if !out.success {
                    tally.failures.push(format!("push {n}: {out}"));
                }
                tally.pushes += 1;
                pushed[1].fetch_add(1, Ordering::Relaxed);
            }
            tally
        }));
        Traffic {
            stop,
            threads,
            done,
        }
    }

    /// Lets the traffic run until `pulls` more pulls and `pushes` more pushes have finished
    /// (polling, within [`PROGRESS_DEADLINE`]): with two pushes, one ran wholly after the
    /// call. The traffic window of a step, measured in requests rather than time.
    fn run_for(&self, pulls: usize, pushes: usize, stack: &Stack) {
        let count = |i: usize| self.done[i].load(Ordering::Relaxed);
        let (pulls_at, pushes_at) = (count(0), count(1));
        wait_for(
            PROGRESS_DEADLINE,
            || (count(0) >= pulls_at + pulls && count(1) >= pushes_at + pushes).then_some(()),
            || {
                format!(
                    "the traffic made {} of {pulls} pulls and {} of {pushes} pushes\n{}",
                    count(0) - pulls_at,
                    count(1) - pushes_at,
                    stack.logs()
                )
            },
        );
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for t in self.threads {
            let tally = t.join().expect("traffic thread");
            total.pulls += tally.pulls;
            total.pushes += tally.pushes;
            total.failures.extend(tally.failures);
            total.tokens.extend(tally.tokens);
        }
        total
    }
}

/// Lets traffic run while `pred` is false, polling regauth's tokens; returns how long after
/// the call (made right after a file replacement) the first token satisfying `pred` came.
fn time_to_new_key(stack: &Stack, pred: impl Fn(&Value) -> bool) -> Duration {
    let started = Instant::now();
    wait_for(
        SWAP_DEADLINE,
        || {
            let jwt = token(stack, "repository:team/app:pull").expect("token");
            pred(&jwt_header(&jwt)).then(|| started.elapsed())
        },
        || format!("regauth did not sign with the new key\n{}", stack.logs()),
    )
}

fn assert_no_failures(name: &str, tally: &Tally, swaps: &[Duration], stack: &Stack) {
    eprintln!(
        "rotation {name}: {} pulls, {} pushes, {} failures, {} swap(s), file replacement to new key in tokens: {swaps:?}",
        tally.pulls,
        tally.pushes,
        tally.failures.len(),
        swaps.len()
    );
    assert!(
        tally.failures.is_empty(),
        "{name}: failures: {:#?}\n{}",
        tally.failures,
        stack.logs()
    );
    assert!(
        tally.pulls > 0 && tally.pushes > 0,
        "{name}: no traffic ran"
    );
}

// ---------------------------------------------------------------------------------------
// files and commands
// ---------------------------------------------------------------------------------------

fn regauth_cli(command: &str, config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_regauth"))
        .args([command, "--config"])
        .arg(config)
        .env_remove("REGAUTH_CONFIG")
        .output()
        .expect("run regauth");
    assert!(
        out.status.success(),
        "regauth {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn write_config(dir: &Path, kid_format: &str, key_yaml: &str) -> PathBuf {
    let config = format!(
        "server:\n  listen: 127.0.0.1:0\n\
         token:\n  issuer: {ISSUER}\n  ttl_seconds: 300\n  kid_format: {kid_format}\n  services: [{SERVICE}]\n\
         key:\n  source: file\n{key_yaml}\
         access:\n  anonymous: [pull, push]\n"
    );
    let path = dir.join("regauth.yaml");
    fs::write(&path, config).expect("write config");
    path
}

/// A new leaf under `ca`: (chain PEM leaf then CA, key PEM, leaf DER).
fn leaf(ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>, n: usize) -> (String, String, Vec<u8>) {
    let (cert, key) = leaf_signed_by(ca, &format!("regauth signer {n}"));
    let der = certificates_der(&cert).remove(0);
    (format!("{cert}{}", ca.pem()), key, der)
}

fn x5c_leaf(header: &Value) -> Option<Vec<u8>> {
    let b64 = header["x5c"][0].as_str()?;
    data_encoding::BASE64.decode(b64.as_bytes()).ok()
}

/// Pushes the image every pull loop reads; returns its digest.
fn first_push(stack: &Stack, name: &str) -> String {
    let (digest, out) = skopeo_push(stack, "team/app", "v1", name);
    assert!(out.success, "{out}\n{}", stack.logs());
    digest
}

fn jwks_kids(stack: &Stack) -> Vec<String> {
    let response = stack.regauth.get("/.well-known/jwks.json");
    assert_eq!(response.status, 200);
    let set: Value = serde_json::from_slice(&response.body).expect("jwks json");
    set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// recipe 1: kid mode
// ---------------------------------------------------------------------------------------

/// The kid-mode recipe's starting point in `dir`.
struct KidMode {
    /// `keys/`: signing.{key,crt} now, next.{key,crt} staged beside them.
    keys: PathBuf,
    /// A kid-mode config naming all four files.
    config: PathBuf,
    old_kid: String,
    new_kid: String,
    /// The current signing key's PEM, before any swap.
    old_key_pem: Vec<u8>,
}

fn kid_mode(dir: &Path) -> KidMode {
    let keys = dir.join("keys");
    let current = generate::write(&keys, Algorithm::ES256, false).unwrap();
    let staged = generate::write(&dir.join("staging"), Algorithm::ES256, false).unwrap();
    fs::rename(&staged.key, keys.join("next.key")).unwrap();
    fs::rename(staged.certificate.unwrap(), keys.join("next.crt")).unwrap();
    let k = keys.display();
    let config = write_config(
        dir,
        "libtrust",
        &format!(
            "  path: {k}/signing.key\n  certificate: {k}/signing.crt\n  x5c: false\n  \
             next: {k}/next.key\n  next_certificate: {k}/next.crt\n"
        ),
    );
    KidMode {
        old_kid: current.libtrust_kid.unwrap(),
        new_kid: staged.libtrust_kid.unwrap(),
        old_key_pem: fs::read(&current.key).unwrap(),
        keys,
        config,
    }
}

/// Step 1 of the kid-mode recipe: the layout of [`kid_mode`] and a stack whose registry
/// trusts the current and the next certificate (what `regauth bundle` makes), recording
/// the token requests when `record` is set.
fn kid_mode_stack(record: bool) -> (Arc<Stack>, KidMode) {
    let dir = tempfile::tempdir().unwrap();
    let kid_mode = kid_mode(dir.path());
    let bundle = regauth_cli("bundle", &kid_mode.config);
    assert_eq!(certificates_der(&bundle).len(), 2);
    let bundle_path = dir.path().join("bundle.pem");
    fs::write(&bundle_path, &bundle).unwrap();
    let stack = Stack::launch_with(dir, &kid_mode.config, bundle_path, record);
    (Arc::new(stack), kid_mode)
}

/// The swap of a kid-mode or JWKS rotation: the staged next certificate and key become the
/// signing ones, each by rename, the certificate first.
fn swap_in_next(keys: &Path) {
    fs::rename(keys.join("next.crt"), keys.join("signing.crt")).unwrap();
    fs::rename(keys.join("next.key"), keys.join("signing.key")).unwrap();
}

#[test]
fn kid_mode_rotation_with_a_pre_published_next_certificate_fails_no_pull_or_push() {
    if !tools_present(&["skopeo"]) {
        return;
    }
    // Step 1: the registry starts trusting the current and the next key.
    let (
        stack,
        KidMode {
            keys,
            config,
            old_kid,
            new_kid,
            old_key_pem,
        },
    ) = kid_mode_stack(false);
    let digest = first_push(&stack, "kid-mode");
    assert_eq!(jwks_kids(&stack), [old_kid.clone(), new_kid.clone()]);

    let traffic = Traffic::start(&stack, &digest, "kid-mode");
    traffic.run_for(150, 5, &stack);

    // Step 2: the swap, certificate and key each by rename.
    swap_in_next(&keys);
    let swap = time_to_new_key(&stack, |h| h["kid"] == new_kid.as_str());
    assert!(
        jwt_header(&token(&stack, "repository:team/app:pull").unwrap())
            .get("x5c")
            .is_none(),
        "kid mode: tokens carry no x5c"
    );
    // The old key is still published (retired), the next key is now the signing key.
    assert_eq!(jwks_kids(&stack), [new_kid.clone(), old_kid.clone()]);
    traffic.run_for(200, 10, &stack);
    let tally = traffic.finish();
    assert_no_failures("kid mode", &tally, &[swap], &stack);
    let after: usize = tally
        .tokens
        .iter()
        .filter(|t| jwt_header(t)["kid"] == new_kid.as_str())
        .count();
    assert!(after > 0, "no pull ran with the new key");

    // Step 3, retiring the old certificate: the bundle made now holds only the new one.
    // (The old key's tokens live 300 s + 60 s; a registry restarted with this bundle after
    // that window loses nothing.) A registry started with it accepts the new key's tokens
    // and refuses a token the old key signs, which the running registry still accepts.
    let bundle = regauth_cli("bundle", &config);
    let new_cert = certificates_der(&fs::read_to_string(keys.join("signing.crt")).unwrap());
    assert_eq!(certificates_der(&bundle), new_cert);
    let retired_path = stack.dir.path().join("bundle-retired.pem");
    fs::write(&retired_path, &bundle).unwrap();
    let fresh = start_registry(
        stack.regauth.addr,
        &stack.dir.path().join("registry-retired"),
        retired_path,
    );
    let spec = KeySpec::default();
    let old_key = SigningKey::from_bytes(&old_key_pem, None, spec).unwrap();
    let claims = ClaimsBuilder::new(ISSUER, 300)
        .build(&SystemClock, "", SERVICE, Vec::new())
        .unwrap();
    let old_token = regauth::issue::signing::sign(&claims, &old_key).unwrap();
    let new_token = token(&stack, "repository:team/app:pull").unwrap();
    let status = |registry: &crate::registry::Registry, jwt: &str| {
        let bearer = format!("Bearer {jwt}");
        registry
            .request("GET", "/v2/", &[("Authorization", bearer.as_str())])
            .unwrap()
            .status
    };
    assert_eq!(status(&fresh, &new_token), 200, "{}", fresh.log());
    assert_eq!(
        status(&fresh, &old_token),
        401,
        "the old key is no longer trusted"
    );
    assert_eq!(
        status(&stack.registry, &old_token),
        200,
        "the old registry still trusts it"
    );
}

// ---------------------------------------------------------------------------------------
// recipe 2: x5c under a CA
// ---------------------------------------------------------------------------------------

#[test]
fn x5c_mode_rotates_the_leaf_repeatedly_with_no_registry_change_and_fails_nothing() {
    if !tools_present(&["skopeo"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let ca = new_ca("regauth rotation CA");
    let (chain, key, _) = leaf(&ca, 0);
    k8s_swap(
        &keys,
        "gen-0",
        &[("signing.key", &key), ("signing.crt", &chain)],
    );
    let k = keys.display();
    let config = write_config(
        dir.path(),
        "none",
        &format!("  path: {k}/signing.key\n  certificate: {k}/signing.crt\n"),
    );
    let bundle = regauth_cli("bundle", &config);
    assert_eq!(
        certificates_der(&bundle),
        [ca.der().to_vec()],
        "only the CA"
    );
    let bundle_path = dir.path().join("bundle.pem");
    fs::write(&bundle_path, &bundle).unwrap();
    let stack = Arc::new(Stack::launch(dir, &config, bundle_path));
    let digest = first_push(&stack, "x5c-mode");

    let traffic = Traffic::start(&stack, &digest, "x5c-mode");
    traffic.run_for(100, 5, &stack);
    let mut swaps = Vec::new();
    for generation in 1..=3 {
        let (chain, key, leaf_der) = leaf(&ca, generation);
        k8s_swap(
            &keys,
            &format!("gen-{generation}"),
            &[("signing.key", &key), ("signing.crt", &chain)],
        );
        swaps.push(time_to_new_key(&stack, |h| {
            h.get("kid").is_none() && x5c_leaf(h).as_deref() == Some(leaf_der.as_slice())
        }));
        traffic.run_for(100, 5, &stack);
    }
    let tally = traffic.finish();
    assert_no_failures("x5c mode", &tally, &swaps, &stack);
    let leaves: std::collections::HashSet<Vec<u8>> = tally
        .tokens
        .iter()
        .filter_map(|t| x5c_leaf(&jwt_header(t)))
        .collect();
    assert!(
        leaves.len() >= 3,
        "pulls ran with several leaves: {}",
        leaves.len()
    );
    // The CA is the whole bundle still.
    assert_eq!(
        certificates_der(&regauth_cli(
            "bundle",
            &stack.dir.path().join("regauth.yaml")
        )),
        [ca.der().to_vec()]
    );
}

// ---------------------------------------------------------------------------------------
// recipe 3: a JWKS verifier
// ---------------------------------------------------------------------------------------

/// A verifier that knows regauth only by its JWKS: it keeps the set it fetched and fetches
/// again when a token names a `kid` it does not have.
struct JwksVerifier {
    url_addr: std::net::SocketAddr,
    set: Mutex<jwt::jwk::JwkSet>,
    fetches: std::sync::atomic::AtomicUsize,
}

impl JwksVerifier {
    fn new(stack: &Stack) -> JwksVerifier {
        let verifier = JwksVerifier {
            url_addr: stack.regauth.addr,
            set: Mutex::new(jwt::jwk::JwkSet { keys: Vec::new() }),
            fetches: Default::default(),
        };
        verifier.fetch().expect("first JWKS fetch");
        verifier
    }

    fn fetch(&self) -> Result<(), String> {
        let response = crate::registry::http_request(
            self.url_addr,
            "GET",
            "/.well-known/jwks.json",
            &[],
            Duration::from_secs(10),
        )?;
        if response.status != 200 {
            return Err(format!("JWKS: {}", response.status));
        }
        let set: jwt::jwk::JwkSet =
            serde_json::from_slice(&response.body).map_err(|e| e.to_string())?;
        *self.set.lock().unwrap() = set;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn verify(&self, token: &str) -> Result<(), String> {
        let kid = jwt::decode_header(token)
            .map_err(|e| e.to_string())?
            .kid
            .ok_or("no kid")?;
        let find = |kid: &str| self.set.lock().unwrap().find(kid).cloned();
        let jwk = match find(&kid) {
            Some(jwk) => jwk,
            None => {
                self.fetch()?;
                find(&kid).ok_or_else(|| format!("kid {kid} not in the JWKS"))?
            }
        };
        let key = jwt::DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        let mut validation = jwt::Validation::new(jwt::Algorithm::ES256);
        validation.set_audience(&[SERVICE]);
        validation.set_issuer(&[ISSUER]);
        jwt::decode::<Value>(token, &key, &validation)
            .map(|_| ())
            .map_err(|e| format!("kid {kid}: {e}"))
    }
}

/// Writes a new next key and certificate (certificate first, so the pair is complete when
/// the key lands) and waits until the JWKS publishes it; returns its kid.
fn publish_next(
    stack: &Stack,
    keys: &Path,
    ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
    n: usize,
) -> String {
    let (chain, key, _) = leaf(ca, n);
    let kid = SigningKey::from_bytes(
        key.as_bytes(),
        None,
        KeySpec {
            kid_format: regauth::keys::KidFormat::Thumbprint,
            ..KeySpec::default()
        },
    )
    .unwrap()
    .kid()
    .unwrap()
    .to_owned();
    replace_file(&keys.join("next.crt"), &chain);
    replace_file(&keys.join("next.key"), &key);
    wait_for(
        SWAP_DEADLINE,
        || jwks_kids(stack).contains(&kid).then_some(()),
        || format!("next key {n} not published"),
    );
    kid
}

#[test]
fn a_jwks_verifier_verifies_every_token_across_repeated_swaps() {
    if !tools_present(&["skopeo"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    let ca = new_ca("regauth rotation CA");
    let (chain, key, _) = leaf(&ca, 0);
    fs::write(keys.join("signing.key"), key).unwrap();
    fs::write(keys.join("signing.crt"), chain).unwrap();
    let k = keys.display();
    let config = write_config(
        dir.path(),
        "thumbprint",
        &format!(
            "  path: {k}/signing.key\n  certificate: {k}/signing.crt\n  \
             next: {k}/next.key\n  next_certificate: {k}/next.crt\n"
        ),
    );
    // The registry trusts the CA (x5c); the verifier trusts the JWKS (kid = thumbprint).
    let bundle_path = dir.path().join("bundle.pem");
    fs::write(&bundle_path, ca.pem()).unwrap();
    let stack = Arc::new(Stack::launch(dir, &config, bundle_path));
    let digest = first_push(&stack, "jwks");
    let mut next_kid = publish_next(&stack, &keys, &ca, 1);
    let verifier = Arc::new(JwksVerifier::new(&stack));

    let traffic = Traffic::start(&stack, &digest, "jwks");
    // The verifier's own stream of fresh tokens.
    let stop = Arc::new(AtomicBool::new(false));
    let verified = Arc::new(AtomicUsize::new(0));
    let verifying = {
        let (stack, verifier, stop) =
            (Arc::clone(&stack), Arc::clone(&verifier), Arc::clone(&stop));
        let verified = Arc::clone(&verified);
        std::thread::spawn(move || {
            let (mut checked, mut failures) = (0usize, Vec::new());
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < TRAFFIC_CAP {
                match token(&stack, "repository:team/app:pull").and_then(|t| verifier.verify(&t)) {
                    Ok(()) => {}
                    Err(e) => failures.push(e),
                }
                checked += 1;
                verified.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
            (checked, failures)
        })
    };

    let mut swaps = Vec::new();
    let mut pre_swap_failures = Vec::new();
    for round in 1..=3 {
        traffic.run_for(100, 5, &stack);
        // A token from just before the swap must still verify after it.
        let before = token(&stack, "repository:team/app:pull").unwrap();
        swap_in_next(&keys);
        let kid = next_kid.clone();
        swaps.push(time_to_new_key(&stack, |h| h["kid"] == kid.as_str()));
        verifier.fetch().unwrap();
        if let Err(e) = verifier.verify(&before) {
            pre_swap_failures.push(format!("round {round}: {e}"));
        }
        next_kid = publish_next(&stack, &keys, &ca, round + 1);
    }
    // The verifier and the traffic run on the last key too.
    let verified_at = verified.load(Ordering::Relaxed);
    traffic.run_for(100, 5, &stack);
    wait_for(
        PROGRESS_DEADLINE,
        || (verified.load(Ordering::Relaxed) >= verified_at + 10).then_some(()),
        || format!("the verifier stalled\n{}", stack.logs()),
    );
    stop.store(true, Ordering::Relaxed);
    let (checked, verify_failures) = verifying.join().unwrap();
    let tally = traffic.finish();
    // Every token the pulls used must verify too (they all came before a later swap).
    verifier.fetch().unwrap();
    let pull_token_failures: Vec<String> = tally
        .tokens
        .iter()
        .filter_map(|t| verifier.verify(t).err())
        .collect();
    eprintln!(
        "rotation jwks: {checked} fresh tokens and {} pull tokens verified, {} JWKS fetches, {} failures",
        tally.tokens.len(),
        verifier.fetches.load(Ordering::Relaxed),
        verify_failures.len() + pre_swap_failures.len() + pull_token_failures.len()
    );
    assert_no_failures("jwks", &tally, &swaps, &stack);
    assert!(verify_failures.is_empty(), "{verify_failures:#?}");
    assert!(pre_swap_failures.is_empty(), "{pre_swap_failures:#?}");
    assert!(pull_token_failures.is_empty(), "{pull_token_failures:#?}");
    assert!(checked > 0);
    assert_eq!(
        jwks_kids(&stack).len(),
        5,
        "current + next + three retired keys"
    );
}

// ---------------------------------------------------------------------------------------
// recipe 1 again, with docker pulling throughout
// ---------------------------------------------------------------------------------------

#[test]
fn kid_mode_rotation_under_a_docker_pull_loop_fails_no_pull() {
    if !tools_present(&["skopeo"]) || !crate::daemons::docker_present() {
        return;
    }
    let (
        stack,
        KidMode {
            keys,
            old_kid,
            new_kid,
            ..
        },
    ) = kid_mode_stack(true);
    first_push(&stack, "docker-rotation");
    let daemon = crate::daemons::dockerd();

    // Anonymous docker pulls in a loop: each one asks regauth for a token and sends it with
    // the manifest request, whether the image is already local or not.
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Vec::new()));
    let puller = {
        let (stack, stop, results) = (Arc::clone(&stack), Arc::clone(&stop), Arc::clone(&results));
        std::thread::spawn(move || {
            let image = stack.registry.image_ref("team/app", "v1");
            let config = stack.dir.path().join("docker-config");
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < TRAFFIC_CAP {
                let out = daemon.docker_in(&config, &["pull", &image], None);
                results.lock().unwrap().push(out);
            }
        })
    };
    let pulls = || results.lock().unwrap().len();
    let wait_for_pulls = |n: usize| {
        wait_for(
            PROGRESS_DEADLINE,
            || (pulls() >= n).then_some(()),
            || format!("docker finished {} of {n} pulls\n{}", pulls(), stack.logs()),
        )
    };
    wait_for_pulls(5);

    swap_in_next(&keys);
    let swap = time_to_new_key(&stack, |h| h["kid"] == new_kid.as_str());
    let at_swap = pulls();
    wait_for_pulls(at_swap + 5);
    stop.store(true, Ordering::Relaxed);
    puller.join().unwrap();

    let results = results.lock().unwrap();
    let failed: Vec<String> = results
        .iter()
        .filter(|o| !o.success)
        .map(|o| o.to_string())
        .collect();
    let requests = stack.recorder().requests();
    let by_kid = |kid: &str| {
        requests
            .iter()
            .filter(|r| r.issued.as_ref().and_then(|i| i.kid.as_deref()) == Some(kid))
            .count()
    };
    let (old_tokens, new_tokens) = (by_kid(&old_kid), by_kid(&new_kid));
    eprintln!(
        "rotation under docker: {} pulls, {} failed, swap seen in tokens after {swap:?}, \
         docker's tokens: {old_tokens} old kid, {new_tokens} new kid",
        results.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "failed docker pulls: {failed:#?}\n{}",
        stack.logs()
    );
    stack
        .recorder()
        .assert_every("answered 200", |r| r.status == 200);
    assert!(
        old_tokens > 0 && new_tokens > 0,
        "{}",
        stack.recorder().dump()
    );
}
