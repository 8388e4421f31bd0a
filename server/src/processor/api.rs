//! The processor's HTTP API, as the Ittybit contract describes it (`shared/ittybit-api.md`):
//! Bearer auth, `Idempotency-Key`, `{"kind", "message"}` errors, the job object with its task,
//! and cursor-paged lists. Output files are served (with range requests) under `/files`.

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use reeltime::JobKind;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;

use super::media::{content_type, MediaOptions};
use super::store::{self, NewProcessorJob, Order};
use super::Processor;
use crate::storage::Key;

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The processor's routes, to be nested under [`super::MOUNT`].
pub fn router<S: Clone + Send + Sync + 'static>(processor: Processor) -> Router<S> {
    Router::new()
        .route("/jobs", get(list_jobs).post(create_job))
        .route("/jobs/{id}", get(get_job).delete(delete_job))
        .route("/jobs/{id}/cancel", axum::routing::post(cancel_job))
        .route_layer(middleware::from_fn_with_state(
            processor.clone(),
            require_key,
        ))
        .route("/files/{name}", get(serve_file).head(serve_file))
        .with_state(processor)
}

/// An error in Ittybit's shape.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_input",
            message: message.into(),
        }
    }

    fn not_found(id: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "job_not_found",
            message: format!("there is no job {id:?}"),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> ApiError {
        tracing::error!(error = %err, "the processor's database failed");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal_error",
            message: "something went wrong; try again".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "kind": self.kind, "message": self.message }));
        (self.status, body).into_response()
    }
}

async fn require_key(State(processor): State<Processor>, request: Request, next: Next) -> Response {
    let expected = processor.inner.api_key.expose_secret().as_bytes();
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(expected)) {
        next.run(request).await
    } else {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "unauthorized",
            message: "a valid API key is required: Authorization: Bearer <key>".into(),
        }
        .into_response()
    }
}

/// A field that may be absent or `null` (read as an empty object) but otherwise must be an
/// object.
fn object_field(body: &Map<String, Value>, name: &str) -> Result<Value, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(json!({})),
        Some(value @ Value::Object(_)) => Ok(value.clone()),
        Some(_) => Err(ApiError::invalid(format!("{name} must be an object"))),
    }
}

async fn create_job(
    State(processor): State<Processor>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|err| ApiError::invalid(format!("the body is not valid JSON: {err}")))?;
    let Value::Object(body) = body else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    let input = body
        .get("input")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|input| !input.is_empty())
        .ok_or_else(|| ApiError::invalid("input is required: the URL of the media to process"))?;
    processor.inner.fetcher.check_url(input).map_err(|err| {
        err.log_refusal();
        ApiError::invalid(err.to_string())
    })?;
    let kind_names = "video, audio, image or animation";
    let kind: JobKind = body
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid(format!("kind is required: {kind_names}")))?
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid(format!("kind must be {kind_names}")))?;
    let options = object_field(&body, "options")?;
    let metadata = object_field(&body, "metadata")?;
    MediaOptions::parse(kind, &options).map_err(|err| ApiError::invalid(err.to_string()))?;
    let webhook_url = match body.get("webhook_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(url))
            if url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) =>
        {
            Some(url.as_str())
        }
        Some(_) => return Err(ApiError::invalid("webhook_url must be an http(s) URL")),
    };
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY)
                .ok_or_else(|| {
                    ApiError::invalid("Idempotency-Key must be 1-255 visible characters")
                })?,
        ),
    };
    let (job, replayed) = store::create(
        processor.pool(),
        &NewProcessorJob {
            kind,
            input,
            options: &options,
            metadata: &metadata,
            webhook_url,
        },
        idempotency_key,
    )
    .await?;
    if !replayed {
        processor.wake();
    }
    let mut response = (StatusCode::CREATED, Json(job.to_json())).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

async fn get_job(
    State(processor): State<Processor>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = store::get(processor.pool(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found(&id))?;
    Ok(Json(job.to_json()))
}

/// `POST /jobs/{id}/cancel` (a Reeltime extension, `shared/ittybit-api.md`): stops the work
/// (the worker's next heartbeat finds the job cancelled, within a second, and kills its
/// ffmpeg and removes its files), answers the job object, and sends the final webhook.
async fn cancel_job(
    State(processor): State<Processor>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match store::cancel(processor.pool(), &id).await? {
        Some(job) => {
            let body = job.to_json();
            if let Some(url) = job.webhook_url.clone() {
                processor
                    .inner
                    .webhooks
                    .track(job.id.clone(), url)
                    .finish(&body);
            }
            tracing::info!(task_id = %id, "job cancelled");
            Ok(Json(body))
        }
        None => {
            let job = store::get(processor.pool(), &id)
                .await?
                .ok_or_else(|| ApiError::not_found(&id))?;
            Err(ApiError {
                status: StatusCode::CONFLICT,
                kind: "job_finished",
                message: format!("the job has already finished ({})", job.status),
            })
        }
    }
}

/// `DELETE /jobs/{id}` (a Reeltime extension): forgets a finished job and deletes its output
/// file. 204; 409 for a job that has not finished (cancel it first).
async fn delete_job(
    State(processor): State<Processor>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match store::delete_finished(processor.pool(), &id).await? {
        Some(job) => {
            let file = job
                .output
                .as_ref()
                .and_then(|output| output.get("url"))
                .and_then(Value::as_str)
                .and_then(|url| url.rsplit('/').next())
                .filter(|name| is_output_name(name));
            if let Some(name) = file {
                if let Err(err) = processor.inner.storage.delete(&Key::output(name)).await {
                    tracing::warn!(error = %err, file = name, "could not delete an output");
                }
            }
            Ok(StatusCode::NO_CONTENT)
        }
        None => {
            let job = store::get(processor.pool(), &id)
                .await?
                .ok_or_else(|| ApiError::not_found(&id))?;
            Err(ApiError {
                status: StatusCode::CONFLICT,
                kind: "job_not_finished",
                message: format!("the job is {}; cancel it before deleting it", job.status),
            })
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    order: Option<String>,
    after: Option<String>,
    before: Option<String>,
}

async fn list_jobs(
    State(processor): State<Processor>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::invalid(err.body_text()))?;
    let limit = match query.limit.as_deref() {
        None | Some("") => 20,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid("limit must be a whole number from 1 to 100"))?,
    };
    let order = match query.order.as_deref() {
        None | Some("") | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(_) => return Err(ApiError::invalid("order must be asc or desc")),
    };
    if query.after.is_some() && query.before.is_some() {
        return Err(ApiError::invalid("give after or before, not both"));
    }
    let cursor = |id: Option<String>| async {
        match id.filter(|id| !id.is_empty()) {
            None => Ok(None),
            Some(id) => store::get(processor.pool(), &id)
                .await?
                .map(Some)
                .ok_or_else(|| ApiError::invalid(format!("there is no job {id:?} to page from"))),
        }
    };
    let after = cursor(query.after).await?;
    let before = cursor(query.before).await?;
    let (jobs, has_more) = store::list(
        processor.pool(),
        limit,
        order,
        after.as_ref(),
        before.as_ref(),
    )
    .await?;
    Ok(Json(json!({
        "object": "list",
        "data": jobs.iter().map(store::ProcessorJob::to_json).collect::<Vec<_>>(),
        "has_more": has_more,
    })))
}

/// An output file name as the processor writes them: `job_<hex>.<ext>`.
pub(super) fn is_output_name(name: &str) -> bool {
    let Some((stem, ext)) = name.split_once('.') else {
        return false;
    };
    stem.strip_prefix("job_")
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        && !ext.is_empty()
        && ext.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An output file, with its content type, ranges (so video seeks) and conditional requests,
/// from whichever store keeps the outputs (every instance on an S3 store serves every output).
async fn serve_file(
    State(processor): State<Processor>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if !is_output_name(&name) {
        return ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "file_not_found",
            message: "there is no such file".into(),
        }
        .into_response();
    }
    let ext = name.rsplit('.').next().unwrap_or_default();
    processor
        .inner
        .storage
        .serve(&Key::output(&name), &method, &headers, content_type(ext))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_output_names_are_served() {
        assert!(is_output_name("job_0123abcd.mp4"));
        assert!(is_output_name("job_0123abcd.m4a"));
        for name in [
            "job_.mp4",
            "job_0123.part.mp4",
            "../secret.mp4",
            "job_01/23.mp4",
            "job_0123",
            "other_0123.mp4",
            "job_0123.mp4 ",
        ] {
            assert!(!is_output_name(name), "{name}");
        }
    }
}
