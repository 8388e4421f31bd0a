//! The delivery log (`webhook_deliveries`): every signed callback that reached us, verified or
//! not, for audit and replay.

use reeltime::{JobId, JobStatus};
use sqlx::PgPool;

/// One delivery as it is recorded.
pub struct Delivery<'a> {
    pub signature_ok: bool,
    /// The processor's id for the job, when the body said.
    pub ittybit_id: Option<&'a str>,
    pub job_id: Option<JobId>,
    pub status: Option<JobStatus>,
    /// What became of it: `applied`, `unchanged`, `unknown_job`, `bad_signature`, `malformed`.
    pub outcome: &'a str,
    /// The raw body (for unverified deliveries, only its start).
    pub body: &'a [u8],
}

pub async fn record(pool: &PgPool, delivery: &Delivery<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into webhook_deliveries (signature_ok, ittybit_id, job_id, status, outcome, raw_body)
         values ($1, $2, $3, $4, $5, $6)",
        delivery.signature_ok,
        delivery.ittybit_id,
        delivery.job_id.map(|id| id.0),
        delivery.status.map(JobStatus::as_str),
        delivery.outcome,
        delivery.body,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The deliveries about job `id`, oldest first, at most `limit`; bodies of verified ones only.
pub async fn for_job(
    pool: &PgPool,
    id: JobId,
    limit: i64,
) -> Result<Vec<reeltime::Delivery>, sqlx::Error> {
    let rows = sqlx::query!(
        "select received_at, signature_ok, status, outcome, raw_body from webhook_deliveries
         where job_id = $1 order by received_at, id limit $2",
        id.0,
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| reeltime::Delivery {
            received_at: row.received_at,
            signature_ok: row.signature_ok,
            status: row.status,
            outcome: row.outcome,
            body: row
                .signature_ok
                .then(|| String::from_utf8_lossy(&row.raw_body).into_owned()),
        })
        .collect())
}

/// Delete deliveries received before `older_than` ago, at most `batch` of them; returns how
/// many went.
pub async fn delete_before(
    pool: &PgPool,
    older_than: std::time::Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "delete from webhook_deliveries where id in (
             select id from webhook_deliveries
             where received_at < now() - make_interval(secs => $1)
             order by id limit $2)",
        older_than.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
