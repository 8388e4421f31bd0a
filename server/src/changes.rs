//! The change feed: one listener per process turns the `job_changes` log into events for every
//! connected dashboard.
//!
//! Postgres appends every change to `jobs` to `job_changes` (a trigger, so every writer counts)
//! and notifies `reeltime_job_changes` at commit. The listener holds a dedicated LISTEN
//! connection; on each notification it reads the log past the last position it delivered, in
//! batches (the statements are in `app::db::changes`), and broadcasts each change once, already
//! framed as server-sent-event bytes, so a change costs one serialisation however many clients
//! there are. If the LISTEN connection drops it reconnects with backoff and catches up from the
//! log; a slow periodic sweep covers any other lost notification.

use std::sync::Arc;
use std::time::Duration;

use app::db::changes::{self as log, Change};
use axum::body::Bytes;
use reeltime::{ChangeOp, ChangePosition};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::Backoff;

pub const CHANNEL: &str = "reeltime_job_changes";
const BATCH: i64 = 500;
const SWEEP_EVERY: Duration = Duration::from_secs(5);
pub const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);
/// How the listener waits before reconnecting, and before retrying its first read.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));

/// One change, ready to send: its position and its SSE frame.
#[derive(Debug)]
pub struct Frame {
    pub position: ChangePosition,
    pub op: ChangeOp,
    pub bytes: Bytes,
}

impl Frame {
    /// The SSE frame of a change: `id` is the position, `event` the operation, `data` the job.
    pub fn of(change: &Change) -> Frame {
        let data = serde_json::to_string(&change.job).expect("a job serialises");
        Frame {
            position: change.position,
            op: change.op,
            bytes: Bytes::from(format!(
                "id: {}\nevent: {}\ndata: {data}\n\n",
                change.position,
                change.op.as_str()
            )),
        }
    }
}

/// What the listener hands to every client.
#[derive(Clone, Debug)]
pub enum Message {
    Change(Arc<Frame>),
    KeepAlive,
}

/// The change feed's handle: subscribe to live changes, read the log.
#[derive(Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Message>,
    cancel: CancellationToken,
    pub pool: PgPool,
}

impl ChangeFeed {
    /// Start the listener, the keep-alive ticker and the pruner as tasks of `tasks`, until
    /// `cancel`. `buffer` is how many changes a client may fall behind before it is sent a
    /// reset.
    pub fn start(
        pool: PgPool,
        buffer: usize,
        retention: Duration,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) -> ChangeFeed {
        let (sender, _) = broadcast::channel(buffer.max(1));
        let feed = ChangeFeed {
            sender,
            cancel: cancel.clone(),
            pool,
        };
        tasks.spawn(listen(feed.clone()));
        tasks.spawn(keep_alive(feed.clone()));
        tasks.spawn(prune_periodically(feed.clone(), retention));
        feed
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Message> {
        self.sender.subscribe()
    }

    /// Cancelled when the server shuts down: event streams end then.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    fn stopping(&self) -> bool {
        self.cancel.is_cancelled() || self.pool.is_closed()
    }
}

async fn prune_periodically(feed: ChangeFeed, retention: Duration) {
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
    loop {
        match log::prune(&feed.pool, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "pruned the change log"),
            Err(err) => tracing::warn!(error = %err, "pruning the change log failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = feed.cancel.cancelled() => return,
        }
    }
}

async fn keep_alive(feed: ChangeFeed) {
    let mut ticks = tokio::time::interval(KEEP_ALIVE_EVERY);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => { let _ = feed.sender.send(Message::KeepAlive); }
            _ = feed.cancel.cancelled() => return,
        }
    }
}

/// The listener: wait for a notification (or a sweep, or a retry), then deliver what is new.
async fn listen(feed: ChangeFeed) {
    let mut waits = RECONNECT.delays();
    // Start at the present: earlier changes reach clients through their own replay.
    let mut last = loop {
        match log::log_position(&feed.pool).await {
            Ok(position) => break position,
            Err(err) => {
                tracing::warn!(error = %err, "change feed: reading the log position failed");
                if wait_or_stop(&feed, waits.next()).await {
                    return;
                }
            }
        }
    };
    waits = RECONNECT.delays();
    'connect: loop {
        if feed.stopping() {
            return;
        }
        let mut listener = match connect(&feed.pool).await {
            Ok(listener) => {
                waits = RECONNECT.delays();
                listener
            }
            Err(err) => {
                let wait = waits.next();
                tracing::warn!(error = %err, retry_in = ?wait, "change feed: LISTEN connection failed");
                if wait_or_stop(&feed, wait).await {
                    return;
                }
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
                        if feed.stopping() {
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
                _ = feed.cancel.cancelled() => return,
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
        match log::read_changes(&feed.pool, *last, BATCH).await {
            Ok((changes, pending)) => {
                let full = changes.len() as i64 == BATCH;
                for change in changes {
                    *last = change.position;
                    // No receivers is fine: nobody is watching.
                    let _ = feed
                        .sender
                        .send(Message::Change(Arc::new(Frame::of(&change))));
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
async fn wait_or_stop(feed: &ChangeFeed, delay: Option<Duration>) -> bool {
    if feed.stopping() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay.unwrap_or(RECONNECT.cap)) => false,
        _ = feed.cancel.cancelled() => true,
    }
}
