//! Liveness (`/healthz`) and readiness (`/readyz`: a usable signing key is loaded). On the
//! main listener `/readyz` says only that; on `server.admin_listen` it also reports the key
//! (kid, source path, reload state), with `server.tls` the served certificate and its reload
//! state, and with `auth.htpasswd` that file's reload state: paths, kids and errors are for
//! operators, not for every client that can fetch a token.

use actix_web::{HttpResponse, web};
use chrono::SecondsFormat;
use serde_json::json;

use super::AppState;

/// 200 while the process serves requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 while a signing key is loaded and its certificate (if any) has not expired; 503 once
/// shutdown has begun, so load balancers stop sending new requests. Reload trouble (an
/// unreadable key file, failed or panicked reloads, a directory that had to be watched
/// again) is reported in the body without failing readiness: the loaded key signs.
/// The main listener's answer: the status alone.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.shutdown.is_draining() {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "shutting down"}));
    }
    let now = state.clock.now();
    let expired = state
        .keys
        .signing_key()
        .certificate()
        .is_some_and(|c| c.not_after < now);
    if expired {
        HttpResponse::ServiceUnavailable().json(json!({"status": "certificate expired"}))
    } else {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    }
}

/// `server.admin_listen`'s answer: the same status and HTTP status as [`readyz`], with the
/// key, certificate and reload details.
pub async fn readyz_details(state: web::Data<AppState>) -> HttpResponse {
    if state.shutdown.is_draining() {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "shutting down"}));
    }
    let key = state.keys.signing_key();
    let status = state.keys.status();
    let now = state.clock.now();
    let expired = key.certificate().is_some_and(|c| c.not_after < now);
    let rfc3339 = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let body = json!({
        "status": if expired { "certificate expired" } else { "ready" },
        "alg": key.algorithm().as_str(),
        "kid": key.kid(),
        "thumbprint": key.thumbprint(),
        "source": status.source,
        "key_loaded_at": rfc3339(status.loaded_at),
        "key_age_seconds": status.key_age(now).num_seconds(),
        "last_reload": status.last_reload.map(rfc3339),
        "failed_reloads": status.failed_reloads,
        "last_reload_error": status.last_error,
        "next_kid": status.next_kid,
        "next_key_error": status.next_error,
        "retired_keys": status.retired,
        "last_check": status.last_check.map(rfc3339),
        "key_file_error": status.key_file_error,
        "key_file_missing_since": status.key_file_missing_since.map(rfc3339),
        "reload_panics": status.reload_panics,
        "watch_rearmed": status.watch_rearmed,
        "watch_problem": status.watch_problem,
        "pair_retries": status.pair_retries,
        "htpasswd": state.logins.users().htpasswd_path().map(|path| {
            let users = state.logins.users().reload_status();
            json!({
                "path": path.display().to_string(),
                "last_reload": users.last_attempt.map(rfc3339),
                "failed_reloads": users.failed_reloads,
                "last_reload_error": users.last_error,
            })
        }),
        "tls": state.tls.as_ref().map(|tls| {
            let tls = tls.status();
            json!({
                "certificate": tls.certificate,
                "subject": tls.served.subject,
                "serial": tls.served.serial,
                "not_after": rfc3339(tls.served.not_after),
                "loaded_at": rfc3339(tls.loaded_at),
                "last_reload": tls.last_reload.map(rfc3339),
                "failed_reloads": tls.failed_reloads,
                "last_reload_error": tls.last_error,
                "reload_panics": tls.reload_panics,
                "watch_problem": tls.watch_problem,
            })
        }),
    });
    if expired {
        HttpResponse::ServiceUnavailable().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}
