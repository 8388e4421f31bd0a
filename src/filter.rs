//! Which jobs a view shows: the dashboard's filters, the JSON API's, and the live feed's.
//!
//! One predicate, [`JobFilter::matches`], written once: the browser uses it to let a live
//! change enter or leave a filtered view, and the server's tests hold its SQL (`app::db::jobs`)
//! to it on generated tables. A filter lives in a URL's query (`?status=failed&kind=video&
//! q=example.com&from=2026-12-01&to=2026-12-02`), so a filtered view can be bookmarked, shared
//! and reloaded.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, Time};

use crate::job::{Job, JobKind, JobStatus, Preset};

/// The longest text search accepted.
pub const MAX_QUERY_CHARS: usize = 200;

/// A set of conditions on jobs; every one that is set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub kind: Option<JobKind>,
    pub preset: Option<Preset>,
    /// Text in the input URL or the error, ignoring case.
    pub q: Option<String>,
    /// Created at or after.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    /// Created before.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
}

/// A filter that could not be read: which parameter, and why, in plain words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {problem}")]
pub struct FilterError {
    pub param: &'static str,
    pub problem: String,
}

impl JobFilter {
    /// The query parameters a filter is made of.
    pub const KEYS: [&'static str; 6] = ["status", "kind", "preset", "q", "from", "to"];

    /// Whether no condition is set.
    pub fn is_empty(&self) -> bool {
        *self == JobFilter::default()
    }

    /// Whether `job` is in the view.
    pub fn matches(&self, job: &Job) -> bool {
        self.status.is_none_or(|status| job.status == status)
            && self.kind.is_none_or(|kind| job.kind == kind)
            && self
                .preset
                .is_none_or(|preset| preset.kind() == job.kind && preset.options() == job.options)
            && self.q.as_deref().is_none_or(|q| {
                let q = q.to_lowercase();
                job.input_url.to_lowercase().contains(&q)
                    || job
                        .error
                        .as_deref()
                        .is_some_and(|e| e.to_lowercase().contains(&q))
            })
            && self.from.is_none_or(|from| job.created_at >= from)
            && self.to.is_none_or(|to| job.created_at < to)
    }

    /// The same filter with `status` set (a status tab's link).
    pub fn with_status(&self, status: Option<JobStatus>) -> JobFilter {
        JobFilter {
            status,
            ..self.clone()
        }
    }

    /// Read a filter from a query's parameters; unknown parameters (`before`, `limit`) are
    /// left to their readers, and empty values mean "any".
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<JobFilter, FilterError> {
        let mut filter = JobFilter::default();
        for (key, value) in pairs {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let bad = |param: &'static str, problem: String| FilterError { param, problem };
            match key {
                "status" => {
                    filter.status = Some(value.parse().map_err(|_| {
                        bad("status", format!("{value:?} is not a status: pending, queued, processing, succeeded, failed or cancelled"))
                    })?)
                }
                "kind" => {
                    filter.kind = Some(value.parse().map_err(|_| {
                        bad("kind", format!("{value:?} is not a kind: video, audio, image or animation"))
                    })?)
                }
                "preset" => {
                    filter.preset = Some(Preset::from_id(value).ok_or_else(|| {
                        let ids: Vec<&str> = Preset::ALL.iter().map(|p| p.id()).collect();
                        bad("preset", format!("{value:?} is not a preset: {}", ids.join(", ")))
                    })?)
                }
                "q" => {
                    if value.chars().count() > MAX_QUERY_CHARS {
                        return Err(bad("q", format!("is longer than {MAX_QUERY_CHARS} characters")));
                    }
                    filter.q = Some(value.to_owned());
                }
                "from" => filter.from = Some(instant("from", value, false)?),
                "to" => filter.to = Some(instant("to", value, true)?),
                _ => {}
            }
        }
        if let (Some(from), Some(to)) = (filter.from, filter.to) {
            if to <= from {
                return Err(FilterError {
                    param: "to",
                    problem: "is not after from".to_owned(),
                });
            }
        }
        Ok(filter)
    }

    /// The filter as query parameters, in a fixed order (dates as `YYYY-MM-DD` when whole
    /// days, else RFC 3339); what [`JobFilter::from_pairs`] reads back.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(status) = self.status {
            pairs.push(("status", status.as_str().to_owned()));
        }
        if let Some(kind) = self.kind {
            pairs.push(("kind", kind.as_str().to_owned()));
        }
        if let Some(preset) = self.preset {
            pairs.push(("preset", preset.id().to_owned()));
        }
        if let Some(q) = &self.q {
            pairs.push(("q", q.clone()));
        }
        if let Some(from) = self.from {
            pairs.push(("from", print_instant(from, false)));
        }
        if let Some(to) = self.to {
            pairs.push(("to", print_instant(to, true)));
        }
        pairs
    }
}

/// `YYYY-MM-DD` (the start of that day, UTC; for an end, the start of the next) or RFC 3339.
fn instant(param: &'static str, value: &str, end: bool) -> Result<OffsetDateTime, FilterError> {
    if let Ok(at) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(at);
    }
    let date = Date::parse(value, format_description!("[year]-[month]-[day]")).map_err(|_| {
        FilterError {
            param,
            problem: format!("{value:?} is not a date (YYYY-MM-DD) or a time (RFC 3339)"),
        }
    })?;
    let date = if end {
        date.next_day().ok_or_else(|| FilterError {
            param,
            problem: format!("{value:?} is too far in the future"),
        })?
    } else {
        date
    };
    Ok(date.with_time(Time::MIDNIGHT).assume_utc())
}

fn print_instant(at: OffsetDateTime, end: bool) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    if at.time() == Time::MIDNIGHT {
        let date = if end {
            at.date().previous_day().unwrap_or(at.date())
        } else {
            at.date()
        };
        let format = format_description!("[year]-[month]-[day]");
        if let Ok(text) = date.format(format) {
            return text;
        }
    }
    at.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobId;
    use time::macros::datetime;

    fn job(status: JobStatus, input: &str, error: Option<&str>, at: OffsetDateTime) -> Job {
        Job {
            id: JobId(uuid::Uuid::nil()),
            input_url: input.to_owned(),
            kind: JobKind::Video,
            options: Preset::DEFAULT.options(),
            status,
            task_id: None,
            output_url: None,
            error: error.map(str::to_owned),
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

    fn parse(query: &str) -> Result<JobFilter, FilterError> {
        JobFilter::from_pairs(query.split('&').filter_map(|pair| pair.split_once('=')))
    }

    #[test]
    fn every_condition_must_hold() {
        let at = datetime!(2026-12-01 12:00 UTC);
        let failed = job(
            JobStatus::Failed,
            "https://Example.com/a.mp4",
            Some("DNS failure"),
            at,
        );
        let filter =
            parse("status=failed&kind=video&q=example.COM&from=2026-12-01&to=2026-12-01").unwrap();
        assert!(filter.matches(&failed));
        assert!(
            parse("q=dns").unwrap().matches(&failed),
            "the error is searched too"
        );
        assert!(!parse("status=succeeded").unwrap().matches(&failed));
        assert!(!parse("kind=audio").unwrap().matches(&failed));
        assert!(!parse("q=other.org").unwrap().matches(&failed));
        assert!(!parse("to=2026-11-30").unwrap().matches(&failed));
        assert!(!parse("from=2026-12-02").unwrap().matches(&failed));
        assert!(parse("preset=video_1280_mp4_high")
            .unwrap()
            .matches(&failed));
        assert!(!parse("preset=video_720_webm").unwrap().matches(&failed));
        assert!(JobFilter::default().matches(&failed));
    }

    #[test]
    fn a_filter_survives_the_round_trip_through_a_url() {
        let filter =
            parse("status=cancelled&kind=audio&q=a b&from=2026-12-01&to=2026-12-02").unwrap();
        assert_eq!(
            filter.to,
            Some(datetime!(2026-12-03 00:00 UTC)),
            "to is inclusive of its day"
        );
        let pairs = filter.to_pairs();
        let again = JobFilter::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
        assert_eq!(again, filter);
        let exact = parse("from=2026-12-01T10:30:00Z").unwrap();
        assert_eq!(
            exact.to_pairs(),
            [("from", "2026-12-01T10:30:00Z".to_owned())]
        );
        assert!(parse("status=&q=&before=x&limit=5").unwrap().is_empty());
    }

    #[test]
    fn bad_values_say_which_parameter_and_why() {
        let problem = |q: &str| parse(q).unwrap_err().to_string();
        assert!(problem("status=done").starts_with("status: \"done\" is not a status"));
        assert!(problem("kind=movie").starts_with("kind: \"movie\" is not a kind"));
        assert!(problem("preset=huge").starts_with("preset: \"huge\" is not a preset"));
        assert!(problem("from=yesterday").starts_with("from: \"yesterday\" is not a date"));
        assert_eq!(
            problem("from=2026-12-02&to=2026-12-01"),
            "to: is not after from"
        );
        assert!(problem(&format!("q={}", "x".repeat(201))).starts_with("q: is longer"));
    }
}
