//! Issuing tokens: the answer's shape, the claims, the grant.

use jsonwebtoken as jwt;
use regauth::keys::{KeySpec, SigningKey};
use serde_json::{Value, json};

use crate::helpers::{claims, header, spawn_app, spawn_app_with, user};

#[tokio::test]
async fn an_anonymous_pull_gets_a_verifiable_token_in_the_spec_shape() {
    let app = spawn_app().await;
    let response = app
        .get_token("service=registry.test&scope=repository:team/app:pull")
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body.get("refresh_token").is_none());
    let issued_at =
        chrono::DateTime::parse_from_rfc3339(body["issued_at"].as_str().unwrap()).unwrap();
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'), "UTC");

    let token = body["token"].as_str().unwrap();
    let cert = std::fs::read(app.dir.path().join("signing.crt")).unwrap();
    let key_pem = std::fs::read(&app.key_path).unwrap();
    let key = SigningKey::from_bytes(&key_pem, Some(&cert), KeySpec::default()).unwrap();
    assert_eq!(
        header(token),
        json!({"typ": "JWT", "alg": "ES256", "kid": key.kid().unwrap()})
    );

    // Verify with an independent JWT library and the certificate's public key.
    let (_, parsed) =
        x509_parser::parse_x509_certificate(&key.certificate().unwrap().chain_der[0]).unwrap();
    let decoding = jwt::DecodingKey::from_ec_der(&parsed.public_key().subject_public_key.data);
    let mut validation = jwt::Validation::new(jwt::Algorithm::ES256);
    validation.set_audience(&["registry.test"]);
    validation.set_issuer(&["regauth"]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "aud", "iss", "sub"]);
    let verified = jwt::decode::<Value>(token, &decoding, &validation)
        .unwrap()
        .claims;

    assert_eq!(verified["sub"], "");
    assert_eq!(verified["aud"], "registry.test", "aud is one string");
    assert_eq!(verified["iat"], verified["nbf"]);
    assert_eq!(
        verified["exp"].as_i64().unwrap() - verified["iat"].as_i64().unwrap(),
        300
    );
    assert_eq!(verified["iat"].as_i64().unwrap(), issued_at.timestamp());
    assert_eq!(
        verified["access"],
        json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}])
    );
}

#[tokio::test]
async fn anonymous_push_is_narrowed_to_pull_without_an_error() {
    let app = spawn_app().await;
    let response = app
        .get_token("service=registry.test&scope=repository%3Ateam%2Fapp%3Apull%2Cpush")
        .await;
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.unwrap();
    assert_eq!(
        claims(token["token"].as_str().unwrap())["access"],
        json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}])
    );
}

#[tokio::test]
async fn several_scope_parameters_and_space_joined_scopes_are_all_granted() {
    let app =
        spawn_app_with(|s| s.access.anonymous = Some(vec!["pull".into(), "push".into()])).await;
    // podman's cross-repository blob mount: two scope parameters.
    let response = app
        .get_token(
            "scope=repository%3Ateam%2Fnew%3Apull%2Cpush&scope=repository%3Ateam%2Fapp%3Apull&service=registry.test",
        )
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        claims(body["token"].as_str().unwrap())["access"],
        json!([
            {"type": "repository", "name": "team/new", "actions": ["pull", "push"]},
            {"type": "repository", "name": "team/app", "actions": ["pull"]},
        ])
    );
    // One value holding several scopes, space-joined (`+` in a query string is a space).
    let response = app
        .get_token("service=registry.test&scope=repository:a/b:pull+repository:localhost:5000/c/d:push&scope=repository:a/b:push")
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        claims(body["token"].as_str().unwrap())["access"],
        json!([
            {"type": "repository", "name": "a/b", "actions": ["pull", "push"]},
            {"type": "repository", "name": "localhost:5000/c/d", "actions": ["push"]},
        ])
    );
}

#[tokio::test]
async fn a_login_request_without_scope_gets_a_token_in_the_users_name_with_no_access() {
    let app = spawn_app_with(|s| {
        s.users.insert("alice".into(), user("s3cret", &["dev"]));
    })
    .await;
    // docker login: account, client_id, offline_token, Basic credentials, no scope.
    let response = app
        .client
        .get(format!(
            "{}/token?account=alice&client_id=docker&offline_token=true&service=registry.test",
            app.address
        ))
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let c = claims(body["token"].as_str().unwrap());
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["access"], json!([]), "no scope asked, none granted");
}

#[tokio::test]
async fn the_catalog_is_not_granted_to_anonymous_callers() {
    let app = spawn_app_with(|s| s.access.anonymous = Some(vec!["*".into()])).await;
    let body: Value = app
        .get_token("service=registry.test&scope=registry:catalog:*")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        claims(body["token"].as_str().unwrap())["access"],
        json!([{"type": "registry", "name": "catalog", "actions": []}])
    );
}

#[tokio::test]
async fn configured_issuer_lifetime_and_kid_format_show_in_the_token() {
    let app = spawn_app_with(|s| {
        s.token.issuer = "auth.example.com".into();
        s.token.ttl_seconds = 900;
        s.token.kid_format = regauth::keys::KidFormat::Thumbprint;
        s.token.services = vec!["registry.test".into()];
    })
    .await;
    let body: Value = app
        .get_token("service=registry.test&scope=repository:a:pull")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["expires_in"], 900);
    let token = body["token"].as_str().unwrap();
    let c = claims(token);
    assert_eq!(c["iss"], "auth.example.com");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    let kid = header(token)["kid"].as_str().unwrap().to_owned();
    assert_eq!(kid, app.keys.signing_key().thumbprint().unwrap());
    assert!(!kid.contains(':'));
}
