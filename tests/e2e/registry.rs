//! End-to-end helpers: a real CNCF distribution registry (2.8, Debian package
//! `docker-registry`) configured for token auth, plus runners for `skopeo` and
//! `podman` with timeouts.
//!
//! No dependencies beyond std. Findings this code relies on are in
//! docs/e2e-notes.md.
//!
//! ```ignore
//! let reg = Registry::start(&RegistryOptions {
//!     port: 0, // 0: the registry picks a port; we read it from its log
//!     dir: tmp.path(),
//!     realm: format!("http://{token_addr}/token"),
//!     service: "registry.test".into(),
//!     issuer: "regauth".into(),
//!     root_cert_bundle: tmp.path().join("signing.crt"),
//! }).expect("start registry");
//! let out = skopeo(&["copy", "--dest-tls-verify=false", &img.skopeo_ref(),
//!                    &format!("docker://{}/team/app:v1", reg.host())], TOOL_TIMEOUT)
//!     .expect("run skopeo");
//! assert!(out.success, "{out}\n--- registry log ---\n{}", reg.log());
//! ```

#![allow(dead_code)]

use std::env;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Default timeout for one skopeo/podman invocation.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `Registry::start` waits for `/v2/` to answer.
pub const REGISTRY_START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(25);

/// Binary names tried, in order, when `E2E_REGISTRY_BIN` is unset:
/// Debian/Ubuntu install `/usr/bin/docker-registry`; upstream release tarballs
/// and the container image ship `registry`.
pub const REGISTRY_BINARIES: &[&str] = &["docker-registry", "registry"];

// ---------------------------------------------------------------------------
// tool discovery
// ---------------------------------------------------------------------------

/// Full path of `name` if it is an executable file on `PATH` (or `name` is
/// itself a path to one).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_exec(p))
}

use crate::support::skip_or_fail;

/// Returns `true` if `name` is on PATH. Otherwise: panics under CI, or prints
/// why the test is skipped and returns `false` on a developer machine.
///
/// ```ignore
/// if !require_tool("skopeo") { return; }
/// ```
pub fn require_tool(name: &str) -> bool {
    if find_tool(name).is_some() {
        return true;
    }
    skip_or_fail(&format!(
        "e2e: required tool `{name}` not found on PATH \
         (Debian/Ubuntu: apt-get install -y docker-registry skopeo podman docker.io containerd buildah)"
    ))
}

/// Path of the registry binary: `$E2E_REGISTRY_BIN`, else the first of
/// `REGISTRY_BINARIES` on PATH.
pub fn registry_binary() -> Option<PathBuf> {
    if let Some(p) = env::var_os("E2E_REGISTRY_BIN") {
        return find_tool(&p.to_string_lossy());
    }
    REGISTRY_BINARIES.iter().find_map(|n| find_tool(n))
}

/// Like `require_tool` for the registry binary (any of its names).
pub fn require_registry() -> bool {
    if registry_binary().is_some() {
        return true;
    }
    skip_or_fail(
        "e2e: registry binary not found (looked for $E2E_REGISTRY_BIN, \
         docker-registry, registry on PATH; Debian: apt-get install -y docker-registry)",
    )
}

/// A free TCP port on 127.0.0.1 (bind to :0, read, close). Racy by nature;
/// prefer `port: 0` in `RegistryOptions`, which has no race.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

// ---------------------------------------------------------------------------
// registry
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Port on 127.0.0.1. `0` lets the registry choose (2.8 supports
    /// `http.addr: 127.0.0.1:0` and logs `listening on 127.0.0.1:NNNNN`).
    pub port: u16,
    /// Working directory: config, log and storage go below it.
    pub dir: PathBuf,
    /// Token endpoint URL, e.g. `http://127.0.0.1:40000/token`.
    pub realm: String,
    /// `auth.token.service`: the `aud` the registry demands.
    pub service: String,
    /// `auth.token.issuer`: the `iss` the registry demands.
    pub issuer: String,
    /// PEM bundle of trusted certificates (`auth.token.rootcertbundle`): the
    /// signing certificate (kid mode) or the CA (x5c mode). Read only at start.
    pub root_cert_bundle: PathBuf,
}

/// A running `docker-registry serve`; killed (SIGKILL) and reaped on drop.
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub storage_dir: PathBuf,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("pid", &self.child.id())
            .field("addr", &self.addr)
            .field("config_path", &self.config_path)
            .finish()
    }
}

impl Registry {
    /// Write `<dir>/registry.yml`, spawn the registry with stdout+stderr going
    /// to `<dir>/registry.log`, and wait (polling, with a deadline) until
    /// `GET /v2/` answers 401 or 200.
    pub fn start(opts: &RegistryOptions) -> Result<Registry, String> {
        let bin =
            registry_binary().ok_or("registry binary not found (docker-registry / registry)")?;
        fs::create_dir_all(&opts.dir).map_err(|e| format!("create {}: {e}", opts.dir.display()))?;
        let storage_dir = opts.dir.join("registry-storage");
        fs::create_dir_all(&storage_dir)
            .map_err(|e| format!("create {}: {e}", storage_dir.display()))?;
        let config_path = opts.dir.join("registry.yml");
        let log_path = opts.dir.join("registry.log");
        fs::write(&config_path, registry_config_yaml(opts, &storage_dir))
            .map_err(|e| format!("write {}: {e}", config_path.display()))?;
        let log = fs::File::create(&log_path)
            .map_err(|e| format!("create {}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| format!("dup log fd: {e}"))?;

        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            // The registry also reads REGISTRY_* env vars as config overrides;
            // keep a developer's environment from leaking in.
            .env_remove("REGISTRY_HTTP_ADDR")
            .env_remove("REGISTRY_AUTH")
            .env_remove("REGISTRY_STORAGE")
            .spawn()
            .map_err(|e| format!("spawn {} serve: {e}", bin.display()))?;

        // From here on `reg` owns the child, so any early return kills it.
        let mut reg = Registry {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], opts.port)),
            config_path,
            log_path,
            storage_dir,
        };
        let deadline = Instant::now() + REGISTRY_START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = reg.child.try_wait() {
                return Err(format!(
                    "registry exited early ({status})\n--- registry log ---\n{}",
                    reg.log()
                ));
            }
            if reg.addr.port() == 0
                && let Some(a) = parse_listening_addr(&reg.log())
            {
                reg.addr = a;
            }
            if reg.addr.port() != 0
                && let Ok(resp) = http_request(reg.addr, "GET", "/v2/", &[], Duration::from_secs(2))
                && (resp.status == 401 || resp.status == 200)
            {
                return Ok(reg);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "registry did not answer GET /v2/ within {REGISTRY_START_TIMEOUT:?} on {}\n\
                     --- registry log ---\n{}",
                    reg.addr,
                    reg.log()
                ));
            }
            thread::sleep(POLL);
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, the form used in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `docker://127.0.0.1:PORT/<repo>:<tag>` for skopeo.
    pub fn docker_ref(&self, repo: &str, tag: &str) -> String {
        format!("docker://{}/{repo}:{tag}", self.addr)
    }

    /// `127.0.0.1:PORT/<repo>:<tag>` for podman.
    pub fn image_ref(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.addr)
    }

    /// Current registry log (debug level; includes "token signed by untrusted
    /// key with ID", "error authorizing context: invalid token", ...).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    /// Raw HTTP request to the registry (no redirects, `Connection: close`).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<HttpResponse, String> {
        http_request(self.addr, method, path, headers, Duration::from_secs(10))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry config this harness uses (debug log, no access log, delete
/// enabled, filesystem storage, token auth).
pub fn registry_config_yaml(opts: &RegistryOptions, storage_dir: &Path) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: debug\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: regauth-e2e-not-secret\n\
         auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {bundle}\n",
        storage = yaml_str(&storage_dir.to_string_lossy()),
        addr = yaml_str(&format!("127.0.0.1:{}", opts.port)),
        realm = yaml_str(&opts.realm),
        service = yaml_str(&opts.service),
        issuer = yaml_str(&opts.issuer),
        bundle = yaml_str(&opts.root_cert_bundle.to_string_lossy()),
    )
}

/// YAML double-quoted scalar.
fn yaml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Finds `listening on 127.0.0.1:PORT` in a registry 2.8 log
/// (`level=info msg="listening on 127.0.0.1:41727"`).
pub fn parse_listening_addr(log: &str) -> Option<SocketAddr> {
    let i = log.find("listening on ")? + "listening on ".len();
    let rest = &log[i..];
    let end = rest
        .find(|c: char| {
            !(c.is_ascii_alphanumeric() || c == '.' || c == ':' || c == '[' || c == ']')
        })
        .unwrap_or(rest.len());
    rest[..end]
        .parse()
        .ok()
        .filter(|a: &SocketAddr| a.port() != 0)
}

// ---------------------------------------------------------------------------
// tiny HTTP/1.1 client (enough for GET /v2/ and header checks)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased, in order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request over a fresh connection with `Connection: close`; the body is
/// read to EOF (chunked encoding is not decoded: fine for the registry's and
/// token server's small JSON answers, which carry Content-Length).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: regauth-e2e\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" || method == "PUT" || method == "PATCH" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header terminator from {addr}"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?} from {addr}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

// ---------------------------------------------------------------------------
// running skopeo / podman
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit code; `None` if killed by a signal (including our timeout).
    pub code: Option<i32>,
    pub success: bool,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ {}\nexit: {}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.code.map_or("signal".to_string(), |c| c.to_string()),
            if self.timed_out {
                " (TIMED OUT, killed)"
            } else {
                ""
            },
            self.stdout,
            self.stderr
        )
    }
}

/// Run `program args...` with stdin closed, capture stdout/stderr, kill it if
/// it is still running after `timeout`. Extra environment in `envs`.
/// Err only if it could not be started.
pub fn run_with_timeout(
    program: &str,
    args: &[&str],
    envs: &[(&str, &str)],
    timeout: Duration,
) -> Result<CmdOutput, String> {
    run_with_input(program, args, envs, None, timeout)
}

/// Like [`run_with_timeout`], writing `input` to the program's stdin (then closing it).
pub fn run_with_input(
    program: &str,
    args: &[&str],
    envs: &[(&str, &str)],
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<CmdOutput, String> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn `{command}`: {e}"))?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        // Small inputs (a password) fit the pipe buffer; stdin closes when dropped.
        let _ = stdin.write_all(input);
    }
    let out_reader = child.stdout.take().map(spawn_reader);
    let err_reader = child.stderr.take().map(spawn_reader);

    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(POLL),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("wait for `{command}`: {e}"));
            }
        }
    };
    let join = |h: Option<thread::JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let stdout = join(out_reader);
    let stderr = join(err_reader);
    let code = status.and_then(|s| s.code());
    Ok(CmdOutput {
        command,
        code,
        success: !timed_out && code == Some(0),
        timed_out,
        stdout,
        stderr,
    })
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Per-test client state: an isolated auth file for skopeo and podman
/// (`REGISTRY_AUTH_FILE`), and an isolated podman storage (vfs driver, no
/// daemon, no systemd/journald).
#[derive(Debug, Clone)]
pub struct Clients {
    pub dir: PathBuf,
    pub auth_file: PathBuf,
    pub timeout: Duration,
}

impl Clients {
    /// `dir` must exist or be creatable; podman storage goes below it.
    pub fn new(dir: &Path) -> Result<Clients, String> {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let auth_file = dir.join("auth.json");
        // podman 4.3 fails every pull/push with "Error: stat <file>: no such
        // file or directory" when REGISTRY_AUTH_FILE names a missing file
        // (skopeo 1.9 does not mind); an empty auths map is fine for both.
        if !auth_file.exists() {
            fs::write(&auth_file, "{\"auths\":{}}\n")
                .map_err(|e| format!("write {}: {e}", auth_file.display()))?;
        }
        Ok(Clients {
            dir: dir.to_path_buf(),
            auth_file,
            timeout: TOOL_TIMEOUT,
        })
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![(
            "REGISTRY_AUTH_FILE",
            self.auth_file.to_string_lossy().into_owned(),
        )]
    }

    /// `skopeo ARGS...` (add `--tls-verify=false` / `--dest-tls-verify=false`
    /// / `--src-tls-verify=false` yourself: it is per subcommand).
    pub fn skopeo(&self, args: &[&str]) -> Result<CmdOutput, String> {
        let env = self.env();
        let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_with_timeout("skopeo", args, &envs, self.timeout)
    }

    /// Global podman flags for daemonless root use in a sandbox/CI container.
    pub fn podman_global_args(&self) -> Vec<String> {
        let root = self.dir.join("podman-root");
        let runroot = self.dir.join("podman-runroot");
        vec![
            "--root".into(),
            root.to_string_lossy().into_owned(),
            "--runroot".into(),
            runroot.to_string_lossy().into_owned(),
            "--storage-driver".into(),
            "vfs".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
        ]
    }

    /// `podman <global isolation flags> ARGS...`
    pub fn podman(&self, args: &[&str]) -> Result<CmdOutput, String> {
        let global = self.podman_global_args();
        let all: Vec<&str> = global
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
            .collect();
        let env = self.env();
        let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_with_timeout("podman", &all, &envs, self.timeout)
    }
}

/// Convenience: `skopeo ARGS...` with the caller's environment (no auth file
/// isolation).
pub fn skopeo(args: &[&str], timeout: Duration) -> Result<CmdOutput, String> {
    run_with_timeout("skopeo", args, &[], timeout)
}

/// The substring that skopeo 1.9 / podman 4.3 print when the registry
/// refused an operation for lack of scope (token valid but without the
/// needed action): `denied: requested access to the resource is denied`.
pub const DENIED_TEXT: &str = "requested access to the resource is denied";
/// What they print when the token itself is rejected (bad signature, wrong
/// kid/iss/aud, expired): `unauthorized: authentication required` (and no
/// DENIED_TEXT).
pub const UNAUTHORIZED_TEXT: &str = "unauthorized: authentication required";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_line() {
        let log = "time=\"x\" level=info msg=\"listening on 127.0.0.1:41727\" go.version=go1.19.8";
        assert_eq!(
            parse_listening_addr(log),
            Some("127.0.0.1:41727".parse().expect("addr"))
        );
        assert_eq!(
            parse_listening_addr("msg=\"listening on 127.0.0.1:0\""),
            None
        );
        assert_eq!(parse_listening_addr("nothing"), None);
    }

    #[test]
    fn yaml_quoting() {
        assert_eq!(yaml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn timeout_kills() {
        let out = run_with_timeout("sleep", &["5"], &[], Duration::from_millis(200))
            .expect("spawn sleep");
        assert!(out.timed_out && !out.success);
        let out = run_with_timeout(
            "sh",
            &["-c", "echo hi; echo err >&2; exit 3"],
            &[],
            TOOL_TIMEOUT,
        )
        .expect("spawn sh");
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (Some(3), "hi\n", "err\n")
        );
    }
}
