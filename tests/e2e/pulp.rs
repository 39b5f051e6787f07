//! Pulp as the registry, regauth as its token server: skopeo pushes, pulls, is denied, meets
//! Pulp's user-name caveat, and sees a key cut-over, with every token request asserted.
//! `server` starts Pulp (pulpcore and pulp_container from PyPI, pinned in
//! tests/e2e/pulp/requirements.txt, installed into a venv by .ci/run and found through
//! `E2E_PULP_VENV`) on its own PostgreSQL. docs/pulp.md explains the settings on both sides.

mod server;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use data_encoding::BASE64;
use regauth::keys::{Algorithm, generate};
use serde_json::Value;
use tempfile::TempDir;

use crate::clients::assert_denied;
use crate::oci;
use crate::recorder::{Auth, Recorder};
use crate::registry::{Clients, CmdOutput, http_request};
use crate::stack::{Regauth, encode, jwt_header};
use crate::support::wait_for;
use server::{
    Prerequisites, Pulp, PulpOptions, is_root, path_str, prerequisites, public_key_pem, tail,
};

const PASSWORD: &str = "s3cret";

/// regauth, a recorder as the realm, Pulp, and skopeo clients, in one directory.
struct World {
    // Dropped in this order: Pulp first (its daemons), then regauth and the recorder.
    pulp: Pulp,
    recorder: Recorder,
    regauth: Regauth,
    clients: Clients,
    realm: String,
    /// Pulp's PUBLIC_KEY_PATH and regauth's key file, for the rotation step.
    public_key: PathBuf,
    key: PathBuf,
    dir: TempDir,
}

/// A service name regauth also issues for, that no client uses as Host.
const OTHER_SERVICE: &str = "pulp.invalid";

impl World {
    fn start(pre: &Prerequisites) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            // PostgreSQL runs as another user and must reach its directory below this one.
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).expect("chmod");
        }
        let front = TcpListener::bind("127.0.0.1:0").expect("bind front");
        let host = front.local_addr().expect("front addr").to_string();
        let realm_listener = TcpListener::bind("127.0.0.1:0").expect("bind realm");
        let realm = format!(
            "http://{}/token",
            realm_listener.local_addr().expect("realm addr")
        );

        let keys = dir.path().join("keys");
        let written = generate::write(&keys, Algorithm::ES256, false).expect("keygen");
        let public_key = dir.path().join("regauth-public.pem");
        fs::write(&public_key, public_key_pem(&written.key)).expect("public key");
        let hash = bcrypt::hash(PASSWORD, 4).expect("hash");
        // alice may do anything under alice/; any signed-in user and anonymous callers may
        // pull anything.
        let config = format!(
            "server:\n  listen: 127.0.0.1:0\n\
             token:\n  issuer: {realm:?}\n  services: [{host:?}, {OTHER_SERVICE:?}]\n\
             key:\n  source: file\n  path: {key:?}\n\
             users:\n  alice: {{password: '{hash}'}}\n  carol: {{password: '{hash}'}}\n\
             acl:\n  - match: {{account: '/.+/', name: '${{account}}/**'}}\n    actions: ['*']\n  \
             - match: {{account: '/.+/'}}\n    actions: [pull]\n  \
             - match: {{account: ''}}\n    actions: [pull]\n",
            key = path_str(&written.key),
        );
        let config_path = dir.path().join("regauth.yaml");
        fs::write(&config_path, config).expect("config");
        let regauth = Regauth::start(&config_path, &dir.path().join("regauth.log"));
        let recorder = Recorder::start_on(realm_listener, regauth.addr);

        let pulp_dir = dir.path().join("pulp");
        fs::create_dir_all(&pulp_dir).expect("pulp dir");
        let at = Instant::now();
        let pulp = Pulp::start(
            pre,
            &pulp_dir,
            PulpOptions {
                front,
                token_server: &realm,
                public_key: &public_key,
                users: &["alice"],
            },
        );
        eprintln!("pulp: started in {:.1} s", at.elapsed().as_secs_f64());
        let clients = Clients::new(&dir.path().join("clients")).expect("clients");
        World {
            pulp,
            recorder,
            regauth,
            clients,
            realm,
            public_key,
            key: written.key,
            dir,
        }
    }

    fn skopeo(&self, args: &[&str]) -> CmdOutput {
        self.clients.skopeo(args).expect("skopeo runs")
    }

    fn ok(&self, out: &CmdOutput) {
        assert!(out.success, "{out}\n{}", self.logs());
    }

    fn logs(&self) -> String {
        format!(
            "--- token requests ---\n{}\n--- regauth log (tail) ---\n{}\n{}",
            self.recorder.dump(),
            tail(&self.regauth.log(), 30),
            self.pulp.logs()
        )
    }

    /// Pulls `repo:tag` into an OCI directory with `creds` (None: anonymous); returns the
    /// manifest digest it wrote, or the failed command.
    fn pull(
        &self,
        repo: &str,
        tag: &str,
        creds: Option<&str>,
        into: &str,
    ) -> Result<String, CmdOutput> {
        let target = self.dir.path().join(into);
        let target_ref = format!("oci:{}:{tag}", target.display());
        let source = self.pulp.docker_ref(repo, tag);
        let mut args = vec!["copy", "--src-tls-verify=false"];
        match creds {
            Some(creds) => args.extend(["--src-creds", creds]),
            None => args.push("--src-no-creds"),
        }
        args.extend([source.as_str(), target_ref.as_str()]);
        let out = self.skopeo(&args);
        if !out.success {
            return Err(out);
        }
        let index: Value =
            serde_json::from_str(&fs::read_to_string(target.join("index.json")).expect("index"))
                .expect("index json");
        Ok(index["manifests"][0]["digest"]
            .as_str()
            .expect("digest")
            .to_owned())
    }

    /// A token straight from regauth as alice, for `service`.
    fn alice_token(&self, service: &str, scope: &str) -> String {
        let basic = format!(
            "Basic {}",
            BASE64.encode(format!("alice:{PASSWORD}").as_bytes())
        );
        let response = http_request(
            self.regauth.addr,
            "GET",
            &format!(
                "/token?account=alice&service={}&scope={}",
                encode(service),
                encode(scope)
            ),
            &[("Authorization", basic.as_str())],
            Duration::from_secs(10),
        )
        .expect("regauth answers");
        assert_eq!(response.status, 200, "{}", response.body_text());
        let body: Value = serde_json::from_slice(&response.body).expect("json");
        body["token"].as_str().expect("token").to_owned()
    }
}

fn took(what: &str, at: Instant) {
    eprintln!("pulp: {what} {:.1} s", at.elapsed().as_secs_f64());
}

#[test]
fn pulp_trusts_regauth_for_push_pull_anonymous_pull_and_denial_and_knows_only_its_own_users() {
    let Some(pre) = prerequisites() else {
        return;
    };
    let started = Instant::now();
    let world = World::start(&pre);
    let pulp = &world.pulp;
    let recorder = &world.recorder;
    let host = pulp.host.as_str();

    // The challenge sends clients to regauth (through the recorder) for this Host.
    let challenge = pulp.request("/v2/", &[]);
    assert_eq!(challenge.status, 401);
    assert_eq!(
        challenge.header("www-authenticate"),
        Some(format!("Bearer realm=\"{}\",service=\"{host}\"", world.realm).as_str())
    );

    // 1. alice, known to both, pushes: GET with Basic for pull,push on her repository.
    let at = Instant::now();
    recorder.clear();
    let image = oci::write_image(&world.dir.path().join("img"), "v1", "pulp").expect("image");
    let digest_file = world.dir.path().join("pushed.digest");
    let push = world.skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("alice:{PASSWORD}"),
        "--digestfile",
        &path_str(&digest_file),
        &image.skopeo_ref(),
        &pulp.docker_ref("alice/app", "v1"),
    ]);
    world.ok(&push);
    assert_eq!(
        fs::read_to_string(&digest_file).expect("digest").trim(),
        image.manifest_digest
    );
    recorder.assert_every(
        "a GET with alice's Basic for the Host as service, answered 200",
        |r| {
            r.is_get_with(&Auth::Basic("alice".into()))
                && r.field("service") == Some(host)
                && r.status == 200
        },
    );
    recorder.assert_some("a push to alice/app", |r| {
        r.asks_exactly(&["repository:alice/app:pull,push"])
    });
    // The token's aud is the Host skopeo used, which is what Pulp compares it with.
    let log = world.regauth.log();
    assert!(
        log.contains(&format!("sub=\"alice\" aud=\"{host}\"")),
        "{log}"
    );
    took("push", at);

    // 2. Pulled back by alice: the same manifest; blobs came from the content app.
    let at = Instant::now();
    recorder.clear();
    let pulled = world
        .pull(
            "alice/app",
            "v1",
            Some(&format!("alice:{PASSWORD}")),
            "pulled",
        )
        .unwrap_or_else(|out| panic!("{out}\n{}", world.logs()));
    assert_eq!(pulled, image.manifest_digest);
    recorder.assert_some(
        "a GET with alice's Basic for alice/app, answered 200",
        |r| {
            r.is_get_with(&Auth::Basic("alice".into()))
                && r.asks_exactly(&["repository:alice/app:pull"])
                && r.status == 200
        },
    );
    assert!(
        pulp.api_log().contains(&format!(
            "\"GET /v2/alice/app/blobs/{} HTTP/1.1\" 302",
            image.layer_digest
        )),
        "the API redirects blob reads:\n{}",
        pulp.logs()
    );
    assert!(
        pulp.content_log().contains(&format!(
            "\"GET /pulp/container/alice/app/blobs/{}?",
            image.layer_digest
        )),
        "the content app served the blob:\n{}",
        pulp.logs()
    );
    took("pull as alice", at);

    // 3. Anonymous pull: a GET without Authorization; regauth's token has sub "", which Pulp
    //    takes as anonymous, and its access list is all Pulp checks.
    let at = Instant::now();
    recorder.clear();
    let anonymous = world
        .pull("alice/app", "v1", None, "pulled-anonymously")
        .unwrap_or_else(|out| panic!("{out}\n{}", world.logs()));
    assert_eq!(anonymous, image.manifest_digest);
    recorder.assert_every("an anonymous GET for alice/app", |r| {
        r.is_anonymous_get() && r.asks_exactly(&["repository:alice/app:pull"])
    });
    assert!(
        world
            .regauth
            .log()
            .contains(&format!("sub=\"\" aud=\"{host}\"")),
        "{}",
        world.regauth.log()
    );
    took("anonymous pull", at);

    // 4. A push regauth does not grant: the token is issued (200) with pull only, and Pulp's
    //    refusal (401, error="insufficient_scope") is shown by skopeo as the usual denial.
    let at = Instant::now();
    recorder.clear();
    let denied = world.skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("alice:{PASSWORD}"),
        &image.skopeo_ref(),
        &pulp.docker_ref("bob/app", "v1"),
    ]);
    assert_denied(&denied, &world.logs());
    recorder.assert_some("alice's Basic for bob/app, answered 200", |r| {
        r.status == 200
            && r.auth == Auth::Basic("alice".into())
            && r.asks_exactly(&["repository:bob/app:pull,push"])
    });
    assert!(
        world
            .regauth
            .log()
            .contains(r#"access=[{"type":"repository","name":"bob/app","actions":["pull"]}]"#),
        "{}",
        world.regauth.log()
    );
    took("denied push", at);

    // 5. carol exists in regauth only: regauth issues her a pull token, and Pulp refuses it
    //    because `sub` names no Pulp user. Once Pulp has the user, the same pull works.
    let at = Instant::now();
    recorder.clear();
    let carol = format!("carol:{PASSWORD}");
    let refused = world
        .pull("alice/app", "v1", Some(&carol), "pulled-by-carol")
        .expect_err("carol is not a Pulp user");
    assert!(
        refused.stderr.contains("No such user"),
        "{refused}\n{}",
        world.logs()
    );
    recorder.assert_some("carol's Basic for alice/app, answered 200", |r| {
        r.status == 200
            && r.auth == Auth::Basic("carol".into())
            && r.asks_exactly(&["repository:alice/app:pull"])
    });
    pulp.add_users(&["carol"]);
    let pulled = world
        .pull("alice/app", "v1", Some(&carol), "pulled-by-carol-2")
        .unwrap_or_else(|out| panic!("{out}\n{}", world.logs()));
    assert_eq!(pulled, image.manifest_digest);
    took("regauth-only user", at);

    // 6. aud must be the Host: a token regauth issued for another service name is refused.
    let manifest = "/v2/alice/app/manifests/v1";
    let accept = ("Accept", oci::MEDIA_TYPE_MANIFEST);
    let elsewhere = format!(
        "Bearer {}",
        world.alice_token(OTHER_SERVICE, "repository:alice/app:pull")
    );
    let answer = pulp.request(manifest, &[("Authorization", elsewhere.as_str()), accept]);
    assert_eq!(answer.status, 401, "{}", answer.body_text());
    assert!(
        answer.body_text().contains("Bearer token is invalid"),
        "{}",
        answer.body_text()
    );
    let here = format!(
        "Bearer {}",
        world.alice_token(host, "repository:alice/app:pull")
    );
    let answer = pulp.request(manifest, &[("Authorization", here.as_str()), accept]);
    assert_eq!(answer.status, 200, "{}", answer.body_text());

    // 7. Rotation is a cut-over: Pulp reads PUBLIC_KEY_PATH for every token it checks (a new
    //    file counts at once, no restart) and trusts only that key, whatever the kid says.
    let at = Instant::now();
    let old_kid = jwt_header(here.trim_start_matches("Bearer "))["kid"].clone();
    let next = generate::write(&world.dir.path().join("keys-next"), Algorithm::ES256, false)
        .expect("keygen");
    let staged = world.dir.path().join("regauth-public.pem.next");
    fs::write(&staged, public_key_pem(&next.key)).expect("public key");
    fs::rename(&staged, &world.public_key).expect("swap Pulp's key");
    fs::rename(&next.key, &world.key).expect("swap regauth's key");
    let fresh = wait_for(
        Duration::from_secs(30),
        || {
            let token = world.alice_token(host, "repository:alice/app:pull");
            (jwt_header(&token)["kid"] != old_kid).then(|| format!("Bearer {token}"))
        },
        || format!("regauth did not reload its key:\n{}", world.regauth.log()),
    );
    let answer = pulp.request(manifest, &[("Authorization", here.as_str()), accept]);
    assert_eq!(
        answer.status,
        401,
        "a token signed with the old key, after the swap: {}",
        answer.body_text()
    );
    let answer = pulp.request(manifest, &[("Authorization", fresh.as_str()), accept]);
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    let pulled = world
        .pull(
            "alice/app",
            "v1",
            Some(&format!("alice:{PASSWORD}")),
            "pulled-after-rotation",
        )
        .unwrap_or_else(|out| panic!("{out}\n{}", world.logs()));
    assert_eq!(pulled, image.manifest_digest);
    took("key cut-over", at);

    took("whole scenario", started);
}
