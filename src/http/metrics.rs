//! `GET /metrics`: every metric in the Prometheus text format (see [`crate::telemetry::metrics`]).

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use anyhow::Context;

use super::{ApiError, AppState};
use crate::telemetry::metrics::CONTENT_TYPE;

/// The current values; key and login figures are read now.
pub async fn get_metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state
        .metrics
        .encode()
        .context("encoding metrics")
        .map_err(ApiError::Internal)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, CONTENT_TYPE))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(text))
}
