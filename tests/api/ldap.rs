//! The `ldap` identity source against a real OpenLDAP `slapd`, which each test starts on a
//! loopback port with a seeded directory (users, groups, a service account) in a temp dir.
//! The directory runs OpenLDAP's `memberof` overlay, which keeps each user's `memberOf` in
//! step with `groupOfNames` changes made through the running server (not with `slapadd`).
//!
//! Without `slapd`/`slapadd` on the machine these tests are skipped with a message, except
//! under CI (`CI` set), where that is a failure: `.ci/run` installs them.

use std::collections::HashSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use regauth::config::Settings;
use regauth::identity::LdapSettings;
use regauth::policy::RuleSettings;
use serde_json::Value;

use crate::helpers::{TestApp, claims, spawn_app_with, user};
use crate::support::{free_port, key_dir, write_config};
use crate::support::{skip_or_fail, wait_for, wait_for_async};

pub const BASE: &str = "dc=example,dc=org";
const SERVICE_DN: &str = "cn=svc,dc=example,dc=org";
const SERVICE_PASSWORD: &str = "svc-secret";
const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";

/// True when slapd can run here; otherwise skips (or, under CI, fails) the test.
fn require_slapd() -> bool {
    if Path::new(SLAPD).exists() && Path::new(SLAPADD).exists() {
        return true;
    }
    skip_or_fail("ldap: slapd/slapadd not found (Debian: apt-get install -y slapd ldap-utils)")
}

const SEED: &str = "\
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: cn=svc,dc=example,dc=org
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: svc
userPassword: svc-secret

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
mail: alice@example.org
userPassword: alice-pw

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: B
mail: shared@example.org
userPassword: bob-pw

dn: uid=carol,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: C
mail: shared@example.org
userPassword: carol-pw

dn: cn=devs,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: devs
member: uid=alice,ou=people,dc=example,dc=org

dn: cn=ops,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: ops
member: uid=bob,ou=people,dc=example,dc=org
";

/// A slapd of the test's own: config, database and TLS files in a temp dir.
pub struct Slapd {
    dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: u16,
    /// The PEM of the CA that signed the server's certificate (for 127.0.0.1).
    pub ca_pem: String,
    child: Option<Child>,
}

impl Slapd {
    /// Seeds and starts a directory; `None` when slapd is not installed (outside CI).
    pub fn start() -> Option<Slapd> {
        if !require_slapd() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("db")).unwrap();
        let ca = crate::support::new_ca("regauth test LDAP CA");
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let leaf = params.signed_by(&leaf_key, &ca).unwrap();
        let ca_pem = ca.pem();
        std::fs::write(root.join("ca.pem"), &ca_pem).unwrap();
        std::fs::write(root.join("server.pem"), leaf.pem()).unwrap();
        std::fs::write(root.join("server.key"), leaf_key.serialize_pem()).unwrap();
        let r = root.display();
        let config = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             pidfile {r}/slapd.pid\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             moduleload memberof\n\
             TLSCACertificateFile {r}/ca.pem\n\
             TLSCertificateFile {r}/server.pem\n\
             TLSCertificateKeyFile {r}/server.key\n\
             database mdb\n\
             suffix \"{BASE}\"\n\
             rootdn \"cn=admin,{BASE}\"\n\
             rootpw admin-secret\n\
             directory {r}/db\n\
             maxsize 10485760\n\
             overlay memberof\n\
             access to attrs=userPassword by anonymous auth by * none\n\
             access to * by dn.exact=\"{SERVICE_DN}\" read by self read by * none\n"
        );
        std::fs::write(root.join("slapd.conf"), config).unwrap();
        std::fs::write(root.join("seed.ldif"), SEED).unwrap();
        let seeded = Command::new(SLAPADD)
            .arg("-f")
            .arg(root.join("slapd.conf"))
            .arg("-l")
            .arg(root.join("seed.ldif"))
            .output()
            .unwrap();
        assert!(
            seeded.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&seeded.stderr)
        );
        let mut slapd = Slapd {
            dir,
            port: free_port(),
            tls_port: free_port(),
            ca_pem,
            child: None,
        };
        slapd.run();
        Some(slapd)
    }

    /// Starts slapd (again) on the same ports and waits until it accepts connections.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "slapd is running");
        let urls = format!(
            "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
            self.port, self.tls_port
        );
        // `-d 256` (stats): one line per operation, appended to `slapd.log` (see
        // [`Slapd::searches`]).
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("slapd.log"))
            .unwrap();
        let child = Command::new(SLAPD)
            .args(["-h", &urls, "-d", "256", "-f"])
            .arg(self.dir.path().join("slapd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        let child = self.child.as_mut().unwrap();
        wait_for(
            Duration::from_secs(20),
            || {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("slapd exited with {status}");
                }
                TcpStream::connect(("127.0.0.1", port)).ok()
            },
            || "slapd did not start listening".into(),
        );
    }

    /// Stops slapd; the directory's data stays for [`Slapd::run`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// Searches the directory has run so far with exactly `filter` (from its stats log).
    pub fn searches(&self, filter: &str) -> usize {
        let needle = format!(" filter=\"{filter}\"");
        std::fs::read_to_string(self.path("slapd.log"))
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(" SRCH base=") && line.contains(&needle))
            .count()
    }

    /// Adds `member` to the group `cn={group}` through the running slapd, as the rootdn, so
    /// the `memberof` overlay sees the change. (On a thread of its own: the blocking client
    /// starts a runtime, which it cannot do inside the test's.)
    pub fn add_member(&self, group: &str, member: &str) {
        self.modify_members(group, ldap3::Mod::Add("member", HashSet::from([member])));
    }

    /// Removes `member` from the group `cn={group}`, as [`Slapd::add_member`] adds one.
    pub fn remove_member(&self, group: &str, member: &str) {
        self.modify_members(group, ldap3::Mod::Delete("member", HashSet::from([member])));
    }

    fn modify_members(&self, group: &str, change: ldap3::Mod<&str>) {
        let url = self.url();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut admin = ldap3::LdapConn::new(&url).unwrap();
                admin
                    .simple_bind(&format!("cn=admin,{BASE}"), "admin-secret")
                    .unwrap()
                    .success()
                    .unwrap();
                admin
                    .modify(&format!("cn={group},ou=groups,{BASE}"), vec![change])
                    .unwrap()
                    .success()
                    .unwrap();
                admin.unbind().unwrap();
            });
        });
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Settings for this directory: the service account, users under `ou=people`, groups
    /// by `(member={dn})`.
    pub fn settings(&self) -> LdapSettings {
        let password_file = self.path("bind.password");
        std::fs::write(&password_file, format!("{SERVICE_PASSWORD}\n")).unwrap();
        LdapSettings {
            url: self.url(),
            bind_dn: Some(SERVICE_DN.into()),
            bind_password_file: Some(password_file),
            base_dn: format!("ou=people,{BASE}"),
            group_filter: Some("(&(objectClass=groupOfNames)(member={dn}))".into()),
            group_base_dn: Some(format!("ou=groups,{BASE}")),
            timeout_seconds: 2,
            pool_size: 2,
            ..LdapSettings::default()
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An app signing in against `ldap`, with a rule that gives group `devs` push on `team/*`.
pub async fn app(ldap: LdapSettings, customize: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.token.services = vec!["registry.test".into()];
        s.ldap = Some(ldap);
        s.acl = Some(vec![
            RuleSettings::new(
                |m| {
                    m.group = Some("devs".into());
                    m.name = Some("team/*".into());
                },
                &["pull", "push"],
            ),
            RuleSettings::new(|m| m.account = Some("/.+/".into()), &["pull"]),
        ]);
        customize(s);
    })
    .await
}

async fn token_as(app: &TestApp, user: &str, password: &str) -> reqwest::Response {
    app.client
        .get(format!(
            "{}/token?service=registry.test&scope=repository:team/app:pull,push",
            app.address
        ))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
}

/// The status, and the granted actions or the error code.
async fn outcome(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    if status == 200 {
        let token = body["token"].as_str().unwrap();
        let c = claims(token);
        let actions = c["access"][0]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(",");
        (200, format!("{} {actions}", c["sub"].as_str().unwrap()))
    } else {
        (
            status,
            body["errors"][0]["code"].as_str().unwrap().to_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_users_sign_in_and_their_groups_drive_the_rules() {
    let Some(slapd) = Slapd::start() else { return };
    let app = app(slapd.settings(), |s| {
        s.auth.cache_seconds = 0;
        s.audit.enabled = true;
        s.audit.output = s.key.path.with_file_name("audit.log").display().to_string();
    })
    .await;
    assert_eq!(
        outcome(token_as(&app, "alice", "alice-pw").await).await,
        (200, "alice pull,push".into()),
        "alice is in devs: push on team/*"
    );
    let audit = crate::audit::wait_for_lines(&app.dir.path().join("audit.log"), 1);
    assert_eq!(
        (&audit[0]["account"], &audit[0]["source"]),
        (&Value::from("alice"), &Value::from("ldap")),
        "the audit log names the source"
    );
    assert_eq!(
        outcome(token_as(&app, "bob", "bob-pw").await).await,
        (200, "bob pull".into()),
        "bob is in ops only"
    );
    assert_eq!(
        outcome(token_as(&app, "ALICE", "alice-pw").await).await,
        (200, "alice pull,push".into()),
        "the account is the directory's spelling of the name"
    );
    // Refresh tokens are bound to a password hash regauth holds: none for directory users.
    let offline: Value = app
        .client
        .get(format!(
            "{}/token?service=registry.test&offline_token=true",
            app.address
        ))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(offline["token"].is_string(), "{offline}");
    assert!(offline.get("refresh_token").is_none(), "{offline}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_read_from_the_memberof_attribute_drive_the_rules() {
    let Some(slapd) = Slapd::start() else { return };
    // Through the running server, so the overlay writes carol's `memberOf`. alice's devs
    // membership was seeded with slapadd, which bypasses the overlay: she has no `memberOf`.
    slapd.add_member("devs", &format!("uid=carol,ou=people,{BASE}"));
    let settings = LdapSettings {
        group_filter: None,
        group_base_dn: None,
        groups_attribute: Some("memberOf".into()),
        ..slapd.settings()
    };
    let app = app(settings, |s| s.auth.cache_seconds = 0).await;
    assert_eq!(
        outcome(token_as(&app, "carol", "carol-pw").await).await,
        (200, "carol pull,push".into()),
        "carol's memberOf names cn=devs: push on team/*"
    );
    assert_eq!(
        outcome(token_as(&app, "bob", "bob-pw").await).await,
        (200, "bob pull".into()),
        "bob is not in devs"
    );
    assert_eq!(
        outcome(token_as(&app, "alice", "alice-pw").await).await,
        (200, "alice pull".into()),
        "groups come from memberOf, not from a group search: alice has none"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_unknown_users_empty_passwords_and_filter_injection_are_refused() {
    let Some(slapd) = Slapd::start() else { return };
    let app = app(slapd.settings(), |s| {
        s.auth.cache_seconds = 0;
        s.auth.limits.failures = 0;
    })
    .await;
    for (user, password) in [
        ("alice", "wrong"),
        ("nobody", "alice-pw"),
        ("alice", ""),
        ("*)(uid=*", "alice-pw"),
        ("*", "alice-pw"),
        ("alice)(uid=*", "alice-pw"),
    ] {
        let response = token_as(&app, user, password).await;
        assert_eq!(
            response.headers().get("www-authenticate").unwrap(),
            "Basic realm=\"regauth\""
        );
        assert_eq!(
            outcome(response).await,
            (401, "UNAUTHORIZED".into()),
            "{user:?} / {password:?}"
        );
    }
    assert_eq!(app.logins.stats().unavailable, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_filter_matching_more_than_one_entry_is_refused() {
    let Some(slapd) = Slapd::start() else { return };
    let settings = LdapSettings {
        user_filter: "(mail={username})".into(),
        ..slapd.settings()
    };
    let app = app(settings, |s| s.auth.cache_seconds = 0).await;
    assert_eq!(
        outcome(token_as(&app, "alice@example.org", "alice-pw").await).await,
        (200, "alice@example.org pull,push".into())
    );
    // bob and carol share this address: whichever password, nobody signs in.
    assert_eq!(
        outcome(token_as(&app, "shared@example.org", "bob-pw").await).await,
        (401, "UNAUTHORIZED".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_tls_and_ldaps_verify_the_directory_against_the_configured_ca() {
    let Some(slapd) = Slapd::start() else { return };
    let ca = slapd.path("ca.pem");
    std::fs::write(&ca, &slapd.ca_pem).unwrap();
    let start_tls = LdapSettings {
        start_tls: true,
        ca_file: Some(ca.clone()),
        ..slapd.settings()
    };
    let app1 = app(start_tls, |s| s.auth.cache_seconds = 0).await;
    assert_eq!(
        outcome(token_as(&app1, "alice", "alice-pw").await).await,
        (200, "alice pull,push".into())
    );
    let ldaps = LdapSettings {
        url: slapd.ldaps_url(),
        ca_file: Some(ca),
        ..slapd.settings()
    };
    let app2 = app(ldaps, |s| s.auth.cache_seconds = 0).await;
    assert_eq!(
        outcome(token_as(&app2, "alice", "alice-pw").await).await,
        (200, "alice pull,push".into())
    );
    assert_eq!(
        outcome(token_as(&app2, "alice", "wrong").await).await,
        (401, "UNAUTHORIZED".into())
    );

    // A directory whose certificate another CA signed is not trusted: unavailable.
    let other = slapd.path("other-ca.pem");
    std::fs::write(&other, crate::support::new_ca("someone else").pem()).unwrap();
    let untrusted = LdapSettings {
        url: slapd.ldaps_url(),
        ca_file: Some(other),
        ..slapd.settings()
    };
    let app3 = app(untrusted, |s| s.auth.cache_seconds = 0).await;
    assert_eq!(
        outcome(token_as(&app3, "alice", "alice-pw").await).await,
        (503, "UNAVAILABLE".into())
    );
}

/// Polls `login` until it answers `expected`, within 20 s, every 100 ms as before: each try
/// is a sign-in, and a refused one counts against the brute-force limits.
async fn eventually(app: &TestApp, user: &str, password: &str, expected: u16) {
    let last = std::cell::Cell::new(0);
    wait_for_async(
        Duration::from_secs(20),
        Duration::from_millis(100),
        async || {
            last.set(token_as(app, user, password).await.status().as_u16());
            (last.get() == expected).then_some(())
        },
        || format!("still {}, expected {expected}", last.get()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_outage_is_503_without_lockouts_and_logins_recover_when_it_returns() {
    let Some(mut slapd) = Slapd::start() else {
        return;
    };
    let app = app(slapd.settings(), |s| {
        s.auth.cache_seconds = 0;
        s.auth.limits.failures = 2;
    })
    .await;
    assert_eq!(token_as(&app, "alice", "alice-pw").await.status(), 200);

    slapd.stop();
    for _ in 0..4 {
        assert_unavailable(token_as(&app, "alice", "alice-pw").await).await;
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("regauth_auth_failures_total{reason=\"source_unavailable\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("regauth_identity_source_unavailable_total 4"),
        "{metrics}"
    );

    slapd.run();
    // Four 503s with failures: 2 would have locked alice out if they counted.
    eventually(&app, "alice", "alice-pw", 200).await;
    assert_eq!(app.logins.stats().limited, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_logins_keep_working_for_the_grace_period_during_an_outage() {
    let Some(mut slapd) = Slapd::start() else {
        return;
    };
    let grace = LdapSettings {
        outage_grace_seconds: 300,
        ..slapd.settings()
    };
    let app = app(grace, |s| s.auth.cache_seconds = 1).await;
    assert_eq!(
        outcome(token_as(&app, "alice", "alice-pw").await).await,
        (200, "alice pull,push".into())
    );
    slapd.stop();
    // Let the cache entry expire: only the grace can answer now.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        outcome(token_as(&app, "alice", "alice-pw").await).await,
        (200, "alice pull,push".into()),
        "alice signed in before the outage"
    );
    assert_eq!(
        outcome(token_as(&app, "bob", "bob-pw").await).await,
        (503, "UNAVAILABLE".into()),
        "bob did not"
    );
    assert_eq!(
        outcome(token_as(&app, "alice", "wrong").await).await,
        (503, "UNAVAILABLE".into()),
        "another password is not in the cache"
    );
    assert!(app.logins.stats().stale_answers >= 1);

    // Without a grace, the same expired login is refused during the outage.
    slapd.run();
    let no_grace = app_with_cache(&slapd, 1).await;
    assert_eq!(token_as(&no_grace, "alice", "alice-pw").await.status(), 200);
    slapd.stop();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(token_as(&no_grace, "alice", "alice-pw").await.status(), 503);
}

async fn app_with_cache(slapd: &Slapd, seconds: u64) -> TestApp {
    app(slapd.settings(), |s| s.auth.cache_seconds = seconds).await
}

#[test]
fn check_validates_the_ldap_settings_and_explain_names_the_source() {
    let Some(slapd) = Slapd::start() else { return };
    let dir = key_dir();
    std::fs::write(dir.path().join("svc.pw"), SERVICE_PASSWORD).unwrap();
    let yaml = |extra: &str| {
        format!(
            "ldap:\n  url: {}\n  bind_dn: '{SERVICE_DN}'\n  bind_password_file: svc.pw\n  \
             base_dn: 'ou=people,{BASE}'\n  group_filter: '(member={{dn}})'\n  \
             group_base_dn: 'ou=groups,{BASE}'\n{extra}\
             acl:\n  - match: {{group: devs}}\n    actions: [pull, push]\n",
            slapd.url()
        )
    };
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_regauth"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    write_config(dir.path(), yaml("")).unwrap();
    let (ok, stdout, stderr) = run(&["check", "--config", "regauth.yaml"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("service account bind works"), "{stdout}");

    let (ok, stdout, stderr) = run(&[
        "explain",
        "--config",
        "regauth.yaml",
        "--account",
        "alice",
        "--scope",
        "repository:team/app:pull,push",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("account \"alice\" (source: ldap, groups: [devs])"),
        "{stdout}"
    );
    assert!(stdout.contains("granted: [pull,push]"), "{stdout}");

    for (extra, expected) in [
        ("  user_filter: '(uid=alice)'\n", "ldap.user_filter"),
        ("  url: 'http://127.0.0.1'\n", "ldap.url"),
    ] {
        // A second `url` key would be a YAML duplicate: replace the first.
        let text = if extra.contains("url:") {
            yaml("").replace(&format!("url: {}", slapd.url()), extra.trim())
        } else {
            yaml(extra)
        };
        write_config(dir.path(), text).unwrap();
        let (ok, _, stderr) = run(&["check", "--config", "regauth.yaml"]);
        assert!(!ok);
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    write_config(dir.path(), yaml("")).unwrap();
    std::fs::remove_file(dir.path().join("svc.pw")).unwrap();
    let (ok, _, stderr) = run(&["check", "--config", "regauth.yaml"]);
    assert!(!ok);
    assert!(stderr.contains("ldap.bind_password_file"), "{stderr}");
    std::fs::write(dir.path().join("svc.pw"), "not-the-password").unwrap();
    let (ok, _, stderr) = run(&["check", "--config", "regauth.yaml"]);
    assert!(!ok);
    assert!(
        stderr.contains("service account bind was refused"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_accepts_but_never_answers_times_out_as_unavailable() {
    // The kernel accepts the connection into the backlog; nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let settings = LdapSettings {
        url: format!("ldap://127.0.0.1:{port}"),
        base_dn: BASE.into(),
        timeout_seconds: 1,
        ..LdapSettings::default()
    };
    let app = app(settings, |s| s.auth.cache_seconds = 0).await;
    // Without the directory timeout this request would wait forever.
    assert_eq!(
        outcome(token_as(&app, "alice", "alice-pw").await).await,
        (503, "UNAVAILABLE".into())
    );
    assert_eq!(app.logins.stats().unavailable, 1);
    drop(silent);
}

// LDAP's caseIgnoreMatch takes `ALICE`, ` alice` and `Alice ` for alice: the brute-force
// limits count them against one account, so the variants give no fresh guesses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_variants_of_a_directory_user_share_one_budget_and_lock_out_together() {
    let Some(slapd) = Slapd::start() else { return };
    let app = app(slapd.settings(), |s| {
        s.auth.cache_seconds = 0;
        s.auth.limits.failures = 3;
        s.auth.limits.backoff_seconds = 60;
    })
    .await;
    // The directory signs the variants in as alice, in its own spelling.
    for variant in ["ALICE", " alice", "Alice "] {
        assert_eq!(
            outcome(token_as(&app, variant, "alice-pw").await).await,
            (200, "alice pull,push".into()),
            "{variant:?}"
        );
    }
    for variant in ["ALICE", " alice", "Alice "] {
        assert_eq!(
            outcome(token_as(&app, variant, "wrong").await).await,
            (401, "UNAUTHORIZED".into()),
            "{variant:?}"
        );
    }
    for variant in ["alice", "aLiCe", "  alice  "] {
        let response = token_as(&app, variant, "alice-pw").await;
        assert!(
            response.headers().contains_key("retry-after"),
            "{variant:?}"
        );
        assert_eq!(response.status(), 429, "{variant:?} is locked out too");
    }
    assert_eq!(
        outcome(token_as(&app, "bob", "bob-pw").await).await,
        (200, "bob pull".into()),
        "another account is not"
    );
}

/// A listener that accepts connections and never answers, counting them; it stops
/// accepting after 60 s.
pub fn silent_directory() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            match listener.accept() {
                Ok((stream, _)) => {
                    held.push(stream);
                    count.fetch_add(1, Ordering::SeqCst);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (port, accepted)
}

// L2: a directory that accepts and never answers holds only its own check slots; local
// users keep signing in while every directory login is stuck, and those end as 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_directory_never_holds_up_local_users() {
    let (port, accepted) = silent_directory();
    let settings = LdapSettings {
        url: format!("ldap://127.0.0.1:{port}"),
        base_dn: BASE.into(),
        timeout_seconds: 5,
        pool_size: 1,
        ..LdapSettings::default()
    };
    let app = app(settings, |s| {
        s.auth.cache_seconds = 0;
        // One worker for bcrypt; room to queue every login of this test.
        s.auth.check_workers = 1;
        s.auth.check_queue = 8;
        s.users.insert("dora".into(), user("dora-pw", &[]));
    })
    .await;
    let directory_logins: Vec<_> = (0..3)
        .map(|_| {
            let client = app.client.clone();
            let url = format!(
                "{}/token?service=registry.test&scope=repository:team/app:pull",
                app.address
            );
            tokio::spawn(async move {
                let response = client
                    .get(url)
                    .basic_auth("carol", Some("carol-pw"))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap();
                (status, body["errors"][0]["code"].clone())
            })
        })
        .collect();
    wait_for_async(
        Duration::from_secs(10),
        Duration::from_millis(10),
        async || (accepted.load(Ordering::SeqCst) > 0).then_some(()),
        || "no directory login connected".into(),
    )
    .await;
    // A directory login holds the directory's only slot, the others wait for it: the
    // local user still gets a worker.
    assert_eq!(
        outcome(token_as(&app, "dora", "dora-pw").await).await,
        (200, "dora pull".into())
    );
    assert!(
        directory_logins.iter().all(|t| !t.is_finished()),
        "the local login was answered while every directory login was still stuck"
    );
    for login in directory_logins {
        assert_eq!(login.await.unwrap(), (503, Value::from("UNAVAILABLE")));
    }
    assert_eq!(app.logins.stats().unavailable, 3);
    assert_eq!(
        app.logins.stats().limited,
        0,
        "an unavailable directory is never a failed login"
    );
}

/// `regauth check` on a config with `ldap` settings `ldap_yaml` (indented under `ldap:`)
/// and `env`; (success, stdout, stderr).
fn check_with(ldap_yaml: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = key_dir();
    write_config(
        dir.path(),
        format!("key:\n  path: keys/signing.key\nldap:\n  base_dn: '{BASE}'\n{ldap_yaml}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_regauth"))
        .args(["check", "--config", "regauth.yaml"])
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// M4: passwords in clear to a remote directory are refused at load, unless the operator
// says so (then check warns; `serve` too, see serve_log.rs).
#[test]
fn plaintext_ldap_to_a_host_that_is_not_loopback_is_refused_unless_allowed() {
    // Refused at load: nothing is resolved or connected.
    let (ok, _, stderr) = check_with("  url: ldap://directory.example:389\n", &[]);
    assert!(!ok);
    for hint in ["ldap.start_tls", "ldaps://", "ldap.allow_plaintext"] {
        assert!(stderr.contains(hint), "{hint}: {stderr}");
    }
    // Loopback needs no TLS.
    for url in ["ldap://127.0.0.1:9", "ldap://localhost:9", "ldap://[::1]:9"] {
        let (_, _, stderr) = check_with(&format!("  url: {url}\n"), &[]);
        assert!(!stderr.contains("allow_plaintext"), "{url}: {stderr}");
    }
    // Allowed: the probe goes to 0.0.0.0 (this host, on a closed port), with a warning.
    let closed = free_port();
    let (ok, stdout, stderr) = check_with(
        &format!("  url: ldap://0.0.0.0:{closed}\n  allow_plaintext: true\n  timeout_seconds: 2\n"),
        &[],
    );
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("warning: ldap: ldap.allow_plaintext is set"),
        "{stdout}"
    );
}

// The FROM scratch image has no system trust roots: TLS without ldap.ca_file is a start
// error naming the setting, not a handshake failure at every login.
#[test]
fn tls_without_ca_file_and_without_system_roots_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let no_roots = [
        ("SSL_CERT_FILE", empty.to_str().unwrap()),
        ("SSL_CERT_DIR", empty.to_str().unwrap()),
    ];
    for tls in [
        "  url: ldaps://127.0.0.1:9\n",
        "  url: ldap://127.0.0.1:9\n  start_tls: true\n",
    ] {
        let (ok, _, stderr) = check_with(tls, &no_roots);
        assert!(!ok, "{tls}");
        assert!(
            stderr.contains("no trust roots") && stderr.contains("ldap.ca_file"),
            "{tls}: {stderr}"
        );
    }
}

/// A sign-in refused because the directory is down: 503 with `Retry-After: 5` and an
/// `UNAVAILABLE` body that names no directory detail (address, error text).
pub async fn assert_unavailable(response: reqwest::Response) {
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers().get("retry-after").unwrap(), "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no directory detail in the body: {body}"
    );
}
