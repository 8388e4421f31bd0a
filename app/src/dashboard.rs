//! The dashboard: the submit form and the latest jobs.

use leptos::ev::SubmitEvent;
use leptos::html;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_router::hooks::{use_location, use_query_map};
use reeltime::{
    format_bytes, format_duration_ms, is_linkable, relative_time, shorten_middle, FieldErrors, Job,
    JobKind, JobStatus, JobSubmission, Preset,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::actions::{is_stalled, preset_label, ActionForms, BulkBar, Selection};
use crate::api::{list_jobs, parse_filter, DashboardPage, SubmitJob, SubmitJobError};
use crate::filters::{dashboard_href, filter_part, FilterBar};
use crate::layout::{FlashMessage, LiveIndicator, SiteHeader};
use crate::live::LiveState;
use crate::session::use_session;
use crate::store::JobStore;
use crate::uploader::Uploader;

#[component]
pub fn Dashboard() -> impl IntoView {
    let query = use_query_map();
    let before = Memo::new(move |_| query.read().get("before"));
    // The filter as the URL says it (the server reads it and names what is wrong with it).
    let filter = Memo::new(move |_| query.with(filter_part));
    let submit = ServerAction::<SubmitJob>::new();
    let page = Resource::new(
        move || (before.get(), filter.get()),
        |(before, filter)| list_jobs(before, Some(filter)),
    );
    // Where an action's form comes back to: this very view.
    let location = use_location();
    let back =
        Signal::derive(move || format!("{}{}", location.pathname.get(), location.search.get()));
    let can_write = RwSignal::new(false);
    // The list on screen; set when the page loads, then kept current by live changes and by
    // the jobs this tab submits.
    let store = RwSignal::new(None::<JobStore>);
    let live = RwSignal::new(LiveState::Connecting);
    let session = use_session();
    // The session's CSRF token, for the forms that post without JavaScript.
    let csrf = RwSignal::new(String::new());
    Effect::new(move |_| {
        if let Some(Ok(job)) = submit.value().get() {
            if let Some(store) = store.get_untracked() {
                store.upsert(job);
            }
        }
    });

    // "3 min ago" keeps itself current in the browser.
    let now = RwSignal::new(OffsetDateTime::now_utc());
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || now.set(OffsetDateTime::now_utc()),
            std::time::Duration::from_secs(20),
        ) {
            on_cleanup(move || handle.clear());
        }
    });

    // Marks the page once the browser has taken it over (tests wait for this).
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));

    view! {
        <SiteHeader>
            <LiveIndicator live/>
        </SiteHeader>
        <main class="dashboard" data-hydrated=move || hydrated.get().to_string()>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let info = session.await.unwrap_or_default();
                    csrf.set(info.csrf.clone());
                    can_write.set(info.can_write());
                    let flash = info.flash.clone();
                    let uploads = info.uploads;
                    let form = info.can_write().then(|| view! { <SubmitForm submit csrf=info.csrf uploads/> });
                    view! { <FlashMessage flash/>{form} }
                })}
            </Suspense>
            <section class="jobs" aria-labelledby="jobs-heading">
                <h2 id="jobs-heading">"Jobs"</h2>
                <Transition fallback=|| view! { <p class="muted">"Loading jobs…"</p> }>
                    {move || Suspend::new(async move {
                        match page.await {
                            Ok(DashboardPage { page, sample_url, counts, stalled_after_secs }) => {
                                let paged = before.get_untracked().is_some();
                                let filter = parse_filter(&filter.get_untracked()).unwrap_or_default();
                                let jobs = JobStore::new(&page, paged, filter.clone());
                                store.set(Some(jobs));
                                let selection = Selection::new();
                                let rows = RowContext { now, csrf, can_write, back, stalled_after_secs, selection, store: jobs };
                                let matching = match filter.status {
                                    Some(status) => counts.iter().filter(|(s, _)| *s == status).map(|(_, n)| *n).sum(),
                                    None => counts.iter().map(|(_, n)| *n).sum::<i64>(),
                                };
                                let bulk_filter = filter.clone();
                                view! {
                                    <FilterBar filter=filter.clone() counts/>
                                    <Show when=move || can_write.get()>
                                        <BulkBar filter=bulk_filter.clone() matching selection csrf back/>
                                    </Show>
                                    <JobTable store=jobs next_before=page.next_before paged live submit sample_url filter rows/>
                                }.into_any()
                            }
                            Err(err) => view! {
                                <p class="alert" role="alert">{err.to_string()}</p>
                                <p><a href="/">"Show the newest jobs"</a></p>
                            }.into_any(),
                        }
                    })}
                </Transition>
            </section>
        </main>
    }
}

#[component]
fn SubmitForm(submit: ServerAction<SubmitJob>, csrf: String, uploads: bool) -> impl IntoView {
    let url_input = NodeRef::<html::Input>::new();
    let preset_select = NodeRef::<html::Select>::new();
    // Errors found in the browser before anything is sent.
    let local_errors = RwSignal::new(FieldErrors::default());

    // With JavaScript the form is submitted by the action (no page load); without it, the
    // browser posts it to the server function, which redirects back here.
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let (Some(url), Some(preset)) = (url_input.get(), preset_select.get()) else {
            return;
        };
        let submission = JobSubmission {
            input_url: url.value(),
            preset: Some(preset.value()),
            kind: None,
        };
        match submission.validate() {
            Err(errors) => local_errors.set(errors),
            Ok(_) => {
                local_errors.set(FieldErrors::default());
                submit.dispatch(SubmitJob {
                    input_url: submission.input_url,
                    preset: submission.preset,
                });
            }
        }
    };

    // Clear the form once the server has stored the job.
    Effect::new(move |_| {
        if let Some(Ok(_)) = submit.value().get() {
            if let Some(url) = url_input.get_untracked() {
                url.set_value("");
            }
        }
    });

    let server_error = move || submit.value().get().and_then(Result::err);
    let url_error = move || {
        local_errors
            .with(|e| e.get("input_url").map(str::to_owned))
            .or_else(|| server_error().and_then(|e| e.field("input_url")))
    };
    let preset_error = move || server_error().and_then(|e| e.field("preset"));
    let general_error = move || server_error().filter(|e| !matches!(e, SubmitJobError::Invalid(_)));

    view! {
        <form
            class="submit-form"
            method="post"
            action=SubmitJob::PATH
            novalidate
            on:submit=on_submit
        >
            <input type="hidden" name="csrf" value=csrf/>
            <div class="field">
                <label for="input_url">"Media URL"</label>
                <input
                    id="input_url"
                    name="input_url"
                    type="url"
                    inputmode="url"
                    autocomplete="off"
                    placeholder="https://example.com/video.mp4"
                    required
                    node_ref=url_input
                    aria-invalid=move || url_error().is_some().to_string()
                    aria-describedby="input_url-error"
                />
                <p id="input_url-error" class="field-error" role="alert">
                    {url_error}
                </p>
            </div>
            <div class="field">
                <label for="preset">"Preset"</label>
                <select id="preset" name="preset" node_ref=preset_select>
                    {Preset::ALL
                        .into_iter()
                        .map(|preset| view! { <option value=preset.id()>{preset.label()}</option> })
                        .collect_view()}
                </select>
                <p class="field-error" role="alert">{preset_error}</p>
            </div>
            <button type="submit" disabled=move || submit.pending().get()>
                {move || if submit.pending().get() { "Submitting…" } else { "Process" }}
            </button>
            {uploads.then(|| view! { <Uploader submit preset=preset_select/> })}
            <p class="alert" role="alert">{move || general_error().map(|e| e.to_string())}</p>
        </form>
    }
}

/// What every row needs from the page.
#[derive(Clone, Copy)]
struct RowContext {
    now: RwSignal<OffsetDateTime>,
    csrf: RwSignal<String>,
    can_write: RwSignal<bool>,
    back: Signal<String>,
    stalled_after_secs: u64,
    selection: Selection,
    store: JobStore,
}

#[component]
#[allow(clippy::too_many_arguments)]
fn JobTable(
    store: JobStore,
    next_before: Option<String>,
    paged: bool,
    live: RwSignal<LiveState>,
    submit: ServerAction<SubmitJob>,
    sample_url: Option<String>,
    filter: reeltime::JobFilter,
    rows: RowContext,
) -> impl IntoView {
    let csrf = rows.csrf;
    // In the browser: follow the change feed from the position the page was read at.
    #[cfg(feature = "hydrate")]
    {
        let connection = crate::live::connect(store, live);
        let connection = send_wrapper::SendWrapper::new(connection);
        on_cleanup(move || drop(connection));
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = live;

    let older = next_before.map(|cursor| {
        let href = dashboard_href(&filter, &format!("before={cursor}"));
        view! { <a class="older" rel="next" href=href>"Older jobs →"</a> }
    });
    let newest = paged.then(|| {
        view! { <a class="newest" href=dashboard_href(&filter, "")>"← Newest jobs"</a> }
    });
    let empty_message = if paged {
        "No older jobs."
    } else if !filter.is_empty() {
        "No jobs match these filters."
    } else {
        "No jobs yet. Paste the URL of a video above and press Process."
    };
    // A first-time visitor with no media at hand can watch a real job run on the sample clip.
    let sample = sample_url.filter(|_| !paged).map(|url| {
        let preset = Preset::DEFAULT.id();
        let on_submit = {
            let url = url.clone();
            move |ev: SubmitEvent| {
                ev.prevent_default();
                submit.dispatch(SubmitJob {
                    input_url: url.clone(),
                    preset: Some(preset.to_owned()),
                });
            }
        };
        view! {
            <form class="sample-form" method="post" action=SubmitJob::PATH on:submit=on_submit>
                <input type="hidden" name="csrf" value=move || csrf.get()/>
                <input type="hidden" name="input_url" value=url/>
                <input type="hidden" name="preset" value=preset/>
                <button type="submit" class="secondary" disabled=move || submit.pending().get()>
                    "Try a sample clip"
                </button>
                <span class="muted">" 10 s of test pattern at 1080p, made 1280 wide"</span>
            </form>
        }
    });
    view! {
        <div class="empty-state" hidden=move || !store.is_empty()>
            <p>{empty_message}</p>
            {sample}
        </div>
        <table class="job-table" hidden=move || store.is_empty()>
            <thead>
                <tr>
                    <th scope="col" class="select-column" hidden=move || !rows.can_write.get()>
                        <span class="visually-hidden">"Select"</span>
                    </th>
                    <th scope="col">"Input"</th>
                    <th scope="col">"Status"</th>
                    <th scope="col">"Created"</th>
                    <th scope="col">"Output"</th>
                    <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                </tr>
            </thead>
            <tbody>
                <For each=move || store.rows() key=|(id, _)| *id let((_, job))>
                    <JobRow job rows/>
                </For>
            </tbody>
        </table>
        <nav class="pager">{newest}{older}</nav>
    }
}

#[component]
fn JobRow(job: RwSignal<Job>, rows: RowContext) -> impl IntoView {
    let RowContext {
        now,
        csrf,
        can_write,
        back,
        stalled_after_secs,
        selection,
        store,
    } = rows;
    let (id, input_url, created) =
        job.with_untracked(|j| (j.id, j.input_url.clone(), j.created_at));
    let status = move || job.with(|j| j.status.as_str());
    let created_iso = created.format(&Rfc3339).unwrap_or_default();
    let short = shorten_middle(&input_url, 64);
    let input = if is_linkable(&input_url) {
        view! {
            <a href=input_url.clone() title=input_url.clone() rel="noopener noreferrer nofollow" target="_blank">
                {short}
            </a>
        }
        .into_any()
    } else {
        view! { <span title=input_url.clone()>{short}</span> }.into_any()
    };
    // Only what the output cell shows, so progress updates do not rebuild a player.
    let output = Memo::new(move |_| job.with(OutputView::of));
    let error = move || job.with(|j| j.error.clone());
    let preset = job.with_untracked(preset_label);
    let stalled = move || job.with(|j| is_stalled(j, now.get(), stalled_after_secs));
    view! {
        <tr class="job" data-job-id=id.to_string() data-status=status>
            <td class="job-select" hidden=move || !can_write.get()>
                <input
                    type="checkbox"
                    name="ids"
                    value=id.to_string()
                    form="bulk"
                    aria-label="Select this job"
                    prop:checked=move || selection.ids.with(|ids| ids.contains(&id))
                    on:click=move |ev| selection.toggle(id, ev.shift_key(), &store)
                />
            </td>
            <td class="job-input">
                {input}
                <p class="job-preset">{preset}</p>
                <p class="job-error" hidden=move || error().is_none()>{error}</p>
            </td>
            <td class="job-status">
                <span class=move || format!("badge badge-{}", status())>{status}</span>
                <span
                    class="stalled-flag"
                    hidden=move || !stalled()
                    title=format!("No news from the processor for over {} minutes", stalled_after_secs / 60)
                >
                    "stalled"
                </span>
                <progress
                    class="job-progress"
                    max="100"
                    value=move || job.with(|j| j.progress.unwrap_or(0).clamp(0, 100))
                    hidden=move || job.with(|j| j.status != JobStatus::Processing || j.progress.is_none())
                >
                    {move || job.with(|j| format!("{}%", j.progress.unwrap_or(0)))}
                </progress>
            </td>
            <td>
                <time datetime=created_iso.clone() title=created_iso>
                    {move || relative_time(created, now.get())}
                </time>
            </td>
            <td class="job-output">
                {move || match output.get() {
                    Some(out) => out.view().into_any(),
                    None => view! { <span class="muted">"—"</span> }.into_any(),
                }}
            </td>
            <td class="job-controls">
                <a class="job-details" href=format!("/jobs/{id}")>"Details"</a>
                <Show when=move || can_write.get()>
                    <ActionForms job csrf back/>
                </Show>
            </td>
        </tr>
    }
}

/// A finished job's output as the row shows it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OutputView {
    url: String,
    kind: JobKind,
    facts: Vec<String>,
}

impl OutputView {
    /// The output of a succeeded job with a linkable URL.
    pub(crate) fn of(job: &Job) -> Option<OutputView> {
        let url = job
            .output_url
            .clone()
            .filter(|url| job.status == JobStatus::Succeeded && is_linkable(url))?;
        let mut facts = Vec::new();
        if let (Some(w), Some(h)) = (job.output_width, job.output_height) {
            facts.push(format!("{w}×{h}"));
        }
        if let Some(ms) = job
            .output_duration_ms
            .filter(|_| job.kind != JobKind::Image)
        {
            facts.push(format_duration_ms(ms.max(0).unsigned_abs()));
        }
        if let Some(bytes) = job.output_size {
            facts.push(format_bytes(bytes.max(0).unsigned_abs()));
        }
        Some(OutputView {
            url,
            kind: job.kind,
            facts,
        })
    }

    pub(crate) fn view(self) -> impl IntoView {
        let OutputView { url, kind, facts } = self;
        let preview = match kind {
            JobKind::Video | JobKind::AdaptiveVideo => view! {
                <video class="preview" src=url.clone() controls preload="metadata" playsinline></video>
            }
            .into_any(),
            JobKind::Audio => {
                view! { <audio class="preview" src=url.clone() controls preload="metadata"></audio> }
                    .into_any()
            }
            JobKind::Image | JobKind::Animation => {
                view! { <img class="preview" src=url.clone() alt="The output" loading="lazy"/> }
                    .into_any()
            }
        };
        view! {
            {preview}
            <p class="output-meta">
                <a class="output-link" href=url rel="noopener noreferrer" target="_blank" download>
                    "Download"
                </a>
                <span class="output-facts">{facts.join(" · ")}</span>
            </p>
        }
    }
}
