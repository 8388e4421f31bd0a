//! The built-in processor's jobs, in its own table (`processor_jobs`), and how they look on the
//! wire: Ittybit's job object with one task, timestamps in Unix milliseconds.

use std::time::Duration;

use reeltime::JobKind;
use serde_json::{json, Value};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

/// How many times a job may be started before one that keeps dying with its worker is failed.
pub const MAX_STARTS: i32 = 3;

/// One row of `processor_jobs`.
#[derive(Clone, Debug)]
pub struct ProcessorJob {
    pub id: String,
    pub kind: String,
    pub input: String,
    pub options: Value,
    pub metadata: Value,
    pub webhook_url: Option<String>,
    pub status: String,
    pub progress: Option<i16>,
    pub error: Option<String>,
    pub output: Option<Value>,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
    pub attempts: i32,
    /// The downloaded input's size in bytes, once succeeded.
    pub input_size: Option<i64>,
    /// How the work was done (the ffmpeg command, probe facts, stderr on failure), once
    /// finished.
    pub details: Option<Value>,
}

/// What `POST /jobs` stores.
pub struct NewProcessorJob<'a> {
    pub kind: JobKind,
    pub input: &'a str,
    pub options: &'a Value,
    pub metadata: &'a Value,
    pub webhook_url: Option<&'a str>,
}

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl ProcessorJob {
    /// The task's id: one task per job, named after it.
    fn task_id(&self) -> String {
        format!(
            "task_{}",
            self.id.strip_prefix("job_").unwrap_or(self.id.as_str())
        )
    }

    /// Ittybit's job object: `output` is the file's URL, the task carries the progress and
    /// the file object. Once the input's size is known the task also carries `input`, a file
    /// object with the input's URL and `size`: a Reeltime extension (decision 007); the job's
    /// own `input` stays the URL string of the contract.
    pub fn to_json(&self) -> Value {
        let output_url = self
            .output
            .as_ref()
            .and_then(|file| file.get("url"))
            .cloned()
            .unwrap_or(Value::Null);
        let error = self.error.as_ref().map_or(
            Value::Null,
            |message| json!({ "kind": "job_failed", "message": message }),
        );
        let mut task = json!({
            "id": self.task_id(),
            "object": "task",
            "kind": self.kind,
            "status": self.status,
            "progress": self.progress,
            "error": error,
            "output": self.output,
            "created_at": millis(self.created_at),
            "started_at": self.started_at.map(millis),
            "finished_at": self.finished_at.map(millis),
            "updated_at": millis(self.updated_at),
        });
        if let Some(size) = self.input_size {
            task["input"] = json!({ "object": "file", "url": self.input, "size": size });
        }
        if let Some(details) = &self.details {
            task["details"] = details.clone();
        }
        json!({
            "id": self.id,
            "object": "job",
            "kind": self.kind,
            "input": self.input,
            "output": output_url,
            "options": self.options,
            "metadata": self.metadata,
            "status": self.status,
            "error": error,
            "tasks": [task],
            "created_at": millis(self.created_at),
            "started_at": self.started_at.map(millis),
            "finished_at": self.finished_at.map(millis),
            "updated_at": millis(self.updated_at),
        })
    }
}

/// A new job id: `job_` and 32 random hex digits.
fn new_id() -> String {
    format!("job_{}", Uuid::new_v4().simple())
}

/// Store a job, or return the one stored under the same `Idempotency-Key` in the last 24 hours
/// (`true` when it is that earlier job).
pub async fn create(
    pool: &PgPool,
    job: &NewProcessorJob<'_>,
    idempotency_key: Option<&str>,
) -> Result<(ProcessorJob, bool), sqlx::Error> {
    let mut tx = begin(pool).await?;
    if let Some(key) = idempotency_key {
        // A key is free again 24 hours after first use.
        sqlx::query!(
            "update processor_jobs set idempotency_key = null
             where idempotency_key = $1 and created_at < now() - interval '24 hours'",
            key
        )
        .execute(&mut *tx)
        .await?;
    }
    let inserted = sqlx::query_as!(
        ProcessorJob,
        "insert into processor_jobs
             (id, idempotency_key, kind, input, options, metadata, webhook_url)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (idempotency_key) do nothing
         returning id, kind, input, options, metadata, webhook_url, status, progress, error, output,
             created_at, started_at, finished_at, updated_at, attempts, input_size, details",
        new_id(),
        idempotency_key,
        job.kind.as_str(),
        job.input,
        job.options,
        job.metadata,
        job.webhook_url,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let result = match inserted {
        Some(job) => (job, false),
        None => {
            let earlier = sqlx::query_as!(
                ProcessorJob,
                "select id, kind, input, options, metadata, webhook_url, status, progress, error, output,
             created_at, started_at, finished_at, updated_at, attempts, input_size, details
                 from processor_jobs where idempotency_key = $1",
                idempotency_key,
            )
            .fetch_one(&mut *tx)
            .await?;
            (earlier, true)
        }
    };
    tx.commit().await?;
    Ok(result)
}

pub async fn get(pool: &PgPool, id: &str) -> Result<Option<ProcessorJob>, sqlx::Error> {
    sqlx::query_as!(
        ProcessorJob,
        "select id, kind, input, options, metadata, webhook_url, status, progress, error, output,
             created_at, started_at, finished_at, updated_at, attempts, input_size, details
         from processor_jobs where id = $1",
        id,
    )
    .fetch_optional(pool)
    .await
}

/// Which way a list runs, by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// One page of jobs in `order`: those that come after the job `after`, or before the job
/// `before`, in that order. One more than `limit` is fetched to know whether there are more.
pub async fn list(
    pool: &PgPool,
    limit: i64,
    order: Order,
    after: Option<&ProcessorJob>,
    before: Option<&ProcessorJob>,
) -> Result<(Vec<ProcessorJob>, bool), sqlx::Error> {
    // "After" in descending order is older; "before" walks back towards the start, so it reads
    // in the opposite direction and is turned round at the end.
    let (cursor, walk_back) = match (after, before) {
        (Some(job), _) => (Some(job), false),
        (None, Some(job)) => (Some(job), true),
        (None, None) => (None, false),
    };
    let ascending = (order == Order::Asc) != walk_back;
    let created_at = cursor.map(|job| job.created_at);
    let id = cursor.map(|job| job.id.as_str()).unwrap_or_default();
    // One statement per direction, so each keeps its index order.
    let mut rows = if ascending {
        sqlx::query_as!(
            ProcessorJob,
            "select id, kind, input, options, metadata, webhook_url, status, progress, error, output,
             created_at, started_at, finished_at, updated_at, attempts, input_size, details
             from processor_jobs
             where ($1::timestamptz is null or (created_at, id) > ($1, $2))
             order by created_at asc, id asc limit $3",
            created_at,
            id,
            limit + 1,
        )
        .fetch_all(pool)
        .await?
    } else {
        sqlx::query_as!(
            ProcessorJob,
            "select id, kind, input, options, metadata, webhook_url, status, progress, error, output,
             created_at, started_at, finished_at, updated_at, attempts, input_size, details
             from processor_jobs
             where ($1::timestamptz is null or (created_at, id) < ($1, $2))
             order by created_at desc, id desc limit $3",
            created_at,
            id,
            limit + 1,
        )
        .fetch_all(pool)
        .await?
    };
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if walk_back {
        rows.reverse();
    }
    Ok((rows, has_more))
}

/// Take the oldest job that is queued, or whose worker's lease ran out, and own it for `lease`
/// under `owner`, a token new for this attempt: every later write of this worker names it.
pub async fn claim(
    pool: &PgPool,
    lease: Duration,
    owner: Uuid,
) -> Result<Option<ProcessorJob>, sqlx::Error> {
    sqlx::query_as!(
        ProcessorJob,
        "update processor_jobs set status = 'processing', progress = 0,
             started_at = coalesce(started_at, now()), updated_at = now(),
             lease_until = now() + make_interval(secs => $1), lease_owner = $2,
             attempts = attempts + 1
         where id = (
             select id from processor_jobs
             where status = 'queued' or (status = 'processing' and lease_until < now())
             order by created_at, id limit 1 for update skip locked)
         returning id, kind, input, options, metadata, webhook_url, status, progress, error, output,
             created_at, started_at, finished_at, updated_at, attempts, input_size, details",
        lease.as_secs_f64(),
        owner,
    )
    .fetch_optional(pool)
    .await
}

/// Extend `owner`'s lease on a job by `lease` from now; `false` when the job is no longer
/// its (another worker took it after the lease ran out, or it was finished).
pub async fn renew(
    pool: &PgPool,
    id: &str,
    owner: Uuid,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query!(
        "update processor_jobs set lease_until = now() + make_interval(secs => $3)
         where id = $1 and lease_owner = $2 and status = 'processing'",
        id,
        owner,
        lease.as_secs_f64(),
    )
    .execute(pool)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Record progress; `None` if the job is no longer `owner`'s.
pub async fn progress(
    pool: &PgPool,
    id: &str,
    owner: Uuid,
    percent: u8,
) -> Result<Option<ProcessorJob>, sqlx::Error> {
    sqlx::query_as!(
        ProcessorJob,
        "update processor_jobs set progress = greatest(progress, $3), updated_at = now()
         where id = $1 and lease_owner = $2 and status = 'processing'
         returning id, kind, input, options, metadata, webhook_url, status, progress, error, output,
             created_at, started_at, finished_at, updated_at, attempts, input_size, details",
        id,
        owner,
        i16::from(percent),
    )
    .fetch_optional(pool)
    .await
}

/// The attempts whose lease still runs: (job id, owner). Start-up keeps their work
/// directories (another process on the same data directory may be using them).
pub async fn live_leases(pool: &PgPool) -> Result<Vec<(String, Uuid)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select id, lease_owner as "owner!" from processor_jobs
         where status = 'processing' and lease_until > now() and lease_owner is not null"#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|row| (row.id, row.owner)).collect())
}

/// What a succeeded job produced: the output's file object and the input's size in bytes.
pub struct Done {
    pub output: Value,
    pub input_size: u64,
}

/// Finish `owner`'s job: succeeded with its output, or failed with a reason, and how the work
/// was done; `None` when the job is no longer its.
pub async fn finish(
    pool: &PgPool,
    id: &str,
    owner: Uuid,
    outcome: Result<&Done, &str>,
    details: &Value,
) -> Result<Option<ProcessorJob>, sqlx::Error> {
    let (status, output, input_size, error) = match outcome {
        Ok(done) => (
            "succeeded",
            Some(&done.output),
            i64::try_from(done.input_size).ok(),
            None,
        ),
        Err(reason) => ("failed", None, None, Some(reason)),
    };
    sqlx::query_as!(
        ProcessorJob,
        "update processor_jobs set status = $2, output = $3, error = $4, input_size = $5,
             details = $7,
             progress = case when $2 = 'succeeded' then 100 else progress end,
             finished_at = now(), updated_at = now(), lease_until = null
         where id = $1 and lease_owner = $6 and status = 'processing'
         returning id, kind, input, options, metadata, webhook_url, status, progress, error, output,
             created_at, started_at, finished_at, updated_at, attempts, input_size, details",
        id,
        status,
        output,
        error,
        input_size,
        owner,
        details,
    )
    .fetch_optional(pool)
    .await
}

/// Put `owner`'s job back in the queue (its worker is shutting down).
pub async fn requeue(pool: &PgPool, id: &str, owner: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update processor_jobs set status = 'queued', lease_until = null, lease_owner = null,
             updated_at = now(), attempts = greatest(attempts - 1, 0)
         where id = $1 and lease_owner = $2 and status = 'processing'",
        id,
        owner,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Cancel a job that has not finished (a Reeltime extension of the contract): it ends
/// `cancelled`, and its worker, if one runs it, loses its lease at the next heartbeat and stops
/// its ffmpeg. `None` when there is no such unfinished job.
pub async fn cancel(pool: &PgPool, id: &str) -> Result<Option<ProcessorJob>, sqlx::Error> {
    sqlx::query_as!(
        ProcessorJob,
        "update processor_jobs set status = 'cancelled', finished_at = now(), updated_at = now(),
             lease_until = null, lease_owner = null
         where id = $1 and status in ('queued', 'processing')
         returning id, kind, input, options, metadata, webhook_url, status, progress, error, output,
             created_at, started_at, finished_at, updated_at, attempts, input_size, details",
        id,
    )
    .fetch_optional(pool)
    .await
}

/// Delete a finished job (a Reeltime extension); returns it as it was, for its output file.
pub async fn delete_finished(pool: &PgPool, id: &str) -> Result<Option<ProcessorJob>, sqlx::Error> {
    sqlx::query_as!(
        ProcessorJob,
        "delete from processor_jobs
         where id = $1 and status in ('succeeded', 'failed', 'cancelled')
         returning id, kind, input, options, metadata, webhook_url, status, progress, error, output,
             created_at, started_at, finished_at, updated_at, attempts, input_size, details",
        id,
    )
    .fetch_optional(pool)
    .await
}

/// `BEGIN` in its own task, so a cancelled request cannot return its connection to the pool
/// inside the transaction: sqlx records the transaction only once `BEGIN` is answered (the
/// dashboard's `app::db::begin` has the whole story; the processor keeps no tie to `app`).
async fn begin(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.begin().await })
        .await
        .unwrap_or_else(|e| Err(sqlx::Error::Io(std::io::Error::other(e))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn job() -> ProcessorJob {
        ProcessorJob {
            id: "job_0123".into(),
            kind: "video".into(),
            input: "https://example.com/in.mp4".into(),
            options: json!({"width": 1280}),
            metadata: json!({"job_id": "0b5e5a36-3c0b-4c8e-9a43-6d1f1f0e2a10"}),
            webhook_url: None,
            status: "succeeded".into(),
            progress: Some(100),
            error: None,
            output: Some(
                json!({"object": "file", "url": "http://h/files/job_0123.mp4",
                                "width": 1280, "height": 720, "duration": 10.0, "size": 5}),
            ),
            created_at: datetime!(2024-03-31 15:46:40.123 UTC),
            started_at: Some(datetime!(2024-03-31 15:46:41 UTC)),
            finished_at: None,
            updated_at: datetime!(2024-03-31 15:46:42 UTC),
            attempts: 1,
            input_size: Some(4_096),
            details: Some(json!({"command": "ffmpeg -i file:input file:output"})),
        }
    }

    #[test]
    fn the_job_object_reads_back_as_the_dashboard_expects() {
        let value = job().to_json();
        assert_eq!(value["created_at"], json!(1_711_900_000_123_i64));
        assert_eq!(value["tasks"][0]["id"], json!("task_0123"));
        assert_eq!(value["output"], json!("http://h/files/job_0123.mp4"));
        let normalized = reeltime::normalize_webhook(value.to_string().as_bytes()).unwrap();
        assert_eq!(normalized.status, reeltime::JobStatus::Succeeded);
        assert_eq!(normalized.ittybit_id.as_deref(), Some("job_0123"));
        assert_eq!(
            normalized.output_url.as_deref(),
            Some("http://h/files/job_0123.mp4")
        );
        assert_eq!(normalized.output.width, Some(1280));
        assert_eq!(normalized.output.duration_ms, Some(10_000));
        assert_eq!(normalized.input_size, Some(4_096));
        assert_eq!(value["input"], json!("https://example.com/in.mp4"));
        assert!(normalized.job_id.is_some());
    }

    #[test]
    fn a_failure_carries_its_reason() {
        let mut failed = job();
        failed.status = "failed".into();
        failed.output = None;
        failed.error = Some("the input has no video stream".into());
        let normalized =
            reeltime::normalize_webhook(failed.to_json().to_string().as_bytes()).unwrap();
        assert_eq!(normalized.status, reeltime::JobStatus::Failed);
        assert_eq!(
            normalized.error.as_deref(),
            Some("the input has no video stream")
        );
    }
}
