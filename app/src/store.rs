//! The dashboard's job list, kept current by live changes. Each job has its own signal, so a
//! change re-renders only its row.

use std::collections::HashSet;

use leptos::prelude::*;
use reeltime::{ChangeOp, ChangePosition, Job, JobFilter, JobId, JobPage};

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
    /// Older jobs exist beyond the last row shown (the page has a next one): a job that sorts
    /// below the last row belongs on that older page, so a change to it is not shown here.
    more: StoredValue<bool>,
    /// Which jobs the view shows: a change that enters the filter is shown, one that leaves
    /// it is removed (the same predicate as the server's SQL).
    filter: StoredValue<JobFilter>,
    /// A job's page: only this job.
    only: Option<JobId>,
    /// On a job's page: how many changes arrived for jobs that retry it (the page reads its
    /// story again on each).
    related: RwSignal<u64>,
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
impl JobStore {
    /// The dashboard's list: `page`, read with `filter`.
    pub fn new(page: &JobPage, paged: bool, filter: JobFilter) -> JobStore {
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
            more: StoredValue::new(page.next_before.is_some()),
            filter: StoredValue::new(filter),
            only: None,
            related: RwSignal::new(0),
        }
    }

    /// A job's page: that job alone, followed from `position`.
    pub fn single(job: &Job, position: Option<ChangePosition>) -> JobStore {
        JobStore {
            rows: RwSignal::new(vec![(job.id, RwSignal::new(job.clone()))]),
            position: StoredValue::new(position),
            deleted: StoredValue::new(HashSet::new()),
            paged: false,
            more: StoredValue::new(false),
            filter: StoredValue::new(JobFilter::default()),
            only: Some(job.id),
            related: RwSignal::new(0),
        }
    }

    /// On a job's page: a count that grows with every change to a job retrying it.
    pub fn related(&self) -> u64 {
        self.related.get()
    }

    /// The row of job `id`, if shown.
    pub fn row(&self, id: JobId) -> Option<RwSignal<Job>> {
        self.rows
            .with(|rows| rows.iter().find(|(row, _)| *row == id).map(|(_, job)| *job))
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
        if let Some(only) = self.only.filter(|only| *only != job.id) {
            if job.retry_of == Some(only) {
                self.related.update(|n| *n += 1);
            }
            return;
        }
        if self.deleted.with_value(|d| d.contains(&job.id)) {
            return;
        }
        if !self.filter.with_value(|filter| filter.matches(&job)) {
            // It left the view (or never was in it); a newer version may bring it back.
            self.rows
                .update(|rows| rows.retain(|(id, _)| *id != job.id));
            return;
        }
        let existing = self
            .rows
            .with_untracked(|rows| rows.iter().find(|(id, _)| *id == job.id).map(|(_, s)| *s));
        match existing {
            Some(row) if job.version > row.with_untracked(|j| j.version) => row.set(job),
            Some(_) => {}
            None if !self.paged => {
                let more = self.more.get_value();
                self.rows.update(|rows| {
                    let key = |j: &Job| (j.created_at, j.id);
                    let at = rows
                        .iter()
                        .position(|(_, r)| r.with_untracked(|r| key(r) < key(&job)));
                    match at {
                        Some(at) => rows.insert(at, (job.id, RwSignal::new(job))),
                        // Older than every row shown: the end of the list only if there is
                        // no older page it belongs on.
                        None if !more => rows.push((job.id, RwSignal::new(job))),
                        None => {}
                    }
                })
            }
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
        self.more.set_value(page.next_before.is_some());
        let shown = |job: &Job| {
            self.only.is_none_or(|only| only == job.id)
                && self.filter.with_value(|filter| filter.matches(job))
        };
        if self.only.is_some() {
            // A job's page keeps its row: the reset's page may not hold an older job.
            for job in page.jobs.into_iter().filter(shown) {
                self.upsert(job);
            }
            return;
        }
        self.rows.set(
            page.jobs
                .into_iter()
                .filter(shown)
                .map(|job| (job.id, RwSignal::new(job)))
                .collect(),
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use reeltime::{JobKind, JobStatus};
    use time::macros::datetime;
    use uuid::Uuid;

    /// Job `n` (created `n` seconds after noon on 2026-12-01) at `version`, in `status`.
    pub(crate) fn job(n: u128, version: i64, status: JobStatus) -> Job {
        let at = datetime!(2026-12-01 12:00 UTC) + time::Duration::seconds(n as i64);
        Job {
            id: JobId(Uuid::from_u128(n)),
            input_url: format!("https://example.com/{n}.mp4"),
            kind: JobKind::Video,
            options: serde_json::json!({}),
            status,
            task_id: None,
            output_url: None,
            error: None,
            created_at: at,
            updated_at: at,
            progress: None,
            output_duration_ms: None,
            output_size: None,
            output_width: None,
            output_height: None,
            input_size: None,
            version,
            created_by: None,
            retry_of: None,
        }
    }

    fn at(tx: u64) -> ChangePosition {
        ChangePosition { tx, seq: 1 }
    }

    fn page(jobs: Vec<Job>, tx: u64) -> JobPage {
        JobPage {
            jobs,
            next_before: None,
            position: Some(at(tx)),
        }
    }

    /// The rows as (job number, version, status), top to bottom.
    fn shown(store: &JobStore) -> Vec<(u128, i64, JobStatus)> {
        store
            .rows()
            .iter()
            .map(|(id, row)| row.with_untracked(|j| (id.0.as_u128(), j.version, j.status)))
            .collect()
    }

    /// Runs `test` with a reactive owner, as a page would.
    fn with_owner(test: impl FnOnce()) {
        Owner::new().with(test);
    }

    #[test]
    fn changes_apply_in_order_and_new_jobs_go_on_top() {
        with_owner(|| {
            let store = JobStore::new(
                &page(vec![job(1, 10, JobStatus::Pending)], 100),
                false,
                JobFilter::default(),
            );
            assert!(store.apply(ChangeOp::Insert, job(2, 11, JobStatus::Pending), at(101)));
            assert!(store.apply(ChangeOp::Update, job(1, 12, JobStatus::Queued), at(102)));
            assert_eq!(
                shown(&store),
                [(2, 11, JobStatus::Pending), (1, 12, JobStatus::Queued)]
            );
            assert_eq!(store.position(), Some(at(102)));
        });
    }

    #[test]
    fn a_change_to_a_job_of_an_older_page_stays_off_the_first_page() {
        with_owner(|| {
            let mut first = page(
                vec![
                    job(5, 50, JobStatus::Pending),
                    job(4, 40, JobStatus::Pending),
                ],
                100,
            );
            first.next_before = Some("older".to_owned());
            let store = JobStore::new(&first, false, JobFilter::default());
            // Job 3 is on the next page: its dispatch (an update) does not bring it here, nor
            // does a late insert of a job older still.
            assert!(store.apply(ChangeOp::Update, job(3, 31, JobStatus::Queued), at(101)));
            assert!(store.apply(ChangeOp::Insert, job(1, 10, JobStatus::Pending), at(102)));
            assert_eq!(
                shown(&store),
                [(5, 50, JobStatus::Pending), (4, 40, JobStatus::Pending)]
            );
            assert!(store.apply(ChangeOp::Insert, job(6, 60, JobStatus::Pending), at(103)));
            assert_eq!(shown(&store).len(), 3, "a new job goes on top");

            // The last page holds every older job: a change there shows at the end.
            let last = JobStore::new(
                &page(vec![job(5, 50, JobStatus::Pending)], 100),
                false,
                JobFilter::default(),
            );
            assert!(last.apply(ChangeOp::Update, job(3, 31, JobStatus::Queued), at(101)));
            assert_eq!(
                shown(&last),
                [(5, 50, JobStatus::Pending), (3, 31, JobStatus::Queued)]
            );
        });
    }

    #[test]
    fn a_repeated_or_earlier_position_is_ignored() {
        with_owner(|| {
            let store = JobStore::new(
                &page(vec![job(1, 10, JobStatus::Pending)], 100),
                false,
                JobFilter::default(),
            );
            assert!(store.apply(ChangeOp::Update, job(1, 12, JobStatus::Queued), at(102)));
            assert!(!store.apply(ChangeOp::Update, job(1, 13, JobStatus::Failed), at(102)));
            assert!(!store.apply(ChangeOp::Update, job(1, 13, JobStatus::Failed), at(101)));
            assert_eq!(shown(&store), [(1, 12, JobStatus::Queued)]);
        });
    }

    #[test]
    fn an_older_version_of_a_row_is_ignored() {
        with_owner(|| {
            let store = JobStore::new(
                &page(vec![job(1, 20, JobStatus::Processing)], 100),
                false,
                JobFilter::default(),
            );
            // Delivered later (a later transaction) but written earlier: an older copy.
            assert!(store.apply(ChangeOp::Update, job(1, 15, JobStatus::Queued), at(101)));
            assert_eq!(shown(&store), [(1, 20, JobStatus::Processing)]);
            store.upsert(job(1, 19, JobStatus::Queued));
            assert_eq!(shown(&store), [(1, 20, JobStatus::Processing)]);
            store.upsert(job(1, 21, JobStatus::Succeeded));
            assert_eq!(shown(&store), [(1, 21, JobStatus::Succeeded)]);
        });
    }

    #[test]
    fn an_insert_or_update_after_a_delete_does_not_revive_the_job() {
        with_owner(|| {
            let store = JobStore::new(
                &page(vec![job(1, 10, JobStatus::Pending)], 100),
                false,
                JobFilter::default(),
            );
            assert!(store.apply(ChangeOp::Delete, job(1, 10, JobStatus::Pending), at(101)));
            assert!(store.is_empty());
            store.apply(ChangeOp::Insert, job(1, 11, JobStatus::Pending), at(102));
            store.apply(ChangeOp::Update, job(1, 12, JobStatus::Queued), at(103));
            store.upsert(job(1, 13, JobStatus::Queued));
            assert!(store.is_empty(), "{:?}", shown(&store));
        });
    }

    #[test]
    fn a_reset_replaces_the_list_and_forgets_remembered_deletes() {
        with_owner(|| {
            let store = JobStore::new(
                &page(vec![job(1, 10, JobStatus::Pending)], 100),
                false,
                JobFilter::default(),
            );
            store.apply(ChangeOp::Delete, job(1, 10, JobStatus::Pending), at(101));
            store.reset(page(
                vec![
                    job(3, 30, JobStatus::Queued),
                    job(1, 25, JobStatus::Pending),
                ],
                200,
            ));
            assert_eq!(
                shown(&store),
                [(3, 30, JobStatus::Queued), (1, 25, JobStatus::Pending)]
            );
            assert_eq!(store.position(), Some(at(200)));
            // The snapshot is the truth now: the old delete no longer hides job 1.
            assert!(store.apply(ChangeOp::Update, job(1, 26, JobStatus::Queued), at(201)));
            assert_eq!(shown(&store)[1], (1, 26, JobStatus::Queued));
            assert!(!store.apply(ChangeOp::Update, job(3, 31, JobStatus::Failed), at(150)));
        });
    }

    #[test]
    fn an_older_page_gains_no_new_rows_but_keeps_its_own_current() {
        with_owner(|| {
            let older = page(vec![job(1, 10, JobStatus::Queued)], 100);
            let store = JobStore::new(&older, true, JobFilter::default());
            assert!(store.apply(ChangeOp::Insert, job(9, 90, JobStatus::Pending), at(101)));
            assert!(store.apply(ChangeOp::Update, job(1, 11, JobStatus::Succeeded), at(102)));
            assert_eq!(shown(&store), [(1, 11, JobStatus::Succeeded)]);
            // A reset (the newest page) refreshes what it shows and adds nothing.
            store.reset(page(
                vec![
                    job(9, 91, JobStatus::Queued),
                    job(1, 12, JobStatus::Succeeded),
                ],
                200,
            ));
            assert_eq!(shown(&store), [(1, 12, JobStatus::Succeeded)]);
        });
    }

    #[test]
    fn a_change_that_enters_the_filter_appears_and_one_that_leaves_it_goes() {
        with_owner(|| {
            let failed = JobFilter {
                status: Some(JobStatus::Failed),
                ..JobFilter::default()
            };
            let store = JobStore::new(
                &page(vec![job(1, 10, JobStatus::Failed)], 100),
                false,
                failed,
            );
            assert!(store.apply(ChangeOp::Insert, job(2, 11, JobStatus::Pending), at(101)));
            assert_eq!(
                shown(&store),
                [(1, 10, JobStatus::Failed)],
                "a pending job stays out"
            );
            assert!(store.apply(ChangeOp::Update, job(2, 12, JobStatus::Failed), at(102)));
            assert_eq!(
                shown(&store),
                [(2, 12, JobStatus::Failed), (1, 10, JobStatus::Failed)],
                "it failed: it enters"
            );
            // Retried elsewhere and deleted, say: an update that leaves the filter removes it.
            let mut moved = job(1, 13, JobStatus::Failed);
            moved.status = JobStatus::Cancelled;
            assert!(store.apply(ChangeOp::Update, moved, at(103)));
            assert_eq!(shown(&store), [(2, 12, JobStatus::Failed)]);
            store.reset(page(
                vec![job(3, 30, JobStatus::Queued), job(2, 31, JobStatus::Failed)],
                200,
            ));
            assert_eq!(
                shown(&store),
                [(2, 31, JobStatus::Failed)],
                "a reset is filtered too"
            );
        });
    }

    #[test]
    fn a_jobs_page_follows_that_job_only() {
        with_owner(|| {
            let store = JobStore::single(&job(5, 50, JobStatus::Processing), Some(at(100)));
            assert!(store.apply(ChangeOp::Insert, job(6, 51, JobStatus::Pending), at(101)));
            assert!(store.apply(ChangeOp::Update, job(5, 52, JobStatus::Succeeded), at(102)));
            assert_eq!(shown(&store), [(5, 52, JobStatus::Succeeded)]);
            store.reset(page(vec![job(6, 60, JobStatus::Queued)], 200));
            assert_eq!(
                shown(&store),
                [(5, 52, JobStatus::Succeeded)],
                "kept through a reset"
            );
            assert!(store.row(reeltime::JobId(Uuid::from_u128(5))).is_some());
        });
    }
}
