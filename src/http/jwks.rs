//! `GET /.well-known/jwks.json`: every published public key (signing, next, recently
//! replaced) as a JWK Set, cacheable for [`MAX_AGE_SECONDS`].

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::AppState;
use crate::keys::jwks::{Jwks, MAX_AGE_SECONDS};

/// The JWK Set. HMAC secrets are never in it.
pub async fn get_jwks(state: web::Data<AppState>) -> HttpResponse {
    let set = Jwks::of(&state.keys.published_keys());
    HttpResponse::Ok()
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={MAX_AGE_SECONDS}"),
        ))
        .json(set)
}
