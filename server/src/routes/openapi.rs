//! `GET /api/openapi.json`: the JSON API described as OpenAPI 3.1, generated from the
//! handlers' `#[utoipa::path]` attributes and the domain types' schemas, so it cannot drift
//! from the code. Access: public, like the API it describes (`tests/api/openapi.rs` says so).
//!
//! Covered: the jobs API, uploads, the event stream, Ittybit's callback, health. Not covered: the
//! dashboard's pages and its form's server function (HTML), and the built-in processor's
//! Ittybit-compatible API under `/ittybit-local` (documented by the Ittybit contract).

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use super::AppState;

pub const PATH: &str = "/api/openapi.json";

pub fn router() -> Router<AppState> {
    Router::new().route(PATH, get(|| async { Json(ApiDoc::openapi()) }))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Reeltime",
        description = "Jobs, their live changes, and the processor's callbacks."
    ),
    paths(
        super::jobs::create,
        super::jobs::list,
        super::jobs::read,
        super::job_actions::cancel,
        super::job_actions::retry,
        super::job_actions::delete,
        super::job_actions::bulk,
        super::job_actions::counts,
        super::events::events,
        super::uploads::create,
        super::uploads::status,
        super::uploads::part,
        super::uploads::complete,
        super::ittybit::callback,
        super::health::healthz,
        super::health::readyz,
    ),
    components(schemas(
        reeltime::Job,
        reeltime::JobPage,
        reeltime::JobSubmission,
        reeltime::JobStatus,
        reeltime::JobKind,
        reeltime::FieldErrors,
        crate::error::ErrorBody,
        super::ittybit::CallbackAnswer,
        reeltime::JobAction,
        super::job_actions::ActionAnswer,
        super::job_actions::BulkRequest,
        super::job_actions::BulkAnswer,
        reeltime::upload::NewUpload,
        crate::uploads::UploadStatus
    ))
)]
pub struct ApiDoc;
