//! LDAP logins per second against a local OpenLDAP `slapd`: every login asking the directory
//! (search, bind, group search) versus logins answered by the login cache.
//!
//! `cargo bench --bench ldap`; needs `slapd` and `slapadd` (`apt-get install -y slapd
//! ldap-utils`) and says so, without measuring, when they are missing. The bench starts its
//! own slapd on a free loopback port with a small seeded directory in a temp dir. Logins per
//! second = 1 / the time per iteration; compare the two figures within one run.

use std::hint::black_box;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use regauth::fs::watch::WatchOptions;
use regauth::identity::{
    Credentials, IdentitySource, LdapSettings, LdapSource, LimitSettings, LoginOptions, Logins,
    Sources, UserDirectory,
};

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

dn: uid=alice,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
userPassword: alice-pw

dn: cn=devs,dc=example,dc=org
objectClass: groupOfNames
cn: devs
member: uid=alice,dc=example,dc=org
";

struct Slapd(Child);

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Seeds and starts slapd in `dir`; its port, or why not.
fn start_slapd(dir: &Path) -> Result<(Slapd, u16), String> {
    for tool in ["/usr/sbin/slapd", "/usr/sbin/slapadd"] {
        if !Path::new(tool).exists() {
            return Err(format!(
                "{tool} not found (apt-get install -y slapd ldap-utils)"
            ));
        }
    }
    let r = dir.display();
    let config = format!(
        "include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         pidfile {r}/slapd.pid\n\
         modulepath /usr/lib/ldap\n\
         moduleload back_mdb\n\
         database mdb\n\
         suffix \"dc=example,dc=org\"\n\
         directory {r}/db\n\
         maxsize 10485760\n\
         access to attrs=userPassword by anonymous auth by * none\n\
         access to * by dn.exact=\"cn=svc,dc=example,dc=org\" read by * none\n"
    );
    let io = |e: std::io::Error| e.to_string();
    std::fs::create_dir_all(dir.join("db")).map_err(io)?;
    std::fs::write(dir.join("slapd.conf"), config).map_err(io)?;
    std::fs::write(dir.join("seed.ldif"), SEED).map_err(io)?;
    std::fs::write(dir.join("svc.pw"), "svc-secret\n").map_err(io)?;
    let seeded = Command::new("/usr/sbin/slapadd")
        .arg("-f")
        .arg(dir.join("slapd.conf"))
        .arg("-l")
        .arg(dir.join("seed.ldif"))
        .output()
        .map_err(io)?;
    if !seeded.status.success() {
        return Err(String::from_utf8_lossy(&seeded.stderr).into_owned());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io)?
        .port();
    let child = Command::new("/usr/sbin/slapd")
        .args(["-h", &format!("ldap://127.0.0.1:{port}/"), "-d", "0", "-f"])
        .arg(dir.join("slapd.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io)?;
    let slapd = Slapd(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("slapd did not start listening".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((slapd, port))
}

fn logins(port: u16, dir: &Path, cache_ttl: Duration) -> Result<Logins, String> {
    let ldap = LdapSource::new(LdapSettings {
        url: format!("ldap://127.0.0.1:{port}"),
        bind_dn: Some("cn=svc,dc=example,dc=org".into()),
        bind_password_file: Some(dir.join("svc.pw")),
        base_dn: "dc=example,dc=org".into(),
        group_filter: Some("(&(objectClass=groupOfNames)(member={dn}))".into()),
        ..LdapSettings::default()
    })
    .map_err(|e| e.to_string())?;
    let users = Arc::new(
        UserDirectory::start(Default::default(), None, WatchOptions::default())
            .map_err(|e| e.to_string())?,
    );
    let users_source: Arc<dyn IdentitySource> = users.clone();
    let sources = Sources::standard(None, users_source, Some(Arc::new(ldap)));
    let options = LoginOptions {
        cache_ttl,
        workers: 1,
        queue: 8,
        limits: LimitSettings {
            failures: 0,
            ..LimitSettings::default()
        },
    };
    Logins::with_sources(users, sources, &options).map_err(|e| e.to_string())
}

fn bench(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let (_slapd, port) = match start_slapd(dir.path()) {
        Ok(started) => started,
        Err(why) => {
            eprintln!("ldap bench skipped: {why}");
            return;
        }
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    for (name, ttl) in [
        ("ldap/uncached login", Duration::ZERO),
        ("ldap/cached login", Duration::from_secs(3600)),
    ] {
        let logins = match logins(port, dir.path(), ttl) {
            Ok(logins) => logins,
            Err(why) => {
                eprintln!("ldap bench skipped: {why}");
                return;
            }
        };
        let login = || {
            runtime
                .block_on(logins.login(Some(Credentials::new("alice", "alice-pw")), None, None))
                .is_ok_and(|who| who.groups() == ["devs"])
        };
        if !login() {
            eprintln!("ldap bench skipped: alice cannot sign in");
            return;
        }
        c.bench_function(name, |b| b.iter(|| black_box(login())));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
