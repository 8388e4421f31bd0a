//! Liveness and readiness.
//!
//! `/readyz` is 503 when the instance cannot do its work at all (no database, no ffmpeg for
//! the built-in processor). A disk under the free-space floor is a warning in a 200 answer
//! instead: the instance still serves the dashboard, its jobs and Ittybit's webhooks, and
//! taking it out of a load balancer's rotation would hide all of that while freeing no space.
//! The warning names the shortage, for the operator's monitoring.

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
/// here, ffmpeg and ffprobe are installed. `warnings` lists problems that do not stop it
/// (a disk under the free-space floor).
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready; `warnings` lists what needs attention.", body = Object),
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
    let warnings: Vec<String> = state
        .processor
        .as_ref()
        .and_then(|processor| processor.disk_shortage())
        .map(|shortage| {
            format!(
                "{shortage}: the built-in processor fails new jobs until space is freed \
                 (REELTIME_MIN_FREE_DISK_MB)"
            )
        })
        .into_iter()
        .collect();
    (
        StatusCode::OK,
        Json(json!({ "status": "ready", "warnings": warnings })),
    )
}

fn unavailable(reason: String) -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "reason": reason })),
    )
}
