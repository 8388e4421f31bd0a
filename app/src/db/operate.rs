//! Operators' actions on jobs (issue 12): cancel, retry and delete, one job or every job a
//! filter or a list of ids names, each as one statement whose `where` clause is the rule of
//! `reeltime::JobAction::allows`. A job's story (`job_events`) gets the action in the same
//! transaction.

use reeltime::{Job, JobAction, JobEvent, JobFilter, JobId, JobStatus};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

/// Who acts: the person's account and e-mail (the story names them).
#[derive(Clone, Debug)]
pub struct Actor<'a> {
    pub user_id: Option<Uuid>,
    pub name: &'a str,
}

/// What an action on one job did.
#[derive(Debug)]
pub enum Outcome {
    /// Done: the job as it is now (cancelled; the new job for a retry; the deleted row).
    Done(Box<Job>),
    /// The job's status does not allow the action.
    Refused(JobStatus),
    /// No such job.
    NotFound,
}

/// The jobs a bulk action applies to: these ids, or every job the filter lets through.
#[derive(Clone, Debug)]
pub enum Target {
    Ids(Vec<JobId>),
    Filter(JobFilter),
}

/// The SQL parameters of a filter, in `reeltime_filtered_jobs`'s order.
pub(crate) struct FilterParams {
    pub status: Option<&'static str>,
    pub kind: Option<&'static str>,
    pub preset_kind: Option<&'static str>,
    pub preset_options: Option<serde_json::Value>,
    pub q: Option<String>,
    pub from: Option<time::OffsetDateTime>,
    pub to: Option<time::OffsetDateTime>,
}

impl FilterParams {
    pub fn of(filter: &JobFilter) -> FilterParams {
        FilterParams {
            status: filter.status.map(JobStatus::as_str),
            kind: filter.kind.map(|kind| kind.as_str()),
            preset_kind: filter.preset.map(|preset| preset.kind().as_str()),
            preset_options: filter.preset.map(|preset| preset.options()),
            q: filter.q.as_deref().map(like_pattern),
            from: filter.from,
            to: filter.to,
        }
    }
}

/// `%text%` for ILIKE, with the text's own `%`, `_` and `\` taken literally.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A transaction whose writes the story credits to `actor`, with custom plans (the filter's
/// null conditions fold away, so each statement keeps its index).
async fn acting(
    pool: &PgPool,
    actor: &Actor<'_>,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = super::begin(pool).await?;
    sqlx::query_scalar!(
        r#"select set_config('reeltime.actor', $1, true) as "set!""#,
        actor.name
    )
    .fetch_one(&mut *tx)
    .await?;
    super::custom_plans(&mut tx).await?;
    Ok(tx)
}

/// Why the action did not apply to job `id`: refused by its status, or no such job.
async fn not_done(
    tx: &mut Transaction<'static, Postgres>,
    id: JobId,
) -> Result<Outcome, sqlx::Error> {
    let status = sqlx::query_scalar!(
        r#"select status as "status: JobStatus" from jobs where id = $1"#,
        id.0
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(status.map_or(Outcome::NotFound, Outcome::Refused))
}

/// The outcome of an action on job `id` that changed `job` (or nothing), committed.
async fn settle(
    mut tx: Transaction<'static, Postgres>,
    id: JobId,
    job: Option<Job>,
) -> Result<Outcome, sqlx::Error> {
    let outcome = match job {
        Some(job) => Outcome::Done(Box::new(job)),
        None => not_done(&mut tx, id).await?,
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Cancel job `id` if it has not finished.
#[tracing::instrument(skip(pool, actor), fields(actor = actor.name))]
pub async fn cancel(pool: &PgPool, id: JobId, actor: &Actor<'_>) -> Result<Outcome, sqlx::Error> {
    let mut tx = acting(pool, actor).await?;
    let job = sqlx::query_as!(
        Job,
        r#"update jobs set status = 'cancelled'
         where id = $1 and status in ('pending', 'queued', 'processing')
         returning id, input_url, kind, options, status, task_id, output_url, error, created_at,
             updated_at, progress, output_duration_ms, output_size, output_width, output_height,
             input_size, version, created_by, retry_of"#,
        id.0,
    )
    .fetch_optional(&mut *tx)
    .await?;
    settle(tx, id, job).await
}

/// Retry job `id` if it failed or was cancelled: a new job with its input and options.
#[tracing::instrument(skip(pool, actor), fields(actor = actor.name))]
pub async fn retry(pool: &PgPool, id: JobId, actor: &Actor<'_>) -> Result<Outcome, sqlx::Error> {
    let mut tx = acting(pool, actor).await?;
    let job = sqlx::query_as!(
        Job,
        r#"insert into jobs (input_url, kind, options, created_by, retry_of)
         select input_url, kind, options, $2, id from jobs
         where id = $1 and status in ('failed', 'cancelled')
         returning id, input_url, kind, options, status, task_id, output_url, error, created_at,
             updated_at, progress, output_duration_ms, output_size, output_width, output_height,
             input_size, version, created_by, retry_of"#,
        id.0,
        actor.user_id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let outcome = match job {
        Some(job) => {
            sqlx::query!(
                "insert into job_events (job_id, kind, actor, detail)
                 values ($1, 'action', $2, jsonb_build_object('action', 'retry', 'retried_as', $3::uuid))",
                id.0,
                actor.name,
                job.id.0,
            )
            .execute(&mut *tx)
            .await?;
            Outcome::Done(Box::new(job))
        }
        None => not_done(&mut tx, id).await?,
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Delete job `id` if it has finished; `Done` carries the row as it was.
#[tracing::instrument(skip(pool, actor), fields(actor = actor.name))]
pub async fn delete(pool: &PgPool, id: JobId, actor: &Actor<'_>) -> Result<Outcome, sqlx::Error> {
    let mut tx = acting(pool, actor).await?;
    let job = sqlx::query_as!(
        Job,
        r#"delete from jobs where id = $1 and reeltime_status_terminal(status)
         returning id, input_url, kind, options, status, task_id, output_url, error, created_at,
             updated_at, progress, output_duration_ms, output_size, output_width, output_height,
             input_size, version, created_by, retry_of"#,
        id.0,
    )
    .fetch_optional(&mut *tx)
    .await?;
    settle(tx, id, job).await
}

/// One job a bulk action changed: its id, and the processor's id for it (to stop or clean up
/// the processor's side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touched {
    pub id: JobId,
    pub task_id: Option<String>,
}

/// Apply `action` to every job of `target` whose status allows it, in one statement; returns
/// the jobs it changed (for a retry, the new jobs). Jobs the action does not apply to are left
/// as they are.
#[tracing::instrument(skip(pool, target, actor), fields(actor = actor.name))]
pub async fn bulk(
    pool: &PgPool,
    action: JobAction,
    target: &Target,
    actor: &Actor<'_>,
) -> Result<Vec<Touched>, sqlx::Error> {
    let (ids, filter) = match target {
        Target::Ids(ids) => (
            Some(ids.iter().map(|id| id.0).collect::<Vec<Uuid>>()),
            JobFilter::default(),
        ),
        Target::Filter(filter) => (None, filter.clone()),
    };
    let f = FilterParams::of(&filter);
    let mut tx = acting(pool, actor).await?;
    let touched = match action {
        JobAction::Cancel => {
            sqlx::query_as!(
                Touched,
                r#"update jobs set status = 'cancelled'
                 where id in (select id from reeltime_filtered_jobs($2, $3, $4, $5, $6, $7, $8)
                              where $1::uuid[] is null or id = any($1))
                   and status in ('pending', 'queued', 'processing')
                 returning id as "id: JobId", task_id"#,
                ids.as_deref(),
                f.status,
                f.kind,
                f.preset_kind,
                f.preset_options,
                f.q,
                f.from,
                f.to,
            )
            .fetch_all(&mut *tx)
            .await?
        }
        JobAction::Retry => {
            let touched = sqlx::query_as!(
                Touched,
                r#"insert into jobs (input_url, kind, options, created_by, retry_of)
                 select input_url, kind, options, $9, id
                 from reeltime_filtered_jobs($2, $3, $4, $5, $6, $7, $8)
                 where ($1::uuid[] is null or id = any($1))
                   and status in ('failed', 'cancelled')
                 returning id as "id: JobId", task_id"#,
                ids.as_deref(),
                f.status,
                f.kind,
                f.preset_kind,
                f.preset_options,
                f.q,
                f.from,
                f.to,
                actor.user_id,
            )
            .fetch_all(&mut *tx)
            .await?;
            let new: Vec<Uuid> = touched.iter().map(|t| t.id.0).collect();
            sqlx::query!(
                "insert into job_events (job_id, kind, actor, detail)
                 select retry_of, 'action', $2, jsonb_build_object('action', 'retry', 'retried_as', id)
                 from jobs where id = any($1) and retry_of is not null",
                &new,
                actor.name,
            )
            .execute(&mut *tx)
            .await?;
            touched
        }
        JobAction::Delete => {
            sqlx::query_as!(
                Touched,
                r#"delete from jobs
                 where id in (select id from reeltime_filtered_jobs($2, $3, $4, $5, $6, $7, $8)
                              where $1::uuid[] is null or id = any($1))
                   and reeltime_status_terminal(status)
                 returning id as "id: JobId", task_id"#,
                ids.as_deref(),
                f.status,
                f.kind,
                f.preset_kind,
                f.preset_options,
                f.q,
                f.from,
                f.to,
            )
            .fetch_all(&mut *tx)
            .await?
        }
    };
    tx.commit().await?;
    tracing::info!(action = %action, changed = touched.len(), "bulk action");
    Ok(touched)
}

/// The jobs that retry `id`, oldest first.
pub async fn retries_of(pool: &PgPool, id: JobId) -> Result<Vec<JobId>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select id as "id: JobId" from jobs where retry_of = $1 order by created_at"#,
        id.0
    )
    .fetch_all(pool)
    .await
}

/// Job `id`'s story, oldest first.
pub async fn events(pool: &PgPool, id: JobId) -> Result<Vec<JobEvent>, sqlx::Error> {
    sqlx::query_as!(
        JobEvent,
        "select at, kind, actor, detail from job_events where job_id = $1 order by id",
        id.0
    )
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_taken_literally() {
        assert_eq!(like_pattern("example.com"), "%example.com%");
        assert_eq!(like_pattern("100%_a\\b"), "%100\\%\\_a\\\\b%");
    }
}
