//! The Stats page's figures, each one aggregate query over `jobs` (server only). The windows
//! are read through indexes: `jobs_created_at_id_idx` for jobs created in the last hour or
//! day, `jobs_finished_at_idx` (which carries the columns the aggregates read, so the scan is
//! index-only once the table is vacuumed) for jobs finished in the last day, and
//! `jobs_active_idx` for the jobs in flight. Rust only lays the few grouped rows onto the
//! chart's buckets.

use sqlx::PgPool;

/// Jobs created per bucket, oldest first: `(bucket start as Unix seconds, count)`.
pub type Buckets = Vec<(i64, i64)>;

/// Jobs created in the last `hours`, grouped into buckets of `bucket_secs`.
#[tracing::instrument(skip(pool))]
pub async fn created_per_bucket(
    pool: &PgPool,
    hours: i32,
    bucket_secs: i32,
) -> Result<Buckets, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select (floor(extract(epoch from created_at)::float8 / $2::float8) * $2::float8)::bigint
                      as "bucket!",
                  count(*) as "count!"
           from jobs
           where created_at >= now() - make_interval(hours => $1)
           group by 1
           order by 1"#,
        hours,
        f64::from(bucket_secs),
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.bucket, r.count)).collect())
}

/// What happened to the jobs that finished in the last day.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    pub finished: i64,
    pub failed: i64,
    pub wait_p50: Option<f64>,
    pub wait_p95: Option<f64>,
    pub run_p50: Option<f64>,
    pub run_p95: Option<f64>,
    pub bytes_out: i64,
    /// The inputs' bytes, over the jobs whose input size is known (`None`: none is).
    pub bytes_in: Option<i64>,
    /// Input minus output bytes over the succeeded jobs that know both sizes, and those jobs'
    /// input bytes (what the saving is a share of); `None` when no job knows both.
    pub saved: Option<i64>,
    pub saved_of: Option<i64>,
}

#[tracing::instrument(skip(pool))]
pub async fn finished_last_day(pool: &PgPool) -> Result<Finished, sqlx::Error> {
    let row = sqlx::query!(
        r#"select count(*) as "finished!",
                  count(*) filter (where status = 'failed') as "failed!",
                  percentile_cont(0.5) within group
                      (order by extract(epoch from started_at - created_at)) as wait_p50,
                  percentile_cont(0.95) within group
                      (order by extract(epoch from started_at - created_at)) as wait_p95,
                  percentile_cont(0.5) within group
                      (order by extract(epoch from finished_at - started_at)) as run_p50,
                  percentile_cont(0.95) within group
                      (order by extract(epoch from finished_at - started_at)) as run_p95,
                  coalesce(sum(output_size), 0)::bigint as "bytes_out!",
                  sum(input_size)::bigint as bytes_in,
                  sum(input_size - output_size) filter (where status = 'succeeded')::bigint
                      as saved,
                  sum(input_size) filter (where status = 'succeeded'
                                            and output_size is not null)::bigint as saved_of
           from jobs
           where finished_at >= now() - interval '24 hours'"#
    )
    .fetch_one(pool)
    .await?;
    Ok(Finished {
        finished: row.finished,
        failed: row.failed,
        wait_p50: row.wait_p50,
        wait_p95: row.wait_p95,
        run_p50: row.run_p50,
        run_p95: row.run_p95,
        bytes_out: row.bytes_out,
        bytes_in: row.bytes_in,
        saved: row.saved,
        saved_of: row.saved_of,
    })
}

/// Jobs waiting (pending or queued) and processing now.
#[tracing::instrument(skip(pool))]
pub async fn in_flight(pool: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query!(
        r#"select count(*) filter (where status in ('pending', 'queued')) as "waiting!",
                  count(*) filter (where status = 'processing') as "processing!"
           from jobs
           where status in ('pending', 'queued', 'processing')"#
    )
    .fetch_one(pool)
    .await?;
    Ok((row.waiting, row.processing))
}

/// A process that runs processor workers, as its `processor_workers` row says.
#[derive(Debug, Clone)]
pub struct WorkerRow {
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub slots: i32,
    pub busy: i32,
    /// Seconds since it started and since it was last heard from.
    pub up_secs: i64,
    pub silent_secs: i64,
}

/// The processes that run workers, by host (a few rows: one per process).
#[tracing::instrument(skip(pool))]
pub async fn workers(pool: &PgPool) -> Result<Vec<WorkerRow>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select host, pid, version, slots,
                  cardinality(jobs) as "busy!",
                  extract(epoch from now() - started_at)::bigint as "up_secs!",
                  extract(epoch from now() - seen_at)::bigint as "silent_secs!"
           from processor_workers
           order by host, started_at"#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| WorkerRow {
            host: r.host,
            pid: r.pid,
            version: r.version,
            slots: r.slots,
            busy: r.busy,
            up_secs: r.up_secs,
            silent_secs: r.silent_secs,
        })
        .collect())
}
