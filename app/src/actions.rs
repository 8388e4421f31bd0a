//! What a job's row and page offer an operator (issue 12): the actions its status allows, each
//! a small form that posts without JavaScript and comes back with a message; the preset it was
//! made with; and a "stalled" badge for a job processing with no news for too long.

use leptos::prelude::*;
use reeltime::{Job, JobAction, JobStatus, Preset};
use time::OffsetDateTime;

/// "Web video, 1280 wide (MP4)", or the kind and "custom options" for a job made otherwise.
pub fn preset_label(job: &Job) -> String {
    match Preset::matching(job.kind, &job.options) {
        Some(preset) => preset.label().to_owned(),
        None => format!("{}, custom options", job.kind),
    }
}

/// Whether a processing job has had no news for `after_secs` at `now`.
pub fn is_stalled(job: &Job, now: OffsetDateTime, after_secs: u64) -> bool {
    job.status == JobStatus::Processing
        && (now - job.updated_at).whole_seconds() > i64::try_from(after_secs).unwrap_or(i64::MAX)
}

/// The actions `job`'s status allows, as forms; `back` is where each comes back to.
#[component]
pub fn ActionForms(
    job: RwSignal<Job>,
    csrf: RwSignal<String>,
    back: Signal<String>,
) -> impl IntoView {
    let id = job.with_untracked(|j| j.id);
    let allowed = Memo::new(move |_| {
        let status = job.with(|j| j.status);
        JobAction::ALL
            .into_iter()
            .filter(|action| action.allows(status))
            .collect::<Vec<_>>()
    });
    view! {
        <div class="job-actions">
            <For each=move || allowed.get() key=|action| *action let(action)>
                <form method="post" action=format!("/jobs/{id}/{action}") class="inline-form">
                    <input type="hidden" name="csrf" value=move || csrf.get()/>
                    <input type="hidden" name="back" value=move || back.get()/>
                    <button
                        type="submit"
                        class=format!("action action-{action}")
                        data-action=action.as_str()
                    >
                        {action.label()}
                    </button>
                </form>
            </For>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reeltime::{JobId, JobKind};
    use time::macros::datetime;

    fn job(status: JobStatus, options: serde_json::Value) -> Job {
        let at = datetime!(2026-12-01 12:00 UTC);
        Job {
            id: JobId(uuid::Uuid::nil()),
            input_url: "https://example.com/a.mp4".into(),
            kind: JobKind::Video,
            options,
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
            version: 1,
            created_by: None,
            retry_of: None,
        }
    }

    #[test]
    fn a_row_names_its_preset_or_says_the_options_are_custom() {
        let preset = Preset::DEFAULT;
        assert_eq!(
            preset_label(&job(JobStatus::Pending, preset.options())),
            preset.label()
        );
        assert_eq!(
            preset_label(&job(JobStatus::Pending, serde_json::json!({"width": 99}))),
            "video, custom options"
        );
    }

    #[test]
    fn a_processing_job_with_no_news_for_too_long_is_stalled() {
        let processing = job(JobStatus::Processing, serde_json::json!({}));
        let at = processing.updated_at;
        assert!(!is_stalled(
            &processing,
            at + time::Duration::seconds(600),
            600
        ));
        assert!(is_stalled(
            &processing,
            at + time::Duration::seconds(601),
            600
        ));
        let queued = job(JobStatus::Queued, serde_json::json!({}));
        assert!(!is_stalled(&queued, at + time::Duration::hours(5), 600));
    }
}
