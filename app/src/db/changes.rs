//! The change log (`job_changes`): what the live feed replays and follows. A trigger on `jobs`
//! writes it, in the writer's own transaction, whoever the writer is.
//!
//! Entries are read in `(tx_key, seq)` order and only below the delivery horizon, the smallest
//! order key a running transaction holds (decision 004): an entry above it may still be joined,
//! later, by entries of a transaction that took an earlier key and has not committed yet. The
//! horizon is read in a statement of its own, before the read it bounds: that read's snapshot
//! must be taken after every transaction below the horizon ended. (`read_changes`, the feed's
//! hot path, does both in one round trip: `reeltime_read_changes` runs them as two statements.)
//!
//! An entry that cannot be turned into a [`Job`] (written by hand, say) is never delivered,
//! but it is never silently dropped either: it is logged, counted ([`undecodable_total`]), and
//! a read still counts it and moves past it, so a batch that held one is not mistaken for the
//! end of the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reeltime::{ChangeOp, ChangePosition, Job, Shown, TxSnapshot};
use sqlx::PgPool;

/// Entries read from the log that could not be decoded, since the process started.
static UNDECODABLE: AtomicU64 = AtomicU64::new(0);

/// How many log entries this process has read and could not decode (each read counts).
pub fn undecodable_total() -> u64 {
    UNDECODABLE.load(Ordering::Relaxed)
}

/// A change read from the log.
#[derive(Debug, Clone)]
pub struct Change {
    pub position: ChangePosition,
    /// The writing transaction's id: whether a snapshot already shows this change.
    pub xid: u64,
    pub op: ChangeOp,
    pub job: Job,
}

/// The delivery horizon: every entry whose order key is below it is final, and no entry will
/// ever be written below it again. A read bounded by it must be a later statement, so that its
/// snapshot is taken after every transaction below the horizon ended.
pub async fn horizon(conn: impl sqlx::PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    let horizon = sqlx::query_scalar!(r#"select reeltime_change_horizon() as "horizon!""#)
        .fetch_one(conn)
        .await?;
    Ok(horizon as u64)
}

/// The last final entry: where a reader that has seen everything so far stands.
pub async fn log_position(pool: &PgPool) -> Result<ChangePosition, sqlx::Error> {
    let below = horizon(pool).await?;
    Ok(page_position(pool, below).await?.0)
}

/// The last entry below `horizon` (read earlier, on its own), the snapshot this statement
/// reads in, and what a page read in that snapshot shows: one statement, so that inside a
/// REPEATABLE READ transaction all three describe the page read next.
pub async fn page_position(
    conn: impl sqlx::PgExecutor<'_>,
    horizon: u64,
) -> Result<(ChangePosition, Shown), sqlx::Error> {
    let row = sqlx::query!(
        r#"select pg_current_snapshot()::text as "snapshot!",
                  coalesce(pg_sequence_last_value('job_change_keys'), 0) as "issued!",
                  c.tx_key as "tx_key?", c.seq as "seq?"
         from (select 1) one
         left join lateral (
             select l.tx_key, l.seq from job_changes l where l.tx_key < $1
             order by l.tx_key desc, l.seq desc limit 1) c on true"#,
        horizon as i64,
    )
    .fetch_one(conn)
    .await?;
    let position = match (row.tx_key, row.seq) {
        (Some(tx), Some(seq)) => ChangePosition { tx: tx as u64, seq },
        _ => ChangePosition::START,
    };
    let snapshot = row
        .snapshot
        .parse::<TxSnapshot>()
        .map_err(|e| sqlx::Error::Decode(e.into()))?;
    Ok((
        position,
        Shown {
            snapshot,
            issued: row.issued as u64,
        },
    ))
}

/// One read of the log.
#[derive(Debug, Default)]
pub struct ChangeBatch {
    /// The entries that could be decoded, in delivery order.
    pub changes: Vec<Change>,
    /// How many final entries were read, decodable or not: the batch is full when this
    /// reaches the limit, whatever became of them.
    pub read: usize,
    /// The position of the last final entry read, decodable or not: the next read starts
    /// after it.
    pub last: Option<ChangePosition>,
    /// How many of the entries read could not be decoded (each is logged).
    pub undecodable: usize,
    /// Whether entries exist beyond the horizon (written by transactions still running, or
    /// committed after an older one that still runs): look again soon.
    pub pending: bool,
}

impl ChangeBatch {
    /// Whether the read stopped at its limit, so more final entries may follow at once.
    pub fn is_full(&self, limit: i64) -> bool {
        self.read as i64 >= limit
    }
}

/// Entries after `after` that are final, in delivery order, at most `limit` of them.
pub async fn read_changes(
    pool: &PgPool,
    after: ChangePosition,
    limit: i64,
) -> Result<ChangeBatch, sqlx::Error> {
    // The horizon and the read in one round trip: the function reads the horizon first and
    // the log in a later statement, with its own snapshot.
    let rows = sqlx::query!(
        r#"select c.tx_key as "tx_key!", c.seq as "seq!", c.xid as "xid!",
                c.op as "op!: ChangeOp", c.row_data as "row_data!",
                c.beyond as "beyond_horizon!"
         from reeltime_read_changes($1, $2, $3) c"#,
        after.tx as i64,
        after.seq,
        limit,
    )
    .fetch_all(pool)
    .await?;
    let mut batch = ChangeBatch {
        changes: Vec::with_capacity(rows.len()),
        ..ChangeBatch::default()
    };
    for row in rows {
        if row.beyond_horizon {
            batch.pending = true;
            break;
        }
        let position = ChangePosition {
            tx: row.tx_key as u64,
            seq: row.seq,
        };
        batch.read += 1;
        batch.last = Some(position);
        match decode(position, row.row_data) {
            Some(job) => batch.changes.push(Change {
                position,
                xid: row.xid as u64,
                op: row.op,
                job,
            }),
            None => batch.undecodable += 1,
        }
    }
    Ok(batch)
}

/// The job in an entry, or `None` (logged and counted) when it does not fit the [`Job`] type.
fn decode(position: ChangePosition, row_data: serde_json::Value) -> Option<Job> {
    match serde_json::from_value::<Job>(row_data) {
        Ok(job) => Some(job),
        Err(err) => {
            UNDECODABLE.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%position, error = %err, "a change log entry cannot be read as a job; it is not delivered");
            None
        }
    }
}

/// Where a client may resume: after the pruned mark and at or before the head (the last
/// final entry), read in one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeBounds {
    /// History before this has been pruned.
    pub pruned: ChangePosition,
    /// The last final entry (or the pruned mark, when nothing final is left after it).
    pub head: ChangePosition,
}

impl ResumeBounds {
    /// Whether replaying from `position` gives exactly the changes after it: it is neither
    /// in pruned history nor beyond anything this log has held (a position from another
    /// database, say).
    pub fn contains(&self, position: ChangePosition) -> bool {
        self.pruned <= position && position <= self.head
    }
}

pub async fn resume_bounds(pool: &PgPool) -> Result<ResumeBounds, sqlx::Error> {
    let below = horizon(pool).await? as i64;
    let row = sqlx::query!(
        r#"select p.tx_key as "pruned_tx!", p.seq as "pruned_seq!",
                  c.tx_key as "head_tx?", c.seq as "head_seq?"
         from job_changes_pruned p
         left join lateral (
             select tx_key, seq from job_changes where tx_key < $1
             order by tx_key desc, seq desc limit 1) c on true"#,
        below,
    )
    .fetch_one(pool)
    .await?;
    let pruned = ChangePosition {
        tx: row.pruned_tx as u64,
        seq: row.pruned_seq,
    };
    let head = match (row.head_tx, row.head_seq) {
        (Some(tx), Some(seq)) => ChangePosition { tx: tx as u64, seq },
        _ => pruned,
    };
    Ok(ResumeBounds {
        pruned,
        head: head.max(pruned),
    })
}

/// The end of the log, to start a listener with, read in one statement: the last `limit`
/// final entries, and `from`, the position after which every entry is among them.
#[derive(Debug, Default)]
pub struct LogTail {
    /// Every final entry after this is in `changes` (or could not be decoded).
    pub from: ChangePosition,
    /// The decodable entries after `from`, oldest first.
    pub changes: Vec<Change>,
    /// The position of the newest final entry (`from` when there is none).
    pub head: ChangePosition,
}

pub async fn log_tail(pool: &PgPool, limit: i64) -> Result<LogTail, sqlx::Error> {
    let below = horizon(pool).await? as i64;
    let rows = sqlx::query!(
        r#"select p.tx_key as "pruned_tx!", p.seq as "pruned_seq!",
                  t.tx_key as "tx_key?", t.seq as "seq?", (t.xid::text)::bigint as "xid?",
                  t.op as "op?: ChangeOp", t.row_data as "row_data?"
         from job_changes_pruned p
         left join lateral (
             select tx_key, seq, xid, op, row_data from job_changes where tx_key < $2
             order by tx_key desc, seq desc limit $1::bigint + 1) t on true"#,
        limit,
        below,
    )
    .fetch_all(pool)
    .await?;
    let mut tail = LogTail::default();
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        tail.from = ChangePosition {
            tx: row.pruned_tx as u64,
            seq: row.pruned_seq,
        };
        if let (Some(tx), Some(seq), Some(xid), Some(op), Some(data)) =
            (row.tx_key, row.seq, row.xid, row.op, row.row_data)
        {
            let position = ChangePosition { tx: tx as u64, seq };
            entries.push((position, xid as u64, op, data));
        }
    }
    // Newest first: one more than asked for means the oldest only marks where the rest
    // begin; fewer means every entry after the pruned mark is here.
    if entries.len() as i64 > limit {
        if let Some((oldest, ..)) = entries.pop() {
            tail.from = oldest;
        }
    }
    tail.head = entries
        .first()
        .map_or(tail.from, |(position, ..)| *position);
    entries.retain(|(position, ..)| *position > tail.from);
    tail.changes = entries
        .into_iter()
        .rev()
        .filter_map(|(position, xid, op, data)| {
            decode(position, data).map(|job| Change {
                position,
                xid,
                op,
                job,
            })
        })
        .collect();
    Ok(tail)
}

/// Delete log entries older than `retention`, and remember how far that went.
pub async fn prune(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query_scalar!(
        r#"with gone as (
             delete from job_changes
             where changed_at < now() - make_interval(secs => $1)
             returning tx_key, seq),
         last as (select tx_key, seq from gone order by tx_key desc, seq desc limit 1),
         moved as (
             update job_changes_pruned p set tx_key = last.tx_key, seq = last.seq from last
             where (last.tx_key, last.seq) > (p.tx_key, p.seq))
         select count(*) as "deleted!" from gone"#,
        retention.as_secs_f64(),
    )
    .fetch_one(pool)
    .await?;
    Ok(deleted as u64)
}
