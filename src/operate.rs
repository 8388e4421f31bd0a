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

/// One entry of a job's story (`job_events`): what happened, when, and who or what did it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobEvent {
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: time::OffsetDateTime,
    /// `created`, `status`, `progress`, `action` or `dispatch`.
    pub kind: String,
    /// A person's e-mail, or what acted ("Ittybit", "The built-in processor", "the dispatcher").
    pub actor: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
}

/// A signed callback that reached the server about a job (`webhook_deliveries`), as its page
/// lists it: verified or not, and what became of it; the body only for verified ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: time::OffsetDateTime,
    pub signature_ok: bool,
    /// The status it reported.
    pub status: Option<String>,
    /// `applied`, `unchanged`, `unknown_job`, `bad_signature`, `malformed`.
    pub outcome: String,
    pub body: Option<String>,
}

impl JobEvent {
    /// The entry as a sentence: "Cancelled by ana@example.com", "Failed: the input URL was
    /// not found (HTTP 404)", "50% done".
    pub fn describe(&self) -> String {
        let text = |key: &str| self.detail.get(key).and_then(|v| v.as_str());
        match self.kind.as_str() {
            "created" => match text("retry_of") {
                Some(original) => format!("Created by {} as a retry of {original}", self.actor),
                None => format!("Created by {}", self.actor),
            },
            "status" => {
                let to = text("to").unwrap_or("changed");
                let mut sentence = match to {
                    "queued" => "Queued".to_owned(),
                    "processing" => "Processing started".to_owned(),
                    "succeeded" => "Succeeded".to_owned(),
                    "failed" => "Failed".to_owned(),
                    "cancelled" => format!("Cancelled by {}", self.actor),
                    other => format!("Now {other}"),
                };
                if to != "cancelled" {
                    sentence.push_str(&format!(" ({})", self.actor));
                }
                if let Some(error) = text("error") {
                    sentence.push_str(&format!(": {error}"));
                }
                sentence
            }
            "progress" => format!(
                "{}% done",
                self.detail
                    .get("progress")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0)
            ),
            "action" => match (text("action"), text("retried_as")) {
                (Some("retry"), Some(new)) => format!("Retried by {} as {new}", self.actor),
                (Some(action), _) => format!("{action} by {}", self.actor),
                _ => format!("Changed by {}", self.actor),
            },
            "dispatch" => {
                let attempt = self
                    .detail
                    .get("attempt")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(1);
                match (text("error"), text("service")) {
                    (Some(error), _) if self.detail.get("final").is_some() => {
                        format!("Sending it failed for good (attempt {attempt}): {error}")
                    }
                    (Some(error), _) => {
                        format!("Sending it failed (attempt {attempt}), to be tried again: {error}")
                    }
                    (None, Some(service)) => format!("Sent to {service} (attempt {attempt})"),
                    (None, None) => format!("Sent (attempt {attempt})"),
                }
            }
            other => format!("{other} ({})", self.actor),
        }
    }

    /// The technical detail behind a step's plain error (a network failure's own chain of
    /// messages, never a URL), which the job's page shows folded under the sentence.
    pub fn technical(&self) -> Option<&str> {
        self.detail
            .get("technical")
            .and_then(|v| v.as_str())
            .filter(|text| !text.is_empty())
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
    fn story_entries_read_as_sentences() {
        let event = |kind: &str, actor: &str, detail: serde_json::Value| JobEvent {
            at: time::OffsetDateTime::UNIX_EPOCH,
            kind: kind.to_owned(),
            actor: actor.to_owned(),
            detail,
        };
        let cases = [
            (
                event("created", "ana@example.com", serde_json::json!({})),
                "Created by ana@example.com",
            ),
            (
                event(
                    "status",
                    "ana@example.com",
                    serde_json::json!({"from": "queued", "to": "cancelled"}),
                ),
                "Cancelled by ana@example.com",
            ),
            (
                event(
                    "status",
                    "Ittybit",
                    serde_json::json!({"to": "failed", "error": "HTTP 404"}),
                ),
                "Failed (Ittybit): HTTP 404",
            ),
            (
                event("progress", "Ittybit", serde_json::json!({"progress": 50})),
                "50% done",
            ),
            (
                event(
                    "action",
                    "bo@example.com",
                    serde_json::json!({"action": "retry", "retried_as": "x"}),
                ),
                "Retried by bo@example.com as x",
            ),
        ];
        for (event, sentence) in cases {
            assert_eq!(event.describe(), sentence);
            assert_eq!(event.technical(), None);
        }
    }

    #[test]
    fn a_failed_call_reads_plainly_and_keeps_its_technical_detail_apart() {
        let event = JobEvent {
            at: time::OffsetDateTime::UNIX_EPOCH,
            kind: "dispatch".to_owned(),
            actor: "the dispatcher".to_owned(),
            detail: serde_json::json!({
                "attempt": 2,
                "error": "Ittybit could not be reached: the connection was refused",
                "technical": "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                "retry_in_secs": 4.0,
            }),
        };
        assert_eq!(
            event.describe(),
            "Sending it failed (attempt 2), to be tried again: Ittybit could not be reached: \
             the connection was refused"
        );
        assert!(event.technical().unwrap().contains("os error 111"));
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
