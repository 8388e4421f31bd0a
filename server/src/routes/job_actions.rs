//! Operators' actions on jobs (issue 12), for scripts and for the dashboard's forms:
//!
//! - `POST /api/jobs/{id}/cancel`, `POST /api/jobs/{id}/retry`, `DELETE /api/jobs/{id}`:
//!   404 for an unknown id, 409 with a message for a job whose status does not allow it.
//! - `POST /api/jobs/bulk` with `{"action": …, "ids": [...]}` or `{"action": …, "filter":
//!   {"status": "failed", …}}`: one statement per action, answered with how many jobs it
//!   changed; 422 for a bad filter.
//! - `GET /api/jobs/counts?<filter>`: how many jobs of each status the filter lets through.
//! - `POST /jobs/{id}/cancel|retry|delete` and `POST /jobs/bulk`: the same from the dashboard's
//!   forms, without JavaScript; a redirect (303) back with a message.
//!
//! The dashboard's table is the truth: the action is applied there first (and every tab sees
//! it through the change feed), then the service's side is told. The built-in processor stops
//! a cancelled job's ffmpeg (`POST /jobs/{id}/cancel`) and deletes a deleted job's output
//! (`DELETE /jobs/{id}`); Ittybit has no cancel call, so there a cancel is local and the answer
//! says the remote task may still run.

use std::collections::HashMap;

use app::db::operate::{self, Actor, Outcome, Target, Touched};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use futures::StreamExt;
use reeltime::{Job, JobAction, JobFilter, JobId, JobStatus};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use super::account::{back, local, Answer};
use super::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};

/// The most ids one bulk request may name (a filter has no limit).
pub const MAX_BULK_IDS: usize = 10_000;
/// Calls to the service at once when a bulk action reaches it.
const REMOTE_CONCURRENCY: usize = 8;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/jobs/{id}/cancel", post(cancel))
        .route("/api/jobs/{id}/retry", post(retry))
        .route("/api/jobs/bulk", post(bulk))
        .route("/api/jobs/counts", get(counts))
        .route("/jobs/{id}/{action}", post(form_action))
        .route("/jobs/bulk", post(form_bulk))
}

/// An action's answer: the job as it is now (the new job for a retry, the deleted row for a
/// delete), and what the person should know about the service's side.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActionAnswer {
    pub job: Job,
    /// Set when the service could not be told, or cannot stop the job itself.
    pub note: Option<String>,
}

fn actor(user: &CurrentUser) -> Actor<'_> {
    Actor {
        user_id: Some(user.id),
        name: &user.email,
    }
}

fn job_id(id: &str) -> Result<JobId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::NotFound(format!("There is no job {id:?}.")))
}

/// Apply `action` to job `id`; the job and the note for the person.
async fn act(
    state: &AppState,
    user: &CurrentUser,
    action: JobAction,
    id: JobId,
) -> Result<ActionAnswer, ApiError> {
    let pool = &state.pool;
    let outcome = match action {
        JobAction::Cancel => operate::cancel(pool, id, &actor(user)).await?,
        JobAction::Retry => operate::retry(pool, id, &actor(user)).await?,
        JobAction::Delete => operate::delete(pool, id, &actor(user)).await?,
    };
    let job = match outcome {
        Outcome::Done(job) => *job,
        Outcome::Refused(status) => return Err(ApiError::Conflict(action.refusal(status))),
        Outcome::NotFound => return Err(ApiError::NotFound(format!("There is no job {id}."))),
    };
    tracing::info!(job_id = %id, action = %action, user = %user.email, "job action");
    let touched = Touched {
        id: job.id,
        task_id: job.task_id.clone(),
    };
    let note = tell_service(state, action, &touched).await;
    Ok(ActionAnswer { job, note })
}

/// Tell the service about a cancel or a delete; a note for the person when it could not, or
/// cannot stop the job.
async fn tell_service(state: &AppState, action: JobAction, job: &Touched) -> Option<String> {
    let task_id = job.task_id.as_deref()?;
    let remote = state.remote.as_ref()?;
    match action {
        JobAction::Retry => None,
        JobAction::Cancel if !remote.built_in => Some(format!(
            "Cancelled here: later reports for it change nothing. {} has no way to cancel a \
             job, so it may still finish it (and bill it).",
            remote.client.service()
        )),
        JobAction::Cancel => match remote.client.cancel_job(task_id).await {
            Ok(_) => None,
            // It finished meanwhile: nothing left to stop.
            Err(crate::ittybit::CallError::Permanent { status: 409, .. }) => None,
            Err(err) => {
                tracing::warn!(job_id = %job.id, error = %err, "could not stop a cancelled job");
                Some(format!(
                    "Cancelled here, but {} could not be told to stop it: it may run to the end.",
                    remote.client.service()
                ))
            }
        },
        JobAction::Delete if remote.built_in => match remote.client.delete_job(task_id).await {
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(job_id = %job.id, error = %err, "could not delete a job's output");
                Some("Deleted; its output file could not be removed yet.".to_owned())
            }
        },
        JobAction::Delete => None,
    }
}

/// `POST /api/jobs/{id}/cancel`.
#[utoipa::path(post, path = "/api/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "Cancelled.", body = ActionAnswer),
        (status = 404, description = "No such job.", body = crate::error::ErrorBody),
        (status = 409, description = "The job has finished.", body = crate::error::ErrorBody)))]
async fn cancel(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ActionAnswer>, ApiError> {
    Ok(Json(
        act(&state, &user, JobAction::Cancel, job_id(&id)?).await?,
    ))
}

/// `POST /api/jobs/{id}/retry`: 201 with the new job.
#[utoipa::path(post, path = "/api/jobs/{id}/retry", tag = "jobs",
    params(("id" = String, Path, description = "The failed or cancelled job's id.")),
    responses(
        (status = 201, description = "The new job, linked to the old (`retry_of`).", body = ActionAnswer),
        (status = 404, description = "No such job.", body = crate::error::ErrorBody),
        (status = 409, description = "The job has not failed or been cancelled.", body = crate::error::ErrorBody)))]
async fn retry(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let answer = act(&state, &user, JobAction::Retry, job_id(&id)?).await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `DELETE /api/jobs/{id}`.
#[utoipa::path(delete, path = "/api/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The finished job's id.")),
    responses(
        (status = 200, description = "Deleted; the row as it was.", body = ActionAnswer),
        (status = 404, description = "No such job.", body = crate::error::ErrorBody),
        (status = 409, description = "The job has not finished.", body = crate::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ActionAnswer>, ApiError> {
    Ok(Json(
        act(&state, &user, JobAction::Delete, job_id(&id)?).await?,
    ))
}

/// A bulk request: an action and either ids or a filter (the list's query parameters).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct BulkRequest {
    pub action: JobAction,
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<HashMap<String, String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BulkAnswer {
    pub action: JobAction,
    /// How many jobs it changed (jobs whose status did not allow it are left as they were).
    pub changed: usize,
    /// The jobs it changed; for a retry, the new jobs.
    #[schema(value_type = Vec<String>)]
    pub ids: Vec<JobId>,
    pub note: Option<String>,
}

/// `POST /api/jobs/bulk`.
#[utoipa::path(post, path = "/api/jobs/bulk", tag = "jobs", request_body = BulkRequest,
    responses(
        (status = 200, description = "Applied to every job it allows.", body = BulkAnswer),
        (status = 400, description = "Not JSON.", body = crate::error::ErrorBody),
        (status = 413, description = "Too large.", body = crate::error::ErrorBody),
        (status = 415, description = "Not declared as JSON.", body = crate::error::ErrorBody),
        (status = 422, description = "Neither or both of ids and filter, a bad id or filter.", body = crate::error::ErrorBody)))]
async fn bulk(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    ApiJson(request): ApiJson<BulkRequest>,
) -> Result<Json<BulkAnswer>, ApiError> {
    let target = match (request.ids, request.filter) {
        (Some(ids), None) => {
            if ids.len() > MAX_BULK_IDS {
                return Err(ApiError::Unprocessable(format!(
                    "ids: at most {MAX_BULK_IDS} at once; use a filter for more"
                )));
            }
            let ids = ids
                .iter()
                .map(|id| {
                    id.parse::<JobId>().map_err(|_| {
                        ApiError::Unprocessable(format!("ids: {id:?} is not a job id"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Target::Ids(ids)
        }
        (None, Some(filter)) => Target::Filter(
            JobFilter::from_pairs(filter.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|err| ApiError::Unprocessable(format!("filter: {err}")))?,
        ),
        _ => {
            return Err(ApiError::Unprocessable(
                "give either ids (a list of job ids) or filter (the list's parameters)".into(),
            ))
        }
    };
    let touched = operate::bulk(&state.pool, request.action, &target, &actor(&user)).await?;
    let note = tell_service_all(&state, request.action, &touched).await;
    Ok(Json(BulkAnswer {
        action: request.action,
        changed: touched.len(),
        ids: touched.iter().map(|t| t.id).collect(),
        note,
    }))
}

/// [`tell_service`] for every job a bulk action changed, a few at a time; the first note.
async fn tell_service_all(state: &AppState, action: JobAction, jobs: &[Touched]) -> Option<String> {
    if action == JobAction::Retry {
        return None;
    }
    let notes: Vec<Option<String>> = futures::stream::iter(jobs.to_vec())
        .map(|job| {
            let state = state.clone();
            async move { tell_service(&state, action, &job).await }
        })
        .buffer_unordered(REMOTE_CONCURRENCY)
        .collect()
        .await;
    notes.into_iter().flatten().next()
}

/// `GET /api/jobs/counts?<filter>`: `{"pending": 2, "failed": 1, …}` (every status present).
#[utoipa::path(get, path = "/api/jobs/counts", tag = "jobs",
    responses(
        (status = 200, description = "Jobs per status, the filter's own status aside.", body = Object),
        (status = 422, description = "A bad filter.", body = crate::error::ErrorBody)))]
async fn counts(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<Json<serde_json::Map<String, serde_json::Value>>, ApiError> {
    let filter = JobFilter::from_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|err| ApiError::Unprocessable(err.to_string()))?;
    let found = app::db::status_counts(&state.pool, &filter).await?;
    let mut map = serde_json::Map::new();
    for status in JobStatus::ALL {
        let n = found
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        map.insert(status.as_str().to_owned(), n.into());
    }
    Ok(Json(map))
}

#[derive(Deserialize)]
struct ActionForm {
    /// Where to go back to (a path on this server); the job's page when absent.
    back: Option<String>,
}

/// `POST /jobs/{id}/{cancel|retry|delete}` from a form: the action, then back with a message.
async fn form_action(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    session: Session,
    axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Answer {
    let page = format!("/jobs/{id}");
    let to = form.back.as_deref().map(local).unwrap_or(&page).to_owned();
    let (Ok(action), Ok(id)) = (action.parse::<JobAction>(), id.parse::<JobId>()) else {
        return back(&session, "/", false, "There is no such job or action.").await;
    };
    match act(&state, &user, action, id).await {
        Ok(answer) => {
            let done = match action {
                JobAction::Cancel => "The job is cancelled.".to_owned(),
                JobAction::Retry => format!("Retried as job {}.", answer.job.id),
                JobAction::Delete => "The job is deleted.".to_owned(),
            };
            let text = match answer.note {
                Some(note) => format!("{done} {note}"),
                None => done,
            };
            // A deleted job's page is gone: back to the list.
            let to = if action == JobAction::Delete && to == page {
                "/".to_owned()
            } else {
                to
            };
            back(&session, &to, true, text).await
        }
        Err(ApiError::Conflict(text) | ApiError::NotFound(text)) => {
            back(&session, &to, false, text).await
        }
        Err(err) => {
            tracing::error!(error = %err, "a job action failed");
            back(
                &session,
                &to,
                false,
                "Something went wrong on our side; try again.",
            )
            .await
        }
    }
}

/// `POST /jobs/bulk` from the dashboard's bulk bar: `action`, `scope` (`selected`: the ticked
/// `ids`; `all`: every job the filter fields let through), `back`; then back with the count.
async fn form_bulk(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    session: Session,
    body: axum::body::Bytes,
) -> Answer {
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let to = local(field("back").unwrap_or("/")).to_owned();
    let Some(action) = field("action").and_then(|a| a.parse::<JobAction>().ok()) else {
        return back(&session, &to, false, "Choose an action.").await;
    };
    let target = if field("scope") == Some("all") {
        match JobFilter::from_pairs(fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            Ok(filter) => Target::Filter(filter),
            Err(err) => {
                return back(
                    &session,
                    &to,
                    false,
                    format!("That filter is not valid: {err}."),
                )
                .await
            }
        }
    } else {
        let ids: Vec<JobId> = fields
            .iter()
            .filter(|(key, _)| key == "ids")
            .filter_map(|(_, id)| id.parse().ok())
            .take(MAX_BULK_IDS)
            .collect();
        if ids.is_empty() {
            return back(&session, &to, false, "Tick the jobs to apply it to first.").await;
        }
        Target::Ids(ids)
    };
    let touched = match operate::bulk(&state.pool, action, &target, &actor(&user)).await {
        Ok(touched) => touched,
        Err(err) => {
            tracing::error!(error = %err, "a bulk action failed");
            return back(
                &session,
                &to,
                false,
                "Something went wrong on our side; try again.",
            )
            .await;
        }
    };
    let note = tell_service_all(&state, action, &touched).await;
    let done = match (action, touched.len()) {
        (_, 0) => format!(
            "No job could be {}: their status does not allow it.",
            past(action)
        ),
        (_, 1) => format!("1 job {}.", past(action)),
        (_, n) => format!("{n} jobs {}.", past(action)),
    };
    let text = match note {
        Some(note) => format!("{done} {note}"),
        None => done,
    };
    back(&session, &to, !touched.is_empty(), text).await
}

fn past(action: JobAction) -> &'static str {
    match action {
        JobAction::Cancel => "cancelled",
        JobAction::Retry => "retried",
        JobAction::Delete => "deleted",
    }
}
