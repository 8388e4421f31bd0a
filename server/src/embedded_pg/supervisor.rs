//! Starting the embedded Postgres again when it dies while the server runs.
//!
//! A task of the application's [`TaskTracker`] looks at the postmaster every
//! [`WATCH_EVERY`]. When it has exited, the death is logged with its exit status and the
//! postmaster is started again after 1 s, then 2 s, 4 s … up to 30 s between tries (with
//! jitter), each try logged, until one accepts connections. Meanwhile requests fail with a
//! database error and `/readyz` answers 503; the pool replaces its broken connections by
//! itself once Postgres is back.
//!
//! The task ends at the application's [`CancellationToken`], which shutdown cancels before it
//! stops Postgres on purpose, so a shutdown is never mistaken for a death and never undone.
//! A start that is under way when the token is cancelled is left to [`super::EmbeddedPostgres::stop`]
//! (or, if the postmaster had not been handed over yet, stopped by the launcher).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{EmbeddedPostgres, Postmaster};
use crate::backoff::Backoff;

/// How often the postmaster is looked at.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// The waits before each try at starting it again.
const RESTART: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

impl EmbeddedPostgres {
    /// Watch the postmaster and start it again whenever it dies, until `cancel`.
    pub fn supervise(&self, tasks: &TaskTracker, cancel: &CancellationToken) {
        tasks.spawn(supervise(self.postmaster.clone(), cancel.clone()));
    }
}

async fn supervise(postmaster: Arc<Postmaster>, cancel: CancellationToken) {
    loop {
        let status = loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(WATCH_EVERY) => {}
            }
            if let Some(status) = postmaster.exited() {
                break status;
            }
        };
        tracing::error!(
            %status,
            log = %postmaster.log_path.display(),
            "the embedded Postgres stopped while the server was running; starting it again"
        );
        for (attempt, delay) in (1u32..).zip(RESTART.delays()) {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            let started = tokio::select! {
                _ = cancel.cancelled() => return,
                started = postmaster.launch() => started,
            };
            match started {
                Ok(()) => {
                    tracing::warn!(attempt, "the embedded Postgres is running again");
                    break;
                }
                Err(err) => tracing::error!(
                    attempt,
                    error = %err,
                    "the embedded Postgres could not be started again; trying again"
                ),
            }
        }
    }
}
