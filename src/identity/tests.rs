use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;
use crate::fs::watch::WatchOptions;

pub(super) fn basic(user: &str, password: &str) -> Vec<u8> {
    format!(
        "Basic {}",
        BASE64.encode(format!("{user}:{password}").as_bytes())
    )
    .into_bytes()
}

pub(super) fn directory(
    users: &[(&str, &str, &[&str])],
    htpasswd: Option<std::path::PathBuf>,
) -> UserDirectory {
    let config: BTreeMap<String, UserSettings> = users
        .iter()
        .map(|(name, password, groups)| {
            let password =
                (!password.is_empty()).then(|| bcrypt::hash(password, 4).unwrap().into());
            let settings = UserSettings {
                password,
                groups: groups.iter().map(|g| g.to_string()).collect(),
            };
            (name.to_string(), settings)
        })
        .collect();
    UserDirectory::start(config, htpasswd, WatchOptions::default()).unwrap()
}

#[test]
fn basic_credentials_parse_and_malformed_headers_are_refused() {
    let creds = parse_basic(&basic("alice", "pa:ss")).unwrap();
    assert_eq!(
        (creds.username.as_str(), creds.password.expose_secret()),
        ("alice", "pa:ss")
    );
    assert!(!format!("{creds:?}").contains("pa:ss"));
    for bad in [
        &b"Basic"[..],
        b"Basic !!!",
        b"Bearer abc",
        b"Basic bm9jb2xvbg==",
        b"Basic \xff\xfe",
    ] {
        assert_eq!(
            parse_basic(bad).unwrap_err(),
            AuthError::MalformedHeader,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn users_sign_in_with_their_password_only() {
    let dir = directory(&[("alice", "s3cret", &["dev"])], None);
    let alice = dir.verify("alice", "s3cret").unwrap();
    assert_eq!(alice.subject(), "alice");
    assert_eq!(alice.groups(), ["dev"]);
    assert_eq!(
        dir.verify("alice", "wrong"),
        Err(AuthError::InvalidCredentials)
    );
    assert_eq!(
        dir.verify("mallory", "s3cret"),
        Err(AuthError::InvalidCredentials)
    );
}

#[test]
fn unknown_users_are_checked_against_a_hash_as_costly_as_real_ones() {
    // The time itself is measured in benches/login.rs; here the structure that makes it equal.
    let config: BTreeMap<String, UserSettings> = [
        (
            "alice".to_string(),
            UserSettings {
                password: Some(bcrypt::hash("pw", 6).unwrap().into()),
                groups: vec![],
            },
        ),
        (
            "bob".to_string(),
            UserSettings {
                password: Some(bcrypt::hash("pw", 5).unwrap().into()),
                groups: vec![],
            },
        ),
    ]
    .into();
    let dir = Arc::new(UserDirectory::start(config, None, WatchOptions::default()).unwrap());
    assert_eq!(dir.dummy_cost(), 6);
    assert_eq!(
        dir.verify("nobody", "pw"),
        Err(AuthError::InvalidCredentials)
    );
    assert_eq!(directory(&[], None).dummy_cost(), 10);

    // Through the chain as logins go: an unknown name makes the users source spend its
    // equalizing check; a known name with a wrong password does not need one.
    let users = Arc::new(Equalized::new(Arc::clone(&dir)));
    let chain = Sources::new(vec![Arc::clone(&users) as Arc<dyn IdentitySource>]);
    let nobody = Credentials::new("nobody", "pw");
    assert_eq!(chain.authenticate(&nobody), Err(Failure::Rejected));
    assert_eq!(users.equalized(), 1, "the unknown name was equalized");
    let wrong = Credentials::new("alice", "wrong");
    assert_eq!(chain.authenticate(&wrong), Err(Failure::Rejected));
    assert_eq!(users.equalized(), 1, "a wrong password costs its own check");
}

/// The users source, counting the equalizing checks the chain asks of it.
struct Equalized {
    inner: Arc<UserDirectory>,
    calls: std::sync::atomic::AtomicUsize,
}

impl Equalized {
    fn new(inner: Arc<UserDirectory>) -> Equalized {
        Equalized {
            inner,
            calls: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn equalized(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl IdentitySource for Equalized {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn authenticate(&self, credentials: &Credentials) -> Outcome {
        self.inner.authenticate(credentials)
    }

    fn equalize(&self, credentials: &Credentials) {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.equalize(credentials);
    }
}

#[test]
fn htpasswd_users_reload_and_a_broken_file_keeps_the_last_good_set() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("htpasswd");
    std::fs::write(&path, format!("bob:{}\n", bcrypt::hash("pw1", 4).unwrap())).unwrap();
    let dir = directory(&[("bob", "", &["ops"])], Some(path.clone()));
    let bob = dir.verify("bob", "pw1").unwrap();
    assert_eq!(
        bob.groups(),
        ["ops"],
        "groups from users: apply to htpasswd users"
    );
    assert_eq!(dir.counts(), (1, 1));

    std::fs::write(&path, "bob:{SHA}xyz\n").unwrap();
    assert!(!dir.reload_now());
    assert!(dir.verify("bob", "pw1").is_ok(), "the last good set stays");

    std::fs::write(
        &path,
        format!("carol:{}\n", bcrypt::hash("pw2", 4).unwrap()),
    )
    .unwrap();
    assert!(dir.reload_now());
    assert!(
        dir.verify("bob", "pw1").is_err(),
        "removed users are gone, cache included"
    );
    assert!(dir.verify("carol", "pw2").is_ok());
}

#[test]
fn configuration_errors_name_the_user_or_line() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("htpasswd");
    std::fs::write(&path, "# x\nbob:$apr1$abc$def\n").unwrap();
    let err = UserDirectory::start(BTreeMap::new(), Some(path.clone()), WatchOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("line 2") && err.contains("not bcrypt"),
        "{err}"
    );

    let bad: BTreeMap<String, UserSettings> = [(
        "alice".to_string(),
        UserSettings {
            password: Some("plain".into()),
            groups: vec![],
        },
    )]
    .into();
    let err = UserDirectory::start(bad, None, WatchOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("users.alice.password"), "{err}");

    std::fs::write(&path, format!("alice:{}\n", bcrypt::hash("x", 4).unwrap())).unwrap();
    let both: BTreeMap<String, UserSettings> = [(
        "alice".to_string(),
        UserSettings {
            password: Some(bcrypt::hash("y", 4).unwrap().into()),
            groups: vec![],
        },
    )]
    .into();
    let err = UserDirectory::start(both, Some(path), WatchOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("both"), "{err}");
}

#[test]
fn a_failed_htpasswd_reload_is_counted_once_and_cleared_by_a_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("htpasswd");
    std::fs::write(&path, format!("bob:{}\n", bcrypt::hash("pw1", 4).unwrap())).unwrap();
    // The watch never fires on its own: the test drives every reload.
    let quiet = WatchOptions {
        debounce: std::time::Duration::from_secs(3600),
        max_delay: std::time::Duration::from_secs(3600),
        poll_interval: std::time::Duration::from_secs(3600),
    };
    let dir = UserDirectory::start(BTreeMap::new(), Some(path.clone()), quiet).unwrap();
    assert_eq!(dir.reload_status(), ReloadStatus::default());

    std::fs::write(&path, "bob:{SHA}xyz\n").unwrap();
    assert!(!dir.reload_now());
    assert!(!dir.reload_now(), "the same broken content again");
    let status = dir.reload_status();
    assert_eq!(status.failed_reloads, 1);
    assert!(
        status.last_error.as_deref().unwrap().contains("line 1"),
        "{status:?}"
    );
    assert!(status.last_attempt.is_some());

    std::fs::remove_file(&path).unwrap();
    assert!(!dir.reload_now());
    assert!(!dir.reload_now());
    let status = dir.reload_status();
    assert_eq!(
        status.failed_reloads, 2,
        "a missing file is one more failure"
    );
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot read"),
        "{status:?}"
    );
    assert!(dir.verify("bob", "pw1").is_ok(), "the last good set stays");

    std::fs::write(&path, format!("bob:{}\n", bcrypt::hash("pw2", 4).unwrap())).unwrap();
    assert!(dir.reload_now());
    let status = dir.reload_status();
    assert_eq!(status.failed_reloads, 2);
    assert_eq!(status.last_error, None);
}

/// A source whose users and availability a test controls.
pub(super) struct Scripted {
    name: &'static str,
    users: Vec<(&'static str, &'static str, &'static [&'static str])>,
    down: std::sync::atomic::AtomicBool,
    grace: std::time::Duration,
    pub(super) calls: std::sync::atomic::AtomicU64,
}

impl Scripted {
    pub(super) fn new(
        name: &'static str,
        users: &[(&'static str, &'static str, &'static [&'static str])],
        grace: std::time::Duration,
    ) -> Scripted {
        Scripted {
            name,
            users: users.to_vec(),
            down: false.into(),
            grace,
            calls: 0.into(),
        }
    }

    pub(super) fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    pub(super) fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl IdentitySource for Scripted {
    fn name(&self) -> &str {
        self.name
    }

    fn authenticate(&self, credentials: &Credentials) -> Outcome {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Outcome::Unavailable("scripted outage".into());
        }
        match self
            .users
            .iter()
            .find(|(name, _, _)| *name == credentials.username)
        {
            None => Outcome::NotMine,
            Some((name, password, groups)) if *password == credentials.password.expose_secret() => {
                Outcome::Authenticated(Identity::user(
                    name,
                    groups.iter().map(|g| g.to_string()).collect(),
                ))
            }
            Some(_) => Outcome::Rejected,
        }
    }

    fn describe(&self, account: &str) -> Outcome {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Outcome::Unavailable("scripted outage".into());
        }
        match self.users.iter().find(|(name, _, _)| *name == account) {
            Some((name, _, groups)) => Outcome::Authenticated(Identity::user(
                name,
                groups.iter().map(|g| g.to_string()).collect(),
            )),
            None => Outcome::NotMine,
        }
    }

    fn outage_grace(&self) -> std::time::Duration {
        self.grace
    }
}

fn chain(sources: Vec<Arc<dyn IdentitySource>>) -> Sources {
    Sources::new(sources)
}

#[test]
fn sources_are_asked_in_order_and_the_first_that_knows_the_user_decides() {
    let users: Arc<dyn IdentitySource> =
        Arc::new(directory(&[("alice", "s3cret", &["dev"])], None));
    let ldap = Arc::new(Scripted::new(
        "ldap",
        &[("alice", "other", &[]), ("carol", "pw", &["ops"])],
        Duration::ZERO,
    ));
    let sources = Sources::standard(None, users, Some(ldap.clone()));
    assert_eq!(sources.names(), ["users", "ldap"]);

    let alice = sources
        .authenticate(&Credentials::new("alice", "s3cret"))
        .unwrap();
    assert_eq!((alice.subject(), alice.source()), ("alice", "users"));
    assert_eq!(
        ldap.calls(),
        0,
        "a user the first source knows never reaches ldap"
    );
    assert_eq!(
        sources.authenticate(&Credentials::new("alice", "other")),
        Err(Failure::Rejected),
        "a wrong password at the first source that knows the user is final"
    );
    assert_eq!(ldap.calls(), 0);

    let carol = sources
        .authenticate(&Credentials::new("carol", "pw"))
        .unwrap();
    assert_eq!(
        (carol.subject(), carol.source(), carol.groups()),
        ("carol", "ldap", &["ops".to_owned()][..])
    );
    assert_eq!(
        sources.authenticate(&Credentials::new("nobody", "pw")),
        Err(Failure::Rejected),
        "claimed by nobody is a wrong password"
    );
}

#[test]
fn an_unavailable_source_fails_as_unavailable_unless_a_later_source_claims_the_user() {
    let down = Arc::new(Scripted::new("federation", &[], Duration::ZERO));
    down.set_down(true);
    let users: Arc<dyn IdentitySource> = Arc::new(directory(&[("alice", "s3cret", &[])], None));
    let sources = Sources::standard(Some(down.clone()), users, None);
    assert_eq!(
        sources
            .authenticate(&Credentials::new("alice", "s3cret"))
            .unwrap()
            .source(),
        "users"
    );
    assert_eq!(
        sources.authenticate(&Credentials::new("nobody", "x")),
        Err(Failure::Unavailable {
            source: "federation".into()
        })
    );
    assert!(sources.is_down("federation"));
    down.set_down(false);
    let _ = sources.authenticate(&Credentials::new("nobody", "x"));
    assert!(
        !sources.is_down("federation"),
        "an answer marks it up again"
    );
}

#[test]
fn describe_names_the_source_that_knows_an_account() {
    let users: Arc<dyn IdentitySource> =
        Arc::new(directory(&[("alice", "s3cret", &["dev"])], None));
    let ldap = Arc::new(Scripted::new(
        "ldap",
        &[("carol", "pw", &["ops"])],
        Duration::ZERO,
    ));
    let sources = chain(vec![users, ldap.clone()]);
    assert_eq!(
        sources.describe("alice").unwrap().unwrap().source(),
        "users"
    );
    let carol = sources.describe("carol").unwrap().unwrap();
    assert_eq!(
        (carol.source(), carol.groups()),
        ("ldap", &["ops".to_owned()][..])
    );
    assert_eq!(sources.describe("nobody"), Ok(None));
    ldap.set_down(true);
    assert!(sources.describe("carol").unwrap_err().contains("ldap"));
}
