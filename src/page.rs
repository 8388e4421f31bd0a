//! Paging through the job list, newest first, and how times are shown.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::job::{Job, JobId};

/// A position in the newest-first list: jobs strictly older than it come next.
///
/// Written as `<created_at in Unix microseconds>.<job id>`; Postgres keeps timestamps to the
/// microsecond, so the cursor is exact, and the id breaks ties between jobs created together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at: OffsetDateTime,
    pub id: JobId,
}

impl PageCursor {
    pub fn after_job(job: &Job) -> PageCursor {
        PageCursor {
            created_at: job.created_at,
            id: job.id,
        }
    }
}

impl fmt::Display for PageCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.created_at.unix_timestamp_nanos() / 1_000;
        write!(f, "{micros}.{}", self.id.0.simple())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a page cursor; use the `next_before` value of a previous page")]
pub struct BadCursor(pub String);

impl FromStr for PageCursor {
    type Err = BadCursor;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadCursor(s.to_owned());
        let (micros, id) = s.split_once('.').ok_or_else(bad)?;
        let micros: i128 = micros.parse().map_err(|_| bad())?;
        // Any number of digits parses; only a time the calendar holds is a cursor.
        let nanos = micros.checked_mul(1_000).ok_or_else(bad)?;
        let created_at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
        let id = Uuid::try_parse(id).map_err(|_| bad())?;
        Ok(PageCursor {
            created_at,
            id: JobId(id),
        })
    }
}

/// How many jobs a page holds: 1 to 100, 50 unless asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    pub const DEFAULT: PageLimit = PageLimit(50);
    pub const MAX: u32 = 100;

    pub fn new(limit: u32) -> Result<PageLimit, String> {
        if (1..=Self::MAX).contains(&limit) {
            Ok(PageLimit(limit))
        } else {
            Err(format!("limit must be between 1 and {}", Self::MAX))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One page of the job list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Pass as `before` to get the next, older page; absent on the last page.
    pub next_before: Option<String>,
    /// The change log's position when the page was read (`<key>.<seq>`): subscribe to
    /// `/api/events` from here and no change falls between the page and the stream.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "812.4"))]
    pub position: Option<crate::change::ChangePosition>,
}

/// "just now", "5 min ago", "3 h ago", "2 d ago", then the date.
pub fn relative_time(then: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (now - then).whole_seconds();
    match secs {
        s if s < 45 => "just now".to_owned(),
        s if s < 90 => "1 min ago".to_owned(),
        s if s < 3_600 => format!("{} min ago", (s + 30) / 60),
        s if s < 86_400 => format!("{} h ago", s / 3_600),
        s if s < 30 * 86_400 => format!("{} d ago", s / 86_400),
        _ => then.date().to_string(),
    }
}

/// A file size for people: `512 B`, `48.2 kB`, `2.4 MB`, `1.1 GB` (powers of 1000, as file
/// managers and browsers show them).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = next;
    }
    if value < 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.0} {unit}")
    }
}

/// A media duration for people, rounded to the second: `0:07`, `2:05`, `1:02:03`.
pub fn format_duration_ms(ms: u64) -> String {
    let secs = (ms + 500) / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Shortens `text` to at most `max` characters by cutting out its middle, so both the host and
/// the file name of a long URL stay readable.
pub fn shorten_middle(text: &str, max: usize) -> String {
    let len = text.chars().count();
    if len <= max || max < 3 {
        return text.to_owned();
    }
    let keep = max - 1;
    let head = keep / 2 + keep % 2;
    let tail = keep / 2;
    let mut out: String = text.chars().take(head).collect();
    out.push('…');
    out.extend(text.chars().skip(len - tail));
    out
}

/// Whether a URL read from the database is safe to use as a link (`http:` or `https:` only:
/// rows can be written by anyone with database access, not just through validated input).
pub fn is_linkable(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_like_a_file_manager() {
        use super::format_bytes;
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(48_213), "48 kB");
        assert_eq!(format_bytes(2_400_000), "2.4 MB");
        assert_eq!(format_bytes(1_100_000_000), "1.1 GB");
        assert_eq!(format_bytes(u64::MAX), "18446744 TB");
    }

    #[test]
    fn durations_read_like_a_player() {
        use super::format_duration_ms;
        assert_eq!(format_duration_ms(0), "0:00");
        assert_eq!(format_duration_ms(7_400), "0:07");
        assert_eq!(format_duration_ms(9_600), "0:10");
        assert_eq!(format_duration_ms(125_000), "2:05");
        assert_eq!(format_duration_ms(3_723_000), "1:02:03");
    }

    use super::*;
    use time::macros::datetime;
    use time::Duration;

    #[test]
    fn cursor_round_trips_exactly() {
        let cursor = PageCursor {
            created_at: datetime!(2026-11-27 01:02:03.123456 UTC),
            id: JobId(Uuid::from_u128(0x1234)),
        };
        let text = cursor.to_string();
        assert_eq!(text, "1795741323123456.00000000000000000000000000001234");
        assert_eq!(text.parse::<PageCursor>(), Ok(cursor));
    }

    #[test]
    fn bad_cursors_are_refused() {
        for bad in [
            "",
            "123",
            "abc.def",
            "1.not-a-uuid",
            "99999999999999999999999999.0",
        ] {
            assert!(bad.parse::<PageCursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cursor_too_large_for_the_arithmetic_is_refused_not_overflowed() {
        let id = "00000000000000000000000000001234";
        for micros in [
            "999999999999999999999999999999999999",
            "-999999999999999999999999999999999999",
            &i128::MAX.to_string(),
            &i128::MIN.to_string(),
        ] {
            let text = format!("{micros}.{id}");
            assert_eq!(text.parse::<PageCursor>(), Err(BadCursor(text.clone())));
        }
    }

    #[test]
    fn shortening_keeps_both_ends() {
        assert_eq!(
            shorten_middle("https://a.io/x.mp4", 40),
            "https://a.io/x.mp4"
        );
        let long = "https://media.example.com/some/very/long/path/to/a/video-file.mp4";
        let short = shorten_middle(long, 30);
        assert_eq!(short.chars().count(), 30);
        assert!(short.starts_with("https://media.e"), "{short}");
        assert!(short.ends_with("video-file.mp4"), "{short}");
        assert!(short.contains('…'));
    }

    #[test]
    fn only_web_urls_become_links() {
        assert!(is_linkable("https://example.com/a"));
        assert!(is_linkable("HTTP://example.com/a"));
        assert!(!is_linkable("javascript:alert(1)"));
        assert!(!is_linkable(" data:text/html,hi"));
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(PageLimit::default().get(), 50);
        assert!(PageLimit::new(1).is_ok());
        assert!(PageLimit::new(100).is_ok());
        assert!(PageLimit::new(0).is_err());
        assert!(PageLimit::new(101).is_err());
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = datetime!(2026-11-27 12:00 UTC);
        let ago = |d: Duration| relative_time(now - d, now);
        assert_eq!(ago(Duration::seconds(3)), "just now");
        assert_eq!(ago(Duration::seconds(-5)), "just now");
        assert_eq!(ago(Duration::seconds(60)), "1 min ago");
        assert_eq!(ago(Duration::minutes(5)), "5 min ago");
        assert_eq!(ago(Duration::hours(3)), "3 h ago");
        assert_eq!(ago(Duration::days(2)), "2 d ago");
        assert_eq!(ago(Duration::days(40)), "2026-10-18");
    }
}
