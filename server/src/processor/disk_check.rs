//! The processor's side of the free-space floor ([`crate::disk`]): a job is not started while
//! the disk holding the processor's directory is under `REELTIME_MIN_FREE_DISK_MB`. The job
//! fails, saying it is the server's problem, rather than waiting in the queue: a person sees at
//! once why nothing is processed, and a full disk needs the operator either way. Jobs already
//! running finish (their outputs are what the space is for).

use super::error::JobError;
use super::Processor;
use crate::disk::{DiskFloor, Shortage};

impl Processor {
    fn disk_floor(&self) -> DiskFloor {
        DiskFloor {
            path: self.inner.settings.dir.clone(),
            min_free: self.inner.settings.min_free_disk,
        }
    }

    /// How far under the floor the disk is, if it is (`/readyz` reports it).
    pub fn disk_shortage(&self) -> Option<Shortage> {
        self.disk_floor().shortage()
    }

    /// Refuses to start a job while the disk is under the floor.
    pub(super) fn check_disk(&self) -> Result<(), JobError> {
        match self.disk_shortage() {
            Some(shortage) => Err(JobError::DiskFull(shortage)),
            None => Ok(()),
        }
    }
}
