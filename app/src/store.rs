//! The dashboard's job list, kept current by live changes. Each job has its own signal, so a
//! change re-renders only its row.

use std::collections::HashSet;

use leptos::prelude::*;
use reeltime::{ChangeOp, ChangePosition, Job, JobId, JobPage};

#[derive(Clone, Copy)]
// Live changes are applied in the browser only.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub struct JobStore {
    rows: RwSignal<Vec<(JobId, RwSignal<Job>)>>,
    /// The last change applied; older or repeated events are ignored.
    position: StoredValue<Option<ChangePosition>>,
    /// Deleted jobs: a stale insert or update arriving after the delete must not revive them.
    deleted: StoredValue<HashSet<JobId>>,
    /// Showing an older page: new jobs belong on the first page, not here.
    paged: bool,
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
impl JobStore {
    pub fn new(page: &JobPage, paged: bool) -> JobStore {
        JobStore {
            rows: RwSignal::new(
                page.jobs
                    .iter()
                    .map(|job| (job.id, RwSignal::new(job.clone())))
                    .collect(),
            ),
            position: StoredValue::new(page.position),
            deleted: StoredValue::new(HashSet::new()),
            paged,
        }
    }

    pub fn rows(&self) -> Vec<(JobId, RwSignal<Job>)> {
        self.rows.get()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.with(Vec::is_empty)
    }

    pub fn position(&self) -> Option<ChangePosition> {
        self.position.get_value()
    }

    /// A live change. Returns false when it was already applied (or is older).
    pub fn apply(&self, op: ChangeOp, job: Job, position: ChangePosition) -> bool {
        if self
            .position
            .get_value()
            .is_some_and(|seen| position <= seen)
        {
            return false;
        }
        self.position.set_value(Some(position));
        match op {
            ChangeOp::Delete => {
                self.deleted.update_value(|d| {
                    d.insert(job.id);
                });
                self.rows
                    .update(|rows| rows.retain(|(id, _)| *id != job.id));
            }
            ChangeOp::Insert | ChangeOp::Update => self.upsert(job),
        }
        true
    }

    /// A job known to be current (just submitted, say): shown or refreshed, never made older.
    pub fn upsert(&self, job: Job) {
        if self.deleted.with_value(|d| d.contains(&job.id)) {
            return;
        }
        let existing = self
            .rows
            .with_untracked(|rows| rows.iter().find(|(id, _)| *id == job.id).map(|(_, s)| *s));
        match existing {
            Some(row) if job.version > row.with_untracked(|j| j.version) => row.set(job),
            Some(_) => {}
            None if !self.paged => self.rows.update(|rows| {
                let key = |j: &Job| (j.created_at, j.id);
                let at = rows
                    .iter()
                    .position(|(_, r)| r.with_untracked(|r| key(r) < key(&job)))
                    .unwrap_or(rows.len());
                rows.insert(at, (job.id, RwSignal::new(job)));
            }),
            None => {}
        }
    }

    /// A `reset` snapshot: the list becomes the snapshot (on an older page, rows still shown
    /// are refreshed).
    pub fn reset(&self, page: JobPage) {
        self.position.set_value(page.position);
        if self.paged {
            for job in page.jobs {
                self.upsert(job);
            }
            return;
        }
        self.deleted.update_value(HashSet::clear);
        self.rows.set(
            page.jobs
                .into_iter()
                .map(|job| (job.id, RwSignal::new(job)))
                .collect(),
        );
    }
}
