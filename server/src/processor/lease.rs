//! A claimed job's lease, kept alive for the whole attempt by a heartbeat.
//!
//! A worker owns a job only while its lease runs; an idle worker takes any `processing` job
//! whose lease ran out (its worker died). So the lease must be renewed through everything an
//! attempt does (the download, which may take minutes, ffprobe, ffmpeg, the output's probe),
//! not only while ffmpeg reports progress. The heartbeat renews it every [`Lease::every`]; when
//! a renewal finds the job no longer this attempt's (another worker took it, or it was
//! cancelled), or renewals fail for as long as the lease lasts (the job may be someone else's by now), it cancels [`Heartbeat::lost`], and the
//! worker stops its ffmpeg and writes nothing more.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use super::store;

/// How long a claim lasts without renewal, and how often it is renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub length: Duration,
    pub every: Duration,
}

impl Lease {
    /// A lease of `length`, renewed six times per length (a renewal may fail a few times
    /// before the lease is at risk) and at least every second, so a job cancelled from any
    /// instance is stopped within about a second.
    pub fn of(length: Duration) -> Lease {
        Lease {
            length,
            every: (length / 6).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        }
    }
}

/// Renews one attempt's lease until dropped.
pub struct Heartbeat {
    lost: CancellationToken,
    _task: AbortOnDropHandle<()>,
}

impl Heartbeat {
    /// Start renewing `owner`'s lease on job `id`.
    pub fn start(pool: PgPool, id: String, owner: Uuid, lease: Lease) -> Heartbeat {
        let lost = CancellationToken::new();
        let task = tokio::spawn(beat(pool, id, owner, lease, lost.clone()));
        Heartbeat {
            lost,
            _task: AbortOnDropHandle::new(task),
        }
    }

    /// Cancelled once the job is no longer this attempt's.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }
}

async fn beat(pool: PgPool, id: String, owner: Uuid, lease: Lease, lost: CancellationToken) {
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(lease.every).await;
        match store::renew(&pool, &id, owner, lease.length).await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => {
                tracing::info!(job = %id, "the job is no longer this attempt's (cancelled, or taken by another worker); stopping");
                break;
            }
            Err(err) if renewed.elapsed() >= lease.length => {
                tracing::warn!(job = %id, error = %err,
                    "the job's lease could not be renewed before it ran out; stopping");
                break;
            }
            Err(err) => tracing::warn!(job = %id, error = %err, "could not renew a job's lease"),
        }
    }
    lost.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_renewed_several_times_per_length() {
        let lease = Lease::of(Duration::from_secs(3));
        assert_eq!(lease.every, Duration::from_millis(500));
        let long = Lease::of(Duration::from_secs(30));
        assert_eq!(
            long.every,
            Duration::from_secs(1),
            "a cancel is seen within a second"
        );
        assert_eq!(
            Lease::of(Duration::from_millis(300)).every,
            Duration::from_millis(100)
        );
    }
}
