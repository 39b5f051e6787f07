//! The container image (`Dockerfile`, `scripts/build-image.sh`) built and run on this test
//! binary's dockerd: read-only root filesystem, UID 65532, keys on a read-only mount, the
//! registry 2.8 flow through the container's realm, a key replaced on the mount, and the
//! image's own `HEALTHCHECK`.

use std::fs;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regauth::keys::{Algorithm, generate};
use serde_json::Value;

use crate::daemons::{Dockerd, docker_present, dockerd};
use crate::oci;
use crate::registry::{CmdOutput, DENIED_TEXT, free_port, http_request, run_with_input};
use crate::stack::{ISSUER, SERVICE, jwt_header, start_registry, tools_present};

/// The image's user and group.
const NONROOT: u32 = 65532;
/// The size the image must stay within: 22.2 MB with the token store (issue 18), whose
/// SQLite engine is compiled in and whose PostgreSQL driver brings its own TLS client.
const MAX_IMAGE_BYTES: u64 = 24 * 1000 * 1000;
/// A static release build of every dependency on two shared cores takes minutes.
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// Builds the image with the project's script against `daemon`; returns the tag.
fn build_image(daemon: &Dockerd, tag: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-image.sh");
    let started = Instant::now();
    let out = run_with_input(
        &script.to_string_lossy(),
        &[tag],
        &[
            ("DOCKER", crate::daemons::DOCKER),
            ("DOCKER_HOST", &daemon.host),
        ],
        None,
        BUILD_TIMEOUT,
    )
    .expect("build-image.sh runs");
    assert!(out.success, "{out}");
    eprintln!(
        "image: scripts/build-image.sh took {:.1} s (cargo build included)",
        started.elapsed().as_secs_f64()
    );
    out.stdout.trim().to_owned()
}

/// Removes the container (and with it its process) when the test ends, pass or fail.
struct Container<'a> {
    daemon: &'a Dockerd,
    config: PathBuf,
    name: String,
}

impl Container<'_> {
    fn docker(&self, args: &[&str]) -> CmdOutput {
        self.daemon.docker_in(&self.config, args, None)
    }

    fn inspect(&self, format: &str) -> String {
        let out = self.docker(&["inspect", "--format", format, &self.name]);
        assert!(out.success, "{out}");
        out.stdout.trim().to_owned()
    }

    fn logs(&self) -> String {
        let out = self.docker(&["logs", &self.name]);
        format!("--- container log ---\n{}{}", out.stdout, out.stderr)
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.docker(&["rm", "--force", &self.name]);
    }
}

/// A token for `scope` straight from the container; its `kid`.
fn token_kid(addr: std::net::SocketAddr, scope: &str) -> Result<String, String> {
    let response = http_request(
        addr,
        "GET",
        &format!("/token?service={SERVICE}&scope={scope}"),
        &[],
        Duration::from_secs(5),
    )?;
    if response.status != 200 {
        return Err(format!("{} {}", response.status, response.body_text()));
    }
    let body: Value = serde_json::from_slice(&response.body).map_err(|e| e.to_string())?;
    let token = body["token"].as_str().ok_or("no token")?;
    Ok(jwt_header(token)["kid"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

fn chown_nonroot(path: &Path) {
    chown(path, Some(NONROOT), Some(NONROOT)).unwrap();
}

#[test]
fn the_image_runs_read_only_as_nonroot_serves_the_registry_flow_and_follows_a_replaced_key() {
    if !tools_present(&["skopeo"]) || !docker_present() {
        return;
    }
    let at = Instant::now();
    let daemon = dockerd();
    let tag = format!("regauth-e2e:{}", std::process::id());
    let image = build_image(daemon, &tag);
    assert_eq!(image, tag);
    let client_config = tempfile::tempdir().unwrap();
    let docker = |args: &[&str]| daemon.docker_in(client_config.path(), args, None);

    // What the image is: small, non-root, a health check, `regauth serve`.
    let inspect = docker(&["image", "inspect", &tag]);
    assert!(inspect.success, "{inspect}");
    let meta: Value = serde_json::from_str(&inspect.stdout).unwrap();
    let meta = &meta[0];
    let size = meta["Size"].as_u64().unwrap();
    eprintln!("image: {tag} is {size} bytes");
    assert!(size <= MAX_IMAGE_BYTES, "the image is {size} bytes");
    assert_eq!(meta["Config"]["User"], "65532:65532");
    assert_eq!(
        meta["Config"]["Entrypoint"],
        serde_json::json!(["/regauth", "serve"])
    );
    assert_eq!(
        meta["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/regauth", "probe"])
    );
    assert_eq!(
        meta["RootFS"]["Layers"].as_array().unwrap().len(),
        2,
        "one layer for the binary, one for the settings file: nothing else"
    );

    // The key directory, read-only in the container and owned by its user; the next key
    // waits beside it (same filesystem, so the swap is an atomic rename).
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let current = generate::write(&keys, Algorithm::ES256, false).unwrap();
    let next = generate::write(&dir.path().join("next"), Algorithm::ES256, false).unwrap();
    for path in [&keys, &current.key, &next.key] {
        chown_nonroot(path);
    }
    let (old_kid, new_kid) = (
        current.libtrust_kid.clone().unwrap(),
        next.libtrust_kid.clone().unwrap(),
    );
    // The registry trusts both certificates from its start.
    let bundle = dir.path().join("bundle.pem");
    fs::write(
        &bundle,
        fs::read_to_string(current.certificate.as_ref().unwrap()).unwrap()
            + &fs::read_to_string(next.certificate.as_ref().unwrap()).unwrap(),
    )
    .unwrap();
    // A settings file of our own, mounted over the image's empty one.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let settings = dir.path().join("regauth.yaml");
    fs::write(
        &settings,
        format!(
            "token:\n  issuer: {ISSUER}\n  services: [{SERVICE}]\n\
             users:\n  alice: {{password: '{hash}'}}\n\
             acl:\n  - match: {{account: alice, name: 'alice/**'}}\n    actions: ['*']\n  \
             - match: {{account: ''}}\n    actions: [pull]\n"
        ),
    )
    .unwrap();

    // Host networking on a free loopback port (the image's 0.0.0.0:5001 may be taken here).
    let port = free_port().unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let listen = format!("REGAUTH_SERVER__LISTEN={addr}");
    let key_mount = format!("{}:/etc/regauth/keys:ro", keys.display());
    let settings_mount = format!("{}:/etc/regauth/regauth.yaml:ro", settings.display());
    let container = Container {
        daemon,
        config: client_config.path().to_path_buf(),
        name: format!("regauth-e2e-{}", std::process::id()),
    };
    let _ = docker(&["rm", "--force", &container.name]);
    let run = docker(&[
        "run",
        "--detach",
        "--name",
        &container.name,
        "--network",
        "host",
        "--read-only",
        // The image's own user, spelled out: `--user 65532` alone would run with group 0
        // (no /etc/passwd in the image to name a primary group).
        "--user",
        "65532:65532",
        "--volume",
        &key_mount,
        "--volume",
        &settings_mount,
        "--env",
        &listen,
        // The image's own check command, run every second instead of every ten.
        "--health-interval",
        "1s",
        &tag,
    ]);
    assert!(run.success, "{run}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_request(addr, "GET", "/healthz", &[], Duration::from_secs(1))
        .map(|r| r.status)
        .ok()
        != Some(200)
    {
        assert!(
            Instant::now() < deadline,
            "the container never answered /healthz\n{}",
            container.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Not root: the container's process, as the host's kernel sees it.
    let pid = container.inspect("{{.State.Pid}}");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for field in ["Uid:", "Gid:"] {
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        let ids: Vec<&str> = line.split_whitespace().skip(1).collect();
        assert_eq!(ids, ["65532"; 4], "{line}");
    }
    assert_eq!(container.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");

    // The registry 2.8 flow with the container as its realm: alice pushes with skopeo, an
    // anonymous pull reads it back, a push elsewhere is denied.
    let registry = start_registry(addr, &dir.path().join("registry"), bundle);
    let clients = crate::registry::Clients::new(&dir.path().join("clients")).unwrap();
    let image = oci::write_image(&dir.path().join("img"), "v1", "image-test").unwrap();
    let push = |repo: &str| {
        clients
            .skopeo(&[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                "alice:s3cret",
                &image.skopeo_ref(),
                &registry.docker_ref(repo, "v1"),
            ])
            .unwrap()
    };
    let pushed = push("alice/app");
    assert!(
        pushed.success,
        "{pushed}\n{}\n{}",
        container.logs(),
        registry.log()
    );
    let inspect_digest = || {
        let out = clients
            .skopeo(&[
                "inspect",
                "--tls-verify=false",
                &registry.docker_ref("alice/app", "v1"),
            ])
            .unwrap();
        assert!(out.success, "{out}\n{}", container.logs());
        let json: Value = serde_json::from_str(&out.stdout).unwrap();
        json["Digest"].as_str().unwrap().to_owned()
    };
    assert_eq!(inspect_digest(), image.manifest_digest);
    let denied = push("team/app");
    assert!(
        !denied.success && denied.stderr.contains(DENIED_TEXT),
        "{denied}"
    );
    assert_eq!(
        token_kid(addr, "repository:alice/app:pull").unwrap(),
        old_kid
    );

    // Replace the key on the host; the read-only mount shows the new file, and regauth
    // signs with it without a restart.
    fs::rename(&next.key, keys.join("signing.key")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let kid = token_kid(addr, "repository:alice/app:pull").unwrap();
        if kid == new_kid {
            break;
        }
        assert_eq!(kid, old_kid);
        assert!(
            Instant::now() < deadline,
            "still the old kid 30 s after the swap\n{}",
            container.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The registry trusts the new key's tokens too.
    assert_eq!(inspect_digest(), image.manifest_digest);

    // The image's HEALTHCHECK (`regauth probe`, no shell, no curl) reports healthy.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = container.inspect("{{.State.Health.Status}}");
        if health == "healthy" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health {health:?}: {}\n{}",
            container.inspect("{{json .State.Health}}"),
            container.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(container.inspect("{{.State.Running}}"), "true");

    // Without a key on the read-only mount the container stops at once and says which file
    // is missing; it never generates one. (No --user: the image's default applies.)
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    chown_nonroot(&empty);
    let empty_mount = format!("{}:/etc/regauth/keys:ro", empty.display());
    let other_port = format!("REGAUTH_SERVER__LISTEN=127.0.0.1:{}", free_port().unwrap());
    let keyless = docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        "--read-only",
        "--volume",
        &empty_mount,
        "--env",
        &other_port,
        &tag,
    ]);
    assert!(!keyless.success, "{keyless}");
    assert!(
        keyless.stderr.contains("/etc/regauth/keys/signing.key"),
        "{keyless}"
    );
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);

    drop(container);
    let _ = docker(&["image", "rm", &tag]);
    eprintln!(
        "image: the whole test took {:.1} s",
        at.elapsed().as_secs_f64()
    );
}
