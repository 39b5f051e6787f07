//! Pulp for the end-to-end scenario: PostgreSQL from Debian started here on loopback with its
//! own data directory (as the `postgres` user when run as root), `pulpcore-manager migrate`,
//! pulpcore-api behind a small plain-HTTP front, and pulpcore-content, each stopped on drop.

use std::env;
use std::fs;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use data_encoding::BASE64URL;

use crate::registry::{
    CmdOutput, HttpResponse, free_port, http_request, require_tool, run_with_timeout,
};
pub use crate::support::postgres::is_root;
use crate::support::postgres::{PG_BIN_ENV, postgres_bin};
use crate::support::skip_or_fail;

/// Where the venv is; default `target/pulp-venv` in the source tree.
pub const VENV_ENV: &str = "E2E_PULP_VENV";
/// Pulp's API and content app, and PostgreSQL, must answer within this.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// `pulpcore-manager migrate` runs a few hundred migrations: about a minute on two busy cores.
const MANAGE_TIMEOUT: Duration = Duration::from_secs(900);
/// How long a stopped daemon may take before its process group is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);
/// Idle limit of one connection through the front relay.
const RELAY_IDLE: Duration = Duration::from_secs(120);

/// What the scenario needs installed.
pub struct Prerequisites {
    pub venv: PathBuf,
    pub pg_bin: PathBuf,
}

/// Says why a prerequisite is missing: a skip on a developer machine, a failure under CI.
fn missing(what: &str) -> Option<Prerequisites> {
    skip_or_fail(&format!("e2e: {what}"));
    None
}

/// The venv, PostgreSQL and skopeo, or why not.
pub fn prerequisites() -> Option<Prerequisites> {
    if !require_tool("skopeo") {
        return None;
    }
    let venv = env::var_os(VENV_ENV).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pulp-venv"),
        PathBuf::from,
    );
    if !venv.join("bin/pulpcore-manager").is_file() {
        return missing(&format!(
            "no Pulp venv at {0} (set {VENV_ENV}, or create it: python3 -m venv {0} && \
             {0}/bin/pip install -r tests/e2e/pulp/requirements.txt)",
            venv.display()
        ));
    }
    let Some(pg_bin) = postgres_bin() else {
        return missing(&format!(
            "PostgreSQL server programs not found (looked at ${PG_BIN_ENV} and \
             /usr/lib/postgresql/*/bin; Debian: apt-get install -y postgresql)"
        ));
    };
    if is_root() && !user_exists("postgres") {
        return missing(
            "running as root, where initdb refuses to run, and there is no `postgres` user \
             to run PostgreSQL as (Debian's postgresql package creates it)",
        );
    }
    Some(Prerequisites { venv, pg_bin })
}

fn user_exists(name: &str) -> bool {
    run_with_timeout("id", &["-u", name], &[], Duration::from_secs(10)).is_ok_and(|o| o.success)
}

/// `program args` as the database owner: `postgres` through `setpriv` when we are root
/// (initdb and postgres refuse root), ourselves otherwise.
fn db_owner_command(program: &Path, args: &[String]) -> (String, Vec<String>) {
    let program = program.to_string_lossy().into_owned();
    if is_root() {
        let mut all: Vec<String> = [
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ]
        .map(String::from)
        .to_vec();
        all.push(program);
        all.extend_from_slice(args);
        ("setpriv".into(), all)
    } else {
        (program, args.to_vec())
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A long-running program in its own process group, output to a log file. Dropping it sends
/// `stop_signal` to the group, waits, and kills the group if the leader has not exited by then
/// (gunicorn's workers and PostgreSQL's backends are in the same group).
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
    stop_signal: &'static str,
}

impl Daemon {
    fn spawn(
        name: &'static str,
        mut command: Command,
        log: &Path,
        stop_signal: &'static str,
    ) -> Daemon {
        let out = fs::File::create(log).expect("daemon log");
        let err = out.try_clone().expect("dup log");
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Daemon {
            name,
            child,
            log: log.to_path_buf(),
            stop_signal,
        }
    }

    fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Err with the log's tail once the program has exited.
    fn running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}):\n{}",
                self.name,
                tail(&self.log(), 40)
            )),
            _ => Ok(()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // The leader is our child and not yet reaped, so its id still names our group.
        let group = format!("-{}", self.child.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal(&format!("-{}", self.stop_signal));
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(POLL);
        }
        signal("-KILL");
        let _ = self.child.wait();
    }
}

/// PostgreSQL with its own data directory, on a loopback port, trusting local TCP clients.
struct Postgres {
    daemon: Daemon,
    port: u16,
}

impl Postgres {
    /// initdb in `dir/pg` (owned by the database owner), then postgres on a free port.
    fn start(bin: &Path, dir: &Path) -> Postgres {
        let pg = dir.join("pg");
        fs::create_dir_all(&pg).expect("pg dir");
        if is_root() {
            // The database owner must reach pg/ through the test's directory.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).expect("chmod");
            let out = run_with_timeout(
                "chown",
                &["postgres:", &path_str(&pg)],
                &[],
                Duration::from_secs(10),
            )
            .expect("chown runs");
            assert!(out.success, "{out}");
        }
        let data = pg.join("data");
        let (program, args) = db_owner_command(
            &bin.join("initdb"),
            &[
                "-D".into(),
                path_str(&data),
                "-U".into(),
                "pulp".into(),
                "--auth=trust".into(),
                "-E".into(),
                "UTF8".into(),
                "--no-sync".into(),
            ],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_with_timeout(&program, &args, &[], START_TIMEOUT).expect("initdb runs");
        assert!(out.success, "initdb failed:\n{out}");

        // The port is chosen before postgres binds it: retry if another process took it.
        let mut failures = Vec::new();
        for attempt in 0..3 {
            let port = free_port().expect("free port");
            let (program, args) = db_owner_command(
                &bin.join("postgres"),
                &[
                    "-D".into(),
                    path_str(&data),
                    "-p".into(),
                    port.to_string(),
                    "-c".into(),
                    "listen_addresses=127.0.0.1".into(),
                    "-c".into(),
                    format!("unix_socket_directories={}", pg.display()),
                    // A throwaway database: no durability needed.
                    "-c".into(),
                    "fsync=off".into(),
                    "-c".into(),
                    "synchronous_commit=off".into(),
                    "-c".into(),
                    "full_page_writes=off".into(),
                ],
            );
            let mut command = Command::new(program);
            command.args(args).current_dir(&pg);
            let log = dir.join(format!("postgres-{attempt}.log"));
            let mut daemon = Daemon::spawn("postgres", command, &log, "INT");
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if daemon.log().contains("ready to accept connections") {
                    let postgres = Postgres { daemon, port };
                    postgres.createdb(bin);
                    return postgres;
                }
                if let Err(e) = daemon.running() {
                    failures.push(e);
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "postgres did not start:\n{}",
                    daemon.log()
                );
                thread::sleep(POLL);
            }
        }
        panic!("postgres did not start: {failures:#?}");
    }

    fn createdb(&self, bin: &Path) {
        let out = run_with_timeout(
            &path_str(&bin.join("createdb")),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "pulp",
                "pulp",
            ],
            &[],
            START_TIMEOUT,
        )
        .expect("createdb runs");
        assert!(
            out.success,
            "createdb failed:\n{out}\n{}",
            self.daemon.log()
        );
    }
}

/// A plain-HTTP front for Pulp's API, as a web server in front of gunicorn would be: clients
/// use its address (so it is the Host Pulp sees, and the `aud` it demands). It answers a TLS
/// ClientHello with 400 at once, where gunicorn's sync worker would wait for a request line
/// (stalling skopeo's HTTPS probe for its 10 s handshake timeout, and the only worker with it);
/// everything else is relayed byte for byte.
struct Front {
    stop: Arc<AtomicBool>,
}

impl Front {
    fn start(listener: TcpListener, upstream: SocketAddr) -> Front {
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        thread::spawn(move || relay(client, upstream));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Front { stop }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn relay(client: TcpStream, upstream: SocketAddr) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(RELAY_IDLE));
    let mut first = [0u8; 1];
    match client.peek(&mut first) {
        Ok(1) if first[0] == 0x16 => {
            let _ = (&client).write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        Ok(1) => {}
        _ => return,
    }
    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(10)) else {
        return;
    };
    let _ = server.set_read_timeout(Some(RELAY_IDLE));
    let (Ok(client_in), Ok(server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let upward = thread::spawn(move || {
        let _ = io::copy(&mut &client_in, &mut &server_out);
        let _ = server_out.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut &server, &mut &client);
    // The answer is complete (gunicorn closes after each response): end both directions.
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = upward.join();
}

/// `pulpcore-manager ARGS` from `venv` with the settings file `settings`.
fn pulpcore_manager(venv: &Path, settings: &Path, args: &[&str]) -> CmdOutput {
    let program = path_str(&venv.join("bin/pulpcore-manager"));
    let settings = path_str(settings);
    run_with_timeout(
        &program,
        args,
        &[("PULP_SETTINGS", &settings)],
        MANAGE_TIMEOUT,
    )
    .expect("pulpcore-manager runs")
}

/// pulpcore-api (behind [`Front`]) and pulpcore-content, on their own PostgreSQL.
pub struct Pulp {
    _front: Front,
    api: Daemon,
    content: Daemon,
    postgres: Postgres,
    venv: PathBuf,
    settings: PathBuf,
    /// What clients use: `127.0.0.1:PORT` of the front.
    pub host: String,
    pub api_addr: SocketAddr,
    pub content_addr: SocketAddr,
}

/// What Pulp is started with.
pub struct PulpOptions<'a> {
    /// The front's listener, bound beforehand so regauth can be told the service name.
    pub front: TcpListener,
    /// `TOKEN_SERVER`: the realm clients are sent to, and the exact `iss` Pulp demands.
    pub token_server: &'a str,
    /// `PUBLIC_KEY_PATH`: regauth's public key, PEM SubjectPublicKeyInfo.
    pub public_key: &'a Path,
    /// Pulp users to create (the names regauth puts in `sub`).
    pub users: &'a [&'a str],
}

/// A Python string literal (JSON's escapes are Python's).
fn py(text: &str) -> String {
    serde_json::to_string(text).expect("string")
}

fn random_text(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut raw).expect("random");
    BASE64URL.encode(&raw)
}

impl Pulp {
    pub fn start(pre: &Prerequisites, dir: &Path, options: PulpOptions<'_>) -> Pulp {
        let postgres = Postgres::start(&pre.pg_bin, dir);
        for sub in ["media", "work", "upload-tmp", "static"] {
            fs::create_dir_all(dir.join(sub)).expect("pulp dirs");
        }
        // Fernet key for Pulp's encrypted database fields: url-safe base64 of 32 bytes.
        let db_key = dir.join("database_fields.symmetric.key");
        fs::write(&db_key, random_text(32)).expect("db key");
        let api_addr: SocketAddr = ([127, 0, 0, 1], free_port().expect("port")).into();
        let content_addr: SocketAddr = ([127, 0, 0, 1], free_port().expect("port")).into();
        let host = options.front.local_addr().expect("front addr").to_string();
        let media = path_str(&dir.join("media"));
        let settings = dir.join("settings.py");
        let text = format!(
            "SECRET_KEY = {secret}\n\
             DATABASES = {{\"default\": {{\"ENGINE\": \"django.db.backends.postgresql\", \
             \"NAME\": \"pulp\", \"USER\": \"pulp\", \"HOST\": \"127.0.0.1\", \"PORT\": {port}}}}}\n\
             DB_ENCRYPTION_KEY = {db_key}\n\
             MEDIA_ROOT = {media}\n\
             STORAGES = {{\"default\": {{\"BACKEND\": \"pulpcore.app.models.storage.FileSystem\", \
             \"OPTIONS\": {{\"location\": {media}}}}}, \"staticfiles\": {{\"BACKEND\": \
             \"django.contrib.staticfiles.storage.StaticFilesStorage\"}}}}\n\
             WORKING_DIRECTORY = {work}\n\
             FILE_UPLOAD_TEMP_DIR = {upload}\n\
             STATIC_ROOT = {static_root}\n\
             CONTENT_ORIGIN = {origin}\n\
             ALLOWED_HOSTS = [\"127.0.0.1\"]\n\
             ANALYTICS = False\n\
             TOKEN_AUTH_DISABLED = False\n\
             TOKEN_SERVER = {token_server}\n\
             TOKEN_SIGNATURE_ALGORITHM = \"ES256\"\n\
             PUBLIC_KEY_PATH = {public_key}\n\
             # Only Pulp's own /token/ endpoint reads it; regauth's private key never goes here.\n\
             PRIVATE_KEY_PATH = {private_key}\n",
            secret = py(&random_text(48)),
            port = postgres.port,
            db_key = py(&path_str(&db_key)),
            media = py(&media),
            work = py(&path_str(&dir.join("work"))),
            upload = py(&path_str(&dir.join("upload-tmp"))),
            static_root = py(&path_str(&dir.join("static"))),
            origin = py(&format!("http://{content_addr}")),
            token_server = py(options.token_server),
            public_key = py(&path_str(options.public_key)),
            private_key = py(&path_str(&dir.join("no-private-key.pem"))),
        );
        fs::write(&settings, text).expect("settings");

        let at = Instant::now();
        let migrate = pulpcore_manager(&pre.venv, &settings, &["migrate", "--noinput"]);
        assert!(migrate.success, "migrate failed:\n{migrate}");
        eprintln!("pulp: migrate {:.1} s", at.elapsed().as_secs_f64());

        let serve = |program: &str, addr: SocketAddr| {
            let mut command = Command::new(pre.venv.join("bin").join(program));
            command
                .args([
                    "--bind",
                    &addr.to_string(),
                    "--workers",
                    "1",
                    "--no-control-socket",
                    "--access-logfile",
                    "-",
                ])
                .env("PULP_SETTINGS", &settings)
                .current_dir(dir);
            command
        };
        let api = Daemon::spawn(
            "pulpcore-api",
            serve("pulpcore-api", api_addr),
            &dir.join("api.log"),
            "TERM",
        );
        let content = Daemon::spawn(
            "pulpcore-content",
            serve("pulpcore-content", content_addr),
            &dir.join("content.log"),
            "TERM",
        );
        let front = Front::start(options.front, api_addr);
        let mut pulp = Pulp {
            _front: front,
            api,
            content,
            postgres,
            venv: pre.venv.clone(),
            settings,
            host,
            api_addr,
            content_addr,
        };
        pulp.add_users(options.users);
        pulp.wait_ready();
        pulp
    }

    /// `pulpcore-manager ARGS` with this Pulp's settings.
    fn manage(&self, args: &[&str]) -> CmdOutput {
        pulpcore_manager(&self.venv, &self.settings, args)
    }

    /// Creates Pulp users without a usable password: regauth checks passwords, Pulp only
    /// looks the name in `sub` up.
    pub fn add_users(&self, names: &[&str]) {
        if names.is_empty() {
            return;
        }
        let list = serde_json::to_string(names).expect("names");
        let code = format!(
            "from django.contrib.auth import get_user_model as users; \
             [users().objects.create_user(name) for name in {list}]"
        );
        let out = self.manage(&["shell", "-c", &code]);
        assert!(out.success, "creating Pulp users failed:\n{out}");
    }

    /// Polls until the API answers `/v2/` (401 without a token) and the content app answers.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let answers = |addr: SocketAddr, path: &str| {
            http_request(addr, "GET", path, &[], Duration::from_secs(5)).ok()
        };
        loop {
            let api = answers(self.api_addr, "/v2/").map(|r| r.status);
            let content = answers(self.content_addr, "/pulp/container/").map(|r| r.status);
            if api == Some(401) && content.is_some() {
                return;
            }
            if let Err(e) = self.api.running().and(self.content.running()) {
                panic!("Pulp did not start: {e}");
            }
            assert!(
                Instant::now() < deadline,
                "Pulp did not answer within {START_TIMEOUT:?} (api: {api:?}, content: \
                 {content:?})\n--- api ---\n{}\n--- content ---\n{}",
                tail(&self.api.log(), 30),
                tail(&self.content.log(), 30)
            );
            thread::sleep(POLL);
        }
    }

    /// A request to the API through the front, as a client makes it.
    pub fn request(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        let addr: SocketAddr = self.host.parse().expect("front addr");
        http_request(addr, "GET", path, headers, Duration::from_secs(30)).expect("pulp answers")
    }

    pub fn docker_ref(&self, repo: &str, tag: &str) -> String {
        format!("docker://{}/{repo}:{tag}", self.host)
    }

    pub fn api_log(&self) -> String {
        self.api.log()
    }

    pub fn content_log(&self) -> String {
        self.content.log()
    }

    /// The logs' tails, for assertion messages.
    pub fn logs(&self) -> String {
        format!(
            "--- pulpcore-api (tail) ---\n{}\n--- pulpcore-content (tail) ---\n{}\n\
             --- postgres (tail) ---\n{}",
            tail(&self.api.log(), 40),
            tail(&self.content.log(), 20),
            tail(&self.postgres.daemon.log(), 20)
        )
    }
}

/// PEM SubjectPublicKeyInfo of the key in `key_file`, as `regauth public-key` prints it:
/// what Pulp's PUBLIC_KEY_PATH holds (the certificate regauth writes beside the key is not
/// accepted there).
pub fn public_key_pem(key_file: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regauth"))
        .arg("public-key")
        .env_remove("REGAUTH_CONFIG")
        .env("REGAUTH_KEY__PATH", key_file)
        .output()
        .expect("regauth public-key runs");
    assert!(
        out.status.success(),
        "regauth public-key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("PEM is ASCII")
}
