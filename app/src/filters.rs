//! The dashboard's filters (issue 12): status tabs with their counts, and a form for kind,
//! preset, text and dates. Both are plain links and a GET form, so they work without
//! JavaScript, and the filter lives in the page's URL (bookmarkable, shareable, reloadable,
//! back and forward work).

use leptos::prelude::*;
use leptos_router::params::ParamsMap;
use reeltime::{JobFilter, JobKind, JobStatus, Preset};

use crate::api::{encode, filter_query};

/// The filter part of a page's query, as a query string (what the server function reads,
/// and names what is wrong with).
pub fn filter_part(query: &ParamsMap) -> String {
    JobFilter::KEYS
        .iter()
        .filter_map(|key| {
            let value = query.get(key)?;
            let value = value.trim();
            (!value.is_empty()).then(|| format!("{key}={}", encode(value)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `/` with `filter` (and `extra`, already encoded) as its query.
pub fn dashboard_href(filter: &JobFilter, extra: &str) -> String {
    let query = [filter_query(filter), extra.to_owned()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("&");
    if query.is_empty() {
        "/".to_owned()
    } else {
        format!("/?{query}")
    }
}

#[component]
pub fn FilterBar(filter: JobFilter, counts: Vec<(JobStatus, i64)>) -> impl IntoView {
    let count = |status: JobStatus| {
        counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    };
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let tab = |status: Option<JobStatus>, label: String, n: i64| {
        let current = filter.status == status;
        let href = dashboard_href(&filter.with_status(status), "");
        view! {
            <a
                class="status-tab"
                href=href
                aria-current=current.then_some("page")
                data-status=status.map_or("all", JobStatus::as_str)
            >
                {label}
                <span class="count">{n}</span>
            </a>
        }
    };
    let tabs = std::iter::once(tab(None, "All".to_owned(), total))
        .chain(JobStatus::ALL.iter().map(|status| {
            let label = capitalized(status.as_str());
            tab(Some(*status), label, count(*status))
        }))
        .collect_view();
    let pairs = filter.to_pairs();
    let value = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let kind = value("kind");
    let preset = value("preset");
    let kinds = [
        JobKind::Video,
        JobKind::Audio,
        JobKind::Image,
        JobKind::Animation,
    ]
    .into_iter()
    .map(|k| {
        let selected = kind == k.as_str();
        view! { <option value=k.as_str() selected=selected>{capitalized(k.as_str())}</option> }
    })
    .collect_view();
    let presets = Preset::ALL
        .into_iter()
        .map(|p| {
            let selected = preset == p.id();
            view! { <option value=p.id() selected=selected>{p.label()}</option> }
        })
        .collect_view();
    let status = filter.status.map(|s| {
        view! { <input type="hidden" name="status" value=s.as_str()/> }
    });
    let clear = (!filter.is_empty())
        .then(|| view! { <a class="clear-filters" href="/">"Clear filters"</a> });
    view! {
        <nav class="status-tabs" aria-label="Jobs by status">{tabs}</nav>
        <form class="filters" method="get" action="/" role="search">
            {status}
            <label>
                <span>"Kind"</span>
                <select name="kind">
                    <option value="">"Any"</option>
                    {kinds}
                </select>
            </label>
            <label>
                <span>"Preset"</span>
                <select name="preset">
                    <option value="">"Any"</option>
                    {presets}
                </select>
            </label>
            <label class="search">
                <span>"Search"</span>
                <input type="search" name="q" value=value("q") placeholder="URL or error"/>
            </label>
            <label>
                <span>"From"</span>
                <input type="date" name="from" value=value("from")/>
            </label>
            <label>
                <span>"To"</span>
                <input type="date" name="to" value=value("to")/>
            </label>
            <button type="submit" class="secondary">"Filter"</button>
            {clear}
        </form>
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_the_filter_and_add_their_own_part() {
        let filter = JobFilter {
            status: Some(JobStatus::Failed),
            q: Some("a b".to_owned()),
            ..JobFilter::default()
        };
        assert_eq!(dashboard_href(&filter, ""), "/?status=failed&q=a%20b");
        assert_eq!(
            dashboard_href(&filter, "before=c"),
            "/?status=failed&q=a%20b&before=c"
        );
        assert_eq!(dashboard_href(&JobFilter::default(), ""), "/");
        assert_eq!(capitalized("cancelled"), "Cancelled");
    }
}
