//! `GET /api/events`: every change to jobs, as server-sent events.
//!
//! `id:` is the change's position, `event:` is `insert`, `update` or `delete`, `data:` the job.
//! Resume with the `Last-Event-ID` header (browsers send it when they reconnect) or `?after=`:
//! the missed changes are replayed from the log, then the stream goes live, with no gap and no
//! duplicate between the two. Without a position, with one older than the kept history or
//! beyond anything the log has held (a position from another database), or after falling too
//! far behind, a client gets a `reset` event: a snapshot of the newest jobs (`JobPage`) whose
//! `id:` is the position it reflects.
//!
//! A position the feed still holds in memory (`ChangeFeed::resume`) is resumed without a
//! query, so a crowd reconnecting at once (after a restart) does not queue on the pool.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures::{stream, Stream, StreamExt};
use reeltime::{ChangePosition, PageLimit, Shown};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use app::db::changes::{read_changes, resume_bounds};

use super::AppState;
use crate::auth::gate::too_many;
use crate::auth::limits::StreamSlot;
use crate::auth::CurrentUser;
use crate::changes::{ChangeFeed, Frame, Message};
use crate::error::ErrorBody;
use crate::error::{ApiError, ApiQuery};
use crate::metrics::{GaugeGuard, SSE_CLIENTS, SSE_EVENTS, SSE_RESETS};

const REPLAY_BATCH: i64 = 500;
/// Tells browsers to reconnect a second after the stream ends.
const PREAMBLE: &str = "retry: 1000\n\n";
const KEEP_ALIVE: &str = ":\n\n";

pub fn router() -> Router<AppState> {
    Router::new().route("/api/events", get(events))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsParams {
    /// Resume after this position (`<key>.<seq>`, an event's `id`).
    after: Option<String>,
}

/// `GET /api/events`: server-sent events (`insert`, `update`, `delete`, `reset`).
#[utoipa::path(get, path = "/api/events", tag = "events",
    params(EventsParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (wins over `after`).")),
    responses(
        (status = 200, description = "The stream; it does not end.", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad `after`.", body = ErrorBody)))]
async fn events(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<EventsParams>,
) -> Result<Response, ApiError> {
    let Some(slot) = state.auth.limits.open_stream(user.id) else {
        return Ok(too_many(
            5,
            &format!(
                "You have {} live streams open already; close a dashboard tab and try again.",
                state.auth.limits.streams_per_user()
            ),
        ));
    };
    // The header wins: on reconnect it holds the last event the browser saw, while the URL
    // still carries the position the page first subscribed from.
    let resume = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(id) => id.parse::<ChangePosition>().ok(),
        None => match params.after.as_deref().filter(|a| !a.is_empty()) {
            Some(after) => Some(
                after
                    .parse::<ChangePosition>()
                    .map_err(|err| ApiError::BadRequest(err.to_string()))?,
            ),
            None => None,
        },
    };
    let body = Body::from_stream(
        subscribe(state.feed.clone(), resume, Some(slot)).map(Ok::<_, Infallible>),
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        body,
    )
        .into_response())
}

/// The bytes of one client's event stream, from `resume` (or a reset without one), until
/// the server shuts down. Polled only as fast as the client reads.
pub fn stream(
    feed: ChangeFeed,
    resume: Option<ChangePosition>,
) -> impl Stream<Item = Bytes> + Send + 'static {
    subscribe(feed, resume, None)
}

/// [`stream`], holding one of a person's allowed streams until it ends.
fn subscribe(
    feed: ChangeFeed,
    resume: Option<ChangePosition>,
    slot: Option<StreamSlot>,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let subscriber = Subscriber {
        _connected: GaugeGuard::new(SSE_CLIENTS),
        // Subscribed before anything is read, so nothing falls between replay and live.
        rx: feed.subscribe(),
        feed,
        last: ChangePosition::START,
        reflected: None,
        phase: Phase::Start(resume),
        _slot: slot,
    };
    // The counter's handle is looked up once per stream, not once per event per client.
    let sent = metrics::counter!(SSE_EVENTS);
    stream::unfold(subscriber, Subscriber::next).inspect(move |_| sent.increment(1))
}

enum Phase {
    Start(Option<ChangePosition>),
    Replay,
    Live,
    Done,
}

struct Subscriber {
    feed: ChangeFeed,
    rx: broadcast::Receiver<Message>,
    /// The last position this client has been sent.
    last: ChangePosition,
    /// After a reset: what its page shows. Changes it already reflects are skipped.
    reflected: Option<Shown>,
    phase: Phase,
    /// One of the person's allowed streams, freed when this one ends.
    _slot: Option<StreamSlot>,
    /// Counts this stream among the connected ones while it lasts.
    _connected: GaugeGuard,
}

impl Subscriber {
    async fn next(mut self) -> Option<(Bytes, Subscriber)> {
        loop {
            // A live stream learns of shutdown from its receiver (`Message::Closing`); the
            // token is read only outside the live phase, where it costs nothing per event.
            if !matches!(self.phase, Phase::Live) && self.feed.cancelled().is_cancelled() {
                self.phase = Phase::Done;
            }
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => return None,
                Phase::Start(resume) => {
                    let mut out = String::from(PREAMBLE);
                    match resume {
                        Some(position) => {
                            let resumed = self.feed.resume(position)?;
                            self.rx = resumed.receiver;
                            if let Some(missed) = resumed.missed {
                                // From memory: what was missed, then live.
                                self.last = missed.last().map_or(position, |f| f.position);
                                let mut out = out.into_bytes();
                                for frame in missed {
                                    out.extend_from_slice(&frame.bytes);
                                }
                                self.phase = Phase::Live;
                                return Some((Bytes::from(out), self));
                            }
                            match Box::pin(resume_bounds(&self.feed.pool)).await {
                                Ok(bounds) if bounds.contains(position) => self.last = position,
                                Ok(_) => out.push_str(&Box::pin(self.reset()).await?),
                                Err(err) => {
                                    tracing::warn!(error = %err, "events: reading the log failed");
                                    return None;
                                }
                            }
                        }
                        None => out.push_str(&Box::pin(self.reset()).await?),
                    }
                    self.phase = Phase::Replay;
                    return Some((Bytes::from(out), self));
                }
                // Boxed, like the other reads: a stream's state is sized for its largest
                // await, and every idle client holds that state for as long as it is open.
                Phase::Replay => {
                    match Box::pin(read_changes(&self.feed.pool, self.last, REPLAY_BATCH)).await {
                        Ok(batch) => {
                            // Full by rows read, decodable or not: only a short read is the end.
                            self.phase = if batch.is_full(REPLAY_BATCH) {
                                Phase::Replay
                            } else {
                                Phase::Live
                            };
                            let mut out = Vec::new();
                            for change in &batch.changes {
                                if !self.already_reflected(change.position, change.xid) {
                                    out.extend_from_slice(&Frame::of(change).bytes);
                                }
                            }
                            if let Some(read) = batch.last {
                                self.last = read;
                            }
                            if out.is_empty() {
                                continue;
                            }
                            return Some((Bytes::from(out), self));
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "events: replaying the log failed");
                            return None;
                        }
                    }
                }
                Phase::Live => {
                    match self.rx.recv().await {
                        Ok(Message::Change(frame)) => {
                            self.phase = Phase::Live;
                            if frame.position > self.last {
                                self.last = frame.position;
                                if !self.already_reflected(frame.position, frame.xid) {
                                    return Some((frame.bytes.clone(), self));
                                }
                            }
                        }
                        Ok(Message::KeepAlive) => {
                            self.phase = Phase::Live;
                            return Some((Bytes::from_static(KEEP_ALIVE.as_bytes()), self));
                        }
                        Err(RecvError::Lagged(missed)) => {
                            // What it missed may still be in the feed's memory (it may even
                            // be changes it had already read from the log); if not, a reset.
                            let resumed = self.feed.resume(self.last)?;
                            self.rx = resumed.receiver;
                            if let Some(frames) = resumed.missed {
                                self.phase = Phase::Live;
                                let mut out = Vec::new();
                                for frame in frames {
                                    self.last = frame.position;
                                    if !self.already_reflected(frame.position, frame.xid) {
                                        out.extend_from_slice(&frame.bytes);
                                    }
                                }
                                if out.is_empty() {
                                    continue;
                                }
                                return Some((Bytes::from(out), self));
                            }
                            tracing::info!(missed, "events: a client fell behind; sending a reset");
                            let reset = Box::pin(self.reset()).await?;
                            self.phase = Phase::Replay;
                            return Some((Bytes::from(reset), self));
                        }
                        Ok(Message::Closing) | Err(RecvError::Closed) => return None,
                    }
                }
            }
        }
    }

    /// Whether the last reset's page already shows this change. Changes come in key order,
    /// so once one is past the last key issued when the page was read, none after it can be
    /// in it.
    fn already_reflected(&mut self, position: ChangePosition, xid: u64) -> bool {
        match &self.reflected {
            Some(shown) if shown.includes(position, xid) => true,
            Some(shown) if shown.is_behind(position) => {
                self.reflected = None;
                false
            }
            _ => false,
        }
    }

    /// A `reset` event: the newest jobs and the position they reflect, from which replay and
    /// live delivery continue.
    async fn reset(&mut self) -> Option<String> {
        match app::db::jobs::list_jobs_with_snapshot(
            &self.feed.pool,
            &reeltime::JobFilter::default(),
            None,
            PageLimit::DEFAULT,
        )
        .await
        {
            Ok((page, shown)) => {
                let position = page.position.unwrap_or_default();
                self.last = position;
                self.reflected = Some(shown);
                metrics::counter!(SSE_RESETS).increment(1);
                let data = serde_json::to_string(&page).expect("a page serialises");
                Some(format!("id: {position}\nevent: reset\ndata: {data}\n\n"))
            }
            Err(err) => {
                tracing::warn!(error = %err, "events: reading a snapshot failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open stream holds its state for as long as it is open, so its size counts once
    /// per idle client (issue 16: 10,000 of them). The reads a stream makes only at its start,
    /// on replay or on a reset are boxed, so they do not size what every idle stream holds
    /// (1,032 bytes with the replay's read inline, 816 with the stream's step wrapped in a
    /// closure that kept a second copy of the subscriber, 624 with a copy of the shutdown token
    /// the feed already holds, 600 now).
    #[tokio::test]
    async fn an_open_stream_holds_little_state() {
        let feed = crate::changes::tests::feed(16);
        let size = std::mem::size_of_val(&stream(feed, None));
        assert!(size <= 640, "an event stream's state is {size} bytes");
    }
}
