//! Secrets never show in `Debug` output: every config and request type that holds one is
//! formatted here, plainly and pretty-printed, and searched for the secret.

use std::collections::HashMap;

use regauth::http::TokenForm;
use regauth::identity::{Credentials, UserDirectory, parse_basic};
use regauth::issue::refresh::RefreshTokens;
use regauth::keys::{KeySpec, SigningKey};

fn assert_hidden(what: &str, value: &impl std::fmt::Debug, secrets: &[&str]) {
    for text in [format!("{value:?}"), format!("{value:#?}")] {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} shows {secret:?}: {text}");
        }
    }
}

#[test]
fn no_config_or_request_type_shows_a_secret_in_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("s3cret-password", 4).unwrap();
    let htpasswd_hash = bcrypt::hash("other-password", 4).unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("bob:{htpasswd_hash}\n")).unwrap();
    let config = dir.path().join("regauth.yaml");
    std::fs::write(
        &config,
        format!(
            "users:\n  alice:\n    password: \"{hash}\"\nauth:\n  htpasswd: {}\n",
            htpasswd.display()
        ),
    )
    .unwrap();
    let validated = regauth::config::load_with_env(Some(&config), &HashMap::new()).unwrap();
    // The hash's salt and digest (after the cost) are what must not leak.
    let hash_tail = &hash[7..];
    let htpasswd_tail = &htpasswd_hash[7..];
    assert_hidden("Validated", &validated, &[hash_tail]);
    let settings = regauth::config::Settings::load(Some(&config), &HashMap::new()).unwrap();
    assert_hidden("Settings", &settings, &[hash_tail]);
    assert_hidden("UserSettings", &validated.users["alice"], &[hash_tail]);

    let users = UserDirectory::start(
        validated.users.clone(),
        Some(htpasswd),
        regauth::fs::watch::WatchOptions::default(),
    )
    .unwrap();
    assert_hidden("User", &users.lookup("alice").unwrap(), &[hash_tail]);
    assert_hidden("User", &users.lookup("bob").unwrap(), &[htpasswd_tail]);

    let form: TokenForm = serde_html_form::from_str(
        "grant_type=password&username=alice&password=s3cret-password&refresh_token=rt1.refresh-secret",
    )
    .unwrap();
    assert_hidden("TokenForm", &form, &["s3cret-password", "refresh-secret"]);
    assert_hidden(
        "Credentials",
        &Credentials::new("alice", "s3cret-password"),
        &["s3cret-password"],
    );
    let basic = format!(
        "Basic {}",
        data_encoding::BASE64.encode(b"alice:s3cret-password")
    );
    assert_hidden(
        "parsed Basic",
        &parse_basic(basic.as_bytes()).unwrap(),
        &["s3cret-password"],
    );

    let secret = "a-refresh-secret-of-at-least-32-bytes!!";
    assert_hidden(
        "RefreshTokens",
        &RefreshTokens::new(secret.as_bytes(), 60),
        &[secret],
    );
    let hmac_secret = "an-hmac-signing-secret-long-enough-for-hs256";
    let key = SigningKey::from_bytes(
        hmac_secret.as_bytes(),
        None,
        KeySpec {
            algorithm: Some(regauth::keys::Algorithm::HS256),
            ..KeySpec::default()
        },
    )
    .unwrap();
    assert_hidden("SigningKey", &key, &[hmac_secret]);
}
