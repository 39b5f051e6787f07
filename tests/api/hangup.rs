//! SIGHUP to `regauth serve`: it never stops the server, and it re-reads the watched files
//! at once (here a key swap the file watch cannot see).

use std::path::Path;

use crate::helpers::{header, new_key, signal, start_serve_logging};
use crate::support::{key_dir, write_config};

/// A token for anonymous pull from the server at `addr`; panics unless it is a 200.
async fn token_kid(client: &reqwest::Client, addr: &str) -> String {
    let response = client
        .get(format!(
            "http://{addr}/token?service=registry.test&scope=repository:team/app:pull"
        ))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    header(body["token"].as_str().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn still_running(child: &mut std::process::Child) {
    assert!(
        child.try_wait().unwrap().is_none(),
        "regauth exited on SIGHUP"
    );
}

#[tokio::test]
async fn sighup_with_the_default_audit_output_leaves_the_server_serving() {
    let dir = key_dir();
    // No audit settings: the audit log is on and goes to stderr, no file to reopen.
    write_config(
        dir.path(),
        "server:\n  listen: 127.0.0.1:0\nkey:\n  path: keys/signing.key\n",
    )
    .unwrap();
    let (mut child, addr, log) =
        start_serve_logging(&[], Some(dir.path()), &["--config", "regauth.yaml"]);
    let client = reqwest::Client::new();
    let kid = token_kid(&client, &addr).await;

    for _ in 0..2 {
        signal(&child, "HUP");
        let line = log.wait_for("SIGHUP re-read:");
        still_running(&mut child);
        let line = line.expect("each SIGHUP is logged");
        assert!(
            line.contains("signing key keys/signing.key: unchanged"),
            "{line}"
        );
        assert!(!line.contains("audit"), "no audit file to reopen: {line}");
    }
    assert_eq!(token_kid(&client, &addr).await, kid);
    still_running(&mut child);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[cfg(unix)]
fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// Points `link` at `target` in one step (a new link renamed over it), as a deploy tool
/// switching a `current` link does.
#[cfg(unix)]
fn switch_link(target: &str, link: &Path) {
    let staged = link.with_extension("new");
    symlink(target, &staged);
    std::fs::rename(&staged, link).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_takes_a_key_swap_the_file_watch_cannot_see() {
    // keys/signing.key -> ../slot/key -> ../store/one.key. The watch covers keys/ and the
    // final target's directory store/, not slot/: switching slot/key to store/two.key makes
    // no event it reads, and the backstop poll is a day away. Only SIGHUP sees the swap.
    let dir = tempfile::tempdir().unwrap();
    for sub in ["keys", "slot", "store"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let (one, one_kid) = new_key();
    let (two, two_kid) = new_key();
    std::fs::write(dir.path().join("store/one.key"), &one).unwrap();
    std::fs::write(dir.path().join("store/two.key"), &two).unwrap();
    symlink("../store/one.key", &dir.path().join("slot/key"));
    symlink("../slot/key", &dir.path().join("keys/signing.key"));
    write_config(
        dir.path(),
        "server:\n  listen: 127.0.0.1:0\nkey:\n  path: keys/signing.key\n  \
         poll_interval_seconds: 86400\n",
    )
    .unwrap();
    let (mut child, addr, log) =
        start_serve_logging(&[], Some(dir.path()), &["--config", "regauth.yaml"]);
    let client = reqwest::Client::new();
    assert_eq!(token_kid(&client, &addr).await, one_kid);

    switch_link("../store/two.key", &dir.path().join("slot/key"));
    signal(&child, "HUP");
    let line = log.wait_for("SIGHUP re-read:");
    still_running(&mut child);
    let line = line.expect("the SIGHUP is logged");
    assert!(
        line.contains("signing key keys/signing.key: reloaded"),
        "{line}"
    );
    assert!(line.contains(&two_kid), "the new key is named: {line}");
    // Swapped before the line was logged: the next token is signed with the new key.
    assert_eq!(token_kid(&client, &addr).await, two_kid);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// One SIGHUP's work, as the handler runs it (off the async workers).
async fn reread(app: &crate::helpers::TestApp) -> String {
    let reload = std::sync::Arc::clone(&app.reload);
    tokio::task::spawn_blocking(move || reload.reread())
        .await
        .unwrap()
}

#[tokio::test]
async fn sighup_rereads_htpasswd_and_jwks_files_reopens_the_audit_file_and_keeps_last_good_content()
{
    use crate::support::workload::{jwks_of, workload_key};
    let files = tempfile::tempdir().unwrap();
    let htpasswd = files.path().join("htpasswd");
    let jwks = files.path().join("jwks.json");
    let audit = files.path().join("audit.log");
    let bcrypt = |pw| bcrypt::hash(pw, 4).unwrap();
    std::fs::write(&htpasswd, format!("bob:{}\n", bcrypt("pw1"))).unwrap();
    let first = workload_key("first", jsonwebtoken::Algorithm::RS256);
    std::fs::write(&jwks, jwks_of(&[&first])).unwrap();
    let (h, j, a) = (htpasswd.clone(), jwks.clone(), audit.clone());
    let app = crate::helpers::spawn_app_with(move |s| {
        s.auth.htpasswd = Some(h);
        let mut issuer =
            regauth::identity::federation::IssuerSettings::new("https://ci.test", &["registry"]);
        issuer.jwks_file = Some(j);
        s.federation = vec![issuer];
        s.audit.enabled = true;
        s.audit.output = a.display().to_string();
    })
    .await;
    let done = reread(&app).await;
    for phrase in [
        format!("signing key {}: unchanged", app.key_path.display()),
        format!("htpasswd file {}: unchanged, 1 users", htpasswd.display()),
        format!("JWKS file {}: 1 key(s)", jwks.display()),
        format!("audit file {}: reopened", audit.display()),
    ] {
        assert!(done.contains(&phrase), "{phrase:?} not in {done:?}");
    }
    assert_eq!(app.reload.handled(), 1);

    // New content is taken; a broken file keeps the last good content.
    std::fs::write(
        &htpasswd,
        format!("bob:{}\ncarol:{}\n", bcrypt("pw1"), bcrypt("pw2")),
    )
    .unwrap();
    let second = workload_key("second", jsonwebtoken::Algorithm::RS256);
    std::fs::write(&jwks, jwks_of(&[&first, &second])).unwrap();
    std::fs::rename(&audit, files.path().join("audit.log.1")).unwrap();
    let done = reread(&app).await;
    // (The htpasswd watch may have been first: then SIGHUP finds it unchanged.)
    assert!(done.contains(", 2 users"), "{done}");
    assert!(app.users.lookup("carol").is_some());
    assert!(done.contains(": 2 key(s)"), "{done}");
    assert!(audit.exists(), "the audit file is reopened by its path");

    std::fs::write(&htpasswd, "carol:{SHA}abc\n").unwrap();
    std::fs::write(&jwks, "not json").unwrap();
    let done = reread(&app).await;
    assert!(
        done.contains("not usable") && done.contains("keeping the 2 users known"),
        "{done}"
    );
    assert!(done.contains("keeping 2 key(s)"), "{done}");
    assert!(app.users.lookup("carol").is_some(), "the last good users");
    assert!(app.users.lookup("bob").is_some(), "the last good users");
}
