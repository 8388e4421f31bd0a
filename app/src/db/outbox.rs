//! The dispatcher's view of `jobs`: a `pending` job is due to be sent (the table is the
//! outbox), and a `queued` or `processing` job with no news for a while is due to be read back.
//! The bookkeeping of each attempt (leases, retries, the last error) lives in `job_dispatch`,
//! apart from `jobs`, so claiming and retrying do not show up as changes to the job.

use std::time::Duration;

use reeltime::{JobId, JobKind};
use sqlx::PgPool;

/// A pending job this dispatcher holds the lease on.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: JobId,
    pub input_url: String,
    pub kind: JobKind,
    pub options: serde_json::Value,
    /// This attempt's number, from 1.
    pub attempts: i32,
}

/// Claim up to `limit` due pending jobs: a lease on each, taken in one short statement.
/// `SKIP LOCKED` keeps instances from waiting on each other, and the conflict clause re-checks
/// the lease against the latest row, so two instances never hold the same job.
pub async fn claim(
    pool: &PgPool,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as!(
        Claimed,
        "with due as (
             select j.id from jobs j left join job_dispatch d on d.job_id = j.id
             where j.status = 'pending'
               and coalesce(d.next_attempt_at, '-infinity') <= now()
               and (d.lease_until is null or d.lease_until < now())
             order by j.created_at
             limit $1
             for update of j skip locked),
         claimed as (
             insert into job_dispatch (job_id, attempts, lease_until)
             select id, 1, now() + make_interval(secs => $2) from due
             on conflict (job_id) do update
                 set attempts = job_dispatch.attempts + 1, lease_until = excluded.lease_until
                 where (job_dispatch.lease_until is null or job_dispatch.lease_until < now())
                   and job_dispatch.next_attempt_at <= now()
             returning job_id, attempts)
         select j.id, j.input_url, j.kind, j.options, c.attempts
         from claimed c join jobs j on j.id = c.job_id",
        limit,
        lease.as_secs_f64(),
    )
    .fetch_all(pool)
    .await
}

/// A job the processor has accepted and has not told us about for a while.
#[derive(Debug, Clone)]
pub struct Quiet {
    pub id: JobId,
    /// The processor's id, to read it back with.
    pub task_id: String,
}

/// Up to `limit` accepted, unfinished jobs with no news for `quiet_for`, the longest quiet
/// first.
pub async fn quiet_jobs(
    pool: &PgPool,
    quiet_for: Duration,
    limit: i64,
) -> Result<Vec<Quiet>, sqlx::Error> {
    sqlx::query_as!(
        Quiet,
        r#"select j.id, j.task_id as "task_id!"
         from jobs j left join job_dispatch d on d.job_id = j.id
         where j.status in ('queued', 'processing') and j.task_id is not null
           and coalesce(d.last_news_at, j.updated_at) < now() - make_interval(secs => $1)
         order by coalesce(d.last_news_at, j.updated_at) limit $2"#,
        quiet_for.as_secs_f64(),
        limit,
    )
    .fetch_all(pool)
    .await
}

/// The reconciler has read job `id` back (whatever it learned, or when the read failed): the
/// next read-back waits a quiet period.
pub async fn read_back(pool: &PgPool, id: JobId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into job_dispatch (job_id, last_news_at) values ($1, now())
         on conflict (job_id) do update set last_news_at = now()",
        id.0
    )
    .execute(pool)
    .await?;
    Ok(())
}
