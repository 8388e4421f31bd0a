//! The jobs table (server only). Every writer of jobs in this process goes through here.

use reeltime::{
    ChangePosition, FieldErrors, Job, JobId, JobPage, JobSubmission, NewJob, PageCursor, PageLimit,
    TxSnapshot,
};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    input_url: String,
    kind: String,
    options: serde_json::Value,
    status: String,
    task_id: Option<String>,
    output_url: Option<String>,
    error: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    progress: Option<i16>,
    output_duration_ms: Option<i64>,
    output_size: Option<i64>,
    output_width: Option<i32>,
    output_height: Option<i32>,
    version: i64,
}

impl TryFrom<JobRow> for Job {
    type Error = sqlx::Error;

    fn try_from(row: JobRow) -> Result<Self, Self::Error> {
        let decode = |err: String| sqlx::Error::Decode(err.into());
        Ok(Job {
            id: JobId(row.id),
            input_url: row.input_url,
            kind: row.kind.parse().map_err(|e| decode(format!("{e}")))?,
            options: row.options,
            status: row.status.parse().map_err(|e| decode(format!("{e}")))?,
            task_id: row.task_id,
            output_url: row.output_url,
            error: row.error,
            created_at: row.created_at,
            updated_at: row.updated_at,
            progress: row.progress.map(|p| p.clamp(0, 100) as u8),
            output_duration_ms: row.output_duration_ms.and_then(|v| u64::try_from(v).ok()),
            output_size: row.output_size.and_then(|v| u64::try_from(v).ok()),
            output_width: row.output_width.and_then(|v| u32::try_from(v).ok()),
            output_height: row.output_height.and_then(|v| u32::try_from(v).ok()),
            version: row.version,
        })
    }
}

macro_rules! job_columns {
    () => {
        "id, input_url, kind, options, status, task_id, output_url, error, created_at, updated_at, progress, \
         output_duration_ms, output_size, output_width, output_height, version"
    };
}

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
pub async fn submit_job(pool: &PgPool, submission: &JobSubmission) -> Result<Job, SubmitError> {
    let new_job = submission.validate().map_err(SubmitError::Invalid)?;
    let job = insert_job(pool, &new_job).await?;
    tracing::info!(job_id = %job.id, kind = %job.kind, "job submitted");
    Ok(job)
}

pub async fn insert_job(pool: &PgPool, job: &NewJob) -> Result<Job, sqlx::Error> {
    let row: JobRow = sqlx::query_as(concat!(
        "insert into jobs (input_url, kind, options) values ($1, $2, $3) returning ",
        job_columns!()
    ))
    .bind(job.input_url.as_str())
    .bind(job.kind().as_str())
    .bind(job.options())
    .fetch_one(pool)
    .await?;
    row.try_into()
}

pub async fn get_job(pool: &PgPool, id: JobId) -> Result<Option<Job>, sqlx::Error> {
    let row: Option<JobRow> = sqlx::query_as(concat!(
        "select ",
        job_columns!(),
        " from jobs where id = $1"
    ))
    .bind(id.0)
    .fetch_optional(pool)
    .await?;
    row.map(Job::try_from).transpose()
}

/// Newest first; `before` continues after an earlier page. The page and its change-log
/// position are read in one snapshot, so a subscriber starting from that position misses
/// nothing the page does not already show.
pub async fn list_jobs(
    pool: &PgPool,
    before: Option<PageCursor>,
    limit: PageLimit,
) -> Result<JobPage, sqlx::Error> {
    Ok(list_jobs_with_snapshot(pool, before, limit).await?.0)
}

/// [`list_jobs`], and the snapshot the page was read in: the page reflects every change made
/// by a transaction that snapshot sees.
pub async fn list_jobs_with_snapshot(
    pool: &PgPool,
    before: Option<PageCursor>,
    limit: PageLimit,
) -> Result<(JobPage, TxSnapshot), sqlx::Error> {
    let limit = limit.get() as usize;
    // One extra row tells whether an older page exists.
    let fetch = (limit + 1) as i64;
    let mut tx = pool
        .begin_with("begin isolation level repeatable read, read only")
        .await?;
    let (position, snapshot) = log_horizon(&mut *tx).await?;
    let rows: Vec<JobRow> = match before {
        None => {
            sqlx::query_as(concat!(
                "select ",
                job_columns!(),
                " from jobs order by created_at desc, id desc limit $1"
            ))
            .bind(fetch)
            .fetch_all(&mut *tx)
            .await?
        }
        Some(cursor) => {
            sqlx::query_as(concat!(
                "select ",
                job_columns!(),
                " from jobs where (created_at, id) < ($1, $2)",
                " order by created_at desc, id desc limit $3"
            ))
            .bind(cursor.created_at)
            .bind(cursor.id.0)
            .bind(fetch)
            .fetch_all(&mut *tx)
            .await?
        }
    };
    tx.commit().await?;
    let mut jobs = rows
        .into_iter()
        .map(Job::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let next_before = if jobs.len() > limit {
        jobs.truncate(limit);
        jobs.last()
            .map(|job| PageCursor::after_job(job).to_string())
    } else {
        None
    };
    Ok((
        JobPage {
            jobs,
            next_before,
            position: Some(position),
            sample_url: None,
        },
        snapshot,
    ))
}

/// The change log's delivery horizon as this snapshot sees it: the last entry written by a
/// transaction older than every transaction still running. Everything at or before it is
/// final; anything after it may still be joined by entries from transactions in flight.
pub async fn log_position(conn: impl sqlx::PgExecutor<'_>) -> Result<ChangePosition, sqlx::Error> {
    Ok(log_horizon(conn).await?.0)
}

/// [`log_position`], and the snapshot it was read in, in one statement.
pub async fn log_horizon(
    conn: impl sqlx::PgExecutor<'_>,
) -> Result<(ChangePosition, TxSnapshot), sqlx::Error> {
    let (snapshot, xid, seq): (String, Option<i64>, Option<i64>) = sqlx::query_as(
        "select s.snap::text, c.xid, c.seq \
         from (select pg_current_snapshot() as snap) s \
         left join lateral ( \
             select (xid::text)::bigint as xid, seq from job_changes \
             where xid < pg_snapshot_xmin(s.snap) \
             order by xid desc, seq desc limit 1) c on true",
    )
    .fetch_one(conn)
    .await?;
    let position = match (xid, seq) {
        (Some(xid), Some(seq)) => ChangePosition {
            xid: xid as u64,
            seq,
        },
        _ => ChangePosition::START,
    };
    let snapshot = snapshot
        .parse::<TxSnapshot>()
        .map_err(|e| sqlx::Error::Decode(e.into()))?;
    Ok((position, snapshot))
}
