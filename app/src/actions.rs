//! What a job's row and page offer an operator (issue 12): the actions its status allows, each
//! a small form that posts without JavaScript and comes back with a message; the preset it was
//! made with; and a "stalled" badge for a job processing with no news for too long.

use std::collections::HashSet;

use leptos::prelude::*;
use reeltime::{Job, JobAction, JobFilter, JobId, JobStatus, Preset};
use time::OffsetDateTime;

use crate::store::JobStore;

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

/// The jobs ticked for a bulk action, and the last one ticked (for shift-click ranges).
#[derive(Clone, Copy)]
pub struct Selection {
    pub ids: RwSignal<HashSet<JobId>>,
    last: StoredValue<Option<JobId>>,
}

impl Selection {
    pub fn new() -> Selection {
        Selection {
            ids: RwSignal::new(HashSet::new()),
            last: StoredValue::new(None),
        }
    }

    /// Tick or untick `id`; with shift held, every row between the last ticked one and this
    /// one (in the order shown) takes its new state too.
    pub fn toggle(&self, id: JobId, shift: bool, store: &JobStore) {
        let on = !self.ids.with_untracked(|ids| ids.contains(&id));
        let mut range = vec![id];
        if let (true, Some(last)) = (shift, self.last.get_value()) {
            let order: Vec<JobId> = store.rows().into_iter().map(|(id, _)| id).collect();
            if let (Some(a), Some(b)) = (
                order.iter().position(|x| *x == last),
                order.iter().position(|x| *x == id),
            ) {
                range = order[a.min(b)..=a.max(b)].to_vec();
            }
        }
        self.ids.update(|ids| {
            for id in range {
                if on {
                    ids.insert(id);
                } else {
                    ids.remove(&id);
                }
            }
        });
        self.last.set_value(Some(id));
    }
}

/// The bulk bar: an action applied to the ticked jobs or to every job the filter lets
/// through (`matching` of them), after a confirmation with the count. A plain form (the
/// ticks are its `ids` through `form="bulk"`), so it works without JavaScript too.
#[component]
pub fn BulkBar(
    filter: JobFilter,
    matching: i64,
    selection: Selection,
    csrf: RwSignal<String>,
    back: Signal<String>,
) -> impl IntoView {
    let action = RwSignal::new(JobAction::Cancel);
    let filter_fields = filter
        .to_pairs()
        .into_iter()
        .map(|(key, value)| view! { <input type="hidden" name=key value=value/> })
        .collect_view();
    let selected = move || selection.ids.with(HashSet::len);
    // With JavaScript, nothing runs without the person confirming the count.
    let confirm = move |count: usize| {
        move |_ev: leptos::ev::MouseEvent| {
            #[cfg(feature = "hydrate")]
            {
                if count == 0 {
                    // Nothing ticked: nothing to send.
                    _ev.prevent_default();
                    return;
                }
                let verb = action.get_untracked().label();
                let question = format!("{verb} {count} job(s)? Jobs whose status does not allow it are left as they are.");
                let yes = web_sys::window()
                    .and_then(|w| w.confirm_with_message(&question).ok())
                    .unwrap_or(false);
                if !yes {
                    _ev.prevent_default();
                }
            }
            #[cfg(not(feature = "hydrate"))]
            let _ = (count, action);
        }
    };
    view! {
        <form id="bulk" class="bulk-bar" method="post" action="/jobs/bulk">
            <input type="hidden" name="csrf" value=move || csrf.get()/>
            <input type="hidden" name="back" value=move || back.get()/>
            {filter_fields}
            <label>
                <span class="visually-hidden">"Action"</span>
                <select
                    name="action"
                    on:change=move |ev| {
                        if let Ok(chosen) = event_target_value(&ev).parse::<JobAction>() {
                            action.set(chosen);
                        }
                    }
                >
                    {JobAction::ALL
                        .into_iter()
                        .map(|a| view! { <option value=a.as_str()>{a.label()}</option> })
                        .collect_view()}
                </select>
            </label>
            <button
                type="submit"
                name="scope"
                value="selected"
                class="secondary"
                on:click=move |ev| confirm(selected())(ev)
            >
                {move || match selected() {
                    0 => "Apply to selected".to_owned(),
                    n => format!("Apply to {n} selected"),
                }}
            </button>
            <button
                type="submit"
                name="scope"
                value="all"
                class="secondary"
                disabled=matching == 0
                on:click=confirm(usize::try_from(matching).unwrap_or(usize::MAX))
            >
                {format!("Apply to all {matching} matching")}
            </button>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: JobStatus, options: serde_json::Value) -> Job {
        Job {
            options,
            ..crate::store::tests::job(0, 1, status)
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
