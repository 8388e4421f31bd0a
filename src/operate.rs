//! What an operator may do to a job, and when (issue 12).
//!
//! - **Cancel** a job that has not finished (`pending`, `queued`, `processing`): it ends
//!   `cancelled`, and since a terminal state never changes, a later report for it changes
//!   nothing.
//! - **Retry** a job that failed or was cancelled: a new job with the same input and options,
//!   linked to the original (`retry_of`).
//! - **Delete** a finished job: the row goes, and the built-in processor's output with it.
//!
//! The server's SQL says the same rules in its `where` clauses; the tests hold them to these.

use serde::{Deserialize, Serialize};

use crate::job::{JobKind, JobStatus, Preset};

/// An action on a job.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum JobAction {
    Cancel,
    Retry,
    Delete,
}

impl JobAction {
    pub const ALL: [JobAction; 3] = [JobAction::Cancel, JobAction::Retry, JobAction::Delete];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The statuses a job may be in for this action.
    pub fn allowed_from(self) -> &'static [JobStatus] {
        match self {
            JobAction::Cancel => &[JobStatus::Pending, JobStatus::Queued, JobStatus::Processing],
            JobAction::Retry => &[JobStatus::Failed, JobStatus::Cancelled],
            JobAction::Delete => &[
                JobStatus::Succeeded,
                JobStatus::Failed,
                JobStatus::Cancelled,
            ],
        }
    }

    /// Whether a job in `status` allows this action.
    pub fn allows(self, status: JobStatus) -> bool {
        self.allowed_from().contains(&status)
    }

    /// The button's word: "Cancel", "Retry", "Delete".
    pub fn label(self) -> &'static str {
        match self {
            JobAction::Cancel => "Cancel",
            JobAction::Retry => "Retry",
            JobAction::Delete => "Delete",
        }
    }

    /// Why a job in `status` does not allow this action, in plain words.
    pub fn refusal(self, status: JobStatus) -> String {
        match self {
            JobAction::Cancel => format!("The job has already {}: there is nothing to cancel.", ended(status)),
            JobAction::Retry if status == JobStatus::Succeeded => {
                "The job succeeded: there is nothing to retry (submit it again to make another).".to_owned()
            }
            JobAction::Retry => format!(
                "The job is {status} and has not finished: only a failed or cancelled job can be retried."
            ),
            JobAction::Delete => format!(
                "The job is {status} and has not finished: cancel it first, then delete it."
            ),
        }
    }
}

/// "succeeded", "failed", "been cancelled".
fn ended(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Succeeded => "succeeded",
        JobStatus::Failed => "failed",
        JobStatus::Cancelled => "been cancelled",
        _ => "moved on",
    }
}

impl Preset {
    /// The preset whose kind and options these are, if any (a job stores its options, not the
    /// preset's name: one submitted through the API with the default preset matches it too).
    pub fn matching(kind: JobKind, options: &serde_json::Value) -> Option<Preset> {
        Preset::ALL
            .into_iter()
            .find(|preset| preset.kind() == kind && preset.options() == *options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_action_has_its_statuses_and_every_other_status_is_refused_in_words() {
        let expected = [
            (JobAction::Cancel, "pending queued processing"),
            (JobAction::Retry, "failed cancelled"),
            (JobAction::Delete, "succeeded failed cancelled"),
        ];
        for (action, statuses) in expected {
            for status in JobStatus::ALL.iter().copied() {
                let allowed = statuses.split(' ').any(|s| s == status.as_str());
                assert_eq!(action.allows(status), allowed, "{action} from {status}");
                if !allowed {
                    let refusal = action.refusal(status);
                    assert!(refusal.ends_with('.'), "{refusal}");
                    assert!(refusal.starts_with("The job"), "{refusal}");
                }
            }
        }
        assert_eq!(
            JobAction::Cancel.refusal(JobStatus::Succeeded),
            "The job has already succeeded: there is nothing to cancel."
        );
        assert_eq!(
            JobAction::Delete.refusal(JobStatus::Processing),
            "The job is processing and has not finished: cancel it first, then delete it."
        );
    }

    #[test]
    fn actions_read_and_print_as_snake_case() {
        for action in JobAction::ALL {
            assert_eq!(action.as_str().parse::<JobAction>().unwrap(), action);
        }
        assert!("explode".parse::<JobAction>().is_err());
    }

    #[test]
    fn a_jobs_preset_is_found_from_its_kind_and_options() {
        for preset in Preset::ALL {
            assert_eq!(
                Preset::matching(preset.kind(), &preset.options()),
                Some(preset)
            );
        }
        assert_eq!(
            Preset::matching(JobKind::Video, &serde_json::json!({"width": 3})),
            None
        );
    }
}
