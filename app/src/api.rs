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
    /// Jobs per status under the page's filter (its own status aside): the status tabs.
    pub counts: Vec<(reeltime::JobStatus, i64)>,
    /// A job processing with no news for this many seconds is shown as stalled.
    pub stalled_after_secs: u64,
}

/// How long a processing job may go without news before the dashboard calls it stalled (the
/// reconciler's quiet period; provided as context by the server).
#[cfg(feature = "ssr")]
#[derive(Clone, Copy, Debug)]
pub struct StalledAfter(pub std::time::Duration);

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

/// One page of the jobs `filter` (a URL query: `status=failed&q=…`) lets through, newest first.
#[server(prefix = "/api/fn", endpoint = "list_jobs")]
pub async fn list_jobs(
    before: Option<String>,
    filter: Option<String>,
) -> Result<DashboardPage, ServerFnError> {
    let pool = pool().ok_or_else(|| ServerFnError::new("The job list is unavailable."))?;
    let before = before
        .filter(|b| !b.is_empty())
        .map(|b| b.parse::<reeltime::PageCursor>())
        .transpose()
        .map_err(|_| ServerFnError::new("That page link is not valid."))?;
    let filter = parse_filter(filter.as_deref().unwrap_or_default())
        .map_err(|err| ServerFnError::new(format!("That filter is not valid: {err}.")))?;
    let page_is_first = before.is_none();
    let unavailable = |err: sqlx::Error| {
        tracing::error!(error = %err, "listing jobs failed");
        ServerFnError::new("The job list is unavailable right now.")
    };
    let page = crate::db::list_jobs(&pool, &filter, before, reeltime::PageLimit::DEFAULT)
        .await
        .map_err(unavailable)?;
    let counts = crate::db::status_counts(&pool, &filter)
        .await
        .map_err(unavailable)?;
    let stalled_after_secs =
        use_context::<StalledAfter>().map_or(600, |StalledAfter(after)| after.as_secs());
    // Offered on the first page only, where the empty dashboard shows it, to people who may
    // submit jobs.
    let may_submit = crate::session::current_user().is_some_and(|user| user.role.can_write());
    let sample_url = use_context::<SampleOffer>()
        .filter(|sample| {
            page_is_first && may_submit && sample.ready.load(std::sync::atomic::Ordering::Relaxed)
        })
        .map(|sample| sample.url)
        .filter(|_| filter.is_empty());
    Ok(DashboardPage {
        page,
        sample_url,
        counts,
        stalled_after_secs,
    })
}

/// A filter from a URL query (`status=failed&q=example.com`).
pub fn parse_filter(query: &str) -> Result<reeltime::JobFilter, reeltime::FilterError> {
    let pairs: Vec<(String, String)> = query
        .trim_start_matches('?')
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(key)?, decode(value)?))
        })
        .collect();
    reeltime::JobFilter::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// A filter as a URL query, without the `?`.
pub fn filter_query(filter: &reeltime::JobFilter) -> String {
    filter
        .to_pairs()
        .into_iter()
        .map(|(key, value)| format!("{key}={}", encode(&value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `application/x-www-form-urlencoded` decoding of one key or value (a `%` not followed by
/// two hex digits is kept as it is).
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                Some(byte) => {
                    out.push(byte);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Percent-encoding of a query value: everything but unreserved characters.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// What a job's page shows: the job, its story, and the jobs that retry it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobFile {
    pub job: Job,
    pub story: Vec<reeltime::JobEvent>,
    pub retried_as: Vec<reeltime::JobId>,
    /// The signed callbacks about it, oldest first (the last 200).
    pub deliveries: Vec<reeltime::Delivery>,
    /// How the work was done, as the processor reported it (the built-in one's ffmpeg command,
    /// probe facts and stderr on failure).
    pub details: Option<serde_json::Value>,
    pub stalled_after_secs: u64,
    /// The change-log position read before the job: following the feed from it misses
    /// nothing (a change seen twice is older by its version and ignored).
    pub position: Option<reeltime::ChangePosition>,
}

/// One job's page.
#[server(prefix = "/api/fn", endpoint = "job_detail")]
pub async fn job_detail(id: String) -> Result<Option<JobFile>, ServerFnError> {
    let pool = pool().ok_or_else(|| ServerFnError::new("The job is unavailable."))?;
    let Ok(id) = id.parse::<reeltime::JobId>() else {
        return Ok(None);
    };
    let unavailable = |err: sqlx::Error| {
        tracing::error!(error = %err, "reading a job failed");
        ServerFnError::new("The job is unavailable right now.")
    };
    let position = crate::db::log_position(&pool).await.map_err(unavailable)?;
    let Some(job) = crate::db::get_job(&pool, id).await.map_err(unavailable)? else {
        return Ok(None);
    };
    let story = crate::db::operate::events(&pool, id)
        .await
        .map_err(unavailable)?;
    let retried_as = crate::db::operate::retries_of(&pool, id)
        .await
        .map_err(unavailable)?;
    let deliveries = crate::db::webhooks::for_job(&pool, id, 200)
        .await
        .map_err(unavailable)?;
    let details = crate::db::jobs::details_of(&pool, id)
        .await
        .map_err(unavailable)?;
    let stalled_after_secs =
        use_context::<StalledAfter>().map_or(600, |StalledAfter(after)| after.as_secs());
    Ok(Some(JobFile {
        job,
        story,
        retried_as,
        deliveries,
        details,
        stalled_after_secs,
        position: Some(position),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_goes_into_a_url_and_comes_back() {
        let filter = parse_filter("?status=failed&q=a+b%25%26c&from=2026-12-01&before=x").unwrap();
        assert_eq!(filter.q.as_deref(), Some("a b%&c"));
        assert_eq!(filter.status, Some(reeltime::JobStatus::Failed));
        let query = filter_query(&filter);
        assert_eq!(query, "status=failed&q=a%20b%25%26c&from=2026-12-01");
        assert_eq!(parse_filter(&query).unwrap(), filter);
        assert_eq!(decode("100%").as_deref(), Some("100%"));
        assert_eq!(decode("%zz").as_deref(), Some("%zz"));
        assert!(parse_filter("").unwrap().is_empty());
        assert!(parse_filter("status=nope").is_err());
    }
}
