//! Server errors: no HTTP request can make regauth fail on its side today, so the 500 answer
//! is checked on the error type itself.

use actix_web::ResponseError;
use regauth::http::{ApiError, ErrorBody};

#[tokio::test]
async fn a_500_answers_a_fixed_json_body_without_its_cause() {
    let cause = anyhow::anyhow!("secret file /run/keys/hmac.key: permission denied")
        .context("signing with key hunter2-kid");
    let response = ApiError::Internal(cause).error_response();
    assert_eq!(response.status(), 500);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let bytes = actix_web::body::to_bytes(response.into_body())
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    for leak in ["hmac.key", "permission", "hunter2", "/run/keys"] {
        assert!(!text.contains(leak), "{leak:?} in {text}");
    }
    let body: ErrorBody = serde_json::from_str(&text).unwrap();
    assert_eq!(body.errors.len(), 1);
    assert_eq!(body.errors[0].code, "INTERNAL_ERROR");
    assert_eq!(body.errors[0].message, "internal server error");
}
