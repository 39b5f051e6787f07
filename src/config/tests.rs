use super::*;
use std::io::Write;

use crate::keys::KidFormat;
use crate::server::proxy::ForwardedHeader;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(ext: &str, text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn defaults_load_without_file_or_env() {
    let v = load_with_env(None, &HashMap::new()).unwrap();
    let server = crate::server::settings::ServerSettings::default();
    assert_eq!(v.listen.to_string(), server.listen);
    assert_eq!(v.admin_listen, None);
    assert!(v.proxies.is_empty() && v.trusted_proxies.is_empty() && v.tls.is_none());
    assert_eq!(
        (v.shutdown_delay.as_secs(), v.shutdown_timeout.as_secs()),
        (
            server.shutdown_delay_seconds,
            server.shutdown_timeout_seconds
        )
    );
    assert_eq!(v.auth, AuthSettings::default());
    assert!(v.users.is_empty() && v.default_rules.is_some());
    assert_eq!(v.listen.to_string(), "127.0.0.1:5001");
    assert_eq!(v.token.ttl_seconds, 300);
    // Anonymous callers, signed-in people, and robots (issue 18: within their scopes).
    assert_eq!(v.acl.len(), 3, "the three default rules");
    assert!(v.store.is_none(), "no store unless configured");
    assert!(v.zero_config);
}

#[test]
fn yaml_then_env_override_in_that_order() {
    let f = file(
        ".yaml",
        "server:\n  listen: 127.0.0.1:7000\ntoken:\n  issuer: from-file\n  ttl_seconds: 120\n",
    );
    let v = load_with_env(
        Some(f.path()),
        &env(&[
            ("REGAUTH_TOKEN__ISSUER", "from-env"),
            ("REGAUTH_ACCESS__ANONYMOUS", "pull,push"),
            ("REGAUTH_TOKEN__SERVICES", "a.test,b.test"),
            ("REGAUTH_SIGNING_KEY", "not a setting"),
        ]),
    )
    .unwrap();
    assert_eq!(v.listen.port(), 7000);
    assert_eq!(v.token.issuer, "from-env");
    assert_eq!(v.token.ttl_seconds, 120);
    assert_eq!(
        v.default_rules
            .map(|anonymous| anonymous.to_string())
            .as_deref(),
        Some("pull,push")
    );
    assert_eq!(v.token.services, ["a.test", "b.test"]);
    assert!(!v.zero_config);
}

#[test]
fn trusted_proxies_load_from_file_and_environment() {
    let f = file(
        ".yaml",
        "server:\n  trusted_proxies: [10.0.0.0/8]\n  client_ip_header: Forwarded\n",
    );
    let v = load_with_env(Some(f.path()), &HashMap::new()).unwrap();
    assert!(v.proxies.trusts("10.9.8.7".parse().unwrap()));
    assert_eq!(v.proxies.header(), ForwardedHeader::Forwarded);
    let v = load_with_env(
        None,
        &env(&[("REGAUTH_SERVER__TRUSTED_PROXIES", "192.0.2.1,fd00::/8")]),
    )
    .unwrap();
    assert!(v.proxies.trusts("fd00::5".parse().unwrap()));
    assert!(!v.proxies.trusts("10.9.8.7".parse().unwrap()));
    assert!(Settings::default().server.trusted_proxies.is_empty());
}

#[test]
fn tls_files_load_from_file_and_environment_and_default_to_plain_http() {
    let f = file(
        ".yaml",
        "server:\n  tls:\n    certificate: tls/server.crt\n    key: tls/server.key\n",
    );
    let v = load_with_env(Some(f.path()), &HashMap::new()).unwrap();
    let files = v.tls.unwrap();
    assert_eq!(files.certificate, PathBuf::from("tls/server.crt"));
    assert_eq!(files.key, PathBuf::from("tls/server.key"));
    let v = load_with_env(
        None,
        &env(&[
            ("REGAUTH_SERVER__TLS__CERTIFICATE", "/t/c.pem"),
            ("REGAUTH_SERVER__TLS__KEY", "/t/k.pem"),
        ]),
    )
    .unwrap();
    assert_eq!(v.tls.unwrap().key, PathBuf::from("/t/k.pem"));
    assert!(load_with_env(None, &HashMap::new()).unwrap().tls.is_none());
}

#[test]
fn toml_files_load() {
    let f = file(
        ".toml",
        "[token]\nkid_format = \"thumbprint\"\n[key]\nalgorithm = \"PS256\"\n",
    );
    let v = load_with_env(Some(f.path()), &HashMap::new()).unwrap();
    assert_eq!(v.token.kid_format, KidFormat::Thumbprint);
    assert_eq!(v.algorithm, Some(Algorithm::PS256));
}

#[test]
fn users_and_rules_load_with_names_kept_as_written() {
    let f = file(
        ".yaml",
        "users:\n  Alice.Smith:\n    password: $2y$04$x\n    groups: [Dev]\n\
         acl:\n  - match: {account: Alice.Smith, name: '${account}/**'}\n    actions: ['*']\n  - match: {account: ''}\n    actions: [pull]\n",
    );
    let v = load_with_env(Some(f.path()), &HashMap::new()).unwrap();
    assert!(v.users.contains_key("Alice.Smith"), "{:?}", v.users.keys());
    assert_eq!(v.users["Alice.Smith"].groups, ["Dev"]);
    assert_eq!(v.acl.len(), 2);
}

#[test]
fn next_key_settings_load_from_file_and_environment() {
    let f = file(
        ".yaml",
        "key:\n  path: k/signing.key\n  next: k/next.key\n  x5c: false\n",
    );
    let v = load_with_env(
        Some(f.path()),
        &env(&[("REGAUTH_KEY__NEXT_CERTIFICATE", "k/next.crt")]),
    )
    .unwrap();
    assert_eq!(v.key.next, Some(PathBuf::from("k/next.key")));
    assert_eq!(v.key.next_certificate, Some(PathBuf::from("k/next.crt")));
    assert!(!v.key.x5c);
    assert!(Settings::default().key.x5c, "x5c is sent by default");
}

#[test]
fn a_key_variable_turns_off_zero_config() {
    let v = load_with_env(None, &env(&[("REGAUTH_KEY__PATH", "/x/k.pem")])).unwrap();
    assert!(!v.zero_config);
    assert_eq!(v.key.path, PathBuf::from("/x/k.pem"));
}

#[test]
fn federation_issuers_load_with_their_defaults() {
    let f = file(
        ".yaml",
        "federation:\n  - issuer: https://kubernetes.default.svc\n    jwks_file: /etc/regauth/jwks.json\n    audiences: [registry.test]\n\
         \x20 - issuer: https://token.actions.githubusercontent.com\n    jwks_url: https://token.actions.githubusercontent.com/.well-known/jwks\n    audiences: [a, b]\n    account_claim: repository_owner\n    groups_claim: groups\n    algorithms: [RS256]\n    leeway_seconds: 5\n    max_lifetime_seconds: 900\n",
    );
    let v = load_with_env(Some(f.path()), &HashMap::new()).unwrap();
    let [k8s, github] = v.federation.as_slice() else {
        panic!("two issuers: {:?}", v.federation);
    };
    let mut expected = IssuerSettings::new("https://kubernetes.default.svc", &["registry.test"]);
    expected.jwks_file = Some(PathBuf::from("/etc/regauth/jwks.json"));
    assert_eq!(k8s, &expected);
    assert_eq!(k8s.algorithms, ["RS256", "ES256"]);
    assert_eq!((k8s.leeway_seconds, k8s.max_lifetime_seconds), (60, 86_400));
    assert_eq!(k8s.account_claim, "sub");
    assert_eq!(github.account_claim, "repository_owner");
    assert_eq!(github.groups_claim.as_deref(), Some("groups"));
    assert_eq!(
        (github.leeway_seconds, github.max_lifetime_seconds),
        (5, 900)
    );
    assert!(Settings::default().federation.is_empty());
}

/// (YAML, environment, expected text of the error)
type BadCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_configurations_say_what_to_fix() {
    let cases: &[BadCase] = &[
        ("token:\n  ttl: 5\n", &[], "unknown field `ttl`"),
        ("tokens: {}\n", &[], "unknown field `tokens`"),
        (
            "token:\n  ttl_seconds: 30\n",
            &[],
            "token.ttl_seconds: 30 is out of range",
        ),
        ("token:\n  ttl_seconds: lots\n", &[], "ttl_seconds"),
        ("server:\n  listen: localhost\n", &[], "server.listen"),
        (
            "server:\n  admin_listen: metrics\n",
            &[],
            "server.admin_listen: \"metrics\" is not an address",
        ),
        (
            "server:\n  listen: 127.0.0.1:5001\n",
            &[("REGAUTH_SERVER__ADMIN_LISTEN", "127.0.0.1:5001")],
            "server.admin_listen: must differ from server.listen",
        ),
        ("token:\n  issuer: ' '\n", &[], "token.issuer"),
        (
            "server:\n  tls:\n    certificate: tls/server.crt\n",
            &[],
            "server.tls.key: is missing: server.tls.certificate is set",
        ),
        (
            "",
            &[("REGAUTH_SERVER__TLS__KEY", "tls/server.key")],
            "server.tls.certificate: is missing: server.tls.key is set",
        ),
        (
            "server:\n  tls:\n    cert: tls/server.crt\n",
            &[],
            "unknown field `cert`",
        ),
        (
            "key:\n  algorithm: ES257\n",
            &[],
            "key.algorithm: unknown algorithm",
        ),
        (
            "key:\n  source: vault\n",
            &[],
            "key.source \"vault\" is not one of: file, env",
        ),
        (
            "token:\n  kid_format: x\n",
            &[],
            "token.kid_format \"x\" is not one of: libtrust, thumbprint, none",
        ),
        (
            "access:\n  anonymous: [Pull]\n",
            &[],
            "access.anonymous: \"Pull\"",
        ),
        ("key:\n  source: env\n  env: ''\n", &[], "key.env"),
        (
            "key:\n  path: k\n  next: k\n",
            &[],
            "key.next: must be another file than key.path",
        ),
        (
            "key:\n  source: env\n  next: n.key\n",
            &[],
            "key.next: needs key.source: file",
        ),
        (
            "key:\n  next_certificate: n.crt\n",
            &[],
            "key.next_certificate: is set without key.next",
        ),
        (
            "key:\n  poll_interval_seconds: 0\n",
            &[],
            "key.poll_interval_seconds",
        ),
        (
            "token:\n  services: [registry.test, ' ']\n",
            &[],
            "token.services: \" \" is not a service name",
        ),
        (
            "key:\n  path: ''\n",
            &[],
            "key.path: must name the key file",
        ),
        (
            "acl: []\naccess:\n  anonymous: [pull]\n",
            &[],
            "access.anonymous: applies only without acl",
        ),
        (
            "auth:\n  refresh_ttl_seconds: 59\n",
            &[],
            "auth.refresh_ttl_seconds: must be at least 60",
        ),
        (
            "auth:\n  refresh_ttl_seconds: 40000000\n",
            &[],
            "auth.refresh_ttl_seconds: must be at least 60 and at most 31622400",
        ),
        (
            "server:\n  shutdown_timeout_seconds: 0\n",
            &[],
            "server.shutdown_timeout_seconds: must be at least 1",
        ),
        (
            "auth:\n  check_queue: 0\n",
            &[],
            "auth.check_queue: must be at least 1",
        ),
        (
            "auth:\n  limits:\n    window_seconds: 0\n",
            &[],
            "auth.limits: window_seconds, backoff_seconds and max_entries must be at least 1",
        ),
        (
            "auth:\n  limits:\n    backoff_seconds: 10\n    max_backoff_seconds: 5\n",
            &[],
            "auth.limits.max_backoff_seconds: must be at least backoff_seconds",
        ),
        (
            "server:\n  trusted_proxies: [10.0.0.0/8, proxy.internal]\n",
            &[],
            "server.trusted_proxies: \"proxy.internal\" is not a CIDR range",
        ),
        (
            "server:\n  client_ip_header: x-real-ip\n",
            &[],
            "server.client_ip_header \"x-real-ip\" is not one of",
        ),
        (
            "log:\n  format: xml\n",
            &[],
            "log.format \"xml\" is not one of: text, json",
        ),
        (
            "audit:\n  output: ''\n",
            &[],
            "audit.output: must be stderr, stdout or a file path",
        ),
        (
            "users:\n  'ci:bot': {}\n",
            &[],
            "users: \"ci:bot\" is not a user name",
        ),
        ("users:\n  '': {}\n", &[], "users: \"\" is not a user name"),
        (
            "federation:\n  - issuer: https://ci.example\n    jwks_url: https://ci.example/keys\n    audiences: []\n",
            &[],
            "federation: entry 0 (issuer \"https://ci.example\"): audiences must list at least one",
        ),
        (
            "federation:\n  - issuer: https://ci.example\n    jwks_file: k.json\n    audiences: [r]\n    algorithms: [HS256]\n",
            &[],
            "\"HS256\" is never accepted",
        ),
        (
            "federation:\n  - issuer: x\n    jwks_file: k.json\n    audience: [r]\n",
            &[],
            "unknown field `audience`",
        ),
        (
            "{}\n",
            &[("REGAUTH_TOKEN__TTL_SECONDS", "10")],
            "token.ttl_seconds",
        ),
        (
            "{}\n",
            &[("REGAUTH_TOKEN__NOPE", "1")],
            "unknown field `nope`",
        ),
    ];
    for (yaml, vars, expected) in cases {
        let f = file(".yaml", yaml);
        let err = load_with_env(Some(f.path()), &env(vars))
            .expect_err(yaml)
            .to_string();
        assert!(err.contains(expected), "{yaml:?}: {err}");
    }
}

/// The environment that sets the duration setting `key` to `value` (with what the
/// setting needs beside it to be valid).
fn duration_env(key: &str, value: u64) -> HashMap<String, String> {
    let var = format!("REGAUTH_{}", key.replace('.', "__").to_uppercase());
    let mut vars = HashMap::from([(var, value.to_string())]);
    if key.starts_with("ldap.") {
        vars.insert("REGAUTH_LDAP__URL".into(), "ldap://127.0.0.1:389".into());
        vars.insert("REGAUTH_LDAP__BASE_DN".into(), "dc=example,dc=org".into());
    }
    if key == "auth.limits.backoff_seconds" {
        vars.insert(
            "REGAUTH_AUTH__LIMITS__MAX_BACKOFF_SECONDS".into(),
            value.to_string(),
        );
    }
    vars
}

#[test]
fn every_duration_is_bounded_and_the_error_names_it() {
    for (key, max) in DURATION_BOUNDS {
        let at_max = duration_env(key, max);
        load_with_env(None, &at_max)
            .unwrap_or_else(|e| panic!("{at_max:?}: the largest value is refused: {e}"));
        let over = duration_env(key, max + 1);
        let err = load_with_env(None, &over)
            .map(|_| ())
            .expect_err(key)
            .to_string();
        let expected = format!("{key}: {} is more than the {max} seconds allowed", max + 1);
        assert!(err.contains(&expected), "{over:?}: {err}");
    }
}

#[test]
fn an_absurd_duration_is_an_error_at_load_not_a_panic_at_start() {
    let f = file(
        ".yaml",
        "auth:\n  cache_seconds: 18446744073709551615\n  limits:\n    window_seconds: 18446744073709551615\n",
    );
    let err = load_with_env(Some(f.path()), &HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("auth.cache_seconds: 18446744073709551615 is more than"),
        "{err}"
    );
    let err = load_with_env(
        None,
        &env(&[("REGAUTH_KEY__POLL_INTERVAL_SECONDS", "100000000000")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("key.poll_interval_seconds: 100000000000 is more than"),
        "{err}"
    );
}

#[test]
fn missing_or_unknown_kind_of_file_is_named() {
    let err = load_with_env(
        Some(Path::new("/nonexistent/regauth.yaml")),
        &HashMap::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("/nonexistent/regauth.yaml"), "{err}");
    let err = load_with_env(Some(Path::new("regauth.json")), &HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains(".yaml, .yml or .toml"), "{err}");
}

#[test]
fn a_regauth_variable_that_is_no_setting_stops_the_load_and_is_named() {
    // (variables, the error must contain, or None when the load succeeds)
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: &[Case] = &[
        (
            &[("REGAUTH_TOKEN_TTL_SECONDS", "10")],
            Some(
                "REGAUTH_TOKEN_TTL_SECONDS is not a setting (did you mean REGAUTH_TOKEN__TTL_SECONDS?)",
            ),
        ),
        (
            &[("REGAUTH_SERVER_LISTEN", "0.0.0.0:5001")],
            Some("did you mean REGAUTH_SERVER__LISTEN?"),
        ),
        (
            &[("REGAUTH_NOTHING", "1")],
            Some("REGAUTH_NOTHING is not a setting;"),
        ),
        (&[("REGAUTH_TOKEN__TTL_SECONDS", "120")], None),
        (&[("REGAUTH_CONFIG", "/etc/regauth/regauth.yaml")], None),
        (&[("REGAUTH_SIGNING_KEY", "pem")], None),
        // The variable key.env names is the key, not a setting.
        (
            &[
                ("REGAUTH_KEY__ENV", "REGAUTH_MY_KEY"),
                ("REGAUTH_MY_KEY", "pem"),
            ],
            None,
        ),
        (&[("OTHER_TOKEN_TTL", "1"), ("REGAUTHX", "1")], None),
    ];
    for (vars, expected) in cases {
        let result = load_with_env(None, &env(vars));
        match expected {
            None => assert!(result.is_ok(), "{vars:?}: {:?}", result.err()),
            Some(text) => {
                let err = result.expect_err(text).to_string();
                assert!(err.contains(text), "{vars:?}: {err}");
            }
        }
    }
}

#[test]
fn the_refresh_secret_defaults_to_the_key_directory() {
    let with = |yaml: &str| {
        let f = file(".yaml", yaml);
        load_with_env(Some(f.path()), &HashMap::new())
            .unwrap()
            .refresh_secret_file()
    };
    assert_eq!(
        with("key:\n  path: /etc/regauth/keys/signing.key\n"),
        PathBuf::from("/etc/regauth/keys/refresh.secret")
    );
    assert_eq!(with("{}"), PathBuf::from("keys/refresh.secret"));
    assert_eq!(
        with("key:\n  path: /k/signing.key\nauth:\n  refresh_secret_file: /s/r.secret\n"),
        PathBuf::from("/s/r.secret")
    );
    assert_eq!(
        with("key:\n  source: env\n  path: /k/signing.key\n"),
        PathBuf::from("keys/refresh.secret")
    );
}
