//! Key rotation by replacing files: every way operators and Kubernetes do it.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{TestApp, header, kid_of, new_key, spawn_app, spawn_app_with, with_admin};

/// Long enough for a loaded CI machine, far below the 30 s backstop poll.
const DEADLINE: Duration = Duration::from_secs(10);

fn current_kid(app: &TestApp) -> String {
    app.keys.signing_key().kid().unwrap().to_owned()
}

async fn assert_rotates_to(app: &TestApp, new_kid: &str) {
    let seen = app.wait_for_kid(DEADLINE, |k| k == new_kid).await;
    assert_eq!(
        seen.as_deref(),
        Some(new_kid),
        "new kid not seen within {DEADLINE:?}"
    );
}

#[tokio::test]
async fn a_key_moved_over_the_old_one_is_picked_up() {
    let app = spawn_app().await;
    let old = current_kid(&app);
    let (pem, kid) = new_key();
    let staged = app.dir.path().join("signing.key.new");
    std::fs::write(&staged, pem).unwrap();
    std::fs::rename(&staged, &app.key_path).unwrap();
    assert_ne!(old, kid);
    assert_rotates_to(&app, &kid).await;
    let status = app.keys.status();
    assert!(status.last_reload.is_some());
    assert_eq!(status.failed_reloads, 0);
}

#[tokio::test]
async fn a_key_rewritten_in_place_is_picked_up() {
    let app = spawn_app().await;
    let (pem, kid) = new_key();
    // Truncate and write the same inode, as `cp new signing.key` or an editor without backup does.
    std::fs::write(&app.key_path, pem).unwrap();
    assert_rotates_to(&app, &kid).await;
}

/// Lays out a directory the way the kubelet mounts a secret: the file is a symlink through
/// `..data`, which points at a timestamped directory.
fn k8s_mount(dir: &Path, generation: &str, pem: &str) {
    let real = dir.join(format!("..{generation}"));
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("signing.key"), pem).unwrap();
    let tmp = dir.join("..data_tmp");
    symlink(format!("..{generation}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if !dir.join("signing.key").exists() {
        symlink("..data/signing.key", dir.join("signing.key")).unwrap();
    }
}

#[tokio::test]
async fn a_kubernetes_secret_symlink_swap_is_picked_up() {
    let mount = tempfile::tempdir().unwrap();
    let (first, first_kid) = new_key();
    k8s_mount(mount.path(), "2026_11_28_00_00_00.1", &first);
    let path = mount.path().join("signing.key");
    let app = spawn_app_with(|s| s.key.path = path.clone()).await;
    assert_eq!(current_kid(&app), first_kid);

    let (second, second_kid) = new_key();
    k8s_mount(mount.path(), "2026_11_28_00_05_00.2", &second);
    std::fs::remove_dir_all(mount.path().join("..2026_11_28_00_00_00.1")).unwrap();
    assert_rotates_to(&app, &second_kid).await;

    // And again: the watch survives the first swap.
    let (third, third_kid) = new_key();
    k8s_mount(mount.path(), "2026_11_28_00_10_00.3", &third);
    assert_rotates_to(&app, &third_kid).await;
}

#[tokio::test]
async fn a_garbage_key_file_keeps_the_old_key_signing_and_the_service_ready() {
    let app = spawn_app_with(with_admin).await;
    let old = current_kid(&app);
    std::fs::write(
        &app.key_path,
        "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();

    // The failure is recorded, and nothing else changes.
    let start = std::time::Instant::now();
    while app.keys.status().failed_reloads == 0 {
        assert!(start.elapsed() < DEADLINE, "the bad file was never read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        assert_eq!(header(&app.pull_token().await)["kid"], old.as_str());
    }
    let ready = app.readyz_details().await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["kid"], old.as_str());
    assert!(body["failed_reloads"].as_u64().unwrap() >= 1);
    let reason = body["last_reload_error"].as_str().unwrap();
    assert!(reason.contains("PEM") || reason.contains("key"), "{reason}");

    // A good key after the bad one is taken.
    let (pem, kid) = new_key();
    std::fs::write(&app.key_path, pem).unwrap();
    assert_rotates_to(&app, &kid).await;
}

/// `/readyz` as JSON, once `done` holds for it (or the deadline passes).
async fn readyz_when(app: &TestApp, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let response = app.readyz_details().await;
        assert_eq!(response.status(), 200, "ready while a good key signs");
        let body: Value = response.json().await.unwrap();
        if done(&body) {
            return body;
        }
        assert!(start.elapsed() < DEADLINE, "{what} not seen: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No backstop poll within any test's lifetime: only the watcher can see a change.
fn watcher_only(s: &mut regauth::config::Settings) {
    with_admin(s);
    s.key.poll_interval_seconds = 3600;
}

#[tokio::test]
async fn a_deleted_key_file_keeps_the_old_key_signing_and_shows_in_readyz() {
    let app = spawn_app_with(watcher_only).await;
    let old = current_kid(&app);
    std::fs::remove_file(&app.key_path).unwrap();
    let body = readyz_when(&app, "the missing key file", |b| {
        !b["key_file_error"].is_null()
    })
    .await;
    let reason = body["key_file_error"].as_str().unwrap();
    assert!(
        reason.contains("cannot read key file") && reason.contains("signing.key"),
        "{reason}"
    );
    assert!(body["key_file_missing_since"].is_string(), "{body}");
    assert_eq!(body["kid"], old.as_str());
    assert_eq!(body["failed_reloads"], 0);
    assert_eq!(header(&app.pull_token().await)["kid"], old.as_str());

    let (pem, kid) = new_key();
    std::fs::write(&app.key_path, pem).unwrap();
    assert_rotates_to(&app, &kid).await;
    let body = readyz_when(&app, "the key file back", |b| b["key_file_error"].is_null()).await;
    assert!(body["key_file_missing_since"].is_null(), "{body}");
}

#[tokio::test]
async fn a_key_path_symlinked_into_another_directory_is_reloaded_by_the_watcher() {
    let target_dir = tempfile::tempdir().unwrap();
    let (first, first_kid) = new_key();
    let target = target_dir.path().join("real.pem");
    std::fs::write(&target, first).unwrap();
    let link_dir = tempfile::tempdir().unwrap();
    let link = link_dir.path().join("signing.key");
    symlink(&target, &link).unwrap();
    let app = spawn_app_with(|s| {
        watcher_only(s);
        s.key.path = link.clone();
    })
    .await;
    assert_eq!(current_kid(&app), first_kid);

    // Replaced in the target's directory; nothing happens beside the symlink.
    let (second, second_kid) = new_key();
    let staged = target_dir.path().join("real.pem.new");
    std::fs::write(&staged, second).unwrap();
    std::fs::rename(&staged, &target).unwrap();
    assert_rotates_to(&app, &second_kid).await;
}

#[tokio::test]
async fn a_next_key_directory_missing_at_start_is_watched_once_it_exists() {
    let later = tempfile::tempdir().unwrap();
    let next_dir = later.path().join("next");
    let next = next_dir.join("next.key");
    let app = spawn_app_with(|s| {
        watcher_only(s);
        s.key.next = Some(next.clone());
    })
    .await;
    let body = readyz_when(&app, "the missing directory", |b| {
        b["watch_problem"]
            .as_str()
            .is_some_and(|p| p.contains("missing"))
    })
    .await;
    assert!(body["next_kid"].is_null());

    std::fs::create_dir(&next_dir).unwrap();
    let (pem, kid) = new_key();
    crate::helpers::replace_file(&next, &pem);
    let body = readyz_when(&app, "the next key", |b| b["next_kid"] == kid.as_str()).await;
    assert_eq!(body["watch_rearmed"], 1, "{body}");
    assert!(body["watch_problem"].is_null(), "{body}");
}

#[tokio::test]
async fn a_key_directory_deleted_and_recreated_is_watched_again() {
    let root = tempfile::tempdir().unwrap();
    let keys = root.path().join("keys");
    let app = spawn_app_with(|s| {
        watcher_only(s);
        regauth::keys::generate::write(&keys, regauth::keys::Algorithm::ES256, false).unwrap();
        s.key.path = keys.join("signing.key");
    })
    .await;
    let old = current_kid(&app);

    std::fs::remove_dir_all(&keys).unwrap();
    readyz_when(&app, "the missing directory", |b| {
        !b["key_file_error"].is_null() && !b["watch_problem"].is_null()
    })
    .await;
    assert_eq!(header(&app.pull_token().await)["kid"], old.as_str());

    std::fs::create_dir(&keys).unwrap();
    let body = readyz_when(&app, "the re-armed watch", |b| b["watch_rearmed"] == 1).await;
    assert!(body["watch_problem"].is_null(), "{body}");
    // A key written into the new directory is seen by the watcher (no poll for an hour).
    let (pem, kid) = new_key();
    crate::helpers::replace_file(&app.key_path, &pem);
    assert_rotates_to(&app, &kid).await;
    readyz_when(&app, "the key file back", |b| b["key_file_error"].is_null()).await;
}

#[tokio::test]
async fn a_certificate_then_key_rotation_seen_halfway_is_not_a_failed_reload() {
    let app = spawn_app_with(|s| {
        watcher_only(s);
        s.key.certificate = Some(s.key.path.with_file_name("signing.crt"));
    })
    .await;
    let staging = tempfile::tempdir().unwrap();
    let written =
        regauth::keys::generate::write(staging.path(), regauth::keys::Algorithm::ES256, false)
            .unwrap();
    let kid = kid_of(&std::fs::read(&written.key).unwrap());
    assert_eq!(app.keys.status().pair_retries, 0);

    // The certificate first; the key once a reload has read the new certificate with the
    // old key and is waiting to read the pair again (500 ms).
    std::fs::rename(
        written.certificate.unwrap(),
        app.dir.path().join("signing.crt"),
    )
    .unwrap();
    let start = Instant::now();
    while app.keys.status().pair_retries == 0 {
        assert!(
            start.elapsed() < DEADLINE,
            "the mismatched pair was never read: {:?}",
            app.keys.status()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    std::fs::rename(&written.key, &app.key_path).unwrap();
    assert_rotates_to(&app, &kid).await;
    let status = app.keys.status();
    assert_eq!(status.failed_reloads, 0, "{:?}", status.last_error);
    assert_eq!(
        status.pair_retries, 1,
        "the second read found the pair whole"
    );
}

#[tokio::test]
async fn a_key_with_its_certificate_rotates_together_and_x5c_follows() {
    let app =
        spawn_app_with(|s| s.key.certificate = Some(s.key.path.with_file_name("signing.crt")))
            .await;
    let token = app.pull_token().await;
    assert_eq!(header(&token)["x5c"].as_array().unwrap().len(), 1);

    let next = tempfile::tempdir().unwrap();
    let written =
        regauth::keys::generate::write(next.path(), regauth::keys::Algorithm::ES256, false)
            .unwrap();
    let kid = kid_of(&std::fs::read(&written.key).unwrap());
    // Certificate first (the old key no longer matches it, so that state is refused), then key.
    std::fs::rename(
        written.certificate.unwrap(),
        app.dir.path().join("signing.crt"),
    )
    .unwrap();
    std::fs::rename(&written.key, &app.key_path).unwrap();
    assert_rotates_to(&app, &kid).await;
    assert_eq!(app.keys.status().failed_reloads, 0, "renamed back to back");
    let x5c = header(&app.pull_token().await)["x5c"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let leaf = data_encoding::BASE64.decode(x5c.as_bytes()).unwrap();
    assert_eq!(
        leaf,
        app.keys.signing_key().certificate().unwrap().chain_der[0]
    );
}

#[tokio::test]
async fn tokens_keep_flowing_while_the_key_is_replaced_repeatedly() {
    let app = spawn_app().await;
    let mut kids = std::collections::HashSet::new();
    for round in 0..5 {
        let (pem, kid) = new_key();
        let staged = app.dir.path().join(format!("stage-{round}"));
        std::fs::write(&staged, pem).unwrap();
        std::fs::rename(&staged, &app.key_path).unwrap();
        // Requests between the swap and the reload succeed with one key or the other.
        let seen = app.wait_for_kid(DEADLINE, |k| k == kid).await;
        assert_eq!(seen.as_deref(), Some(kid.as_str()));
        kids.insert(kid);
    }
    assert_eq!(kids.len(), 5);
}
