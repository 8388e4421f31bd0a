//! The change log (`job_changes`): what the live feed replays and follows. A trigger on `jobs`
//! writes it, in the writer's own transaction, whoever the writer is.
//!
//! Entries are read in `(xid, seq)` order and only below the delivery horizon, the oldest
//! transaction still running (decision 004): an entry above it may still be joined, later, by
//! entries of a transaction that began earlier and has not committed yet.

use reeltime::{ChangeOp, ChangePosition, Job, TxSnapshot};
use sqlx::PgPool;
use std::time::Duration;

/// A change read from the log.
#[derive(Debug, Clone)]
pub struct Change {
    pub position: ChangePosition,
    pub op: ChangeOp,
    pub job: Job,
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
    let row = sqlx::query!(
        r#"select s.snap::text as "snapshot!", c.xid as "xid?", c.seq as "seq?"
         from (select pg_current_snapshot() as snap) s
         left join lateral (
             select (xid::text)::bigint as xid, seq from job_changes
             where xid < pg_snapshot_xmin(s.snap)
             order by xid desc, seq desc limit 1) c on true"#
    )
    .fetch_one(conn)
    .await?;
    let position = match (row.xid, row.seq) {
        (Some(xid), Some(seq)) => ChangePosition {
            xid: xid as u64,
            seq,
        },
        _ => ChangePosition::START,
    };
    let snapshot = row
        .snapshot
        .parse::<TxSnapshot>()
        .map_err(|e| sqlx::Error::Decode(e.into()))?;
    Ok((position, snapshot))
}

/// Entries after `after` that are final, in delivery order, at most `limit`; and whether more
/// exist beyond the horizon (written by transactions still running, or committed after an
/// older one that still runs), so the caller knows to look again soon.
pub async fn read_changes(
    pool: &PgPool,
    after: ChangePosition,
    limit: i64,
) -> Result<(Vec<Change>, bool), sqlx::Error> {
    let rows = sqlx::query!(
        r#"with horizon as (select pg_snapshot_xmin(pg_current_snapshot()) as xmin)
         select (c.xid::text)::bigint as "xid!", c.seq, c.op, c.row_data,
                c.xid >= h.xmin as "beyond_horizon!"
         from job_changes c, horizon h
         where (c.xid, c.seq) > ($1::text::xid8, $2)
         order by c.xid, c.seq limit $3"#,
        after.xid.to_string(),
        after.seq,
        limit,
    )
    .fetch_all(pool)
    .await?;
    let mut changes = Vec::with_capacity(rows.len());
    let mut pending = false;
    for row in rows {
        if row.beyond_horizon {
            pending = true;
            break;
        }
        let position = ChangePosition {
            xid: row.xid as u64,
            seq: row.seq,
        };
        match serde_json::from_value::<Job>(row.row_data) {
            Ok(job) => changes.push(Change {
                position,
                op: row.op,
                job,
            }),
            // A row that no longer fits the Job type (written by hand, say) is skipped, not
            // allowed to stop the feed.
            Err(err) => tracing::warn!(%position, error = %err, "skipping an unreadable change"),
        }
    }
    Ok((changes, pending))
}

/// The position before which history has been pruned.
pub async fn pruned_through(pool: &PgPool) -> Result<ChangePosition, sqlx::Error> {
    let row = sqlx::query!(r#"select (xid::text)::bigint as "xid!", seq from job_changes_pruned"#)
        .fetch_one(pool)
        .await?;
    Ok(ChangePosition {
        xid: row.xid as u64,
        seq: row.seq,
    })
}

/// Delete log entries older than `retention`, and remember how far that went.
pub async fn prune(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query_scalar!(
        r#"with gone as (
             delete from job_changes
             where changed_at < now() - make_interval(secs => $1)
             returning xid, seq),
         last as (select xid, seq from gone order by xid desc, seq desc limit 1),
         moved as (
             update job_changes_pruned p set xid = last.xid, seq = last.seq from last
             where (last.xid, last.seq) > (p.xid, p.seq))
         select count(*) as "deleted!" from gone"#,
        retention.as_secs_f64(),
    )
    .fetch_one(pool)
    .await?;
    Ok(deleted as u64)
}
