//! A job's page, `/jobs/{id}` (issue 12): everything known about one job, the actions its
//! status allows, and its story, newest last (who or what did each step, kept in
//! `job_events` beyond the change log's retention). It follows the change feed like the
//! dashboard: the status, progress and output change in place, and the story is read again
//! when the job changes.

use leptos::prelude::*;
use leptos_router::hooks::{use_location, use_params_map};
use reeltime::{is_linkable, relative_time, JobEvent, JobStatus};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::actions::{is_stalled, preset_label, ActionForms};
use crate::api::{job_detail, JobFile};
use crate::dashboard::OutputView;
use crate::layout::{FlashMessage, LiveIndicator, SiteHeader};
use crate::live::LiveState;
use crate::session::use_session;
use crate::store::JobStore;

#[component]
pub fn JobPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let file = Resource::new(move || id.get(), job_detail);
    let session = use_session();
    let csrf = RwSignal::new(String::new());
    let can_write = RwSignal::new(false);
    let live = RwSignal::new(LiveState::Connecting);
    let location = use_location();
    let back = Signal::derive(move || location.pathname.get());
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    view! {
        <SiteHeader>
            <LiveIndicator live/>
        </SiteHeader>
        <main class="job-page" data-hydrated=move || hydrated.get().to_string()>
            <p class="breadcrumb"><a href="/">"← All jobs"</a></p>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let info = session.await.unwrap_or_default();
                    csrf.set(info.csrf.clone());
                    can_write.set(info.can_write());
                    view! { <FlashMessage flash=info.flash.clone()/> }
                })}
            </Suspense>
            <Transition fallback=|| view! { <p class="muted">"Loading the job…"</p> }>
                {move || Suspend::new(async move {
                    match file.await {
                        Ok(Some(file)) => view! {
                            <JobFileView file csrf can_write back live/>
                        }.into_any(),
                        Ok(None) => {
                            #[cfg(feature = "ssr")]
                            if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                                response.set_status(http::StatusCode::NOT_FOUND);
                            }
                            view! {
                                <h1>"No such job"</h1>
                                <p>"It may have been deleted. " <a href="/">"Back to the jobs"</a></p>
                            }.into_any()
                        }
                        Err(err) => view! { <p class="alert" role="alert">{err.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

#[component]
fn JobFileView(
    file: JobFile,
    csrf: RwSignal<String>,
    can_write: RwSignal<bool>,
    back: Signal<String>,
    live: RwSignal<LiveState>,
) -> impl IntoView {
    let JobFile {
        job,
        story,
        retried_as,
        deliveries,
        details,
        stalled_after_secs,
        position,
    } = file;
    let id = job.id;
    let store = JobStore::single(&job, position);
    let row = store.row(id).unwrap_or_else(|| RwSignal::new(job.clone()));
    let story = RwSignal::new(story);
    let retried_as = RwSignal::new(retried_as);
    let deliveries = RwSignal::new(deliveries);
    let details = RwSignal::new(details);
    let now = RwSignal::new(OffsetDateTime::now_utc());
    #[cfg(feature = "hydrate")]
    {
        let connection = crate::live::connect(store, live);
        let connection = send_wrapper::SendWrapper::new(connection);
        on_cleanup(move || drop(connection));
        // The story is read again whenever the job, or a job retrying it, changes.
        let version = Memo::new(move |_| (row.with(|j| j.version), store.related()));
        Effect::new(move |seen: Option<(i64, u64)>| {
            let current = version.get();
            if seen.is_some_and(|seen| seen != current) {
                leptos::task::spawn_local(async move {
                    if let Ok(Some(file)) = job_detail(id.to_string()).await {
                        story.set(file.story);
                        retried_as.set(file.retried_as);
                        deliveries.set(file.deliveries);
                        details.set(file.details);
                    }
                });
            }
            current
        });
        if let Ok(handle) = set_interval_with_handle(
            move || now.set(OffsetDateTime::now_utc()),
            std::time::Duration::from_secs(20),
        ) {
            on_cleanup(move || handle.clear());
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = live;

    let status = move || row.with(|j| j.status.as_str());
    let stalled = move || row.with(|j| is_stalled(j, now.get(), stalled_after_secs));
    let output = Memo::new(move |_| row.with(OutputView::of));
    let created = job.created_at;
    let created_iso = created.format(&Rfc3339).unwrap_or_default();
    let input = if is_linkable(&job.input_url) {
        view! {
            <a href=job.input_url.clone() rel="noopener noreferrer nofollow" target="_blank">
                {job.input_url.clone()}
            </a>
        }
        .into_any()
    } else {
        view! { <span>{job.input_url.clone()}</span> }.into_any()
    };
    let options = serde_json::to_string(&job.options).unwrap_or_default();
    let retry_of = job.retry_of.map(|original| {
        view! {
            <dt>"Retry of"</dt>
            <dd><a href=format!("/jobs/{original}")>{original.to_string()}</a></dd>
        }
    });
    view! {
        <h1 class="job-title">"Job " <code>{id.to_string()}</code></h1>
        <p class="job-deleted alert" role="status" hidden=move || !store.is_empty()>
            "This job has been deleted."
        </p>
        <div class="job-summary" data-job-id=id.to_string() data-status=status>
            <p class="job-state">
                <span class=move || format!("badge badge-{}", status())>{status}</span>
                <span class="stalled-flag" hidden=move || !stalled()>"stalled"</span>
                <progress
                    class="job-progress"
                    max="100"
                    value=move || row.with(|j| j.progress.unwrap_or(0).clamp(0, 100))
                    hidden=move || row.with(|j| j.status != JobStatus::Processing || j.progress.is_none())
                >
                    {move || row.with(|j| format!("{}%", j.progress.unwrap_or(0)))}
                </progress>
            </p>
            <Show when=move || can_write.get() && !store.is_empty()>
                <ActionForms job=row csrf back/>
            </Show>
            <p class="job-error" hidden=move || row.with(|j| j.error.is_none())>
                {move || row.with(|j| j.error.clone())}
            </p>
            <div class="job-output">
                {move || output.get().map(|out| out.view())}
            </div>
        </div>
        <dl class="job-facts">
            <dt>"Input"</dt>
            <dd class="job-input">{input}</dd>
            <dt>"Preset"</dt>
            <dd>{preset_label(&job)}</dd>
            <dt>"Options"</dt>
            <dd><code>{options}</code></dd>
            <dt>"Created"</dt>
            <dd>
                <time datetime=created_iso.clone() title=created_iso>
                    {move || relative_time(created, now.get())}
                </time>
            </dd>
            <dt>"Processor's id"</dt>
            <dd>{move || row.with(|j| j.task_id.clone()).unwrap_or_else(|| "—".to_owned())}</dd>
            {retry_of}
            <Show when=move || retried_as.with(|r| !r.is_empty())>
                <dt>"Retried as"</dt>
                <dd>
                    {move || retried_as.get().into_iter().map(|retry| view! {
                        <a class="retried-as" href=format!("/jobs/{retry}")>{retry.to_string()}</a>
                    }).collect_view()}
                </dd>
            </Show>
        </dl>
        <h2>"History"</h2>
        <ol class="story">
            {move || story.get().into_iter().map(|event| view! { <StoryEntry event/> }).collect_view()}
        </ol>
        <Show when=move || details.with(Option::is_some)>
            <h2>"How it was done"</h2>
            {move || details.get().map(|details| view! { <TechnicalDetails details/> })}
        </Show>
        <h2>"Webhook deliveries"</h2>
        <p class="muted" hidden=move || deliveries.with(|d| !d.is_empty())>"None yet."</p>
        <ol class="deliveries">
            {move || deliveries.get().into_iter().map(|delivery| view! { <DeliveryEntry delivery/> }).collect_view()}
        </ol>
    }
}

#[component]
fn DeliveryEntry(delivery: reeltime::Delivery) -> impl IntoView {
    let at = delivery.received_at.format(&Rfc3339).unwrap_or_default();
    let shown = at.clone();
    let verified = if delivery.signature_ok {
        "verified"
    } else {
        "not verified"
    };
    let status = delivery.status.clone().unwrap_or_else(|| "—".to_owned());
    view! {
        <li class="delivery" data-outcome=delivery.outcome.clone()>
            <time datetime=at>{shown}</time>
            " "
            <span>{format!("{verified}, reported {status}: {}", delivery.outcome)}</span>
            {delivery.body.map(|body| view! {
                <details><summary>"Body"</summary><pre class="delivery-body">{body}</pre></details>
            })}
        </li>
    }
}

#[component]
fn StoryEntry(event: JobEvent) -> impl IntoView {
    let at = event.at.format(&Rfc3339).unwrap_or_default();
    let shown = event
        .at
        .to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_default();
    let technical = event.technical().map(str::to_owned).map(|technical| {
        view! {
            <details class="technical-detail">
                <summary>"Technical detail"</summary>
                <pre>{technical}</pre>
            </details>
        }
    });
    view! {
        <li class="story-entry" data-kind=event.kind.clone()>
            <time datetime=at>{shown}</time>
            " "
            <span>{event.describe()}</span>
            {technical}
        </li>
    }
}

/// The processor's account of the work: its command, the input's and output's facts, the end
/// of its stderr when it failed (or the network's own words when the input could not be
/// downloaded), and the service's last answer when the reconciler read the
/// job back (Ittybit's own job object).
#[component]
fn TechnicalDetails(details: serde_json::Value) -> impl IntoView {
    let text = |key: &str| details.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let facts = |key: &str| {
        details.get(key).and_then(|v| v.as_object()).map(|object| {
            object
                .iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(name, value)| format!("{name}: {value}"))
                .collect::<Vec<_>>()
                .join(" · ")
        })
    };
    let command = text("command").map(|command| {
        view! { <dt>"Command"</dt><dd><pre class="job-command">{command}</pre></dd> }
    });
    let input = facts("input").map(|facts| view! { <dt>"Input"</dt><dd>{facts}</dd> });
    let output = facts("output").map(|facts| view! { <dt>"Output"</dt><dd>{facts}</dd> });
    let answer = details
        .get("last_answer")
        .filter(|answer| !answer.is_null())
        .map(|answer| serde_json::to_string_pretty(answer).unwrap_or_default())
        .map(|answer| {
            view! {
                <dt>"Last read back"</dt>
                <dd><pre class="job-command">{answer}</pre></dd>
            }
        });
    let failure = text("failure").filter(|s| !s.is_empty()).map(|failure| {
        view! {
            <dt>"Why it failed"</dt>
            <dd><pre class="job-failure">{failure}</pre></dd>
        }
    });
    let stderr = text("stderr").filter(|s| !s.is_empty()).map(|stderr| {
        view! {
            <dt>"ffmpeg said"</dt>
            <dd><pre class="job-stderr">{stderr}</pre></dd>
        }
    });
    view! { <dl class="job-facts technical">{command}{input}{output}{failure}{stderr}{answer}</dl> }
}
