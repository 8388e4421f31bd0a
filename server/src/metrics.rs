//! `GET /metrics`: what this process is doing, in Prometheus' text format.
//!
//! The code records into the `metrics` facade; `metrics-exporter-prometheus` keeps the values
//! and renders them when scraped. The recorder is process-wide (the facade has one global
//! recorder), installed once however many applications a process builds (the tests build
//! many): values are per process, never per database.
//!
//! What is recorded, and where:
//! - HTTP: every request by method, route (the router's matched pattern, never the raw path,
//!   so ids do not blow up the series) and status, with a latency histogram: [`track_http`],
//!   a middleware on the whole router. Paths no route matched count as `unmatched`.
//! - Jobs: created by service and preset, finished by status, service and preset, queue wait
//!   (created → processing) and run time (processing → finished) histograms. These come from
//!   the change feed ([`watch_jobs`]), so they count every writer's jobs (another instance,
//!   `psql`): with several instances, each reports the same job series (use `max`, not `sum`).
//! - Dispatch attempts and errors (`dispatch`), webhook deliveries by outcome
//!   (`routes::ittybit`), SSE clients connected, events sent and resets (`routes::events`),
//!   the built-in processor's busy workers (`processor::worker`).
//!
//! Access: the rule `Api(Admin)`, so an admin's personal API token (`Authorization: Bearer
//! rt_…`, a `read` token is enough) or an admin session; see decision 011.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use reeltime::{ChangeOp, Job, JobId, JobStatus, Preset};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::changes::{ChangeFeed, Message};

pub const PATH: &str = "/metrics";

pub const HTTP_REQUESTS: &str = "reeltime_http_requests_total";
pub const HTTP_DURATION: &str = "reeltime_http_request_duration_seconds";
pub const JOBS_CREATED: &str = "reeltime_jobs_created_total";
pub const JOBS_FINISHED: &str = "reeltime_jobs_finished_total";
pub const QUEUE_WAIT: &str = "reeltime_job_queue_wait_seconds";
pub const RUN_TIME: &str = "reeltime_job_run_seconds";
pub const DISPATCH_ATTEMPTS: &str = "reeltime_dispatch_attempts_total";
pub const DISPATCH_ERRORS: &str = "reeltime_dispatch_errors_total";
pub const WEBHOOKS: &str = "reeltime_webhook_deliveries_total";
pub const SSE_CLIENTS: &str = "reeltime_sse_clients";
pub const SSE_EVENTS: &str = "reeltime_sse_events_sent_total";
pub const SSE_RESETS: &str = "reeltime_sse_resets_total";
pub const WORKERS_BUSY: &str = "reeltime_processor_workers_busy";

/// Request latencies: a millisecond to a minute.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Job times: a tenth of a second to two hours.
const JOB_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process' recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), HTTP_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(QUEUE_WAIT.into()), JOB_BUCKETS))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(RUN_TIME.into()), JOB_BUCKETS))
            .expect("the bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will stay empty");
        }
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(HTTP_REQUESTS, "HTTP requests by method, route and status.");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "Time to the response's head.");
    describe_counter!(JOBS_CREATED, "Jobs created, by service and preset.");
    describe_counter!(JOBS_FINISHED, "Jobs finished, by status, service, preset.");
    describe_histogram!(QUEUE_WAIT, Unit::Seconds, "From creation to processing.");
    describe_histogram!(RUN_TIME, Unit::Seconds, "From processing to finished.");
    describe_counter!(DISPATCH_ATTEMPTS, "Create requests sent to the processor.");
    describe_counter!(DISPATCH_ERRORS, "Create requests that failed, by reason.");
    describe_counter!(WEBHOOKS, "Processor webhooks received, by outcome.");
    describe_gauge!(SSE_CLIENTS, "Live event streams open.");
    describe_counter!(
        SSE_EVENTS,
        "Event-stream chunks sent (changes and keep-alives)."
    );
    describe_counter!(SSE_RESETS, "Reset events sent.");
    describe_gauge!(WORKERS_BUSY, "Built-in processor workers running a job.");
}

/// `GET /metrics` (its access rule is the gate's, like every route's). Generic over the app's
/// state, which it does not read, so this module needs nothing of the HTTP layer.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(PATH, get(render))
}

/// `GET /metrics`.
#[tracing::instrument(skip_all)]
async fn render() -> Response {
    let handle = handle();
    // Drains histogram samples into their buckets (no background thread is run for it).
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
        .into_response()
}

/// Count and time every request by its route pattern and status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Holds one unit of a gauge (an open stream, a busy worker) until dropped.
pub struct GaugeGuard(&'static str);

impl GaugeGuard {
    pub fn new(name: &'static str) -> GaugeGuard {
        metrics::gauge!(name).increment(1.0);
        GaugeGuard(name)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// The preset a job's options are, or `custom`.
pub fn preset_of(job: &Job) -> &'static str {
    Preset::ALL
        .into_iter()
        .find(|p| p.options() == job.options)
        .map_or("custom", Preset::id)
}

/// The `service` label: `ittybit`, `builtin`, or `none`.
pub fn service_label(service: &str, dispatching: bool) -> &'static str {
    match (dispatching, service) {
        (false, _) => "none",
        (true, "Ittybit") => "ittybit",
        (true, _) => "builtin",
    }
}

/// Most jobs this remembers while they are in flight (beyond it, the oldest are forgotten and
/// their wait or run time is not observed).
const IN_FLIGHT: usize = 100_000;
/// How many finished ids it remembers, so a later write to a finished job is not counted again.
const FINISHED_MEMORY: usize = 10_000;

/// What the job watcher knows: jobs in flight (when they started processing) and the most
/// recently finished ones.
#[derive(Default)]
pub struct JobTracker {
    in_flight: HashMap<JobId, Option<time::OffsetDateTime>>,
    order: VecDeque<JobId>,
    finished: HashSet<JobId>,
    finished_order: VecDeque<JobId>,
}

impl JobTracker {
    /// Record one change of a job.
    pub fn observe(&mut self, op: ChangeOp, job: &Job, service: &'static str) {
        let preset = preset_of(job);
        if op == ChangeOp::Delete || self.finished.contains(&job.id) {
            self.in_flight.remove(&job.id);
            return;
        }
        if op == ChangeOp::Insert {
            metrics::counter!(JOBS_CREATED, "service" => service, "preset" => preset).increment(1);
        }
        let known = self.in_flight.get(&job.id).copied();
        if job.status.is_terminal() {
            metrics::counter!(JOBS_FINISHED, "status" => job.status.as_str(), "service" => service, "preset" => preset)
                .increment(1);
            if let Some(Some(started)) = known {
                metrics::histogram!(RUN_TIME, "service" => service)
                    .record((job.updated_at - started).as_seconds_f64().max(0.0));
            }
            self.in_flight.remove(&job.id);
            self.finished.insert(job.id);
            self.finished_order.push_back(job.id);
            if self.finished_order.len() > FINISHED_MEMORY {
                if let Some(old) = self.finished_order.pop_front() {
                    self.finished.remove(&old);
                }
            }
            return;
        }
        match (job.status, known) {
            (JobStatus::Processing, Some(Some(_))) => {}
            (JobStatus::Processing, _) => {
                metrics::histogram!(QUEUE_WAIT, "service" => service)
                    .record((job.updated_at - job.created_at).as_seconds_f64().max(0.0));
                self.remember(job.id, Some(job.updated_at));
            }
            (_, None) => self.remember(job.id, None),
            _ => {}
        }
    }

    fn remember(&mut self, id: JobId, started: Option<time::OffsetDateTime>) {
        if self.in_flight.insert(id, started).is_none() {
            self.order.push_back(id);
        }
        while self.in_flight.len() > IN_FLIGHT {
            match self.order.pop_front() {
                Some(old) => {
                    self.in_flight.remove(&old);
                }
                None => break,
            }
        }
        if self.order.len() > 2 * IN_FLIGHT {
            let in_flight = &self.in_flight;
            self.order.retain(|id| in_flight.contains_key(id));
        }
    }
}

/// Count jobs created and finished, and time their wait and run, from the change feed.
pub fn watch_jobs(
    feed: &ChangeFeed,
    service: &'static str,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) {
    let mut rx = feed.subscribe();
    let cancel = cancel.clone();
    tasks.spawn(async move {
        let mut tracker = JobTracker::default();
        loop {
            let message = tokio::select! {
                message = rx.recv() => message,
                _ = cancel.cancelled() => return,
            };
            match message {
                Ok(Message::Change(frame)) => {
                    if let Some(job) = job_of(&frame.bytes) {
                        tracker.observe(frame.op, &job, service);
                    }
                }
                Ok(Message::KeepAlive) => {}
                Ok(Message::Closing) => return,
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "metrics: the job watcher fell behind")
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// The job in an SSE frame's `data:` line.
fn job_of(frame: &[u8]) -> Option<Job> {
    let text = std::str::from_utf8(frame).ok()?;
    let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
    serde_json::from_str(data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_gives_back_its_job_and_presets_are_recognised() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "id": "00000000-0000-0000-0000-000000000001", "input_url": "https://example.com/a.mp4",
            "kind": "video", "options": Preset::Video720Webm.options(), "status": "queued",
            "task_id": null, "output_url": null, "error": null,
            "created_at": "2026-12-02T10:00:00Z", "updated_at": "2026-12-02T10:00:00Z",
            "version": 1
        }))
        .unwrap();
        let frame = format!(
            "id: 1.1\nevent: insert\ndata: {}\n\n",
            serde_json::to_string(&job).unwrap()
        );
        let back = job_of(frame.as_bytes()).unwrap();
        assert_eq!(back.id, job.id);
        assert_eq!(preset_of(&back), "video_720_webm");
    }

    #[test]
    fn a_finished_job_is_counted_once_and_forgotten_in_flight() {
        let mut tracker = JobTracker::default();
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "id": "00000000-0000-0000-0000-000000000002", "input_url": "https://example.com/a.mp4",
            "kind": "video", "options": {}, "status": "pending",
            "task_id": null, "output_url": null, "error": null,
            "created_at": "2026-12-02T10:00:00Z", "updated_at": "2026-12-02T10:00:00Z",
            "version": 1
        }))
        .unwrap();
        tracker.observe(ChangeOp::Insert, &job, "builtin");
        job.status = JobStatus::Processing;
        tracker.observe(ChangeOp::Update, &job, "builtin");
        assert!(matches!(tracker.in_flight.get(&job.id), Some(Some(_))));
        job.status = JobStatus::Succeeded;
        tracker.observe(ChangeOp::Update, &job, "builtin");
        assert!(tracker.in_flight.is_empty());
        assert!(tracker.finished.contains(&job.id));
        tracker.observe(ChangeOp::Update, &job, "builtin");
        assert!(tracker.in_flight.is_empty());
    }
}
