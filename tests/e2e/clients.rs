//! The registry clients' runs that several scenarios share, and their assertions: skopeo and
//! podman pushes, pulls and inspects through [`Clients`], a docker client configuration
//! ([`Docker`]) on the shared dockerd, alice's stack (a user with her own namespace, token
//! requests recorded) and the checks on a command's outcome, which fail with the command's
//! output, the token requests, regauth's and the registry's logs.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::daemons::Dockerd;
use crate::oci::{self, OciImage};
use crate::registry::{Clients, CmdOutput, DENIED_TEXT};
use crate::stack::{Stack, StackOptions};

/// alice's password in [`alice_stack`].
pub const PASSWORD: &str = "s3cret";

/// What docker 20.10 prints when regauth refuses a sign-in.
pub const BAD_LOGIN_TEXT: &str =
    "unauthorized: authentication failed: invalid username or password";

/// alice may do anything under `alice/`; anonymous callers may pull.
pub fn alice_stack(refresh_tokens: bool) -> Stack {
    Stack::start(alice_options(refresh_tokens))
}

/// The options of [`alice_stack`].
pub fn alice_options(refresh_tokens: bool) -> StackOptions<'static> {
    StackOptions {
        access_yaml: Some(alice_access_yaml()),
        refresh_tokens,
        record_token_requests: true,
        ..StackOptions::default()
    }
}

/// `users` and `acl`: alice (password [`PASSWORD`]) owns `alice/**`, anyone may pull.
pub fn alice_access_yaml() -> String {
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    format!(
        "users:\n  alice: {{password: '{hash}'}}\n\
         acl:\n  - match: {{account: '/.+/', name: '${{account}}/**'}}\n    actions: ['*']\n  \
         - match: {{account: ''}}\n    actions: [pull]\n"
    )
}

/// Pushes a fresh OCI image to `repo:v1` with skopeo as alice; returns its manifest digest.
pub fn seed_image(stack: &Stack, repo: &str, seed: &str) -> String {
    let image = stack.image(seed, "v1");
    let out = stack.clients.push(
        &image,
        &stack.registry.docker_ref(repo, "v1"),
        Some(&format!("alice:{PASSWORD}")),
    );
    assert_ok(stack, &out, "");
    image.manifest_digest
}

/// Pushes a fresh image to `repo:tag` anonymously with skopeo; returns its manifest digest
/// and the run. When the push succeeds, the digest the registry stored is the one written.
pub fn skopeo_push(stack: &Stack, repo: &str, tag: &str, seed: &str) -> (String, CmdOutput) {
    let image = stack.image(seed, tag);
    let digest_file = stack.dir.path().join(format!("pushed-{seed}.digest"));
    let out = stack
        .clients
        .skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--digestfile",
            digest_file.to_str().unwrap(),
            &image.skopeo_ref(),
            &stack.registry.docker_ref(repo, tag),
        ])
        .expect("skopeo runs");
    if out.success {
        let pushed = fs::read_to_string(&digest_file).unwrap();
        assert_eq!(
            pushed.trim(),
            image.manifest_digest,
            "the registry stored the manifest we wrote"
        );
    }
    (image.manifest_digest, out)
}

/// The manifest digest of `repo:tag` as an anonymous `skopeo inspect` reads it.
pub fn inspect_digest(stack: &Stack, repo: &str, tag: &str) -> String {
    let out = stack
        .clients
        .inspect(&stack.registry.docker_ref(repo, tag), None);
    assert_ok(stack, &out, "");
    digest_of(&out)
}

/// The `Digest` of a successful `skopeo inspect`.
pub fn digest_of(inspect: &CmdOutput) -> String {
    let json: Value = serde_json::from_str(&inspect.stdout).expect("inspect json");
    json["Digest"].as_str().expect("Digest").to_owned()
}

impl Stack {
    /// A fresh OCI image layout in the stack's directory, its layer holding `seed`.
    pub fn image(&self, seed: &str, tag: &str) -> OciImage {
        oci::write_image(&self.dir.path().join(format!("img-{seed}")), tag, seed).expect("image")
    }
}

impl Clients {
    /// `skopeo copy` of `image` to the `docker://` reference `target`, with `creds`
    /// (`user:password`) or the auth file's.
    pub fn push(&self, image: &OciImage, target: &str, creds: Option<&str>) -> CmdOutput {
        let source = image.skopeo_ref();
        let mut args = vec!["copy", "--dest-tls-verify=false"];
        if let Some(creds) = creds {
            args.extend(["--dest-creds", creds]);
        }
        args.extend([source.as_str(), target]);
        self.skopeo(&args).expect("skopeo runs")
    }

    /// `skopeo inspect` of the `docker://` reference `target`, with `creds` or the auth
    /// file's.
    pub fn inspect(&self, target: &str, creds: Option<&str>) -> CmdOutput {
        let mut args = vec!["inspect", "--tls-verify=false"];
        if let Some(creds) = creds {
            args.extend(["--creds", creds]);
        }
        args.push(target);
        self.skopeo(&args).expect("skopeo runs")
    }

    /// `podman pull` of `image` (`HOST/repo:tag`), with `creds` or the auth file's.
    pub fn podman_pull(&self, image: &str, creds: Option<&str>) -> CmdOutput {
        let mut args = vec!["pull", "--tls-verify=false"];
        if let Some(creds) = creds {
            args.extend(["--creds", creds]);
        }
        args.push(image);
        self.podman(&args).expect("podman runs")
    }

    /// `podman push` of the local `image` to the `docker://` reference `target`.
    pub fn podman_push(&self, image: &str, target: &str, creds: Option<&str>) -> CmdOutput {
        let mut args = vec!["push", "--tls-verify=false"];
        if let Some(creds) = creds {
            args.extend(["--creds", creds]);
        }
        args.extend([image, target]);
        self.podman(&args).expect("podman runs")
    }
}

/// Fails unless `out` succeeded, with its output, the stack's logs (and token requests when
/// it records them), then `more` (a daemon's log, say).
pub fn assert_ok(stack: &Stack, out: &CmdOutput, more: &str) {
    assert!(out.success, "{out}\n{}\n{more}", stack.logs());
}

/// Fails unless `out` failed with the registry's denial ([`DENIED_TEXT`]): the token was
/// valid but short of the action. The message shows `out`, then `more` (logs, say).
pub fn assert_denied(out: &CmdOutput, more: &str) {
    assert!(
        !out.success && out.stderr.contains(DENIED_TEXT),
        "expected the registry's denial ({DENIED_TEXT:?}):\n{out}\n{more}"
    );
}

/// Fails unless skopeo's or podman's `out` failed because regauth refused the credentials
/// (`invalid username/password`, or the bare 401).
pub fn assert_refused_credentials(out: &CmdOutput) {
    assert!(
        !out.success
            && (out.stderr.contains("invalid username/password") || out.stderr.contains("401")),
        "expected refused credentials:\n{out}"
    );
}

/// Fails unless docker's `out` failed because regauth refused the credentials.
pub fn assert_bad_login(out: &CmdOutput) {
    assert!(
        !out.success && out.stderr.contains(BAD_LOGIN_TEXT),
        "expected a refused sign-in ({BAD_LOGIN_TEXT:?}):\n{out}"
    );
}

/// One docker client configuration (`DOCKER_CONFIG`) talking to the shared dockerd, signing
/// in as `user`.
pub struct Docker<'a> {
    pub stack: &'a Stack,
    pub daemon: &'a Dockerd,
    pub config: PathBuf,
    pub user: &'a str,
}

impl<'a> Docker<'a> {
    /// A configuration in `stack`'s directory, named `name`.
    pub fn new(stack: &'a Stack, daemon: &'a Dockerd, name: &str, user: &'a str) -> Docker<'a> {
        Docker {
            stack,
            daemon,
            config: stack.dir.path().join(name),
            user,
        }
    }

    /// `docker ARGS`.
    pub fn run(&self, args: &[&str]) -> CmdOutput {
        self.daemon.docker_in(&self.config, args, None)
    }

    /// `docker login HOST -u USER --password-stdin` (the secret never on a command line).
    pub fn login(&self, password: &str) -> CmdOutput {
        let host = self.stack.registry.host();
        self.daemon.docker_in(
            &self.config,
            &["login", &host, "-u", self.user, "--password-stdin"],
            Some(password),
        )
    }

    /// `HOST/repo:tag` on the stack's registry.
    pub fn image(&self, repo: &str, tag: &str) -> String {
        self.stack.registry.image_ref(repo, tag)
    }

    /// `auths[<registry>]` of this configuration's config.json.
    pub fn stored(&self) -> Value {
        let json: Value = serde_json::from_str(&self.config_text()).unwrap_or(Value::Null);
        json["auths"][self.stack.registry.host()].clone()
    }

    /// The `identitytoken` docker stored at login (a refresh token).
    pub fn identity_token(&self) -> String {
        self.stored()["identitytoken"]
            .as_str()
            .unwrap_or_else(|| panic!("no identitytoken in {}", self.config_text()))
            .to_owned()
    }

    pub fn config_text(&self) -> String {
        fs::read_to_string(self.config.join("config.json")).unwrap_or_default()
    }

    /// Fails with every log (the dockerd's tail too) when `out` failed.
    pub fn ok(&self, out: &CmdOutput) {
        let daemon = format!("--- dockerd (tail) ---\n{}", self.daemon.log());
        assert_ok(self.stack, out, &daemon);
    }

    /// Puts a fresh image (its layer holding `seed`) into dockerd under the local `name`:
    /// skopeo writes a docker archive, `docker load` reads it.
    pub fn load(&self, seed: &str, name: &str) {
        let layout = self.stack.image(seed, "v1");
        let archive = self.stack.dir.path().join(format!("{seed}.tar"));
        let out = self
            .stack
            .clients
            .skopeo(&[
                "copy",
                &layout.skopeo_ref(),
                &format!("docker-archive:{}:{name}", archive.display()),
            ])
            .expect("skopeo runs");
        assert_ok(self.stack, &out, "");
        self.ok(&self.run(&["load", "-i", &archive.to_string_lossy()]));
    }

    /// Pushes the local `source` as `repo:tag`: `docker tag` then `docker push`.
    pub fn push(&self, source: &str, repo: &str, tag: &str) -> CmdOutput {
        let target = self.image(repo, tag);
        self.ok(&self.run(&["tag", source, &target]));
        self.run(&["push", &target])
    }
}
