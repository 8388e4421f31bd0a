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
//!
//! The feed also keeps the most recent changes in memory ([`Recent`], as many as the events
//! buffer), loaded from the end of the log when it starts, so a client resuming from a recent
//! position (every client, after a restart or a network blip) is served without a query.
//! Invariant: every decodable log entry after `Recent::from` up to `Recent::last` is in
//! `Recent::frames`, in order; frames are added and broadcast under one lock, so a client that
//! copies them and subscribes under that lock misses nothing and repeats nothing.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
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
    /// The writing transaction's id: whether a page's snapshot already shows the change.
    pub xid: u64,
    pub op: ChangeOp,
    pub bytes: Bytes,
}

impl Frame {
    /// The SSE frame of a change: `id` is the position, `event` the operation, `data` the job.
    pub fn of(change: &Change) -> Frame {
        let data = serde_json::to_string(&change.job).expect("a job serialises");
        Frame {
            position: change.position,
            xid: change.xid,
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
    /// The server is shutting down: every stream ends. Sent once, after the feed's token is
    /// cancelled, so a stream that subscribed after it was sent sees the token cancelled
    /// ([`ChangeFeed::resume`] gives it nothing) and one that subscribed before receives it.
    /// Streams wait on their receiver alone, not on the token too: waiting on a token
    /// registers and removes a waiter under its one lock, for every event and every client,
    /// and 10,000 clients contended for it (issue 16, fan-out).
    Closing,
}

/// The change feed's handle: subscribe to live changes, read the log.
#[derive(Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Message>,
    recent: Arc<Mutex<Recent>>,
    cancel: CancellationToken,
    pub pool: PgPool,
}

/// The most recent changes the listener delivered, oldest first.
#[derive(Debug, Default)]
struct Recent {
    /// Every change after `from` up to `last` is in `frames`.
    from: ChangePosition,
    last: ChangePosition,
    frames: VecDeque<Arc<Frame>>,
    capacity: usize,
    /// Set once the listener has loaded the end of the log; until then nothing is served.
    loaded: bool,
}

impl Recent {
    fn push(&mut self, frame: Arc<Frame>) {
        if !self.loaded || frame.position <= self.last {
            return;
        }
        self.last = frame.position;
        self.frames.push_back(frame);
        while self.frames.len() > self.capacity {
            if let Some(dropped) = self.frames.pop_front() {
                self.from = dropped.position;
            }
        }
    }
}

/// A subscription and, when the feed holds everything after the client's position, what
/// the client missed.
pub struct Resumed {
    pub receiver: broadcast::Receiver<Message>,
    /// The frames after the position, oldest first; `None` when the feed does not hold the
    /// position's history (the log must be read).
    pub missed: Option<Vec<Arc<Frame>>>,
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
        let recent = Recent {
            capacity: buffer.max(1),
            ..Recent::default()
        };
        let feed = ChangeFeed {
            sender,
            recent: Arc::new(Mutex::new(recent)),
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

    /// Subscribe to live changes and, when the feed still holds every change after `after`
    /// (it is no older than what it keeps and no newer than what it delivered), take those
    /// too, in one step: nothing falls between them and the live stream. `None` once the
    /// server is shutting down: the new receiver may never see [`Message::Closing`], so the
    /// stream must end now.
    pub fn resume(&self, after: ChangePosition) -> Option<Resumed> {
        let recent = self.recent.lock().expect("the recent changes' lock");
        let receiver = self.sender.subscribe();
        let held = recent.loaded && recent.from <= after && after <= recent.last;
        let missed = held.then(|| {
            let newer = recent
                .frames
                .partition_point(|frame| frame.position <= after);
            recent.frames.range(newer..).cloned().collect()
        });
        drop(recent);
        // Read after subscribing: a `Closing` sent before the receiver existed was sent after
        // the token was cancelled.
        if self.cancel.is_cancelled() {
            return None;
        }
        Some(Resumed { receiver, missed })
    }

    /// The listener has read (and published) every entry up to `position`.
    fn read_through(&self, position: ChangePosition) {
        let mut recent = self.recent.lock().expect("the recent changes' lock");
        if recent.loaded {
            recent.last = recent.last.max(position);
        }
    }

    /// Hand a change to every client, and keep it among the recent ones.
    fn publish(&self, frame: Frame) {
        let frame = Arc::new(frame);
        let mut recent = self.recent.lock().expect("the recent changes' lock");
        recent.push(frame.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.sender.send(Message::Change(frame));
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

/// A keep-alive to every stream each period and, once the feed is cancelled,
/// [`Message::Closing`], which ends every live stream.
async fn keep_alive(feed: ChangeFeed) {
    let mut ticks = tokio::time::interval(KEEP_ALIVE_EVERY);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => { let _ = feed.sender.send(Message::KeepAlive); }
            _ = feed.cancel.cancelled() => {
                let _ = feed.sender.send(Message::Closing);
                return;
            }
        }
    }
}

/// The listener: wait for a notification (or a sweep, or a retry), then deliver what is new.
async fn listen(feed: ChangeFeed) {
    let mut waits = RECONNECT.delays();
    // Start at the present, holding the end of the log for clients that resume from it;
    // earlier changes reach clients through their own replay.
    let mut last = loop {
        let capacity = feed
            .recent
            .lock()
            .expect("the recent changes' lock")
            .capacity;
        match log::log_tail(&feed.pool, capacity as i64).await {
            Ok(tail) => {
                let mut recent = feed.recent.lock().expect("the recent changes' lock");
                recent.from = tail.from;
                recent.last = tail.from.max(tail.head);
                recent.frames = tail
                    .changes
                    .iter()
                    .map(|c| Arc::new(Frame::of(c)))
                    .collect();
                recent.loaded = true;
                break tail.head;
            }
            Err(err) => {
                tracing::warn!(error = %err, "change feed: reading the end of the log failed");
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
            Ok(batch) => {
                for change in &batch.changes {
                    feed.publish(Frame::of(change));
                }
                // Past every entry read, decodable or not.
                if let Some(read) = batch.last {
                    *last = read;
                    feed.read_through(read);
                }
                if batch.is_full(BATCH) {
                    continue;
                }
                return batch.pending.then_some(Duration::from_millis(1));
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn feed(buffer: usize) -> ChangeFeed {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let (sender, _) = broadcast::channel(buffer);
        ChangeFeed {
            sender,
            recent: Arc::new(Mutex::new(Recent {
                capacity: buffer,
                loaded: true,
                ..Recent::default()
            })),
            cancel: CancellationToken::new(),
            pool,
        }
    }

    fn frame(tx: u64) -> Frame {
        Frame {
            position: ChangePosition { tx, seq: 1 },
            xid: tx,
            op: ChangeOp::Update,
            bytes: Bytes::from(format!("id: {tx}.1\n\n")),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_keep_alive_every_15_seconds_for_everyone() {
        let feed = feed(4);
        let mut a = feed.subscribe();
        let mut b = feed.subscribe();
        let ticker = tokio::spawn(keep_alive(feed.clone()));
        tokio::time::sleep(KEEP_ALIVE_EVERY - Duration::from_millis(1)).await;
        assert!(a.try_recv().is_err(), "nothing before 15 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(matches!(a.try_recv(), Ok(Message::KeepAlive)));
        assert!(matches!(b.try_recv(), Ok(Message::KeepAlive)));
        assert!(a.try_recv().is_err(), "one per period");
        tokio::time::sleep(KEEP_ALIVE_EVERY).await;
        assert!(matches!(a.try_recv(), Ok(Message::KeepAlive)));
        feed.cancel.cancel();
        ticker.await.unwrap();
    }

    #[tokio::test]
    async fn the_recent_changes_resume_exactly_what_they_hold() {
        let feed = feed(3);
        for tx in 10..=14 {
            feed.publish(frame(tx));
        }
        // Holds 12, 13, 14: every change after 11.
        let positions = |after: u64| {
            feed.resume(ChangePosition { tx: after, seq: 1 })
                .expect("the feed is open")
                .missed
                .map(|frames| frames.iter().map(|f| f.position.tx).collect::<Vec<_>>())
        };
        assert_eq!(positions(11), Some(vec![12, 13, 14]));
        assert_eq!(positions(13), Some(vec![14]));
        assert_eq!(positions(14), Some(vec![]));
        assert_eq!(positions(10), None, "older than what it holds");
        assert_eq!(positions(15), None, "newer than what it delivered");
        // A position between two changes resumes after it.
        let between = feed
            .resume(ChangePosition { tx: 12, seq: 5 })
            .expect("the feed is open")
            .missed
            .unwrap();
        assert_eq!(between.len(), 2);
        // Read past an entry that could not be decoded: the feed holds up to it.
        feed.read_through(ChangePosition { tx: 16, seq: 1 });
        assert_eq!(positions(16), Some(vec![]));
    }

    #[tokio::test]
    async fn nothing_is_resumed_from_memory_before_the_end_of_the_log_is_loaded() {
        let feed = feed(3);
        feed.recent.lock().unwrap().loaded = false;
        feed.publish(frame(10));
        assert!(feed
            .resume(ChangePosition::START)
            .expect("the feed is open")
            .missed
            .is_none());
    }

    #[tokio::test]
    async fn a_closing_feed_resumes_nothing() {
        let feed = feed(3);
        feed.publish(frame(10));
        assert!(feed.resume(ChangePosition::START).is_some());
        feed.cancel.cancel();
        assert!(feed.resume(ChangePosition::START).is_none());
    }
}
