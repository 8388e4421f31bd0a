//! `/api/jobs`: submit, list and read jobs as JSON.

use app::db::{self, SubmitError};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use reeltime::{Job, JobId, JobPage, JobSubmission, PageCursor, PageLimit};
use serde::Deserialize;

use super::AppState;
use crate::auth::CurrentUser;
use crate::error::ErrorBody;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};

/// Largest job submission accepted.
pub const MAX_SUBMISSION_BYTES: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/jobs", get(list).post(create))
        .route(
            "/api/jobs/{id}",
            get(read).delete(super::job_actions::delete),
        )
        .route("/api/jobs/{id}/output-link", get(output_link))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_SUBMISSION_BYTES))
}

/// `POST /api/jobs` with `{"input_url": "...", "preset": "...", "kind": "..."}`.
#[utoipa::path(post, path = "/api/jobs", tag = "jobs", request_body = JobSubmission,
    responses(
        (status = 201, description = "Stored; `Location` is the job's URL.", body = Job),
        (status = 400, description = "Not JSON.", body = ErrorBody),
        (status = 413, description = "Over 64 KiB.", body = ErrorBody),
        (status = 415, description = "Not declared as JSON.", body = ErrorBody),
        (status = 422, description = "Invalid: `fields` says which.", body = ErrorBody),
        (status = 503, description = "The database cannot take work now (full, restarting).", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    ApiJson(submission): ApiJson<JobSubmission>,
) -> Result<impl IntoResponse, ApiError> {
    let job = db::submit_job(&state.pool, &submission, Some(user.id))
        .await
        .map_err(|err| match err {
            SubmitError::Invalid(fields) => ApiError::Validation(fields),
            SubmitError::Database(err) => ApiError::from(err),
        })?;
    let location = format!("/api/jobs/{}", job.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(job),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// 1 to 100; 50 when absent.
    limit: Option<u32>,
    /// A previous page's `next_before` (for the same filter).
    before: Option<String>,
    /// Only jobs in this status.
    status: Option<String>,
    /// Only jobs of this kind.
    kind: Option<String>,
    /// Only jobs made with this preset.
    preset: Option<String>,
    /// Text in the input URL or the error, ignoring case.
    q: Option<String>,
    /// Created on or after this day (`YYYY-MM-DD`, UTC) or time (RFC 3339).
    from: Option<String>,
    /// Created on or before this day, or before this time.
    to: Option<String>,
}

impl ListParams {
    fn filter(&self) -> Result<reeltime::JobFilter, reeltime::FilterError> {
        let pairs = [
            ("status", &self.status),
            ("kind", &self.kind),
            ("preset", &self.preset),
            ("q", &self.q),
            ("from", &self.from),
            ("to", &self.to),
        ];
        reeltime::JobFilter::from_pairs(
            pairs
                .into_iter()
                .filter_map(|(key, value)| value.as_deref().map(|value| (key, value))),
        )
    }
}

/// `GET /api/jobs?limit=&before=&status=&kind=&preset=&q=&from=&to=`: newest first, the jobs
/// the filter lets through; `next_before` continues.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs", params(ListParams),
    responses(
        (status = 200, description = "A page, newest first.", body = JobPage),
        (status = 400, description = "A bad `limit` or `before`.", body = ErrorBody),
        (status = 422, description = "A bad filter: the message says which parameter.", body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<JobPage>, ApiError> {
    let limit = params
        .limit
        .map(PageLimit::new)
        .transpose()
        .map_err(ApiError::BadRequest)?
        .unwrap_or_default();
    let filter = params
        .filter()
        .map_err(|err| ApiError::Unprocessable(err.to_string()))?;
    let before = params
        .before
        .filter(|b| !b.is_empty())
        .map(|b| b.parse::<PageCursor>())
        .transpose()
        .map_err(|err| ApiError::BadRequest(err.to_string()))?;
    Ok(Json(
        db::list_jobs(&state.pool, &filter, before, limit).await?,
    ))
}

/// `GET /api/jobs/{id}`.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (a UUID).")),
    responses(
        (status = 200, description = "The job.", body = Job),
        (status = 404, description = "No such job.", body = ErrorBody)))]
async fn read(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Job>, ApiError> {
    let not_found = || ApiError::NotFound(format!("There is no job {id:?}."));
    let job_id: JobId = id.parse().map_err(|_| not_found())?;
    db::get_job(&state.pool, job_id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

/// How long a signed output link works.
const LINK_LIFETIME: time::Duration = time::Duration::hours(1);

/// `GET /api/jobs/{id}/output-link`: a link to the job's output that works without signing in
/// for an hour (for a player or a download outside the dashboard). Outputs this server serves
/// get a signature; others (Ittybit's) are returned as they are.
async fn output_link(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let not_found = || ApiError::NotFound(format!("There is no job {id:?}."));
    let job_id: JobId = id.parse().map_err(|_| not_found())?;
    let job = db::get_job(&state.pool, job_id)
        .await?
        .ok_or_else(not_found)?;
    let output = job
        .output_url
        .filter(|_| job.status == reeltime::JobStatus::Succeeded)
        .ok_or_else(|| ApiError::Conflict("The job has no output yet.".into()))?;
    let ours = url::Url::parse(&output)
        .ok()
        .filter(|url| url.path().starts_with(crate::processor::MOUNT));
    let Some(url) = ours else {
        return Ok(Json(
            serde_json::json!({ "url": output, "expires_at": null }),
        ));
    };
    let expires = time::OffsetDateTime::now_utc() + LINK_LIFETIME;
    let query = crate::auth::secrets::sign_path(&state.auth.link_key, url.path(), expires);
    let expires_at = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Ok(Json(serde_json::json!({
        "url": format!("{output}?{query}"),
        "expires_at": expires_at,
    })))
}
