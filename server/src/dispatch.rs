//! Sending jobs to Ittybit (or the built-in processor), durably and once, and keeping them in
//! step with it.
//!
//! The outbox is the jobs table itself: a `pending` job is due. A [`Dispatcher`] claims due
//! jobs in short transactions (`FOR UPDATE SKIP LOCKED`, then a lease in `job_dispatch`; the
//! statements are in `app::db::outbox`), calls the service outside any transaction, and stores
//! the answer. A crash between the call and storing its answer leaves the lease to expire; the
//! next claim calls again with the same `Idempotency-Key` (our job id), so the service answers
//! with the job it already made.
//!
//! Reports about a job (webhooks, reconcile reads, the create answer) all go through
//! `app::db::jobs::apply_report`, one statement that only ever moves a job forward. This file
//! keeps only the dispatcher's own bookkeeping (`job_dispatch`) and its loops.

use std::time::Duration;

use app::db::jobs::{self, Applied};
use app::db::outbox::{self, Claimed};
use reeltime::{ChangeOp, CreateJobRequest, JobId, JobStatus, Normalized};
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::Backoff;
use crate::changes::{ChangeFeed, Message};
use crate::ittybit::{CallError, IttybitClient};

/// The longest wait between two attempts at dispatching a job (before jitter).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);
/// How many quiet jobs one reconcile pass reads back.
const RECONCILE_BATCH: i64 = 20;

/// The dispatcher's and reconciler's settings.
#[derive(Clone, Debug)]
pub struct DispatchSettings {
    pub webhook_url: String,
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles per attempt up to [`MAX_RETRY_DELAY`].
    pub backoff: Duration,
    pub lease: Duration,
    pub reconcile_after: Duration,
    /// How many calls to the service one instance makes at once.
    pub concurrency: usize,
}

/// Sends pending jobs to one service and reads back the quiet ones. Tests drive it a step at
/// a time with [`Dispatcher::run_once`] and [`Dispatcher::reconcile_once`]; a server runs both
/// in loops with [`Dispatcher::start`].
#[derive(Clone)]
pub struct Dispatcher {
    pool: PgPool,
    client: IttybitClient,
    settings: DispatchSettings,
}

impl Dispatcher {
    pub fn new(pool: PgPool, client: IttybitClient, settings: DispatchSettings) -> Dispatcher {
        Dispatcher {
            pool,
            client,
            settings,
        }
    }

    /// Run the dispatch loop (woken by new jobs on the change feed) and the reconcile loop
    /// until `cancel`, as tasks of `tasks`.
    pub fn start(self, feed: &ChangeFeed, tasks: &TaskTracker, cancel: &CancellationToken) {
        let wake = feed.subscribe();
        tasks.spawn(self.clone().dispatch_loop(wake, cancel.clone()));
        tasks.spawn(self.reconcile_loop(cancel.clone()));
    }

    /// Claim what is due (up to the concurrency) and dispatch it, the calls running together;
    /// returns how many jobs were claimed.
    pub async fn run_once(&self) -> Result<usize, sqlx::Error> {
        let settings = &self.settings;
        let claimed =
            outbox::claim(&self.pool, settings.concurrency as i64, settings.lease).await?;
        let count = claimed.len();
        let mut calls = JoinSet::new();
        for job in claimed {
            let dispatcher = self.clone();
            calls.spawn(async move { dispatcher.dispatch_one(job).await });
        }
        while calls.join_next().await.is_some() {}
        Ok(count)
    }

    async fn dispatch_loop(
        self,
        mut wake: broadcast::Receiver<Message>,
        cancel: CancellationToken,
    ) {
        let sweep =
            Duration::from_secs(1).min(self.settings.backoff.max(Duration::from_millis(50)));
        while !cancel.is_cancelled() {
            let full = match self.run_once().await {
                Ok(claimed) => claimed == self.settings.concurrency,
                Err(err) => {
                    if self.pool.is_closed() {
                        return;
                    }
                    tracing::warn!(error = %err, "dispatch: claiming jobs failed");
                    false
                }
            };
            if full {
                continue;
            }
            // Wait for a new job (any insert reaches the change feed), a retry coming due, or
            // shutdown.
            let sleep = tokio::time::sleep(sweep);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    message = wake.recv() => match message {
                        Ok(Message::Change(frame)) if frame.op == ChangeOp::Insert => break,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = cancel.cancelled() => return,
                }
            }
        }
    }

    #[tracing::instrument(name = "dispatch", skip_all, fields(job_id = %job.id, attempt = job.attempts))]
    async fn dispatch_one(&self, job: Claimed) {
        let settings = &self.settings;
        let request = CreateJobRequest::new(
            job.id,
            &job.input_url,
            job.kind,
            job.options.clone(),
            settings.webhook_url.clone(),
        );
        metrics::counter!(crate::metrics::DISPATCH_ATTEMPTS).increment(1);
        let outcome = self.client.create_job(&request, &job.id.to_string()).await;
        if outcome.is_err() {
            let kind = match &outcome {
                Err(CallError::Transient { .. }) => "transient",
                _ => "permanent",
            };
            metrics::counter!(crate::metrics::DISPATCH_ERRORS, "kind" => kind).increment(1);
        }
        let stored = match outcome {
            Ok(created) => {
                let mut report = created.normalize();
                report.job_id = Some(job.id);
                tracing::info!(task_id = ?report.ittybit_id, service = self.client.service(), "dispatched");
                // Accepted: at least queued, whatever the answer's status says.
                if report.status.step() < JobStatus::Queued.step() {
                    report.status = JobStatus::Queued;
                }
                self.store_success(job.id, &report).await
            }
            Err(CallError::Transient {
                reason,
                detail,
                retry_after,
            }) if (job.attempts as u32) < settings.max_attempts => {
                let delay = Backoff::new(settings.backoff, MAX_RETRY_DELAY)
                    .delay(job.attempts as u32)
                    .max(retry_after.unwrap_or_default());
                tracing::info!(retry_in = ?delay, error = %reason, ?detail, "dispatch will be retried");
                self.schedule_retry(job.id, delay, &reason, detail.as_deref())
                    .await
            }
            Err(err) => {
                tracing::warn!(error = %err, detail = ?err.detail(), "dispatch failed for good");
                self.fail(job.id, &err.to_string(), err.detail()).await
            }
        };
        if let Err(err) = stored {
            // The lease runs out and another attempt (same idempotency key) follows.
            tracing::warn!(error = %err, "dispatch: storing the outcome failed");
        }
    }

    async fn store_success(&self, id: JobId, report: &Normalized) -> Result<(), sqlx::Error> {
        jobs::apply_report(&self.pool, id, report, self.client.service()).await?;
        // The job's story: sent, with the service's id for it.
        sqlx::query!(
            "with done as (
                 update job_dispatch set lease_until = null, last_error = null where job_id = $1
                 returning job_id, attempts)
             insert into job_events (job_id, kind, actor, detail)
             select job_id, 'dispatch', 'the dispatcher',
                    jsonb_build_object('service', $2::text, 'task_id', $3::text, 'attempt', attempts)
             from done",
            id.0,
            self.client.service(),
            report.ittybit_id.as_deref(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The job fails for good; its story keeps the error and, where there is one, the
    /// technical detail behind it (`technical`).
    async fn fail(
        &self,
        id: JobId,
        error: &str,
        technical: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        jobs::fail_pending(&self.pool, id, error).await?;
        sqlx::query!(
            "with done as (
                 update job_dispatch set lease_until = null, last_error = $2 where job_id = $1
                 returning job_id, attempts)
             insert into job_events (job_id, kind, actor, detail)
             select job_id, 'dispatch', 'the dispatcher',
                    jsonb_strip_nulls(jsonb_build_object('attempt', attempts, 'error', $2::text,
                                                         'final', true, 'technical', $3::text))
             from done",
            id.0,
            error,
            technical
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn schedule_retry(
        &self,
        id: JobId,
        delay: Duration,
        error: &str,
        technical: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "with later as (
                 update job_dispatch set lease_until = null, last_error = $3,
                     next_attempt_at = now() + make_interval(secs => $2)
                 where job_id = $1
                 returning job_id, attempts)
             insert into job_events (job_id, kind, actor, detail)
             select job_id, 'dispatch', 'the dispatcher',
                    jsonb_strip_nulls(jsonb_build_object('attempt', attempts, 'error', $3::text,
                                       'retry_in_secs', round($2::numeric, 1),
                                       'technical', $4::text))
             from later",
            id.0,
            delay.as_secs_f64(),
            error,
            technical
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Jobs the service has not told us about for a while are read back and brought to its
    /// state, so a lost webhook heals itself.
    async fn reconcile_loop(self, cancel: CancellationToken) {
        let every = (self.settings.reconcile_after / 4)
            .clamp(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = cancel.cancelled() => return,
            }
            if self.pool.is_closed() {
                return;
            }
            if let Err(err) = self.reconcile_once().await {
                tracing::warn!(error = %err, "reconcile failed");
            }
        }
    }

    /// Read back the jobs that have been quiet for longer than the settings allow; returns
    /// how many were read.
    #[tracing::instrument(name = "reconcile", skip_all)]
    pub async fn reconcile_once(&self) -> Result<usize, sqlx::Error> {
        let service = self.client.service();
        let quiet =
            outbox::quiet_jobs(&self.pool, self.settings.reconcile_after, RECONCILE_BATCH).await?;
        let count = quiet.len();
        for job in quiet {
            let report = match self.client.get_job_answer(&job.task_id).await {
                Ok((found, answer)) => {
                    // Kept for the job's page: what the service last said about it.
                    if let Err(err) = jobs::record_answer(&self.pool, job.id, &answer).await {
                        tracing::warn!(job_id = %job.id, error = %err, "reconcile: keeping the answer failed");
                    }
                    Normalized {
                        job_id: Some(job.id),
                        ..found.normalize()
                    }
                }
                Err(CallError::Permanent { status: 404, .. }) => Normalized {
                    ittybit_id: Some(job.task_id),
                    job_id: Some(job.id),
                    status: JobStatus::Failed,
                    progress: None,
                    output_url: None,
                    output: reeltime::OutputFacts::default(),
                    input_size: None,
                    details: None,
                    error: Some(format!("{service} no longer knows this job.")),
                },
                Err(err) => {
                    tracing::warn!(job_id = %job.id, error = %err, "reconcile: reading the job back failed");
                    // Try this one again after another quiet period, not on every pass.
                    outbox::read_back(&self.pool, job.id).await?;
                    continue;
                }
            };
            let applied: Applied = jobs::apply_report(&self.pool, job.id, &report, service).await?;
            // What the service says now is news, even when it is what we knew.
            outbox::read_back(&self.pool, job.id).await?;
            tracing::info!(job_id = %job.id, outcome = applied.as_str(), "reconciled");
        }
        Ok(count)
    }
}
