//! Server functions: how the dashboard talks to the server. Each takes what it needs from the
//! context the server provides (the pool, the sample clip on offer), never from a global.

use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use reeltime::{FieldErrors, Job, JobPage};
use serde::{Deserialize, Serialize};

/// Why a submission from the dashboard failed, in terms the page can show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum SubmitJobError {
    /// Input a person can fix, by field.
    #[error("{0}")]
    Invalid(FieldErrors),
    /// Our fault; the details are in the server log, not here.
    #[error("The job could not be saved right now. Please try again in a moment.")]
    Unavailable,
    #[error("{0}")]
    ServerFn(ServerFnErrorErr),
}

impl FromServerFnError for SubmitJobError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        SubmitJobError::ServerFn(value)
    }
}

impl SubmitJobError {
    pub fn field(&self, name: &str) -> Option<String> {
        match self {
            SubmitJobError::Invalid(errors) => errors.get(name).map(str::to_owned),
            _ => None,
        }
    }
}

/// What the dashboard shows: a page of jobs, and on the first page the sample clip the server
/// offers, if any. (The sample is the dashboard's business, not the API's: `/api/jobs` and the
/// feed's `reset` carry a plain [`JobPage`].)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DashboardPage {
    pub page: JobPage,
    pub sample_url: Option<String>,
}

/// The sample clip a server offers on the empty dashboard (provided as context by the server).
#[cfg(feature = "ssr")]
#[derive(Clone, Debug)]
pub struct SampleOffer {
    /// Where the processor fetches it.
    pub url: String,
    /// Set once the file has been written; it is offered from then on.
    pub ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(feature = "ssr")]
fn pool() -> Option<sqlx::PgPool> {
    use_context::<sqlx::PgPool>()
}

/// Submit a job. Posted by the dashboard's form, with or without JavaScript.
#[server(prefix = "/api/fn", endpoint = "submit_job")]
pub async fn submit_job(input_url: String, preset: Option<String>) -> Result<Job, SubmitJobError> {
    use crate::db::{self, SubmitError};
    let pool = pool().ok_or(SubmitJobError::Unavailable)?;
    let created_by = crate::session::current_user().map(|user| user.id);
    let submission = reeltime::JobSubmission {
        input_url,
        preset,
        kind: None,
    };
    match db::submit_job(&pool, &submission, created_by).await {
        Ok(job) => Ok(job),
        Err(SubmitError::Invalid(errors)) => Err(SubmitJobError::Invalid(errors)),
        Err(SubmitError::Database(err)) => {
            tracing::error!(error = %err, "storing a submitted job failed");
            Err(SubmitJobError::Unavailable)
        }
    }
}

/// One page of jobs, newest first.
#[server(prefix = "/api/fn", endpoint = "list_jobs")]
pub async fn list_jobs(before: Option<String>) -> Result<DashboardPage, ServerFnError> {
    let pool = pool().ok_or_else(|| ServerFnError::new("The job list is unavailable."))?;
    let before = before
        .filter(|b| !b.is_empty())
        .map(|b| b.parse::<reeltime::PageCursor>())
        .transpose()
        .map_err(|_| ServerFnError::new("That page link is not valid."))?;
    let page_is_first = before.is_none();
    let page = crate::db::list_jobs(
        &pool,
        &reeltime::JobFilter::default(),
        before,
        reeltime::PageLimit::DEFAULT,
    )
    .await
    .map_err(|err| {
        tracing::error!(error = %err, "listing jobs failed");
        ServerFnError::new("The job list is unavailable right now.")
    })?;
    // Offered on the first page only, where the empty dashboard shows it, to people who may
    // submit jobs.
    let may_submit = crate::session::current_user().is_some_and(|user| user.role.can_write());
    let sample_url = use_context::<SampleOffer>()
        .filter(|sample| {
            page_is_first && may_submit && sample.ready.load(std::sync::atomic::Ordering::Relaxed)
        })
        .map(|sample| sample.url);
    Ok(DashboardPage { page, sample_url })
}
