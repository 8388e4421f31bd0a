//! Sending jobs to Ittybit, durably and once, and keeping them in step with it.
//!
//! The outbox is the jobs table itself: a `pending` job is due. Dispatchers claim due jobs in
//! short transactions (`FOR UPDATE SKIP LOCKED`, then a lease in `job_dispatch`), call Ittybit
//! outside any transaction, and store the answer. A crash between the call and storing its
//! answer leaves the lease to expire; the next claim calls again with the same
//! `Idempotency-Key` (our job id), so Ittybit answers with the job it already made.
//!
//! Reports about a job (webhooks, reconcile reads, the create answer) all go through
//! [`apply_report`], one statement that only ever moves a job forward.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use reeltime::{ChangeOp, CreateJobRequest, JobId, JobKind, JobStatus, Normalized};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::changes::{ChangeFeed, Message};
use crate::ittybit::{CallError, IttybitClient};

/// The dispatcher's and reconciler's settings.
#[derive(Clone, Debug)]
pub struct DispatchSettings {
    pub webhook_url: String,
    pub max_attempts: u32,
    pub backoff: Duration,
    pub lease: Duration,
    pub reconcile_after: Duration,
    /// How many calls to Ittybit one instance makes at once.
    pub concurrency: usize,
}

/// What applying a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The job moved (status, progress, output or Ittybit id).
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

/// Fold a report into a job in one statement: the status only moves forward and never out of
/// a terminal state (the rule of `JobStatus::advance`), progress never goes backwards and is
/// 100 on success, the output is kept on success, the error on failure.
pub async fn apply_report(
    pool: &PgPool,
    job_id: JobId,
    report: &Normalized,
) -> Result<Applied, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as(
        "update jobs set \
             status = case when reeltime_status_step($2) > reeltime_status_step(status) \
                 then $2 else status end, \
             progress = case \
                 when reeltime_status_step($2) > reeltime_status_step(status) and $2 = 'succeeded' \
                     then 100 \
                 when reeltime_status_step($2) > reeltime_status_step(status) \
                     and $2 in ('failed', 'cancelled') then progress \
                 else greatest(progress, $3) end, \
             output_url = case when $2 = 'succeeded' \
                 and reeltime_status_step($2) > reeltime_status_step(status) \
                 then coalesce($4, output_url) else output_url end, \
             output_duration_ms = case when $2 = 'succeeded' \
                 and reeltime_status_step($2) > reeltime_status_step(status) \
                 then coalesce($7, output_duration_ms) else output_duration_ms end, \
             output_size = case when $2 = 'succeeded' \
                 and reeltime_status_step($2) > reeltime_status_step(status) \
                 then coalesce($8, output_size) else output_size end, \
             output_width = case when $2 = 'succeeded' \
                 and reeltime_status_step($2) > reeltime_status_step(status) \
                 then coalesce($9, output_width) else output_width end, \
             output_height = case when $2 = 'succeeded' \
                 and reeltime_status_step($2) > reeltime_status_step(status) \
                 then coalesce($10, output_height) else output_height end, \
             error = case when $2 = 'failed' \
                 and reeltime_status_step($2) > reeltime_status_step(status) \
                 then coalesce($5, 'Ittybit reported that the job failed.') else error end, \
             task_id = coalesce(task_id, $6) \
         where id = $1 \
           and reeltime_status_step(status) < 3 \
           and (reeltime_status_step($2) > reeltime_status_step(status) \
                or $3 > coalesce(progress, -1) \
                or (task_id is null and $6 is not null)) \
         returning status",
    )
    .bind(job_id.0)
    .bind(report.status.as_str())
    .bind(report.progress.map(i16::from))
    .bind(report.output_url.as_deref())
    .bind(report.error.as_deref())
    .bind(report.ittybit_id.as_deref())
    .bind(
        report
            .output
            .duration_ms
            .and_then(|v| i64::try_from(v).ok()),
    )
    .bind(report.output.size.and_then(|v| i64::try_from(v).ok()))
    .bind(report.output.width.and_then(|v| i32::try_from(v).ok()))
    .bind(report.output.height.and_then(|v| i32::try_from(v).ok()))
    .fetch_optional(pool)
    .await?;
    let applied = match row {
        Some((status,)) => Applied::Changed(status.parse().unwrap_or(report.status)),
        None => {
            let exists: bool =
                sqlx::query_scalar("select exists (select 1 from jobs where id = $1)")
                    .bind(job_id.0)
                    .fetch_one(pool)
                    .await?;
            if exists {
                Applied::Unchanged
            } else {
                Applied::Unknown
            }
        }
    };
    if applied != Applied::Unknown {
        note_news(pool, job_id).await?;
    }
    Ok(applied)
}

/// Which of our jobs a report is about: its `metadata.job_id`, else the job holding its
/// Ittybit id.
pub async fn resolve_job(pool: &PgPool, report: &Normalized) -> Result<Option<JobId>, sqlx::Error> {
    if let Some(id) = report.job_id {
        return Ok(Some(id));
    }
    let Some(ittybit_id) = report.ittybit_id.as_deref() else {
        return Ok(None);
    };
    let id: Option<Uuid> = sqlx::query_scalar("select id from jobs where task_id = $1 limit 1")
        .bind(ittybit_id)
        .fetch_optional(pool)
        .await?;
    Ok(id.map(JobId))
}

async fn note_news(pool: &PgPool, job_id: JobId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into job_dispatch (job_id, last_news_at) values ($1, now()) \
         on conflict (job_id) do update set last_news_at = now()",
    )
    .bind(job_id.0)
    .execute(pool)
    .await?;
    Ok(())
}

/// Start the dispatcher and the reconciler.
pub fn start(
    pool: PgPool,
    client: IttybitClient,
    settings: DispatchSettings,
    feed: &ChangeFeed,
    shutdown: watch::Receiver<bool>,
) {
    let wake = feed.subscribe();
    tokio::spawn(dispatch_loop(
        pool.clone(),
        client.clone(),
        settings.clone(),
        wake,
        shutdown.clone(),
    ));
    tokio::spawn(reconcile_loop(pool, client, settings, shutdown));
}

struct Claimed {
    id: JobId,
    input_url: String,
    kind: JobKind,
    options: serde_json::Value,
    attempts: i32,
}

/// Claim up to `limit` due pending jobs: a lease on each, taken in one short statement.
/// `SKIP LOCKED` keeps instances from waiting on each other, and the conflict clause re-checks
/// the lease against the latest row, so two instances never hold the same job.
async fn claim(pool: &PgPool, limit: i64, lease: Duration) -> Result<Vec<Claimed>, sqlx::Error> {
    let rows: Vec<(Uuid, String, String, serde_json::Value, i32)> = sqlx::query_as(
        "with due as ( \
             select j.id from jobs j left join job_dispatch d on d.job_id = j.id \
             where j.status = 'pending' \
               and coalesce(d.next_attempt_at, '-infinity') <= now() \
               and (d.lease_until is null or d.lease_until < now()) \
             order by j.created_at \
             limit $1 \
             for update of j skip locked), \
         claimed as ( \
             insert into job_dispatch (job_id, attempts, lease_until) \
             select id, 1, now() + make_interval(secs => $2) from due \
             on conflict (job_id) do update \
                 set attempts = job_dispatch.attempts + 1, lease_until = excluded.lease_until \
                 where (job_dispatch.lease_until is null or job_dispatch.lease_until < now()) \
                   and job_dispatch.next_attempt_at <= now() \
             returning job_id, attempts) \
         select j.id, j.input_url, j.kind, j.options, c.attempts \
         from claimed c join jobs j on j.id = c.job_id",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, input_url, kind, options, attempts)| {
            Some(Claimed {
                id: JobId(id),
                input_url,
                kind: kind.parse().ok()?,
                options,
                attempts,
            })
        })
        .collect())
}

async fn dispatch_loop(
    pool: PgPool,
    client: IttybitClient,
    settings: DispatchSettings,
    mut wake: tokio::sync::broadcast::Receiver<Message>,
    mut shutdown: watch::Receiver<bool>,
) {
    let sweep = Duration::from_secs(1).min(settings.backoff.max(Duration::from_millis(50)));
    loop {
        if *shutdown.borrow() {
            return;
        }
        let claimed = match claim(&pool, settings.concurrency as i64, settings.lease).await {
            Ok(claimed) => claimed,
            Err(err) => {
                if pool.is_closed() {
                    return;
                }
                tracing::warn!(error = %err, "dispatch: claiming jobs failed");
                Vec::new()
            }
        };
        let full = claimed.len() == settings.concurrency;
        let mut calls = JoinSet::new();
        for job in claimed {
            calls.spawn(dispatch_one(
                pool.clone(),
                client.clone(),
                settings.clone(),
                job,
            ));
        }
        while calls.join_next().await.is_some() {}
        if full {
            continue;
        }
        // Wait for a new job (any insert reaches the change feed), a retry coming due, or
        // shutdown.
        let sleep = tokio::time::sleep(sweep);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                message = wake.recv() => match message {
                    Ok(Message::Change(frame)) if frame.op == ChangeOp::Insert => break,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn dispatch_one(
    pool: PgPool,
    client: IttybitClient,
    settings: DispatchSettings,
    job: Claimed,
) {
    let request = CreateJobRequest::new(
        job.id,
        &job.input_url,
        job.kind,
        job.options.clone(),
        settings.webhook_url.clone(),
    );
    let outcome = client.create_job(&request, &job.id.to_string()).await;
    let stored = match outcome {
        Ok(created) => {
            let mut report = created.normalize();
            report.job_id = Some(job.id);
            tracing::info!(job_id = %job.id, ittybit_id = ?report.ittybit_id, "dispatched to Ittybit");
            // Accepted: at least queued, whatever the answer's status says.
            if report.status.step() < JobStatus::Queued.step() {
                report.status = JobStatus::Queued;
            }
            store_success(&pool, job.id, &report).await
        }
        Err(err) => match err {
            CallError::Transient {
                reason,
                retry_after,
            } if (job.attempts as u32) < settings.max_attempts => {
                let delay = backoff(settings.backoff, job.attempts as u32, job.id)
                    .max(retry_after.unwrap_or_default());
                tracing::info!(job_id = %job.id, attempts = job.attempts, retry_in = ?delay, error = %reason, "dispatch will be retried");
                schedule_retry(&pool, job.id, delay, &reason).await
            }
            err => {
                tracing::warn!(job_id = %job.id, attempts = job.attempts, error = %err, "dispatch failed for good");
                fail(&pool, job.id, &err.to_string()).await
            }
        },
    };
    if let Err(err) = stored {
        // The lease runs out and another attempt (same idempotency key) follows.
        tracing::warn!(job_id = %job.id, error = %err, "dispatch: storing the outcome failed");
    }
}

async fn store_success(pool: &PgPool, id: JobId, report: &Normalized) -> Result<(), sqlx::Error> {
    apply_report(pool, id, report).await?;
    sqlx::query("update job_dispatch set lease_until = null, last_error = null where job_id = $1")
        .bind(id.0)
        .execute(pool)
        .await?;
    Ok(())
}

async fn fail(pool: &PgPool, id: JobId, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update jobs set status = 'failed', error = $2 where id = $1 and status = 'pending'",
    )
    .bind(id.0)
    .bind(error)
    .execute(pool)
    .await?;
    sqlx::query("update job_dispatch set lease_until = null, last_error = $2 where job_id = $1")
        .bind(id.0)
        .bind(error)
        .execute(pool)
        .await?;
    Ok(())
}

async fn schedule_retry(
    pool: &PgPool,
    id: JobId,
    delay: Duration,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update job_dispatch set lease_until = null, last_error = $3, \
         next_attempt_at = now() + make_interval(secs => $2) where job_id = $1",
    )
    .bind(id.0)
    .bind(delay.as_secs_f64())
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Exponential backoff, doubling per attempt up to ten minutes, with ±20 % jitter so retries
/// of many jobs spread out.
pub fn backoff(base: Duration, attempt: u32, id: JobId) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(Duration::from_secs(600));
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write(id.0.as_bytes());
    hasher.write_u32(attempt);
    let jitter = (hasher.finish() % 401) as f64 / 1000.0 - 0.2; // -0.2 ..= 0.2
    capped.mul_f64(1.0 + jitter)
}

/// Jobs Ittybit has not told us about for a while are read back and brought to its state,
/// so a lost webhook heals itself.
async fn reconcile_loop(
    pool: PgPool,
    client: IttybitClient,
    settings: DispatchSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let every =
        (settings.reconcile_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if pool.is_closed() {
            return;
        }
        if let Err(err) = reconcile_once(&pool, &client, settings.reconcile_after).await {
            tracing::warn!(error = %err, "reconcile failed");
        }
    }
}

pub async fn reconcile_once(
    pool: &PgPool,
    client: &IttybitClient,
    quiet_for: Duration,
) -> Result<usize, sqlx::Error> {
    let stale: Vec<(Uuid, String)> = sqlx::query_as(
        "select j.id, j.task_id from jobs j left join job_dispatch d on d.job_id = j.id \
         where j.status in ('queued', 'processing') and j.task_id is not null \
           and coalesce(d.last_news_at, j.updated_at) < now() - make_interval(secs => $1) \
         order by coalesce(d.last_news_at, j.updated_at) limit 20",
    )
    .bind(quiet_for.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let count = stale.len();
    for (id, task_id) in stale {
        let id = JobId(id);
        match client.get_job(&task_id).await {
            Ok(job) => {
                let mut report = job.normalize();
                report.job_id = Some(id);
                let applied = apply_report(pool, id, &report).await?;
                tracing::info!(job_id = %id, outcome = applied.as_str(), "reconciled with Ittybit");
            }
            Err(CallError::Permanent { status: 404, .. }) => {
                let report = Normalized {
                    ittybit_id: Some(task_id),
                    job_id: Some(id),
                    status: JobStatus::Failed,
                    progress: None,
                    output_url: None,
                    output: reeltime::OutputFacts::default(),
                    error: Some("Ittybit no longer knows this job.".into()),
                };
                apply_report(pool, id, &report).await?;
            }
            Err(err) => {
                tracing::warn!(job_id = %id, error = %err, "reconcile: reading the job from Ittybit failed");
                note_news(pool, id).await?;
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_ceiling() {
        let id = JobId(Uuid::nil());
        let base = Duration::from_secs(2);
        for attempt in 1..=4u32 {
            let expected = 2.0 * f64::from(1u32 << (attempt - 1));
            let got = backoff(base, attempt, id).as_secs_f64();
            assert!(
                (expected * 0.8..=expected * 1.2).contains(&got),
                "{attempt}: {got}"
            );
        }
        assert!(backoff(base, 30, id) <= Duration::from_secs(720));
    }
}
