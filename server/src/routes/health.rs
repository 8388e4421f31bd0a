//! Liveness and readiness.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)))]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The process can do its work: the database answers, and when the built-in processor runs
/// here, ffmpeg and ffprobe are installed.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready.", body = Object),
        (status = 503, description = "Not ready; `reason` says why.", body = Object)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ping = sqlx::query_scalar!(r#"select 1 as "one!""#).fetch_one(&state.pool);
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            return unavailable("database unreachable".into());
        }
        Err(_) => {
            tracing::warn!("readiness check: database did not answer in 2 s");
            return unavailable("database unreachable".into());
        }
    }
    let missing = state
        .processor
        .as_ref()
        .map(|processor| processor.missing_tools())
        .unwrap_or_default();
    if !missing.is_empty() {
        return unavailable(format!(
            "{} not installed: the built-in processor cannot run jobs",
            missing.join(" and ")
        ));
    }
    (StatusCode::OK, Json(json!({ "status": "ready" })))
}

fn unavailable(reason: String) -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "reason": reason })),
    )
}
