//! One test's world: the `regauth` binary on a free port, a registry trusting it, clients.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use data_encoding::BASE64URL_NOPAD;
use regauth::keys::{Algorithm, generate};
use serde_json::Value;
use tempfile::TempDir;

use crate::recorder::Recorder;
use crate::registry::{
    Clients, HttpResponse, Registry, RegistryOptions, http_request, require_registry, require_tool,
};
use crate::support::{leaf_signed_by, new_ca};

pub const SERVICE: &str = "registry.test";
pub const ISSUER: &str = "regauth-e2e";

/// How regauth signs, and what the registry trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// A self-signed certificate in the bundle, `kid` = libtrust ID.
    Libtrust(Algorithm),
    /// A CA in the bundle, the leaf sent as `x5c`, no `kid`.
    X5cUnderCa,
}

/// What a stack is started with.
pub struct StackOptions<'a> {
    pub anonymous: &'a [&'a str],
    pub key: KeyForm,
    /// Extra certificates (PEM files) the registry should also trust.
    pub extra_trust: Vec<PathBuf>,
    /// YAML for users, auth and acl; when given it replaces the `access.anonymous` line.
    pub access_yaml: Option<String>,
    /// Issue refresh tokens (`auth.refresh_secret_file` exists). `access_yaml` must not
    /// carry an `auth:` section of its own.
    pub refresh_tokens: bool,
    /// Point the registry's realm at a [`Recorder`] in front of regauth.
    pub record_token_requests: bool,
    /// `token.ttl_seconds`.
    pub ttl_seconds: u32,
}

impl Default for StackOptions<'_> {
    fn default() -> Self {
        StackOptions {
            anonymous: &["pull", "push"],
            key: KeyForm::Libtrust(Algorithm::ES256),
            extra_trust: Vec::new(),
            access_yaml: None,
            refresh_tokens: false,
            record_token_requests: false,
            ttl_seconds: 300,
        }
    }
}

pub struct Stack {
    pub dir: TempDir,
    pub regauth: Regauth,
    pub recorder: Option<Recorder>,
    pub registry: Registry,
    pub clients: Clients,
}

/// True when the registry and clients are installed; otherwise says why (and fails under CI).
pub fn tools_present(tools: &[&str]) -> bool {
    require_registry() && tools.iter().all(|t| require_tool(t))
}

impl Stack {
    pub fn start(options: StackOptions<'_>) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = dir.path().join("keys");
        let (certificate, bundle) = match options.key {
            KeyForm::Libtrust(alg) => {
                let written = generate::write(&keys, alg, false).expect("keygen");
                let cert = written.certificate.expect("certificate");
                (None, fs::read_to_string(cert).expect("read cert"))
            }
            KeyForm::X5cUnderCa => {
                let (leaf_cert, ca_cert) = ca_signed_leaf(&keys);
                (Some(leaf_cert), ca_cert)
            }
        };
        let mut bundle_text = bundle;
        for extra in &options.extra_trust {
            bundle_text.push_str(&fs::read_to_string(extra).expect("extra cert"));
        }
        let bundle_path = dir.path().join("bundle.pem");
        fs::write(&bundle_path, bundle_text).expect("write bundle");

        let kid_format = if options.key == KeyForm::X5cUnderCa {
            "none"
        } else {
            "libtrust"
        };
        let anonymous = options
            .anonymous
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut config = format!(
            "server:\n  listen: 127.0.0.1:0\n\
             token:\n  issuer: {ISSUER}\n  ttl_seconds: {ttl}\n  kid_format: {kid_format}\n  services: [{SERVICE}]\n\
             key:\n  source: file\n  path: {}\n",
            keys.join("signing.key").display(),
            ttl = options.ttl_seconds,
        );
        if let Some(cert) = &certificate {
            config.push_str(&format!("  certificate: {}\n", cert.display()));
        }
        let refresh_secret = dir.path().join("refresh.secret");
        if options.refresh_tokens {
            regauth::issue::refresh::write_secret(&refresh_secret).expect("refresh secret");
        }
        config.push_str(&format!(
            "auth:\n  refresh_secret_file: {}\n",
            refresh_secret.display()
        ));
        match &options.access_yaml {
            Some(yaml) => config.push_str(yaml),
            None => config.push_str(&format!("access:\n  anonymous: [{anonymous}]\n")),
        }
        let config_path = dir.path().join("regauth.yaml");
        fs::write(&config_path, config).expect("write config");
        Stack::launch_with(
            dir,
            &config_path,
            bundle_path,
            options.record_token_requests,
        )
    }

    /// Starts regauth with `config` and a registry trusting `bundle`, for tests that lay out
    /// their own keys and configuration in `dir`.
    pub fn launch(dir: TempDir, config: &Path, bundle: PathBuf) -> Stack {
        Stack::launch_with(dir, config, bundle, false)
    }

    /// [`Stack::launch`], with a [`Recorder`] as the realm when `record` is set.
    pub fn launch_with(dir: TempDir, config: &Path, bundle: PathBuf, record: bool) -> Stack {
        let regauth = Regauth::start(config, &dir.path().join("regauth.log"));
        let recorder = record.then(|| Recorder::start(regauth.addr));
        let realm_addr = recorder.as_ref().map_or(regauth.addr, |r| r.addr);
        let registry = start_registry(realm_addr, &dir.path().join("registry"), bundle);
        let clients = Clients::new(&dir.path().join("clients")).expect("clients");
        Stack {
            dir,
            regauth,
            recorder,
            registry,
            clients,
        }
    }

    /// The token requests the registry's clients made (the stack must record them).
    pub fn recorder(&self) -> &Recorder {
        self.recorder
            .as_ref()
            .expect("started with record_token_requests")
    }

    /// The key file regauth signs with.
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("keys/signing.key")
    }

    /// Both logs, and the token requests when the stack records them, for assertion
    /// messages.
    pub fn logs(&self) -> String {
        let requests = self
            .recorder
            .as_ref()
            .map(|r| format!("--- token requests ---\n{}\n", r.dump()))
            .unwrap_or_default();
        format!(
            "{requests}--- regauth log ---\n{}\n--- registry log (tail) ---\n{}",
            self.regauth.log(),
            tail(&self.registry.log(), 40)
        )
    }
}

/// A registry in `dir` sending clients to the realm at `realm_addr` and trusting `bundle`.
pub fn start_registry(realm_addr: SocketAddr, dir: &Path, bundle: PathBuf) -> Registry {
    start_registry_with_realm(format!("http://{realm_addr}/token"), dir, bundle)
}

/// [`start_registry`] with the realm's whole URL (an `https://` one, say).
pub fn start_registry_with_realm(realm: String, dir: &Path, bundle: PathBuf) -> Registry {
    Registry::start(&RegistryOptions {
        port: 0,
        dir: dir.to_path_buf(),
        realm,
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        root_cert_bundle: bundle,
    })
    .expect("registry starts")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Writes a CA and an ES256 leaf it signed; returns (leaf certificate path, CA PEM).
/// The leaf key goes to `dir/signing.key`.
pub fn ca_signed_leaf(dir: &Path) -> (PathBuf, String) {
    fs::create_dir_all(dir).expect("mkdir");
    let ca = new_ca("regauth e2e CA");
    let (leaf_cert, leaf_key) = leaf_signed_by(&ca, "regauth e2e signer");
    fs::write(dir.join("signing.key"), leaf_key).expect("write leaf key");
    let leaf_path = dir.join("signing.crt");
    fs::write(&leaf_path, leaf_cert).expect("write leaf cert");
    (leaf_path, ca.pem())
}

/// The `regauth serve` process.
pub struct Regauth {
    child: Child,
    pub addr: SocketAddr,
    log_path: PathBuf,
}

impl Regauth {
    pub fn start(config: &Path, log_path: &Path) -> Regauth {
        let log = fs::File::create(log_path).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_regauth"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,regauth=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn regauth");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = fs::read_to_string(log_path).unwrap_or_default();
            if let Some(addr) = text
                .lines()
                .find_map(|l| l.split("listening on ").nth(1))
                .and_then(|a| a.trim().parse().ok())
            {
                return Regauth {
                    child,
                    addr,
                    log_path: log_path.to_path_buf(),
                };
            }
            if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("regauth did not start:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `GET /token?QUERY` straight to regauth.
    pub fn token(&self, query: &str) -> String {
        let response = self.get(&format!("/token?{query}"));
        assert_eq!(response.status, 200, "{}", response.body_text());
        let body: Value = serde_json::from_slice(&response.body).expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http_request(self.addr, "GET", path, &[], Duration::from_secs(10)).expect("regauth answers")
    }
}

impl Drop for Regauth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The decoded JWT header of `token`.
pub fn jwt_header(token: &str) -> Value {
    let first = token.split('.').next().unwrap_or_default();
    serde_json::from_slice(&BASE64URL_NOPAD.decode(first.as_bytes()).expect("b64")).expect("json")
}

/// Splits `Bearer realm="..",service="..",scope=".."` into its parameters.
pub fn challenge_params(header: &str) -> Vec<(String, String)> {
    let rest = header.strip_prefix("Bearer ").unwrap_or(header);
    let mut out = Vec::new();
    let mut remaining = rest;
    while let Some((key, after)) = remaining.split_once("=\"") {
        let Some((value, next)) = after.split_once('"') else {
            break;
        };
        out.push((
            key.trim_start_matches(',').trim().to_owned(),
            value.to_owned(),
        ));
        remaining = next;
    }
    out
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A token for `scope` from regauth.
pub fn token(stack: &Stack, scope: &str) -> Result<String, String> {
    let response = stack
        .regauth
        .get(&format!("/token?service={SERVICE}&scope={}", encode(scope)));
    if response.status != 200 {
        return Err(format!(
            "token: {} {}",
            response.status,
            response.body_text()
        ));
    }
    let body: Value = serde_json::from_slice(&response.body).map_err(|e| e.to_string())?;
    Ok(body["token"].as_str().ok_or("no token")?.to_owned())
}

/// One pull as a client does it; returns the token used.
pub fn pull(stack: &Stack, repo: &str, digest: &str) -> Result<String, String> {
    let jwt = token(stack, &format!("repository:{repo}:pull"))?;
    let bearer = format!("Bearer {jwt}");
    let auth = [
        ("Authorization", bearer.as_str()),
        ("Accept", crate::oci::MEDIA_TYPE_MANIFEST),
    ];
    let manifest =
        stack
            .registry
            .request("GET", &format!("/v2/{repo}/manifests/{digest}"), &auth)?;
    if manifest.status != 200 {
        return Err(format!(
            "manifest with {:?}: {} {}",
            jwt_header(&jwt).get("kid"),
            manifest.status,
            manifest.body_text()
        ));
    }
    Ok(jwt)
}
