//! dockerd and containerd from Debian's packages (`docker.io`, `containerd`), each started by
//! the scenario that uses it, in that scenario's temporary directory, and stopped (SIGTERM,
//! then SIGKILL after a deadline) when it is dropped.
//!
//! Why one daemon per scenario and not one per test binary: measured here, dockerd answers
//! `docker version` 0.4 s after it is spawned and containerd 0.1 s, a small price next to a
//! scenario's pulls and pushes. A daemon held in a `static` is never dropped, so a shared one
//! would outlive the test binary; per scenario, `Drop` stops it, scenarios cannot see each
//! other's images or credentials, and the daemon's log belongs to one scenario.
//!
//! Both daemons run as root (CI runs as root); no systemd, no iptables, no bridge, and the
//! vfs/native storage that works inside a container. dockerd starts its own containerd
//! below its `--exec-root`, so a docker scenario does not need the containerd daemon.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::registry::{CmdOutput, TOOL_TIMEOUT, require_tool, run_with_input};

/// Debian's paths: another `docker` may come first on `PATH`.
pub const DOCKER: &str = "/usr/bin/docker";
pub const DOCKERD: &str = "/usr/sbin/dockerd";
pub const CONTAINERD: &str = "containerd";
pub const CTR: &str = "ctr";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// True when docker's client and daemon are installed (fails under CI otherwise).
pub fn docker_present() -> bool {
    require_tool(DOCKERD) && require_tool(DOCKER)
}

/// True when containerd and ctr are installed (fails under CI otherwise).
pub fn containerd_present() -> bool {
    require_tool(CONTAINERD) && require_tool(CTR)
}

/// A daemon process, stopped on drop.
struct Daemon {
    child: Child,
    name: &'static str,
    log_path: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, program: &str, args: &[String], log_path: PathBuf) -> Daemon {
        let log = fs::File::create(&log_path).expect("daemon log");
        let log2 = log.try_clone().expect("dup log");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        Daemon {
            child,
            name,
            log_path,
        }
    }

    /// Polls `ready` until it is true, the daemon exits, or the deadline passes.
    fn wait_ready(&mut self, ready: impl Fn() -> bool) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited at start ({status}):\n{}", self.name, self.log());
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready within {START_TIMEOUT:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            thread::sleep(POLL);
        }
    }

    fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop the containerd it started; SIGKILL would orphan it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A dockerd of one scenario, and its clients' configuration directory.
pub struct Dockerd {
    daemon: Daemon,
    pub dir: PathBuf,
    pub host: String,
}

impl Dockerd {
    /// Starts dockerd in `dir` (created). Plain HTTP is allowed for every loopback
    /// registry (`--insecure-registry 127.0.0.0/8`: the registry's port is chosen later).
    pub fn start(dir: &Path) -> Dockerd {
        fs::create_dir_all(dir).expect("docker dir");
        let sock = dir.join("docker.sock");
        let host = format!("unix://{}", sock.display());
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let args: Vec<String> = [
            "--storage-driver=vfs",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--insecure-registry",
            "127.0.0.0/8",
            "--host",
            &host,
            "--data-root",
            &path("data"),
            "--exec-root",
            &path("exec"),
            "--pidfile",
            &path("dockerd.pid"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let started = Instant::now();
        let mut daemon = Daemon::spawn("dockerd", DOCKERD, &args, dir.join("dockerd.log"));
        let probe_config = dir.join("ready-config");
        daemon.wait_ready(|| docker(&host, &probe_config, &["version"], None).success);
        eprintln!("dockerd ready in {:?}", started.elapsed());
        Dockerd {
            daemon,
            dir: dir.to_path_buf(),
            host,
        }
    }

    /// `docker ARGS` against this daemon with the client configuration in `config_dir`.
    pub fn docker_in(&self, config_dir: &Path, args: &[&str], input: Option<&str>) -> CmdOutput {
        docker(&self.host, config_dir, args, input)
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }
}

fn docker(host: &str, config_dir: &Path, args: &[&str], input: Option<&str>) -> CmdOutput {
    let config = config_dir.to_string_lossy();
    run_with_input(
        DOCKER,
        args,
        &[("DOCKER_HOST", host), ("DOCKER_CONFIG", &config)],
        input.map(str::as_bytes),
        TOOL_TIMEOUT,
    )
    .expect("docker runs")
}

/// A containerd of one scenario.
pub struct Containerd {
    daemon: Daemon,
    pub address: String,
}

impl Containerd {
    /// Starts containerd with its root, state and sockets in `dir` (created), without the
    /// CRI plugin.
    pub fn start(dir: &Path) -> Containerd {
        fs::create_dir_all(dir).expect("containerd dir");
        let address = dir.join("containerd.sock").to_string_lossy().into_owned();
        let config = format!(
            "version = 2\nroot = {root:?}\nstate = {state:?}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {address:?}\n\
             [ttrpc]\n  address = {ttrpc:?}\n\
             [debug]\n  address = {debug:?}\n  level = \"debug\"\n",
            root = dir.join("root").to_string_lossy(),
            state = dir.join("state").to_string_lossy(),
            ttrpc = format!("{address}.ttrpc"),
            debug = dir.join("debug.sock").to_string_lossy(),
        );
        let config_path = dir.join("config.toml");
        fs::write(&config_path, config).expect("containerd config");
        let args = vec![
            "--config".to_owned(),
            config_path.to_string_lossy().into_owned(),
        ];
        let started = Instant::now();
        let mut daemon = Daemon::spawn("containerd", CONTAINERD, &args, dir.join("containerd.log"));
        let probe = address.clone();
        daemon.wait_ready(|| {
            run_with_input(
                CTR,
                &["--address", &probe, "version"],
                &[],
                None,
                TOOL_TIMEOUT,
            )
            .map(|o| o.success)
            .unwrap_or(false)
        });
        eprintln!("containerd ready in {:?}", started.elapsed());
        Containerd { daemon, address }
    }

    /// `ctr --address SOCK --namespace e2e ARGS`.
    pub fn ctr(&self, args: &[&str]) -> CmdOutput {
        let mut all = vec!["--address", &self.address, "--namespace", "e2e"];
        all.extend_from_slice(args);
        run_with_input(CTR, &all, &[], None, TOOL_TIMEOUT).expect("ctr runs")
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }
}
