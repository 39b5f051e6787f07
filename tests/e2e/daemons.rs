//! dockerd and containerd from Debian's packages (`docker.io`, `containerd`): one of each per
//! test binary, started by the first scenario that asks ([`dockerd`], [`containerd`]) in the
//! binary's own directory, shared by every later scenario, and stopped when the binary exits.
//!
//! Why shared: each scenario used to start its own daemons. The start itself is cheap (dockerd
//! answers `docker version` about 0.4 s after it is spawned, containerd 0.1 s), but every
//! dockerd also starts its own containerd, and several scenarios running at once meant several
//! daemon pairs competing for two cores. The scenarios stay independent without their own
//! daemons: each has its own `DOCKER_CONFIG` (credentials and identity tokens live in the
//! client's configuration, never in dockerd), its own registry on its own port (so every image
//! name, which starts with `127.0.0.1:PORT/`, is distinct), its own seed for image content, and,
//! for containerd, its own namespace ([`Containerd::namespace`]), which scopes images and
//! content. The only local docker name outside a registry's (`e2e/loaded:v1`, loaded from an
//! archive) belongs to one scenario, and the image test tags `regauth-e2e:PID`. The daemon's
//! log is shared; failure messages show its tail.
//!
//! Stopping without `Drop`: a daemon held in a `static` is never dropped, so each one runs under
//! a small `sh` watchdog ([`WATCHDOG`]) whose standard input is a pipe from the test binary.
//! The binary never writes to it; when the binary exits, however it exits (test failures,
//! panics, SIGKILL), the kernel closes the pipe, the watchdog reads end-of-file, sends the
//! daemon SIGTERM (dockerd then stops the containerd it started), SIGKILL after a deadline,
//! unmounts what the daemon left mounted, and removes everything but its log.
//! (`prctl(PR_SET_PDEATHSIG)` in a `pre_exec` hook would need `unsafe`, which the crate's
//! `[lints]` forbid in tests too.) What a killed watchdog leaves
//! behind, a later run removes: each binary works in `$TMPDIR/regauth-e2e-daemons/PID`, and the
//! first daemon start kills the processes of and deletes every directory there whose PID is no
//! longer running ([`clean_leftovers`]).
//!
//! Both daemons run as root (CI runs as root); no systemd, no iptables, no bridge, and the
//! vfs/native storage that works inside a container. dockerd starts its own containerd
//! below its `--exec-root`, so a docker scenario does not need the containerd daemon.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::registry::{CmdOutput, TOOL_TIMEOUT, require_tool, run_with_input};

/// Debian's paths: another `docker` may come first on `PATH`.
pub const DOCKER: &str = "/usr/bin/docker";
pub const DOCKERD: &str = "/usr/sbin/dockerd";
pub const CONTAINERD: &str = "containerd";
pub const CTR: &str = "ctr";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// `sh -c WATCHDOG sh DIR PROGRAM ARGS...`: runs the daemon in the background and a reader of
/// standard input beside it. When standard input reaches end-of-file (the test binary is
/// gone), the reader marks the stop as requested and sends SIGTERM, then SIGKILL after 20 s;
/// once the daemon has exited the shell unmounts what it left mounted below DIR (dockerd leaves
/// `exec/netns/default`) and removes everything in DIR but the logs. A daemon that exits on
/// its own (a failed start) makes the shell exit with the daemon's status at once.
const WATCHDOG: &str = r#"
dir=$1; shift
# Background jobs of a non-interactive shell read /dev/null: keep our stdin as fd 3.
exec 3<&0
"$@" </dev/null 3<&- &
daemon=$!
(
  cat <&3 >/dev/null
  : >"$dir/stopping"
  kill -TERM "$daemon" 2>/dev/null
  sleep 20
  kill -KILL "$daemon" 2>/dev/null
) &
reader=$!
wait "$daemon"
status=$?
kill "$reader" 2>/dev/null
if [ -e "$dir/stopping" ]; then
  awk -v p="$dir/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r point; do umount -l "$point" 2>/dev/null; done
  find "$dir" -mindepth 1 -maxdepth 1 ! -name '*.log' -exec rm -rf {} + 2>/dev/null
fi
exit "$status"
"#;

/// True when docker's client and daemon are installed (fails under CI otherwise).
pub fn docker_present() -> bool {
    require_tool(DOCKERD) && require_tool(DOCKER)
}

/// True when containerd and ctr are installed (fails under CI otherwise).
pub fn containerd_present() -> bool {
    require_tool(CONTAINERD) && require_tool(CTR)
}

/// This test binary's directory for its daemons.
fn binary_dir() -> PathBuf {
    daemons_root().join(std::process::id().to_string())
}

fn daemons_root() -> PathBuf {
    std::env::temp_dir().join("regauth-e2e-daemons")
}

/// Removes what earlier test binaries left behind: for every directory under the daemons'
/// root whose owner (the PID it is named after) is gone, kills the processes whose command
/// line names it, unmounts whatever is mounted below it, and deletes it. Runs once.
pub fn clean_leftovers() {
    static CLEANED: OnceLock<()> = OnceLock::new();
    CLEANED.get_or_init(|| {
        let Ok(entries) = fs::read_dir(daemons_root()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let alive = name
                .parse::<u32>()
                .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if alive {
                continue;
            }
            let dir = entry.path();
            let killed = kill_processes_naming(&dir);
            unmount_below(&dir);
            let removed = fs::remove_dir_all(&dir);
            eprintln!(
                "e2e daemons: removed the leftovers of a finished run in {} ({killed} process(es) killed){}",
                dir.display(),
                removed
                    .err()
                    .map(|e| format!("; not all removed: {e}"))
                    .unwrap_or_default()
            );
        }
    });
}

/// SIGKILLs every process whose command line contains `dir`; returns how many.
fn kill_processes_naming(dir: &Path) -> usize {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    let mut killed = 0;
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid.parse::<u32>().is_err() || pid == me {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            killed += 1;
        }
    }
    killed
}

/// Lazily unmounts every mount point below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").args(["-l", point]).status();
    }
}

/// A daemon under its watchdog. Shared daemons are never dropped (the watchdog stops them);
/// one that fails to start is dropped, which closes the pipe and stops it the same way.
struct Daemon {
    watchdog: Child,
    /// The test binary's end of the watchdog's pipe; never written.
    lifeline: Option<ChildStdin>,
    name: &'static str,
    log_path: PathBuf,
}

impl Daemon {
    fn spawn(
        name: &'static str,
        program: &str,
        args: &[String],
        dir: &Path,
        log_path: PathBuf,
    ) -> Result<Daemon, String> {
        let log = fs::File::create(&log_path).map_err(|e| format!("{name} log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("{name} log: {e}"))?;
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(dir)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn {program} under sh: {e}"))?;
        let lifeline = watchdog.stdin.take();
        Ok(Daemon {
            watchdog,
            lifeline,
            name,
            log_path,
        })
    }

    /// Polls `ready` until it is true, the daemon exits, or the deadline passes.
    fn wait_ready(&mut self, ready: impl Fn() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.watchdog.try_wait() {
                return Err(format!(
                    "{} exited at start ({status}):\n{}",
                    self.name,
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not ready within {START_TIMEOUT:?}:\n{}",
                    self.name,
                    self.log()
                ));
            }
            thread::sleep(POLL);
        }
    }

    fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the daemon's log.
    fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Closing the pipe is the stop signal; the watchdog does the rest.
        if let Some(mut lifeline) = self.lifeline.take() {
            let _ = lifeline.flush();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.watchdog.try_wait() {
                return;
            }
            thread::sleep(POLL);
        }
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// The dockerd of this test binary.
pub struct Dockerd {
    daemon: Daemon,
    pub dir: PathBuf,
    pub host: String,
}

/// This test binary's dockerd, started on first use. Panics (fails the scenario) when it does
/// not start; later scenarios fail with the same message without trying again.
pub fn dockerd() -> &'static Dockerd {
    static DOCKERD: OnceLock<Result<Dockerd, String>> = OnceLock::new();
    match DOCKERD.get_or_init(|| Dockerd::start(&binary_dir().join("docker"))) {
        Ok(d) => d,
        Err(e) => panic!("dockerd: {e}"),
    }
}

impl Dockerd {
    /// Starts dockerd in `dir` (created). Plain HTTP is allowed for every loopback
    /// registry (`--insecure-registry 127.0.0.0/8`: the registry's port is chosen later).
    fn start(dir: &Path) -> Result<Dockerd, String> {
        clean_leftovers();
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
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
        let mut daemon = Daemon::spawn("dockerd", DOCKERD, &args, dir, dir.join("dockerd.log"))?;
        let probe_config = dir.join("ready-config");
        daemon.wait_ready(|| docker(&host, &probe_config, &["version"], None).success)?;
        eprintln!(
            "dockerd ready in {:?} (shared by this test binary, in {})",
            started.elapsed(),
            dir.display()
        );
        Ok(Dockerd {
            daemon,
            dir: dir.to_path_buf(),
            host,
        })
    }

    /// `docker ARGS` against this daemon with the client configuration in `config_dir`.
    pub fn docker_in(&self, config_dir: &Path, args: &[&str], input: Option<&str>) -> CmdOutput {
        docker(&self.host, config_dir, args, input)
    }

    /// The last 40 lines of the daemon's log (shared by every scenario).
    pub fn log(&self) -> String {
        self.daemon.log_tail(40)
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

/// The containerd of this test binary.
pub struct Containerd {
    daemon: Daemon,
    pub address: String,
}

/// This test binary's containerd, started on first use (see [`dockerd`] for failures).
pub fn containerd() -> &'static Containerd {
    static CONTAINERD: OnceLock<Result<Containerd, String>> = OnceLock::new();
    match CONTAINERD.get_or_init(|| Containerd::start(&binary_dir().join("containerd"))) {
        Ok(d) => d,
        Err(e) => panic!("containerd: {e}"),
    }
}

impl Containerd {
    /// Starts containerd with its root, state and sockets in `dir` (created), without the
    /// CRI plugin.
    fn start(dir: &Path) -> Result<Containerd, String> {
        clean_leftovers();
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
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
        fs::write(&config_path, config).map_err(|e| format!("containerd config: {e}"))?;
        let args = vec![
            "--config".to_owned(),
            config_path.to_string_lossy().into_owned(),
        ];
        let started = Instant::now();
        let mut daemon = Daemon::spawn(
            "containerd",
            CONTAINERD,
            &args,
            dir,
            dir.join("containerd.log"),
        )?;
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
        })?;
        eprintln!(
            "containerd ready in {:?} (shared by this test binary, in {})",
            started.elapsed(),
            dir.display()
        );
        Ok(Containerd { daemon, address })
    }

    /// A scenario's view of the daemon: its own namespace, so its images and content are
    /// its own.
    pub fn namespace(&'static self, namespace: &str) -> Ctr {
        Ctr {
            daemon: self,
            namespace: namespace.to_owned(),
        }
    }
}

/// `ctr` in one namespace of the shared containerd.
pub struct Ctr {
    daemon: &'static Containerd,
    namespace: String,
}

impl Ctr {
    /// `ctr --address SOCK --namespace NS ARGS`.
    pub fn ctr(&self, args: &[&str]) -> CmdOutput {
        let mut all = vec![
            "--address",
            &self.daemon.address,
            "--namespace",
            &self.namespace,
        ];
        all.extend_from_slice(args);
        run_with_input(CTR, &all, &[], None, TOOL_TIMEOUT).expect("ctr runs")
    }

    /// The last 40 lines of the daemon's log (shared by every scenario).
    pub fn log(&self) -> String {
        self.daemon.daemon.log_tail(40)
    }
}
