//! Bad requests: clear JSON errors with the right status, never a crash.

use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with};

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let error = &body["errors"][0];
    (
        status,
        error["code"].as_str().unwrap().to_owned(),
        error["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_malformed_scope_is_a_400_that_names_it() {
    let app = spawn_app().await;
    let (status, code, message) = error_of(
        app.get_token(
            "service=registry.test&scope=repository:team/app:pull&scope=repository:Team/App:pull",
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "INVALID_SCOPE"));
    assert!(message.contains("repository:Team/App:pull"), "{message}");
    assert!(message.contains("lowercase"), "{message}");
}

#[tokio::test]
async fn a_missing_or_empty_service_is_a_400() {
    let app = spawn_app().await;
    for query in [
        "scope=repository:a:pull",
        "service=&scope=repository:a:pull",
        "",
    ] {
        let (status, code, message) = error_of(app.get_token(query).await).await;
        assert_eq!((status, code.as_str()), (400, "INVALID_REQUEST"), "{query}");
        assert!(message.contains("service"), "{message}");
    }
}

#[tokio::test]
async fn a_parameter_given_twice_is_a_400_unless_it_is_scope() {
    let app = spawn_app().await;
    for (query, name) in [
        ("service=registry.test&service=other.test", "service"),
        ("service=registry.test&account=a&account=b", "account"),
        (
            "service=registry.test&offline_token=true&offline_token=false",
            "offline_token",
        ),
    ] {
        let (status, code, message) = error_of(app.get_token(query).await).await;
        assert_eq!((status, code.as_str()), (400, "INVALID_REQUEST"), "{query}");
        assert!(
            message.contains(&format!("the {name} parameter is given more than once")),
            "{message}"
        );
    }
    let repeated = app
        .get_token("service=registry.test&scope=repository:a:pull&scope=repository:b:pull")
        .await;
    assert_eq!(repeated.status(), 200);
}

#[tokio::test]
async fn a_service_outside_the_allow_list_is_a_400() {
    let app = spawn_app_with(|s| s.token.services = vec!["registry.test".into()]).await;
    let (status, _, message) = error_of(app.get_token("service=other.test").await).await;
    assert_eq!(status, 400);
    assert!(message.contains("other.test"), "{message}");
    assert_eq!(app.get_token("service=registry.test").await.status(), 200);
}

#[tokio::test]
async fn a_malformed_authorization_header_is_a_401_with_a_basic_challenge() {
    let app = spawn_app().await;
    for value in ["Basic !!!", "Bearer abc", "Basic", "Basic bm9jb2xvbg=="] {
        let response = app
            .client
            .get(format!("{}/token?service=registry.test", app.address))
            .header("Authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Basic realm="regauth""#
        );
        let (status, code, _) = error_of(response).await;
        assert_eq!((status, code.as_str()), (401, "UNAUTHORIZED"), "{value}");
    }
}

#[tokio::test]
async fn too_many_scopes_are_refused() {
    let app = spawn_app().await;
    let query: String = (0..65)
        .map(|i| format!("scope=repository:r{i}:pull&"))
        .collect::<String>()
        + "service=s";
    let (status, _, message) = error_of(app.get_token(&query).await).await;
    assert_eq!(status, 400);
    assert!(message.contains("at most 64"), "{message}");
}

#[tokio::test]
async fn other_methods_on_token_are_a_405_naming_get_and_post() {
    let app = spawn_app().await;
    let response = app
        .client
        .put(format!("{}/token", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET, POST");
    let (status, _, _) = error_of(response).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn unknown_paths_are_a_json_404() {
    let app = spawn_app().await;
    let (status, code, _) = error_of(app.get("/v2/").await).await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
}

#[tokio::test]
async fn odd_query_strings_never_cause_a_server_error() {
    let app = spawn_app().await;
    let queries = [
        "service=s&scope=%ZZ",
        "service=s&scope=%00%01%02",
        "service=s&scope=repository:%E2%82%AC:pull",
        "service=s&scope=repository:a:pull&service=t",
        "service=s&&&&=&=&scope",
        "service=s&scope=::::",
        "service=s&scope=repository:a:*,*,pull",
        "service=%FF%FE&scope=repository:a:pull",
        "service=s&scope=repository(:a:pull",
        "service=s&scope=repository:a/b:pull,push%20%20%20repository:c:pull",
        &format!("service=s&scope=repository:{}:pull", "a".repeat(300)),
        &format!("service={}", "x".repeat(4000)),
    ];
    for query in queries {
        let status = app.get_token(query).await.status().as_u16();
        assert!(status == 200 || status == 400, "{query}: {status}");
    }
    // The service is still up and signing.
    assert!(!app.pull_token().await.is_empty());
}
