//! Every statement on the dashboard's tables (server only): `jobs`, `job_changes` and
//! `webhook_deliveries`. Nothing else in the workspace reads or writes them, so a rule about a
//! job (forward-only status, progress that never goes back, who may change what) is enforced in
//! one place, whichever door the request came in by: the form's server function, the JSON API,
//! a webhook, the dispatcher or the reconciler.
//!
//! Every statement is a checked macro (`query!`, `query_as!`): the compiler checks it against
//! the migrations, offline from the committed `.sqlx/` data. `sqlx.toml` maps the columns that
//! have domain types (`jobs.id` to `JobId`, `jobs.status` to `JobStatus`, …).
//!
//! - [`jobs`]: submit, read, page, and fold processor reports into a job.
//! - [`changes`]: the change log the live feed reads, its horizon and its pruning.
//! - [`webhooks`]: the delivery log of signed callbacks.
//! - [`outbox`]: the dispatcher's claims on pending jobs and the reconciler's quiet jobs.
//! - [`operate`]: operators' actions (cancel, retry, delete, in bulk) and each job's story.

pub mod changes;
pub mod jobs;
pub mod operate;
pub mod outbox;
pub mod stats;
mod transaction;
pub mod users;
pub mod webhooks;

pub use changes::{log_position, Change};
pub use jobs::{
    get_job, list_jobs, list_jobs_with_snapshot, status_counts, submit_job, Applied, SubmitError,
};
pub(crate) use transaction::custom_plans;
pub use transaction::{begin, begin_with};
