//! Unit tests: tokens made here, keys from a JWKS file, time from a hand-moved clock.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::clock::ManualClock;
use crate::keys::generate;

const ISS: &str = "https://issuer.test";
const AUD: &str = "registry.test";
const NOW: i64 = 1_800_000_000;

struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Jwk,
    /// The public key as PEM (SubjectPublicKeyInfo), for the confusion attack.
    public_pem: String,
}

fn signer(kid: &str, alg: Algorithm) -> Signer {
    let ours = match alg {
        Algorithm::RS256 => crate::keys::Algorithm::RS256,
        Algorithm::ES256 => crate::keys::Algorithm::ES256,
        Algorithm::ES384 => crate::keys::Algorithm::ES384,
        other => panic!("no test key for {other:?}"),
    };
    let pem = generate::generate(ours).unwrap().key_pem;
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    };
    let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    let public_pem = rcgen::KeyPair::from_pem(&pem).unwrap().public_key_pem();
    Signer {
        kid: kid.to_owned(),
        alg,
        key,
        jwk,
        public_pem,
    }
}

impl Signer {
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

fn jwks(signers: &[&Signer]) -> String {
    json!({"keys": signers.iter().map(|s| &s.jwk).collect::<Vec<_>>()}).to_string()
}

/// Claims valid at NOW for ISS and AUD, for the account `system:serviceaccount:team-a:builder`.
fn claims() -> Value {
    json!({
        "iss": ISS,
        "aud": [AUD, "https://kubernetes.default.svc"],
        "sub": "system:serviceaccount:team-a:builder",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 3600,
    })
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

struct Fixture {
    federation: Federation,
    clock: Arc<ManualClock>,
    rsa: Signer,
    ec: Signer,
    dir: tempfile::TempDir,
}

fn fixture(customize: impl FnOnce(&mut IssuerSettings)) -> Fixture {
    let rsa = signer("rsa-1", Algorithm::RS256);
    let ec = signer("ec-1", Algorithm::ES256);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&rsa, &ec])).unwrap();
    let mut settings = IssuerSettings::new(ISS, &[AUD]);
    settings.jwks_file = Some(path);
    customize(&mut settings);
    let clock = Arc::new(ManualClock::new(DateTime::from_timestamp(NOW, 0).unwrap()));
    let federation = Federation::new(&[settings], clock.clone()).unwrap();
    Fixture {
        federation,
        clock,
        rsa,
        ec,
        dir,
    }
}

fn refusal(result: Result<Option<Federated>, FederationError>) -> Refusal {
    match result {
        Err(FederationError::Refused { refusal, .. }) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_valid_token_of_either_key_type_maps_to_its_account_until_its_expiry() {
    let f = fixture(|_| {});
    for signer in [&f.rsa, &f.ec] {
        let token = signer.sign(&claims());
        let got = f.federation.verify("oidc", &token).unwrap().unwrap();
        assert_eq!(
            got.identity.subject(),
            "system:serviceaccount:team-a:builder"
        );
        assert!(got.identity.groups().is_empty());
        assert_eq!(got.issuer, ISS);
        assert_eq!(got.expires_at.timestamp(), NOW + 3600);
    }
}

#[test]
fn passwords_that_are_not_tokens_of_a_configured_issuer_are_not_this_sources_business() {
    let f = fixture(|_| {});
    let stranger = f
        .rsa
        .sign(&with(claims(), json!({"iss": "https://other.test"})));
    let no_iss = f.rsa.sign(&with(claims(), json!({"iss": null})));
    let long = format!("{}.{}", f.rsa.sign(&claims()), "x".repeat(MAX_TOKEN_BYTES));
    for password in ["s3cret", "a.b.c", "", &stranger, &no_iss, &long] {
        assert_eq!(
            f.federation.verify("oidc", password),
            Ok(None),
            "{password:.40}"
        );
    }
    assert_eq!(f.federation.claims_issuer(&f.ec.sign(&claims())), Some(ISS));
}

#[test]
fn times_are_checked_with_the_leeway() {
    let f = fixture(|_| {});
    let token = f.rsa.sign(&claims());
    f.clock.advance(TimeDelta::seconds(3600 + 60));
    assert!(
        f.federation.verify("oidc", &token).unwrap().is_some(),
        "within leeway"
    );
    f.clock.advance(TimeDelta::seconds(1));
    assert_eq!(
        refusal(f.federation.verify("oidc", &token)),
        Refusal::Expired(NOW + 3600)
    );
    let f = fixture(|_| {});
    let early = f
        .rsa
        .sign(&with(claims(), json!({"nbf": NOW + 61, "iat": NOW})));
    assert_eq!(
        refusal(f.federation.verify("oidc", &early)),
        Refusal::NotYetValid(NOW + 61)
    );
    let future = f
        .rsa
        .sign(&with(claims(), json!({"iat": NOW + 61, "nbf": null})));
    assert_eq!(
        refusal(f.federation.verify("oidc", &future)),
        Refusal::IssuedInFuture(NOW + 61)
    );
    let within = f.rsa.sign(&with(claims(), json!({"nbf": NOW + 60})));
    assert!(f.federation.verify("oidc", &within).unwrap().is_some());
}

#[test]
fn a_token_without_exp_or_without_a_start_or_living_too_long_is_refused() {
    let f = fixture(|s| s.max_lifetime_seconds = 7200);
    let cases = [
        (json!({"exp": null}), Refusal::NoExpiry),
        (json!({"exp": "tomorrow"}), Refusal::NoExpiry),
        (json!({"iat": null, "nbf": null}), Refusal::NoStart),
        (
            json!({"iat": NOW - 10, "exp": NOW + 7200}),
            Refusal::TooLongLived(7210),
        ),
        (
            json!({"iat": null, "nbf": NOW - 100, "exp": NOW + 7101}),
            Refusal::TooLongLived(7201),
        ),
    ];
    for (changes, expected) in cases {
        let token = f.rsa.sign(&with(claims(), changes.clone()));
        assert_eq!(
            refusal(f.federation.verify("oidc", &token)),
            expected,
            "{changes}"
        );
    }
    let exactly = f.rsa.sign(&with(
        claims(),
        json!({"iat": NOW, "nbf": null, "exp": NOW + 7200}),
    ));
    assert!(f.federation.verify("oidc", &exactly).unwrap().is_some());
}

#[test]
fn the_audience_must_be_one_of_the_configured_ones() {
    let f = fixture(|s| s.audiences = vec![AUD.into(), "other.test".into()]);
    for (aud, ok) in [
        (json!(AUD), true),
        (json!("other.test"), true),
        (json!(["x", "other.test"]), true),
        (json!("registry.test.evil"), false),
        (json!(["x", "y"]), false),
        (json!([]), false),
        (json!(42), false),
        (Value::Null, false),
    ] {
        let token = f.rsa.sign(&with(claims(), json!({ "aud": aud })));
        let result = f.federation.verify("oidc", &token);
        if ok {
            assert!(result.unwrap().is_some(), "{aud}");
        } else {
            assert_eq!(refusal(result), Refusal::Audience, "{aud}");
        }
    }
}

fn b64(value: &Value) -> String {
    BASE64URL_NOPAD.encode(value.to_string().as_bytes())
}

#[test]
fn an_unsigned_token_is_refused() {
    let f = fixture(|_| {});
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "kid": "rsa-1"})),
            b64(&claims())
        );
        assert_eq!(
            refusal(f.federation.verify("oidc", &token)),
            Refusal::Algorithm(alg.into())
        );
    }
}

#[test]
fn an_hmac_token_keyed_with_the_rsa_public_key_is_refused_even_when_hmac_would_be_tried() {
    let f = fixture(|_| {});
    for kid in [Some("rsa-1"), None] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        let secret = EncodingKey::from_secret(f.rsa.public_pem.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(&header, &claims(), &secret).unwrap();
        assert_eq!(
            refusal(f.federation.verify("oidc", &token)),
            Refusal::Algorithm("HS256".into())
        );
    }
    // Below the allow-list, the key type check stops it too: an HMAC alg fits no key.
    let keys = KeyStore::new(
        Source::File(f.dir.path().join("jwks.json")),
        Arc::new(ManualClock::new(DateTime::UNIX_EPOCH)),
    )
    .unwrap();
    assert!(matches!(
        keys.lookup(Some("rsa-1"), Algorithm::HS256),
        Lookup::Mismatch
    ));
    assert!(matches!(
        keys.lookup(None, Algorithm::HS256),
        Lookup::Mismatch
    ));
}

#[test]
fn an_allowed_alg_that_does_not_fit_the_named_key_is_refused() {
    let f = fixture(|s| s.algorithms = vec!["RS256".into(), "ES256".into(), "ES384".into()]);
    let p384 = signer("ec-1", Algorithm::ES384);
    let token = p384.sign(&claims());
    assert_eq!(
        refusal(f.federation.verify("oidc", &token)),
        Refusal::KeyMismatch("ES384".into())
    );
    // An RS256 token that names the EC key.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("ec-1".into());
    let token = jsonwebtoken::encode(&header, &claims(), &f.rsa.key).unwrap();
    assert_eq!(
        refusal(f.federation.verify("oidc", &token)),
        Refusal::KeyMismatch("RS256".into())
    );
}

#[test]
fn a_token_whose_alg_is_not_in_the_allow_list_is_refused() {
    let f = fixture(|s| s.algorithms = vec!["ES256".into()]);
    let token = f.rsa.sign(&claims());
    assert_eq!(
        refusal(f.federation.verify("oidc", &token)),
        Refusal::Algorithm("RS256".into())
    );
    assert!(
        f.federation
            .verify("oidc", &f.ec.sign(&claims()))
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_changed_payload_or_a_foreign_key_fails_the_signature() {
    let f = fixture(|_| {});
    let token = f.rsa.sign(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = with(
        claims(),
        json!({"sub": "system:serviceaccount:kube-system:admin"}),
    );
    let forged = format!("{}.{}.{}", parts[0], b64(&forged_claims), parts[2]);
    assert_eq!(
        refusal(f.federation.verify("oidc", &forged)),
        Refusal::Signature
    );
    let impostor = signer("rsa-1", Algorithm::RS256);
    assert_eq!(
        refusal(f.federation.verify("oidc", &impostor.sign(&claims()))),
        Refusal::Signature
    );
    let unsigned = format!("{}.{}.", parts[0], parts[1]);
    assert_eq!(
        refusal(f.federation.verify("oidc", &unsigned)),
        Refusal::Signature
    );
}

#[test]
fn a_token_without_kid_is_tried_against_the_keys_that_fit_its_alg() {
    let f = fixture(|_| {});
    let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims(), &f.ec.key).unwrap();
    assert!(f.federation.verify("oidc", &token).unwrap().is_some());
}

#[test]
fn an_unknown_kid_is_refused_and_rereads_the_file_at_most_once_a_minute() {
    let f = fixture(|_| {});
    let stranger = signer("rsa-2", Algorithm::RS256);
    let before = f.federation.key_stats(ISS).unwrap().loads;
    assert_eq!(
        refusal(f.federation.verify("oidc", &stranger.sign(&claims()))),
        Refusal::UnknownKey("rsa-2".into())
    );
    assert_eq!(
        f.federation.key_stats(ISS).unwrap().loads,
        before + 1,
        "one re-read"
    );
    let _ = f.federation.verify("oidc", &stranger.sign(&claims()));
    assert_eq!(
        f.federation.key_stats(ISS).unwrap().loads,
        before + 1,
        "not again"
    );
    f.clock.advance(TimeDelta::seconds(61));
    let _ = f.federation.verify("oidc", &stranger.sign(&claims()));
    assert_eq!(f.federation.key_stats(ISS).unwrap().loads, before + 2);
}

#[test]
fn a_rewritten_jwks_file_is_used_at_once_and_a_broken_one_keeps_the_keys() {
    let f = fixture(|_| {});
    let path = f.dir.path().join("jwks.json");
    let next = signer("rsa-2", Algorithm::RS256);
    std::fs::write(&path, jwks(&[&f.ec, &next])).unwrap();
    assert!(
        f.federation
            .verify("oidc", &next.sign(&claims()))
            .unwrap()
            .is_some()
    );
    assert_eq!(
        refusal(f.federation.verify("oidc", &f.rsa.sign(&claims()))),
        Refusal::UnknownKey("rsa-1".into()),
        "a key gone from the file no longer works"
    );
    std::fs::write(&path, "{ not json").unwrap();
    assert!(
        f.federation
            .verify("oidc", &next.sign(&claims()))
            .unwrap()
            .is_some()
    );
}

#[test]
fn the_user_name_must_be_oidc_or_the_mapped_account() {
    let f = fixture(|_| {});
    let token = f.ec.sign(&claims());
    assert!(
        f.federation
            .verify("system:serviceaccount:team-a:builder", &token)
            .unwrap()
            .is_some()
    );
    for name in ["alice", "OIDC", "", "system:serviceaccount:team-b:builder"] {
        assert_eq!(
            refusal(f.federation.verify(name, &token)),
            Refusal::UserName,
            "{name}"
        );
    }
}

#[test]
fn account_and_groups_come_from_the_configured_claims() {
    let f = fixture(|s| {
        s.account_claim = "project_path".into();
        s.groups_claim = Some("groups".into());
    });
    let base = with(claims(), json!({"project_path": "team-a/builder"}));
    let cases = [
        (json!({"groups": ["dev", "ops"]}), Some(vec!["dev", "ops"])),
        (json!({"groups": "dev"}), Some(vec!["dev"])),
        (json!({}), Some(vec![])),
        (json!({"groups": [1]}), None),
        (json!({"groups": {"a": 1}}), None),
        (json!({"groups": vec!["g"; MAX_GROUPS + 1]}), None),
    ];
    for (changes, expected) in cases {
        let token = f.ec.sign(&with(base.clone(), changes.clone()));
        let result = f.federation.verify("oidc", &token);
        match expected {
            Some(groups) => {
                let got = result.unwrap().unwrap();
                assert_eq!(got.identity.subject(), "team-a/builder");
                assert_eq!(got.identity.groups(), groups.as_slice(), "{changes}");
            }
            None => assert_eq!(
                refusal(result),
                Refusal::Groups("groups".into()),
                "{changes}"
            ),
        }
    }
    for account in [
        json!(null),
        json!(""),
        json!(7),
        json!("a\nb"),
        json!("x".repeat(300)),
    ] {
        let token =
            f.ec.sign(&with(claims(), json!({ "project_path": account })));
        assert_eq!(
            refusal(f.federation.verify("oidc", &token)),
            Refusal::Account("project_path".into())
        );
    }
}

#[test]
fn critical_headers_are_refused() {
    let f = fixture(|_| {});
    let token = f.ec.sign(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let header = b64(&json!({"alg": "ES256", "kid": "ec-1", "crit": ["exp"], "exp": 1}));
    let token = format!("{header}.{}.{}", parts[1], parts[2]);
    assert_eq!(
        refusal(f.federation.verify("oidc", &token)),
        Refusal::Critical
    );
}

#[test]
fn jwks_keep_only_public_signature_keys() {
    let rsa = signer("rsa", Algorithm::RS256);
    let mut enc = rsa.jwk.clone();
    enc.common.key_id = Some("enc".into());
    enc.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Encryption);
    let text = json!({"keys": [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
        enc,
        {"kty": "RSA", "kid": "small", "n": BASE64URL_NOPAD.encode(&[0xff; 128]), "e": "AQAB"},
        {"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": "AA", "y": "AA"},
        {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": rsa.jwk_n(), "e": "AQAB"},
        {"kty": "RSA", "kid": "wrong-alg", "alg": "ES256", "n": rsa.jwk_n(), "e": "AQAB"},
        rsa.jwk,
    ]})
    .to_string();
    let keys = jwks::parse(text.as_bytes(), "test").unwrap();
    let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap()).collect();
    assert_eq!(kids, ["rsa"]);
    assert_eq!(
        jwks::parse(br#"{"keys": [{"kty": "oct", "k": "AAAA"}]}"#, "test").unwrap_err(),
        jwks::JwksError::NoKeys("test".into())
    );
    assert!(matches!(
        jwks::parse(b"[]", "test"),
        Err(jwks::JwksError::Parse { .. })
    ));
}

impl Signer {
    fn jwk_n(&self) -> String {
        match &self.jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::RSA(p) => p.n.clone(),
            _ => panic!("not RSA"),
        }
    }
}

#[test]
fn settings_are_checked_with_messages_that_say_what_to_fix() {
    let ok = || {
        let mut s = IssuerSettings::new(ISS, &[AUD]);
        s.jwks_url = Some("https://issuer.test/keys".into());
        s
    };
    assert_eq!(validate(&[ok()]), Ok(()));
    let mut loopback = ok();
    loopback.jwks_url = Some("http://127.0.0.1:8080/keys".into());
    assert_eq!(validate(&[loopback]), Ok(()));
    type Case = (fn(&mut IssuerSettings), &'static str);
    let cases: &[Case] = &[
        (|s| s.issuer = " ".into(), "issuer must be set"),
        (
            |s| s.jwks_url = None,
            "set jwks_file (a JWK Set file) or jwks_url",
        ),
        (
            |s| s.jwks_file = Some("k.json".into()),
            "set jwks_file or jwks_url, not both",
        ),
        (
            |s| s.jwks_url = Some("http://issuer.test/keys".into()),
            "is plain http: use https",
        ),
        (
            |s| s.jwks_url = Some("ftp://x/keys".into()),
            "must be an https:// URL",
        ),
        (|s| s.jwks_url = Some("not a url".into()), "is not a URL"),
        (|s| s.audiences.clear(), "audiences must list at least one"),
        (
            |s| s.audiences.push("".into()),
            "audiences must not contain an empty",
        ),
        (
            |s| s.algorithms = vec![],
            "algorithms must list at least one",
        ),
        (
            |s| s.algorithms = vec!["none".into()],
            "\"none\" is never accepted",
        ),
        (
            |s| s.algorithms = vec!["HS256".into()],
            "\"HS256\" is never accepted: HMAC",
        ),
        (
            |s| s.algorithms = vec!["hs512".into()],
            "\"hs512\" is never accepted",
        ),
        (
            |s| s.algorithms = vec!["ES512".into()],
            "\"ES512\" is not one of",
        ),
        (
            |s| s.account_claim = "".into(),
            "account_claim must name a claim",
        ),
        (
            |s| s.groups_claim = Some("".into()),
            "groups_claim must name a claim",
        ),
        (
            |s| s.leeway_seconds = 601,
            "leeway_seconds 601 is more than 600",
        ),
        (
            |s| s.max_lifetime_seconds = 59,
            "max_lifetime_seconds must be at least 60",
        ),
    ];
    for (change, expected) in cases {
        let mut s = ok();
        change(&mut s);
        let err = validate(&[s]).unwrap_err().to_string();
        assert!(err.starts_with("entry 0"), "{err}");
        assert!(err.contains(expected), "{expected:?} not in {err:?}");
    }
    let mut ca = IssuerSettings::new(ISS, &[AUD]);
    ca.jwks_file = Some("k.json".into());
    ca.ca_file = Some("ca.pem".into());
    assert!(
        validate(&[ca])
            .unwrap_err()
            .to_string()
            .contains("ca_file applies to jwks_url only")
    );
    let err = validate(&[ok(), ok()]).unwrap_err().to_string();
    assert!(
        err.starts_with("entry 1 (issuer \"https://issuer.test\"): the same issuer"),
        "{err}"
    );
}

#[test]
fn a_missing_or_unusable_jwks_file_stops_the_start_with_its_name() {
    let mut s = IssuerSettings::new(ISS, &[AUD]);
    s.jwks_file = Some("/nonexistent/jwks.json".into());
    let clock = Arc::new(ManualClock::new(DateTime::UNIX_EPOCH));
    let err = Federation::new(&[s], clock).err().unwrap().to_string();
    assert!(err.contains("/nonexistent/jwks.json"), "{err}");
}

/// The proxy the environment names is handed in, so the test sees it bite whatever the
/// environment of the test run: loopback URLs drop it, other URLs keep it.
#[test]
fn a_loopback_jwks_url_never_goes_through_a_proxy() {
    let proxy = || Some(ureq::Proxy::new("http://proxy.test:3128").unwrap());
    for url in [
        "http://127.0.0.1:8080/jwks",
        "http://[::1]/jwks",
        "http://localhost/k",
    ] {
        let Source::Url { agent, .. } = Source::url_via(url, None, proxy()).unwrap() else {
            panic!("a URL source");
        };
        assert!(agent.config().proxy().is_none(), "{url}");
    }
    let Source::Url { agent, .. } =
        Source::url_via("https://issuer.test/keys", None, proxy()).unwrap()
    else {
        panic!("a URL source");
    };
    let used = agent
        .config()
        .proxy()
        .expect("a remote URL keeps the proxy");
    assert_eq!(used.host(), "proxy.test");
}

#[test]
fn a_ca_file_must_hold_pem_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let err = Source::url("https://issuer.test/keys", Some(&empty))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no PEM certificate"), "{err}");
    let missing = dir.path().join("missing.pem");
    assert!(matches!(
        Source::url("https://issuer.test/keys", Some(&missing)),
        Err(jwks::JwksError::Ca { .. })
    ));
    let ca = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["issuer.test".to_owned()])
        .unwrap()
        .self_signed(&ca)
        .unwrap();
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, cert.pem()).unwrap();
    assert!(Source::url("https://issuer.test/keys", Some(&good)).is_ok());
}

fn required(pairs: &[(&str, crate::matching::OneOrMore)]) -> impl FnOnce(&mut IssuerSettings) {
    let pairs: Vec<_> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    move |s| s.required_claims = pairs.into_iter().collect()
}

fn one(value: &str) -> crate::matching::OneOrMore {
    crate::matching::OneOrMore::One(value.into())
}

fn any_of(values: &[&str]) -> crate::matching::OneOrMore {
    crate::matching::OneOrMore::More(values.iter().map(|v| v.to_string()).collect())
}

#[test]
fn a_verified_caller_is_of_source_federation_with_its_issuer_and_string_claims() {
    let f = fixture(|_| {});
    let token = f.rsa.sign(&with(
        claims(),
        json!({
            "repository": "octo-org/app",
            "run_number": 7,
            "nested": {"a": "b"},
            "long": "x".repeat(256),
        }),
    ));
    let got = f.federation.verify("oidc", &token).unwrap().unwrap();
    assert_eq!(got.identity.source(), SOURCE_FEDERATION);
    assert_eq!(got.identity.issuer(), Some(ISS));
    assert_eq!(got.identity.claim("repository"), Some("octo-org/app"));
    assert_eq!(got.identity.claim("iss"), Some(ISS));
    // Only strings are kept: rules compare strings.
    assert_eq!(got.identity.claim("run_number"), None);
    assert_eq!(got.identity.claim("nested"), None);
    assert_eq!(got.identity.claim("missing"), None);
    // Longer than any resource name: it could never match, so it is not kept.
    assert_eq!(got.identity.claim("long"), None);
}

#[test]
fn required_claims_accept_a_value_a_list_or_an_anchored_regex_and_refuse_the_rest() {
    // (required, claims the token carries, accepted)
    let cases: Vec<(crate::matching::OneOrMore, Value, bool)> = vec![
        (one("octo-org"), json!({"owner": "octo-org"}), true),
        (one("octo-org"), json!({"owner": "octo-org2"}), false),
        (one("octo-org"), json!({"owner": "OCTO-ORG"}), false),
        (one("octo-org"), json!({}), false),
        (one("octo-org"), json!({"owner": ["octo-org"]}), false),
        (one("octo-org"), json!({"owner": 1}), false),
        (any_of(&["a-org", "b-org"]), json!({"owner": "b-org"}), true),
        (
            any_of(&["a-org", "b-org"]),
            json!({"owner": "c-org"}),
            false,
        ),
        (one("/octo-.+/"), json!({"owner": "octo-org"}), true),
        // Anchored at both ends, like rule patterns.
        (one("/octo-.+/"), json!({"owner": "evil-octo-org"}), false),
        (one("/octo/"), json!({"owner": "octo-org"}), false),
        (any_of(&["a-org", "/b-.*/"]), json!({"owner": "b-x"}), true),
    ];
    for (condition, extra, accepted) in cases {
        let f = fixture(required(&[("owner", condition.clone())]));
        let result = f
            .federation
            .verify("oidc", &f.ec.sign(&with(claims(), extra.clone())));
        if accepted {
            assert!(
                matches!(result, Ok(Some(_))),
                "{condition:?} {extra}: {result:?}"
            );
        } else {
            let refused = refusal(result);
            assert!(
                matches!(&refused, Refusal::RequiredClaim { claim, .. } if claim == "owner"),
                "{condition:?} {extra}: {refused:?}"
            );
        }
    }
    // Every condition must hold.
    let f = fixture(required(&[
        ("owner", one("octo-org")),
        ("ref", one("refs/heads/main")),
    ]));
    let both = json!({"owner": "octo-org", "ref": "refs/heads/main"});
    assert!(
        f.federation
            .verify("oidc", &f.rsa.sign(&with(claims(), both)))
            .is_ok()
    );
    let half = json!({"owner": "octo-org", "ref": "refs/heads/dev"});
    let refused = refusal(
        f.federation
            .verify("oidc", &f.rsa.sign(&with(claims(), half))),
    );
    assert_eq!(
        refused.to_string(),
        "claim \"ref\" does not meet required_claims (\"refs/heads/dev\")"
    );
}

#[test]
fn a_refused_claim_value_is_shortened_in_the_message() {
    let f = fixture(required(&[("owner", one("octo-org"))]));
    let long = "x".repeat(1000);
    let refused = refusal(
        f.federation
            .verify("oidc", &f.rsa.sign(&with(claims(), json!({"owner": long})))),
    );
    let text = refused.to_string();
    assert!(text.contains("claim \"owner\""), "{text}");
    assert!(text.contains('…') && !text.contains(&long), "{text}");
    assert!(text.len() < 300, "{text}");
}

#[test]
fn bad_required_claims_are_load_errors_naming_the_claim() {
    let cases: Vec<(Vec<(&str, crate::matching::OneOrMore)>, &str)> = vec![
        (
            vec![("owner", one("/(unclosed/"))],
            "required_claims.owner: regex \"/(unclosed/\"",
        ),
        (
            vec![("owner", one("/a)|(b/"))],
            "required_claims.owner: regex",
        ),
        (
            vec![("owner", any_of(&[]))],
            "required_claims.owner: list at least one",
        ),
        (
            vec![("owner", one(""))],
            "required_claims.owner: an accepted value must not be empty",
        ),
        (vec![(" ", one("x"))], "a claim name must not be empty"),
    ];
    for (pairs, expected) in cases {
        let mut s = IssuerSettings::new(ISS, &[AUD]);
        s.jwks_url = Some("https://issuer.test/keys".into());
        required(&pairs)(&mut s);
        let err = validate(&[s]).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn warnings_name_unused_federation_and_multi_tenant_issuers_without_conditions() {
    let github = IssuerSettings::new("https://token.actions.githubusercontent.com", &[AUD]);
    let enterprise = IssuerSettings::new(
        "https://token.actions.githubusercontent.com/octo-corp",
        &[AUD],
    );
    let gitlab = IssuerSettings::new("https://gitlab.com", &[AUD]);
    let own = IssuerSettings::new("https://gitlab.example.com", &[AUD]);
    assert!(warnings(&[], false).is_empty());
    let all = warnings(
        &[github.clone(), enterprise, gitlab.clone(), own.clone()],
        false,
    );
    assert_eq!(all.len(), 4, "{all:#?}");
    assert!(all[0].contains("workloads would get nothing"), "{}", all[0]);
    assert!(all[1].contains("GitHub Actions") && all[1].contains("required_claims"));
    assert!(all[3].contains("gitlab.com"));
    let mut conditioned = github;
    conditioned.required_claims = [("repository_owner".to_owned(), one("octo-org"))].into();
    assert!(warnings(&[conditioned, own], true).is_empty());
    assert_eq!(warnings(&[gitlab], true).len(), 1);
}

#[tokio::test]
async fn a_login_decodes_a_workload_token_once_for_its_budget_and_its_check() {
    use crate::identity::{Credentials, LimitSettings, LoginOptions, Logins, Sources};
    let f = fixture(|_| {});
    let good = f.rsa.sign(&claims());
    // The signature verifies, a later check refuses: counted against the subject.
    let expired = f.rsa.sign(&with(claims(), json!({"exp": NOW - 3600})));
    // The signature does not verify: counted against the issuer.
    let forged = signer("rsa-1", Algorithm::RS256).sign(&claims());
    let federation = Arc::new(f.federation);
    let users = Arc::new(crate::identity::tests::directory(&[], None));
    let sources = Sources::standard(
        Some(Arc::clone(&federation) as Arc<dyn IdentitySource>),
        Arc::clone(&users) as Arc<dyn IdentitySource>,
        None,
    );
    let options = LoginOptions {
        cache_ttl: std::time::Duration::ZERO,
        workers: 1,
        queue: 1,
        limits: LimitSettings::default(),
    };
    let logins = Logins::with_sources(users, sources, &options).unwrap();
    for (password, ok) in [(good, true), (expired, false), (forged, false)] {
        let before = federation.claim_sets_decoded();
        let result = logins
            .login(Some(Credentials::new(TOKEN_USER, password)), None, None)
            .await;
        assert_eq!(result.is_ok(), ok, "{result:?}");
        assert_eq!(federation.claim_sets_decoded() - before, 1);
    }
}
