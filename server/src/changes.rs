//! The change feed: one listener per process turns the `job_changes` log into events for every
//! connected dashboard.
//!
//! Postgres appends every change to `jobs` to `job_changes` (a trigger, so every writer counts)
//! and notifies `reeltime_job_changes` at commit. The listener holds a dedicated LISTEN
//! connection; on each notification it reads the log past the last position it delivered, in
//! batches, and broadcasts each change once, already framed as server-sent-event bytes, so
//! a change costs one serialisation however many clients there are. If the LISTEN connection
//! drops it reconnects with backoff and catches up from the log; a slow periodic sweep covers
//! any other lost notification.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use reeltime::{ChangeOp, ChangePosition, Job};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};

pub const CHANNEL: &str = "reeltime_job_changes";
const BATCH: i64 = 500;
const SWEEP_EVERY: Duration = Duration::from_secs(5);
pub const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

/// One change, ready to send: its position and its SSE frame.
#[derive(Debug)]
pub struct Frame {
    pub position: ChangePosition,
    pub op: ChangeOp,
    pub bytes: Bytes,
}

/// What the listener hands to every client.
#[derive(Clone, Debug)]
pub enum Message {
    Change(Arc<Frame>),
    KeepAlive,
}

/// A change read from the log.
#[derive(Debug, Clone)]
pub struct Change {
    pub position: ChangePosition,
    pub op: ChangeOp,
    pub job: Job,
}

impl Change {
    /// The SSE frame: `id` is the position, `event` the operation, `data` the job.
    pub fn frame(&self) -> Frame {
        let data = serde_json::to_string(&self.job).expect("a job serialises");
        Frame {
            position: self.position,
            op: self.op,
            bytes: Bytes::from(format!(
                "id: {}\nevent: {}\ndata: {data}\n\n",
                self.position,
                self.op.as_str()
            )),
        }
    }
}

/// The change feed's handle: subscribe to live changes, read the log.
#[derive(Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Message>,
    shutdown: watch::Receiver<bool>,
    pub pool: PgPool,
}

impl ChangeFeed {
    /// Start the listener, the keep-alive ticker and the pruner. `buffer` is how many changes
    /// a client may fall behind before it is sent a reset.
    pub fn start(
        pool: PgPool,
        buffer: usize,
        retention: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> ChangeFeed {
        let (sender, _) = broadcast::channel(buffer.max(1));
        let feed = ChangeFeed {
            sender,
            shutdown,
            pool,
        };
        tokio::spawn(listen(feed.clone()));
        tokio::spawn(keep_alive(feed.clone()));
        tokio::spawn(prune_periodically(feed.clone(), retention));
        feed
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Message> {
        self.sender.subscribe()
    }

    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// Entries after `after` that are final, in delivery order, at most `limit`; and whether more
/// exist beyond the horizon (written by transactions still running, or committed after an
/// older one that still runs), so the caller knows to look again soon.
pub async fn read_changes(
    pool: &PgPool,
    after: ChangePosition,
    limit: i64,
) -> Result<(Vec<Change>, bool), sqlx::Error> {
    let rows: Vec<(i64, i64, String, serde_json::Value, bool)> = sqlx::query_as(
        "with horizon as (select pg_snapshot_xmin(pg_current_snapshot()) as xmin) \
         select (c.xid::text)::bigint, c.seq, c.op, c.row_data, c.xid >= h.xmin \
         from job_changes c, horizon h \
         where (c.xid, c.seq) > ($1::text::xid8, $2) \
         order by c.xid, c.seq limit $3",
    )
    .bind(after.xid.to_string())
    .bind(after.seq)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut changes = Vec::with_capacity(rows.len());
    let mut pending = false;
    for (xid, seq, op, row, beyond_horizon) in rows {
        if beyond_horizon {
            pending = true;
            break;
        }
        let position = ChangePosition {
            xid: xid as u64,
            seq,
        };
        let op = op
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?;
        match serde_json::from_value::<Job>(row) {
            Ok(job) => changes.push(Change { position, op, job }),
            // A row that no longer fits the Job type (written by hand, say) is skipped, not
            // allowed to stop the feed.
            Err(err) => tracing::warn!(%position, error = %err, "skipping an unreadable change"),
        }
    }
    Ok((changes, pending))
}

/// The position before which history has been pruned.
pub async fn pruned_through(pool: &PgPool) -> Result<ChangePosition, sqlx::Error> {
    let (xid, seq): (i64, i64) =
        sqlx::query_as("select (xid::text)::bigint, seq from job_changes_pruned")
            .fetch_one(pool)
            .await?;
    Ok(ChangePosition {
        xid: xid as u64,
        seq,
    })
}

/// Delete log entries older than `retention`, and remember how far that went.
pub async fn prune(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let deleted: i64 = sqlx::query_scalar(
        "with gone as ( \
             delete from job_changes \
             where changed_at < now() - make_interval(secs => $1) \
             returning xid, seq), \
         last as (select xid, seq from gone order by xid desc, seq desc limit 1), \
         moved as ( \
             update job_changes_pruned p set xid = last.xid, seq = last.seq from last \
             where (last.xid, last.seq) > (p.xid, p.seq)) \
         select count(*) from gone",
    )
    .bind(retention.as_secs_f64())
    .fetch_one(pool)
    .await?;
    Ok(deleted as u64)
}

async fn prune_periodically(feed: ChangeFeed, retention: Duration) {
    let mut shutdown = feed.shutdown();
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
    loop {
        match prune(&feed.pool, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "pruned the change log"),
            Err(err) => tracing::warn!(error = %err, "pruning the change log failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn keep_alive(feed: ChangeFeed) {
    let mut shutdown = feed.shutdown();
    let mut ticks = tokio::time::interval(KEEP_ALIVE_EVERY);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => { let _ = feed.sender.send(Message::KeepAlive); }
            _ = shutdown.changed() => return,
        }
    }
}

/// The listener: wait for a notification (or a sweep, or a retry), then deliver what is new.
async fn listen(feed: ChangeFeed) {
    let mut shutdown = feed.shutdown();
    let mut backoff = Duration::from_millis(100);
    // Start at the present: earlier changes reach clients through their own replay.
    let mut last = loop {
        match app::db::log_position(&feed.pool).await {
            Ok(position) => break position,
            Err(err) => {
                tracing::warn!(error = %err, "change feed: reading the log position failed");
                if wait_or_stop(&mut shutdown, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    backoff = Duration::from_millis(100);
    'connect: loop {
        if feed.stopping() || feed.pool.is_closed() {
            return;
        }
        let mut listener = match connect(&feed.pool).await {
            Ok(listener) => {
                backoff = Duration::from_millis(100);
                listener
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "change feed: LISTEN connection failed");
                if wait_or_stop(&mut shutdown, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        // Whatever happened while we were not listening is in the log.
        let mut retry = deliver(&feed, &mut last).await;
        loop {
            let retry_after = retry.unwrap_or(SWEEP_EVERY);
            tokio::select! {
                notification = listener.try_recv() => match notification {
                    Ok(Some(_)) => {
                        // Fold a burst of notifications into one read.
                        while listener.next_buffered().is_some() {}
                        retry = deliver(&feed, &mut last).await;
                    }
                    Ok(None) | Err(_) => {
                        if feed.stopping() || feed.pool.is_closed() {
                            return;
                        }
                        tracing::warn!("change feed: LISTEN connection lost; reconnecting");
                        continue 'connect;
                    }
                },
                _ = tokio::time::sleep(retry_after) => {
                    let previous = retry;
                    retry = deliver(&feed, &mut last).await;
                    // Still waiting on a slow transaction: back off, up to 25 ms (a cheap
                    // indexed query), so delivery follows soon after the blocker ends.
                    if let (Some(now), Some(before)) = (retry, previous) {
                        retry = Some(now.max(before * 2).min(Duration::from_millis(25)));
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    // The listener keeps one of the pool's connections; it lets go when the pool closes.
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Broadcast everything final past `last`. Returns how soon to look again when entries are
/// waiting behind a running transaction.
async fn deliver(feed: &ChangeFeed, last: &mut ChangePosition) -> Option<Duration> {
    loop {
        match read_changes(&feed.pool, *last, BATCH).await {
            Ok((changes, pending)) => {
                let full = changes.len() as i64 == BATCH;
                for change in changes {
                    *last = change.position;
                    // No receivers is fine: nobody is watching.
                    let _ = feed.sender.send(Message::Change(Arc::new(change.frame())));
                }
                if full {
                    continue;
                }
                return pending.then_some(Duration::from_millis(1));
            }
            Err(err) => {
                tracing::warn!(error = %err, "change feed: reading the log failed");
                return Some(Duration::from_millis(500));
            }
        }
    }
}

/// Sleep, or return true at once when shutting down.
async fn wait_or_stop(shutdown: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = shutdown.changed() => true,
    }
}
