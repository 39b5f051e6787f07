//! Key rotation by replacing files: every way operators and Kubernetes do it.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{TestApp, header, kid_of, new_key, spawn_app, spawn_app_with};

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
    let app = spawn_app().await;
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
    let ready = app.get("/readyz").await;
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

#[tokio::test]
async fn a_deleted_key_file_keeps_the_old_key_signing() {
    let app = spawn_app().await;
    let old = current_kid(&app);
    std::fs::remove_file(&app.key_path).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(header(&app.pull_token().await)["kid"], old.as_str());
    assert_eq!(app.get("/readyz").await.status(), 200);

    let (pem, kid) = new_key();
    std::fs::write(&app.key_path, pem).unwrap();
    assert_rotates_to(&app, &kid).await;
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
