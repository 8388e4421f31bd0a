//! The `jobs` table: submitting, reading and paging jobs, and folding what a processor reports
//! about a job into its row.

use reeltime::{
    FieldErrors, Job, JobFilter, JobId, JobKind, JobPage, JobStatus, JobSubmission, NewJob,
    Normalized, PageCursor, PageLimit, Shown,
};
use sqlx::PgPool;
use uuid::Uuid;

use super::changes::{horizon, page_position};
use super::operate::FilterParams;

/// Why a submission was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("invalid submission: {0}")]
    Invalid(FieldErrors),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The one way a job is submitted, for the form's server function and `POST /api/jobs` alike:
/// validate, insert, return the stored job. Invalid input writes nothing.
#[tracing::instrument(skip_all, fields(job_id = tracing::field::Empty))]
pub async fn submit_job(
    pool: &PgPool,
    submission: &JobSubmission,
    created_by: Option<Uuid>,
) -> Result<Job, SubmitError> {
    let new_job = submission.validate().map_err(SubmitError::Invalid)?;
    let job = insert_job(pool, &new_job, created_by).await?;
    tracing::Span::current().record("job_id", tracing::field::display(job.id));
    tracing::info!(kind = %job.kind, "job submitted");
    Ok(job)
}

/// Store a validated job, created by `created_by` (a person; `None` for other writers).
pub async fn insert_job(
    pool: &PgPool,
    job: &NewJob,
    created_by: Option<Uuid>,
) -> Result<Job, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "insert into jobs (input_url, kind, options, created_by) values ($1, $2, $3, $4)
         returning id, input_url, kind, options, status, task_id, output_url, error,
             created_at, updated_at, progress, output_duration_ms, output_size, output_width,
             output_height, input_size, version, created_by,
             retry_of",
        job.input_url.as_str(),
        job.kind().as_str(),
        job.options(),
        created_by,
    )
    .fetch_one(pool)
    .await
}

pub async fn get_job(pool: &PgPool, id: JobId) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "select id, input_url, kind, options, status, task_id, output_url, error, created_at,
             updated_at, progress, output_duration_ms, output_size, output_width, output_height,
             input_size, version, created_by,
             retry_of
         from jobs where id = $1",
        id.0,
    )
    .fetch_optional(pool)
    .await
}

/// Newest first, the jobs `filter` lets through; `before` continues after an earlier page.
/// The page and its change-log position are read in one snapshot, so a subscriber starting
/// from that position misses nothing the page does not already show.
pub async fn list_jobs(
    pool: &PgPool,
    filter: &JobFilter,
    before: Option<PageCursor>,
    limit: PageLimit,
) -> Result<JobPage, sqlx::Error> {
    Ok(list_jobs_with_snapshot(pool, filter, before, limit)
        .await?
        .0)
}

/// [`list_jobs`], and what the page shows of the change log (its snapshot): the changes after
/// its position that it already reflects.
///
/// The filter is `reeltime_filtered_jobs` (the SQL of `JobFilter::matches`), which the planner
/// inlines; custom plans fold its unset conditions away, so an unfiltered page walks
/// `jobs_created_at_id_idx` and a status tab `jobs_status_created_at_id_idx`.
pub async fn list_jobs_with_snapshot(
    pool: &PgPool,
    filter: &JobFilter,
    before: Option<PageCursor>,
    limit: PageLimit,
) -> Result<(JobPage, Shown), sqlx::Error> {
    let limit = limit.get() as usize;
    // One extra row tells whether an older page exists.
    let fetch = (limit + 1) as i64;
    // The horizon first, on its own: every transaction below it has ended before the page's
    // snapshot is taken, so the page shows all of their changes.
    let below = horizon(pool).await?;
    let mut tx =
        super::begin_with(pool, "begin isolation level repeatable read, read only").await?;
    let (position, shown) = page_position(&mut *tx, below).await?;
    super::custom_plans(&mut tx).await?;
    let f = FilterParams::of(filter);
    let (cursor_at, cursor_id) = match before {
        Some(cursor) => (Some(cursor.created_at), Some(cursor.id.0)),
        None => (None, None),
    };
    let mut jobs = sqlx::query_as!(
        Job,
        r#"select id as "id!: JobId", input_url as "input_url!", kind as "kind!: JobKind",
             options as "options!", status as "status!: JobStatus", task_id, output_url, error,
             created_at as "created_at!", updated_at as "updated_at!", progress,
             output_duration_ms, output_size, output_width, output_height, input_size,
             version as "version!", created_by, retry_of as "retry_of: JobId"
         from reeltime_filtered_jobs($1, $2, $3, $4, $5, $6, $7)
         where $8::timestamptz is null or (created_at, id) < ($8, $9)
         order by created_at desc, id desc limit $10"#,
        f.status,
        f.kind,
        f.preset_kind,
        f.preset_options,
        f.q,
        f.from,
        f.to,
        cursor_at,
        cursor_id,
        fetch,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let next_before = if jobs.len() > limit {
        jobs.truncate(limit);
        jobs.last()
            .map(|job| PageCursor::after_job(job).to_string())
    } else {
        None
    };
    let page = JobPage {
        jobs,
        next_before,
        position: Some(position),
    };
    Ok((page, shown))
}

/// How many jobs of each status `filter` lets through, its own status condition aside (the
/// status tabs' counts); statuses with none are left out.
pub async fn status_counts(
    pool: &PgPool,
    filter: &JobFilter,
) -> Result<Vec<(JobStatus, i64)>, sqlx::Error> {
    let others = filter.with_status(None);
    if others.is_empty() {
        return all_status_counts(pool).await;
    }
    let f = FilterParams::of(&others);
    let mut tx = super::begin_with(pool, "begin read only").await?;
    super::custom_plans(&mut tx).await?;
    let rows = sqlx::query!(
        r#"select status as "status!: JobStatus", count(*) as "count!"
         from reeltime_filtered_jobs(null, $1, $2, $3, $4, $5, $6) group by status"#,
        f.kind,
        f.preset_kind,
        f.preset_options,
        f.q,
        f.from,
        f.to,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.status, row.count))
        .collect())
}

/// Every job per status, from the ledger the triggers on `jobs` keep (migration
/// `job_status_counts`): a sum over a few rows, where counting the table took tens of
/// milliseconds at 100,000 jobs. Statuses with no jobs are left out, as a count would.
async fn all_status_counts(pool: &PgPool) -> Result<Vec<(JobStatus, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select status as "status!: JobStatus", sum(delta)::bigint as "count!"
         from job_status_counts group by status having sum(delta) <> 0"#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.status, row.count))
        .collect())
}

/// How often the server folds the status-count ledger ([`compact_status_counts`]).
pub const COMPACT_COUNTS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds the status-count ledger to one row per status, so reading it stays a sum over a
/// handful of rows however many changes came since.
#[tracing::instrument(skip_all)]
pub async fn compact_status_counts(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query!("select reeltime_compact_status_counts()")
        .execute(pool)
        .await?;
    Ok(())
}

/// What applying a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The job moved (status, progress, output or the processor's id).
    Changed(JobStatus),
    /// Nothing new: a repeat, an older report, or the job is already finished.
    Unchanged,
    /// No such job.
    Unknown,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Changed(_) => "applied",
            Applied::Unchanged => "unchanged",
            Applied::Unknown => "unknown_job",
        }
    }
}

/// Fold a report from `service` (`Ittybit`, `The built-in processor`) into a job, in one
/// statement and one round trip: the status only moves forward and never out of a terminal
/// state (the rule of `JobStatus::advance`, as `reeltime_status_step` and
/// `reeltime_status_terminal` say it in SQL), progress never goes backwards and is 100 on
/// success, the output's URL and facts and the input's size are kept on success, the error on
/// failure.
///
/// A report that changed the job is news: its `last_news_at` (the reconciler's clock) is set.
/// One that changes nothing is not, even when validly signed: it may be an old delivery
/// replayed, and it must not keep a stuck job from being read back. (The reconciler stamps its
/// own read-backs, changed or not: `outbox::read_back`.)
///
/// `advances` is worked out once per row, inside the row-valued `SET`, so it is evaluated
/// against the row being updated even when a concurrent writer made Postgres re-read it.
#[tracing::instrument(skip_all, fields(job_id = %job_id, status = %report.status))]
pub async fn apply_report(
    pool: &PgPool,
    job_id: JobId,
    report: &Normalized,
    service: &str,
) -> Result<Applied, sqlx::Error> {
    apply(pool, job_id, report, service, None).await
}

/// [`apply_report`] for a verified webhook whose raw bytes are `body`: the delivery is recorded
/// (`webhook_deliveries`, with the outcome the report had) by the same statement, so a callback
/// costs one round trip and one commit, and the delivery log never disagrees with the job.
pub async fn apply_webhook(
    pool: &PgPool,
    job_id: JobId,
    report: &Normalized,
    service: &str,
    body: &[u8],
) -> Result<Applied, sqlx::Error> {
    apply(pool, job_id, report, service, Some(body)).await
}

async fn apply(
    pool: &PgPool,
    job_id: JobId,
    report: &Normalized,
    service: &str,
    delivered: Option<&[u8]>,
) -> Result<Applied, sqlx::Error> {
    let facts = &report.output;
    let row = sqlx::query!(
        r#"with actor as materialized (select set_config('reeltime.actor', $11, true) as name),
         known as (select id from jobs where id = $1),
         updated as (
             update jobs set (status, progress, output_url, output_duration_ms, output_size,
                     output_width, output_height, input_size, error, task_id) = (
                 select
                     case when r.advances then $2 else jobs.status end,
                     case when r.advances and $2 = 'succeeded' then 100
                          when r.advances and reeltime_status_terminal($2) then jobs.progress
                          else greatest(jobs.progress, $3::smallint) end,
                     case when r.succeeds then coalesce($4, jobs.output_url)
                          else jobs.output_url end,
                     case when r.succeeds then coalesce($7, jobs.output_duration_ms)
                          else jobs.output_duration_ms end,
                     case when r.succeeds then coalesce($8, jobs.output_size)
                          else jobs.output_size end,
                     case when r.succeeds then coalesce($9, jobs.output_width)
                          else jobs.output_width end,
                     case when r.succeeds then coalesce($10, jobs.output_height)
                          else jobs.output_height end,
                     case when r.succeeds then coalesce($12, jobs.input_size)
                          else jobs.input_size end,
                     case when r.advances and $2 = 'failed'
                          then coalesce($5, $11 || ' reported that the job failed.')
                          else jobs.error end,
                     coalesce(jobs.task_id, $6::text)
                 from (select reeltime_status_step($2) > reeltime_status_step(jobs.status)
                              as advances,
                              $2 = 'succeeded'
                                  and reeltime_status_step($2) > reeltime_status_step(jobs.status)
                              as succeeds) r)
             where id = $1
               -- The story (job_events) credits the change to the service that reported it.
               and (select name from actor) is not null
               and not reeltime_status_terminal(status)
               and (reeltime_status_step($2) > reeltime_status_step(status)
                    or $3::smallint > coalesce(progress, -1)
                    or (task_id is null and $6::text is not null))
             returning id, status),
         news as (
             insert into job_dispatch (job_id, last_news_at) select id, now() from updated
             on conflict (job_id) do update set last_news_at = now()),
         -- How the work was done (the built-in processor's extension), for the job's page.
         details as (
             insert into job_details (job_id, details) select id, $13 from known
             where $13::jsonb is not null
             on conflict (job_id) do update
                 set details = job_details.details || excluded.details, updated_at = now()),
         -- A verified webhook's delivery, with what became of it (Applied::as_str's words).
         delivery as (
             insert into webhook_deliveries
                 (signature_ok, ittybit_id, job_id, status, outcome, raw_body)
             select true, $6, $1, $2,
                    case when not exists (select 1 from known) then 'unknown_job'
                         when exists (select 1 from updated) then 'applied'
                         else 'unchanged' end,
                    $14
             where $14::bytea is not null)
         select exists (select 1 from known) as "known!",
                (select status from updated) as "status?: JobStatus""#,
        job_id.0,
        report.status.as_str(),
        report.progress.map(i16::from),
        report.output_url.as_deref(),
        report.error.as_deref(),
        report.ittybit_id.as_deref(),
        facts.duration_ms.and_then(|v| i64::try_from(v).ok()),
        facts.size.and_then(|v| i64::try_from(v).ok()),
        facts.width.and_then(|v| i32::try_from(v).ok()),
        facts.height.and_then(|v| i32::try_from(v).ok()),
        service,
        report.input_size.and_then(|v| i64::try_from(v).ok()),
        report.details.as_ref(),
        delivered,
    )
    .fetch_one(pool)
    .await?;
    Ok(match (row.known, row.status) {
        (false, _) => Applied::Unknown,
        (true, Some(status)) => Applied::Changed(status),
        (true, None) => Applied::Unchanged,
    })
}

/// Keep `answer`, the service's last `GET /jobs/{id}` answer about job `id`, beside the job
/// (`last_answer` in its details, for its page).
pub async fn record_answer(
    pool: &PgPool,
    id: JobId,
    answer: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into job_details (job_id, details)
         select id, jsonb_build_object('last_answer', $2::jsonb) from jobs where id = $1
         on conflict (job_id) do update
             set details = job_details.details || excluded.details, updated_at = now()",
        id.0,
        answer,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// How job `id`'s work was done, as its processor last reported it.
pub async fn details_of(
    pool: &PgPool,
    id: JobId,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar!("select details from job_details where job_id = $1", id.0)
        .fetch_optional(pool)
        .await
}

/// Which of our jobs a report is about: its `metadata.job_id`, else the job holding the
/// processor's id.
pub async fn resolve_job(pool: &PgPool, report: &Normalized) -> Result<Option<JobId>, sqlx::Error> {
    if let Some(id) = report.job_id {
        return Ok(Some(id));
    }
    let Some(task_id) = report.ittybit_id.as_deref() else {
        return Ok(None);
    };
    sqlx::query_scalar!("select id from jobs where task_id = $1 limit 1", task_id)
        .fetch_optional(pool)
        .await
}

/// Fail a job that was never accepted (still `pending`) with `error`.
pub async fn fail_pending(pool: &PgPool, id: JobId, error: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "update jobs set status = 'failed', error = $2 where id = $1 and status = 'pending'",
        id.0,
        error,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Delete finished jobs last changed before `older_than` ago, at most `batch` of them;
/// returns how many went.
pub async fn delete_finished_before(
    pool: &PgPool,
    older_than: std::time::Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "delete from jobs where id in (
             select id from jobs
             where reeltime_status_terminal(status)
               and updated_at < now() - make_interval(secs => $1)
             limit $2)",
        older_than.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
