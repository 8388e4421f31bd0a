//! The periodic clean-up: finished jobs, the built-in processor's outputs, uploads and the
//! webhook delivery log after their retention periods (30 days unless set; uploads follow the
//! outputs', abandoned ones go after a day), expired sessions, and the
//! rate limiters' idle keys. Each pass logs what it deleted. Beside it, every few seconds, the
//! status-count ledger is folded ([`app::db::jobs::compact_status_counts`]).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::limits::Limits;
use crate::auth::store::PgSessionStore;
use crate::config::Retention;
use crate::processor::Processor;

/// How often the clean-up runs.
const EVERY: Duration = Duration::from_secs(3600);
/// Rows deleted per statement, so a first pass over a large backlog holds no long lock.
const BATCH: i64 = 5_000;

pub struct Cleanup {
    pub pool: PgPool,
    pub retention: Retention,
    pub processor: Option<Processor>,
    /// The rate limiters whose idle keys are forgotten at each pass.
    pub limits: Option<std::sync::Arc<Limits>>,
}

impl Cleanup {
    pub fn start(self, tasks: &TaskTracker, cancel: &CancellationToken) {
        tasks.spawn(fold_status_counts(self.pool.clone(), cancel.clone()));
        let cancel = cancel.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    _ = cancel.cancelled() => return,
                }
                if let Err(err) = self.run_once().await {
                    tracing::warn!(error = %err, "the clean-up failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(EVERY) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        });
    }

    /// One pass; returns (jobs, outputs, deliveries, sessions) deleted.
    #[tracing::instrument(name = "cleanup", skip_all)]
    pub async fn run_once(&self) -> Result<(u64, u64, u64, u64), sqlx::Error> {
        let r = &self.retention;
        let jobs =
            drain(|| app::db::jobs::delete_finished_before(&self.pool, r.jobs, BATCH)).await?;
        let (outputs, uploads) = match &self.processor {
            Some(processor) => (
                drain(|| processor.delete_old_outputs(r.outputs, BATCH)).await?,
                drain(|| {
                    crate::uploads::delete_old(&self.pool, processor.storage(), r.outputs, BATCH)
                })
                .await?,
            ),
            None => (0, 0),
        };
        let deliveries =
            drain(|| app::db::webhooks::delete_before(&self.pool, r.deliveries, BATCH)).await?;
        let sessions = PgSessionStore::new(self.pool.clone())
            .delete_expired()
            .await?;
        if let Some(limits) = &self.limits {
            limits.forget_quiet();
        }
        tracing::info!(jobs, outputs, uploads, deliveries, sessions, "cleaned up");
        Ok((jobs, outputs, deliveries, sessions))
    }
}

/// Folds the status-count ledger every [`app::db::jobs::COMPACT_COUNTS_EVERY`] until `cancel`.
/// Every instance does it; a fold beside another's is harmless (the migration says why).
async fn fold_status_counts(pool: PgPool, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(app::db::jobs::COMPACT_COUNTS_EVERY) => {}
            _ = cancel.cancelled() => return,
        }
        if let Err(err) = app::db::jobs::compact_status_counts(&pool).await {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %err, "folding the status counts failed");
        }
    }
}

/// Repeat a batched delete until a batch comes back short.
async fn drain<F, Fut>(mut step: F) -> Result<u64, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, sqlx::Error>>,
{
    let mut total = 0;
    loop {
        let n = step().await?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
    }
}
