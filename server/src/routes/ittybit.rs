//! `POST /api/ittybit/callback`: Ittybit's signed webhooks.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use reeltime::signature::{verify, SIGNATURE_HEADER};
use reeltime::{normalize_webhook, JobId, Normalized};
use secrecy::ExposeSecret;
use serde_json::json;

use app::db::jobs::{apply_webhook, resolve_job};
use app::db::webhooks::{self, Delivery};

use super::AppState;
use crate::error::ApiError;

pub const CALLBACK_PATH: &str = "/api/ittybit/callback";
/// Largest webhook body accepted.
pub const MAX_CALLBACK_BYTES: usize = 1024 * 1024;
/// How much of a delivery that failed verification is kept in the log.
const UNVERIFIED_BODY_KEPT: usize = 4 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(CALLBACK_PATH, post(callback))
        .layer(DefaultBodyLimit::max(MAX_CALLBACK_BYTES))
}

/// What became of one delivery, as `webhook_deliveries` records it.
#[derive(Default)]
struct Outcome {
    signature_ok: bool,
    report: Option<Normalized>,
    job_id: Option<JobId>,
    outcome: &'static str,
}

/// Verify the signature over the raw bytes before reading anything, then fold the report into
/// the job. Ittybit retries until it gets a 2xx within 5 s, so everything that is not its
/// fault (an unknown job, a stale report) is answered 200; every delivery is recorded.
#[utoipa::path(post, path = "/api/ittybit/callback", tag = "ittybit",
    request_body(content = Object, description = "A webhook in any of the contract's shapes.", content_type = "application/json"),
    params(("Ittybit-Signature" = String, Header, description = "Hex HMAC-SHA256 of the body.")),
    responses(
        (status = 200, description = "Taken (applied, unchanged, or for a job we do not know).", body = CallbackAnswer),
        (status = 400, description = "Signed, but not a JSON object.", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or bad signature, or no secret configured.", body = crate::error::ErrorBody),
        (status = 413, description = "Over 1 MiB.", body = crate::error::ErrorBody)))]
#[tracing::instrument(name = "callback", skip_all, fields(job_id = tracing::field::Empty))]
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (outcome, answer) = handle(&state, &headers, &body).await?;
    // Unverified bodies are anyone's: keep only their start, so junk cannot fill the log.
    let kept = if outcome.signature_ok {
        &body[..]
    } else {
        &body[..body.len().min(UNVERIFIED_BODY_KEPT)]
    };
    if !outcome.signature_ok && !state.auth.limits.record_unsigned_callback() {
        // Past the cap on unsigned attempts: counted in the log, not kept.
        tracing::debug!("an unsigned callback over the recording cap was not logged");
        return answer;
    }
    metrics::counter!(crate::metrics::WEBHOOKS, "outcome" => outcome.outcome).increment(1);
    if outcome.job_id.is_some() {
        // A delivery about a job we could name went in with the report ([`apply_webhook`]).
        return answer;
    }
    let report = outcome.report.as_ref();
    let delivery = Delivery {
        signature_ok: outcome.signature_ok,
        ittybit_id: report.and_then(|r| r.ittybit_id.as_deref()),
        job_id: outcome.job_id,
        status: report.map(|r| r.status),
        outcome: outcome.outcome,
        body: kept,
    };
    webhooks::record(&state.pool, &delivery).await?;
    answer
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Outcome, Result<Response, ApiError>), sqlx::Error> {
    let pool = &state.pool;
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let verified = match &state.webhook_secret {
        Some(secret) => verify(secret.expose_secret().as_bytes(), body, signature),
        None => {
            tracing::warn!("webhook refused: ITTYBIT_WEBHOOK_SECRET is not set");
            Err(reeltime::SignatureError::NoSecret)
        }
    };
    if let Err(err) = verified {
        tracing::warn!(reason = %err, "webhook refused: bad signature");
        let refused = (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "unauthorized", "message": "Missing or invalid Ittybit-Signature." })),
        )
            .into_response();
        let delivery = Outcome {
            outcome: "bad_signature",
            ..Outcome::default()
        };
        return Ok((delivery, Ok(refused)));
    }
    let report = match normalize_webhook(body) {
        Ok(report) => report,
        Err(err) => {
            let delivery = Outcome {
                signature_ok: true,
                outcome: "malformed",
                ..Outcome::default()
            };
            return Ok((delivery, Err(ApiError::BadRequest(err.to_string()))));
        }
    };
    let (job_id, outcome) = match resolve_job(pool, &report).await? {
        None => {
            tracing::warn!(ittybit_id = ?report.ittybit_id, "webhook for a job we do not know");
            (None, "unknown_job")
        }
        Some(job_id) => {
            tracing::Span::current().record("job_id", tracing::field::display(job_id));
            let outcome = apply_webhook(pool, job_id, &report, state.service, body)
                .await?
                .as_str();
            tracing::info!(status = %report.status, outcome, "webhook");
            (Some(job_id), outcome)
        }
    };
    let answer = Json(json!({ "ok": true, "outcome": outcome })).into_response();
    let delivery = Outcome {
        signature_ok: true,
        report: Some(report),
        job_id,
        outcome,
    };
    Ok((delivery, Ok(answer)))
}

/// What the callback answers a delivery it took.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the JSON the callback writes
pub struct CallbackAnswer {
    ok: bool,
    /// `applied`, `unchanged` or `unknown_job`.
    outcome: String,
}
