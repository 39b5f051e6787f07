//! A PostgreSQL server of the test's own: `initdb` in a temp dir, `postgres` on a loopback
//! port (as the `postgres` user when the tests run as root, since initdb refuses root),
//! trusting local TCP clients; stopped and started again on the same port for outage tests,
//! killed on drop.
//!
//! The programs come from `$E2E_PG_BIN` or the newest `/usr/lib/postgresql/*/bin`; without
//! them the test is skipped, or fails under CI ([`super::skip_or_fail`]).

// Each suite uses only part of this file.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// Directory holding `initdb` and `postgres`.
pub const PG_BIN_ENV: &str = "E2E_PG_BIN";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running (or stopped) PostgreSQL.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

/// `$E2E_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin` holding `initdb`.
pub fn postgres_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").is_file().then_some(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The effective user is root (the owner of `/proc/self` is the process's effective uid).
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` as the database owner (through setpriv when root).
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// initdb and start; `None` (a skip) when PostgreSQL is not installed outside CI.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = postgres_bin() else {
            super::skip_or_fail(&format!(
                "PostgreSQL server programs not found (looked at ${PG_BIN_ENV} and \
                 /usr/lib/postgresql/*/bin; Debian: apt-get install -y postgresql)"
            ));
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if is_root() {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        }
        let out = as_owner(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "regauth", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            bin,
            data,
            dir,
            port: free_port(),
            child: None,
        };
        pg.run();
        Some(pg)
    }

    /// The URL regauth's `store.url` takes (database `postgres`, user `regauth`).
    pub fn url(&self) -> String {
        format!("postgres://regauth@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again, on the same port) and waits until it accepts connections.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "postgres is already running");
        let log = self.dir.path().join("postgres.log");
        let out = fs::File::create(&log).unwrap();
        if is_root() {
            fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).unwrap();
        }
        let err = out.try_clone().unwrap();
        let child = as_owner(&self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.contains("ready to accept connections") {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("postgres exited ({status}): {text}");
            }
            assert!(Instant::now() < deadline, "postgres did not start: {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: open connections are cut) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT is PostgreSQL's fast shutdown. When root, the child is setpriv's exec of
            // postgres, so its pid is the postmaster's.
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
