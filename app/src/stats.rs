//! The Stats page (`/stats`, for viewers and up): jobs per minute over the last hour and the
//! last day as bar charts, queue wait and run time p50/p95, the failure rate, bytes in and out
//! and the space saved, and the jobs in flight.
//!
//! The figures are SQL aggregates (`db::stats`); the charts are SVG drawn here, on the server
//! for the first HTML and in the browser after that (no chart library, nothing from a CDN).
//! Live: the browser follows `/api/events` and re-reads the figures after a change, at most
//! once every [`THROTTLE_MS`] however busy the feed is, and once a minute anyway so the
//! windows move on.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::layout::SiteHeader;

/// Re-read the figures at most this often while changes arrive.
pub const THROTTLE_MS: u64 = 2_000;

/// A chart: bars oldest first, and what one bar spans.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub title: String,
    /// Jobs per minute in each bar.
    pub per_minute: Vec<f64>,
    pub bar_label: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsData {
    pub hour: Series,
    pub day: Series,
    pub finished: i64,
    pub failed: i64,
    pub wait_p50: Option<f64>,
    pub wait_p95: Option<f64>,
    pub run_p50: Option<f64>,
    pub run_p95: Option<f64>,
    pub bytes_out: i64,
    /// `None`: no finished job's input size is known (Ittybit does not report it).
    pub bytes_in: Option<i64>,
    /// Input minus output bytes of the succeeded jobs that know both, and their input bytes.
    pub saved: Option<i64>,
    pub saved_of: Option<i64>,
    pub waiting: i64,
    pub processing: i64,
    /// The processes running the built-in processor's workers.
    pub workers: Vec<Worker>,
}

/// A process that runs the built-in processor's workers (`reeltime serve` or `reeltime worker`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Worker {
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub slots: i32,
    pub busy: i32,
    pub up_secs: i64,
    pub silent_secs: i64,
}

/// A worker not heard from for this long (three missed beats) is shown as silent.
pub const SILENT_AFTER_SECS: i64 = 15;

/// Lay grouped rows onto `count` buckets of `bucket_secs` ending at `now`, as jobs per minute.
pub fn per_minute(rows: &[(i64, i64)], now: i64, count: usize, bucket_secs: i64) -> Vec<f64> {
    let last = now.div_euclid(bucket_secs) * bucket_secs;
    let first = last - (count as i64 - 1) * bucket_secs;
    let mut bars = vec![0.0; count];
    for &(bucket, jobs) in rows {
        if bucket >= first && bucket <= last {
            let at = ((bucket - first) / bucket_secs) as usize;
            bars[at] += jobs as f64 * 60.0 / bucket_secs as f64;
        }
    }
    bars
}

#[server(prefix = "/api/fn", endpoint = "stats")]
pub async fn stats() -> Result<StatsData, ServerFnError> {
    use crate::db::stats as db;
    let pool = use_context::<sqlx::PgPool>().ok_or_else(|| ServerFnError::new("unavailable"))?;
    let failed = |err: sqlx::Error| {
        tracing::error!(error = %err, "reading the stats failed");
        ServerFnError::new("The figures could not be read right now.")
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let hour = db::created_per_bucket(&pool, 1, 60).await.map_err(failed)?;
    let day = db::created_per_bucket(&pool, 24, 900)
        .await
        .map_err(failed)?;
    let finished = db::finished_last_day(&pool).await.map_err(failed)?;
    let (waiting, processing) = db::in_flight(&pool).await.map_err(failed)?;
    let workers = db::workers(&pool).await.map_err(failed)?;
    Ok(StatsData {
        hour: Series {
            title: "Jobs per minute, last hour".into(),
            per_minute: per_minute(&hour, now, 60, 60),
            bar_label: "minute".into(),
        },
        day: Series {
            title: "Jobs per minute, last day (15-minute averages)".into(),
            per_minute: per_minute(&day, now, 96, 900),
            bar_label: "15 minutes".into(),
        },
        finished: finished.finished,
        failed: finished.failed,
        wait_p50: finished.wait_p50,
        wait_p95: finished.wait_p95,
        run_p50: finished.run_p50,
        run_p95: finished.run_p95,
        bytes_out: finished.bytes_out,
        bytes_in: finished.bytes_in,
        saved: finished.saved,
        saved_of: finished.saved_of,
        waiting,
        processing,
        workers: workers
            .into_iter()
            .map(|w| Worker {
                host: w.host,
                pid: w.pid,
                version: w.version,
                slots: w.slots,
                busy: w.busy,
                up_secs: w.up_secs,
                silent_secs: w.silent_secs,
            })
            .collect(),
    })
}

/// `1.2 s`, `3 min 4 s`, `—` when nothing was measured.
pub fn seconds(value: Option<f64>) -> String {
    match value {
        None => "—".into(),
        Some(s) if s < 60.0 => format!("{s:.1} s"),
        Some(s) if s < 3600.0 => format!("{} min {} s", (s / 60.0) as u64, (s % 60.0) as u64),
        Some(s) => format!(
            "{} h {} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        ),
    }
}

/// `0 B`, `12.3 MB`, … (powers of 1000, as file managers show them).
pub fn bytes(value: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = value.max(0) as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < units.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", units[0])
    } else {
        format!("{v:.1} {}", units[unit])
    }
}

/// `1.2 MB (40.0 %)`: the bytes saved and their share of the input; `—` when unknown. A
/// negative saving (outputs larger than their inputs) reads as such: `−1.2 MB (−40.0 %)`.
pub fn saved(saved: Option<i64>, of: Option<i64>) -> String {
    let Some(saved) = saved else {
        return "—".into();
    };
    let sign = if saved < 0 { "−" } else { "" };
    let amount = format!("{sign}{}", bytes(saved.saturating_abs()));
    match of.filter(|&of| of > 0) {
        Some(of) => format!(
            "{amount} ({sign}{:.1} %)",
            saved.unsigned_abs() as f64 * 100.0 / of as f64
        ),
        None => amount,
    }
}

/// A bar chart of `series` as SVG: one bar per bucket, scaled to the largest, each with a
/// tooltip; the scale's top written beside it.
#[component]
fn Chart(series: Series) -> impl IntoView {
    const W: f64 = 600.0;
    const H: f64 = 120.0;
    let max = series.per_minute.iter().cloned().fold(0.0, f64::max);
    let n = series.per_minute.len().max(1) as f64;
    let step = W / n;
    let bars = series
        .per_minute
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let h = if max > 0.0 { v / max * (H - 4.0) } else { 0.0 };
            let ago = series.per_minute.len() - 1 - i;
            let tip = format!("{v:.2} jobs/min, {ago} × {} ago", series.bar_label);
            view! {
                <rect x=format!("{:.1}", i as f64 * step) y=format!("{:.1}", H - h)
                    width=format!("{:.1}", (step - 1.0).max(0.5)) height=format!("{h:.1}")>
                    <title>{tip}</title>
                </rect>
            }
        })
        .collect_view();
    let label = series.title.clone();
    view! {
        <figure class="chart">
            <figcaption>{series.title.clone()}<span class="muted">" (top: "{format!("{max:.1}")}" /min)"</span></figcaption>
            <svg viewBox=format!("0 0 {W} {H}") preserveAspectRatio="none" role="img" aria-label=label>
                <line x1="0" y1=H.to_string() x2=W.to_string() y2=H.to_string() class="axis"/>
                {bars}
            </svg>
        </figure>
    }
}

#[component]
fn Figures(stats: StatsData) -> impl IntoView {
    let rate = if stats.finished > 0 {
        format!(
            "{:.1} %",
            stats.failed as f64 * 100.0 / stats.finished as f64
        )
    } else {
        "—".into()
    };
    view! {
        <dl class="figures">
            <div><dt>"Queue wait p50 / p95"</dt><dd>{seconds(stats.wait_p50)}" / "{seconds(stats.wait_p95)}</dd></div>
            <div><dt>"Run time p50 / p95"</dt><dd>{seconds(stats.run_p50)}" / "{seconds(stats.run_p95)}</dd></div>
            <div><dt>"Failure rate"</dt><dd>{rate}<span class="muted">" of "{stats.finished}" finished"</span></dd></div>
            <div><dt>"Bytes in"</dt><dd>{stats.bytes_in.map_or_else(|| "—".into(), bytes)}</dd></div>
            <div><dt>"Bytes out"</dt><dd>{bytes(stats.bytes_out)}</dd></div>
            <div><dt>"Space saved"</dt><dd>{saved(stats.saved, stats.saved_of)}</dd></div>
            <div><dt>"Processing now"</dt><dd class="busy">{stats.processing}</dd></div>
            <div><dt>"Waiting"</dt><dd>{stats.waiting}</dd></div>
        </dl>
        <p class="muted">"Waits, run times, failures and bytes: jobs finished in the last 24 hours; bytes in where the processor reports the input's size, space saved over the succeeded jobs that know both sizes."</p>
        <Chart series=stats.hour/>
        <Chart series=stats.day/>
        <Workers workers=stats.workers/>
    }
}

/// The processes running workers: host and pid, how busy, how long up, when last heard from.
#[component]
fn Workers(workers: Vec<Worker>) -> impl IntoView {
    if workers.is_empty() {
        return view! {
            <section class="workers">
                <h2>"Workers"</h2>
                <p class="muted">"No built-in processor workers are running. Jobs go to Ittybit, or wait for a worker (reeltime worker)."</p>
            </section>
        }
        .into_any();
    }
    let rows = workers
        .into_iter()
        .map(|w| {
            let heard = if w.silent_secs < SILENT_AFTER_SECS {
                "now".to_owned()
            } else {
                format!("not heard from for {}", seconds(Some(w.silent_secs as f64)))
            };
            let class = (w.silent_secs >= SILENT_AFTER_SECS).then_some("silent");
            view! {
                <tr class=class>
                    <td>{w.host}<span class="muted">{format!(" (pid {})", w.pid)}</span></td>
                    <td>{format!("{} of {}", w.busy, w.slots)}</td>
                    <td>{seconds(Some(w.up_secs as f64))}</td>
                    <td>{heard}</td>
                    <td>{w.version}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="workers">
            <h2>"Workers"</h2>
            <table>
                <thead><tr><th>"Host"</th><th>"Busy"</th><th>"Up"</th><th>"Last heard"</th><th>"Version"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
    .into_any()
}

#[component]
pub fn StatsPage() -> impl IntoView {
    let figures = Resource::new(|| (), |_| stats());
    follow_feed(figures);
    // Effects run only in the browser: set once hydrated (the browser tests wait for it).
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    view! {
        <SiteHeader/>
        <main class="stats" data-hydrated=move || hydrated.get().to_string()>
            <h1>"Stats"</h1>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match figures.await {
                        Ok(stats) => view! { <Figures stats/> }.into_any(),
                        Err(err) => view! { <p class="alert" role="alert">{err.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

/// In the browser: re-read the figures after changes (throttled) and every minute.
#[cfg(feature = "hydrate")]
fn follow_feed(figures: Resource<Result<StatsData, ServerFnError>>) {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    use web_sys::EventSource;

    let Ok(source) = EventSource::new("/api/events") else {
        return;
    };
    let waiting = Rc::new(Cell::new(false));
    let on_change = {
        let waiting = waiting.clone();
        Closure::<dyn FnMut()>::new(move || {
            if waiting.replace(true) {
                return;
            }
            let waiting = waiting.clone();
            set_timeout(
                move || {
                    waiting.set(false);
                    figures.refetch();
                },
                Duration::from_millis(THROTTLE_MS),
            );
        })
    };
    for kind in ["insert", "update", "delete", "reset"] {
        let _ = source.add_event_listener_with_callback(kind, on_change.as_ref().unchecked_ref());
    }
    on_change.forget();
    let ticker = set_interval_with_handle(move || figures.refetch(), Duration::from_secs(60)).ok();
    let source = send_wrapper::SendWrapper::new(source);
    on_cleanup(move || {
        source.close();
        if let Some(ticker) = ticker {
            ticker.clear();
        }
    });
}

#[cfg(not(feature = "hydrate"))]
fn follow_feed(_: Resource<Result<StatsData, ServerFnError>>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_land_in_their_buckets_as_jobs_per_minute() {
        let now = 10_000 * 60 + 30;
        let rows = [(10_000 * 60, 3), (9_999 * 60, 1), (9_000 * 60, 50)];
        let bars = per_minute(&rows, now, 60, 60);
        assert_eq!(bars.len(), 60);
        assert_eq!(bars[59], 3.0);
        assert_eq!(bars[58], 1.0);
        assert_eq!(
            bars.iter().sum::<f64>(),
            4.0,
            "the old row is outside the hour"
        );
        let quarter = per_minute(&[(600_300, 30)], 600_300 + 10, 4, 900);
        assert_eq!(quarter[3], 2.0);
    }

    #[test]
    fn figures_read_like_people_write_them() {
        assert_eq!(seconds(None), "—");
        assert_eq!(seconds(Some(1.25)), "1.2 s");
        assert_eq!(seconds(Some(125.0)), "2 min 5 s");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(12_345_678), "12.3 MB");
        assert_eq!(saved(None, None), "—");
        assert_eq!(saved(Some(600_000), Some(1_000_000)), "600.0 kB (60.0 %)");
        assert_eq!(saved(Some(-500), Some(1_000)), "−500 B (−50.0 %)");
        assert_eq!(saved(Some(0), Some(0)), "0 B");
    }
}
