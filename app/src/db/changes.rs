//! The change log (`job_changes`): what the live feed replays and follows. A trigger on `jobs`
//! writes it, in the writer's own transaction, whoever the writer is.
//!
//! Entries are read in `(xid, seq)` order and only below the delivery horizon, the oldest
//! transaction still running (decision 004): an entry above it may still be joined, later, by
//! entries of a transaction that began earlier and has not committed yet.
//!
//! An entry that cannot be turned into a [`Job`] (written by hand, say) is never delivered,
//! but it is never silently dropped either: it is logged, counted ([`undecodable_total`]), and
//! a read still counts it and moves past it, so a batch that held one is not mistaken for the
//! end of the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reeltime::{ChangeOp, ChangePosition, Job, TxSnapshot};
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
             -- Ordered by the columns, not the bigint alias: the alias would sort the whole
             -- log instead of reading the (xid, seq) index backwards.
             select (l.xid::text)::bigint as xid, l.seq from job_changes l
             where l.xid < pg_snapshot_xmin(s.snap)
             order by l.xid desc, l.seq desc limit 1) c on true"#
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
            xid: row.xid as u64,
            seq: row.seq,
        };
        batch.read += 1;
        batch.last = Some(position);
        match decode(position, row.row_data) {
            Some(job) => batch.changes.push(Change {
                position,
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
    let row = sqlx::query!(
        r#"select (p.xid::text)::bigint as "pruned_xid!", p.seq as "pruned_seq!",
                  (c.xid::text)::bigint as "head_xid?", c.seq as "head_seq?"
         from job_changes_pruned p
         left join lateral (
             select xid, seq from job_changes
             where xid < pg_snapshot_xmin(pg_current_snapshot())
             order by xid desc, seq desc limit 1) c on true"#
    )
    .fetch_one(pool)
    .await?;
    let pruned = ChangePosition {
        xid: row.pruned_xid as u64,
        seq: row.pruned_seq,
    };
    let head = match (row.head_xid, row.head_seq) {
        (Some(xid), Some(seq)) => ChangePosition {
            xid: xid as u64,
            seq,
        },
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
    let rows = sqlx::query!(
        r#"select (p.xid::text)::bigint as "pruned_xid!", p.seq as "pruned_seq!",
                  (t.xid::text)::bigint as "xid?", t.seq as "seq?", t.op as "op?: ChangeOp",
                  t.row_data as "row_data?"
         from job_changes_pruned p
         left join lateral (
             select xid, seq, op, row_data from job_changes
             where xid < pg_snapshot_xmin(pg_current_snapshot())
             order by xid desc, seq desc limit $1::bigint + 1) t on true"#,
        limit,
    )
    .fetch_all(pool)
    .await?;
    let mut tail = LogTail::default();
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        tail.from = ChangePosition {
            xid: row.pruned_xid as u64,
            seq: row.pruned_seq,
        };
        if let (Some(xid), Some(seq), Some(op), Some(data)) =
            (row.xid, row.seq, row.op, row.row_data)
        {
            entries.push((
                ChangePosition {
                    xid: xid as u64,
                    seq,
                },
                op,
                data,
            ));
        }
    }
    // Newest first: one more than asked for means the oldest only marks where the rest
    // begin; fewer means every entry after the pruned mark is here.
    if entries.len() as i64 > limit {
        if let Some((oldest, _, _)) = entries.pop() {
            tail.from = oldest;
        }
    }
    tail.head = entries
        .first()
        .map_or(tail.from, |(position, _, _)| *position);
    entries.retain(|(position, _, _)| *position > tail.from);
    tail.changes = entries
        .into_iter()
        .rev()
        .filter_map(|(position, op, data)| {
            decode(position, data).map(|job| Change { position, op, job })
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
