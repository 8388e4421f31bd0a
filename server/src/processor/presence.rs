//! This process's row in `processor_workers` (issue 13): where the dashboard's Stats page reads
//! which processes run jobs, on which host, with how many slots and which jobs now.
//!
//! A process with workers inserts its row at start, renews `seen_at` and `jobs` every [`BEAT`],
//! and deletes the row when it stops. One killed without stopping leaves its row; the page
//! shows it as not heard from, and any live process deletes rows silent for [`FORGET_AFTER`].
//! The queue never reads these rows: who may run a job is the lease's business alone
//! (`processor_jobs`), so a wrong or missing row misleads a person, never the processor.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// How often the row is renewed.
pub const BEAT: Duration = Duration::from_secs(5);
/// Rows not renewed for this long are deleted.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The jobs this process runs now, as its row lists them.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<BTreeSet<String>>>);

impl Running {
    /// Count `job` as running until the guard is dropped.
    pub fn hold(&self, job: &str) -> RunningGuard {
        self.lock().insert(job.to_owned());
        RunningGuard {
            running: self.clone(),
            job: job.to_owned(),
        }
    }

    fn list(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // The set is only inserted into and removed from: a panic mid-way leaves it whole.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct RunningGuard {
    running: Running,
    job: String,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.running.lock().remove(&self.job);
    }
}

/// This host's name, as the kernel has it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Announce this process with `slots` workers and keep its row current until `cancel`, then
/// delete it. A task of `tasks`.
pub fn announce(
    pool: PgPool,
    slots: usize,
    running: Running,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> Uuid {
    let id = Uuid::new_v4();
    let cancel = cancel.clone();
    tasks.spawn(async move {
        let me = Me {
            id,
            host: host_name(),
            pid: i32::try_from(std::process::id()).unwrap_or(0),
            slots: i32::try_from(slots).unwrap_or(i32::MAX),
        };
        let mut ticks = tokio::time::interval(BEAT);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Err(err) = renew(&pool, &me, &running.list()).await {
                        tracing::warn!(error = %err, "could not renew this worker's row");
                    }
                }
                _ = cancel.cancelled() => break,
            }
        }
        let gone = sqlx::query!("delete from processor_workers where id = $1", id)
            .execute(&pool)
            .await;
        if let Err(err) = gone {
            tracing::warn!(error = %err, "could not remove this worker's row");
        }
    });
    id
}

/// What this process's row says about it, besides its jobs.
#[derive(Debug)]
struct Me {
    id: Uuid,
    host: String,
    pid: i32,
    slots: i32,
}

/// Insert or renew the row, and forget rows silent for a day.
#[tracing::instrument(skip(pool, jobs))]
async fn renew(pool: &PgPool, me: &Me, jobs: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into processor_workers (id, host, pid, version, slots, jobs)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (id) do update set jobs = excluded.jobs, seen_at = now()",
        me.id,
        me.host,
        me.pid,
        env!("CARGO_PKG_VERSION"),
        me.slots,
        jobs,
    )
    .execute(pool)
    .await?;
    sqlx::query!(
        "delete from processor_workers where seen_at < now() - make_interval(secs => $1)",
        FORGET_AFTER.as_secs_f64(),
    )
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_listed_while_its_guard_lives() {
        let running = Running::default();
        let a = running.hold("job_a");
        let b = running.hold("job_b");
        assert_eq!(running.list(), ["job_a", "job_b"]);
        drop(a);
        assert_eq!(running.list(), ["job_b"]);
        drop(b);
        assert!(running.list().is_empty());
    }

    #[test]
    fn the_host_has_a_name() {
        assert!(!host_name().is_empty());
    }
}
