//! The bodies of the fuzz targets (`fuzz/fuzz_targets/`), kept here so the same code runs
//! under `cargo fuzz` (nightly, by hand) and as a regression over the committed corpus in
//! `cargo test` (`tests/fuzz_corpus.rs`, stable). Each takes arbitrary bytes, must never
//! panic, and checks what must hold for any input it accepts.

use crate::change::ChangePosition;
use crate::ittybit::normalize_webhook;
use crate::page::{is_linkable, PageCursor};
use crate::submission::JobSubmission;

/// A webhook body: parsed or refused, never a panic; a parsed one's output URL is always a
/// web link and its progress 0-100.
pub fn callback_parser(data: &[u8]) {
    if let Ok(report) = normalize_webhook(data) {
        if let Some(url) = &report.output_url {
            assert!(is_linkable(url), "output URL {url:?} is not http(s)");
        }
        assert!(report.progress.is_none_or(|p| p <= 100));
    }
}

/// A job submission as `POST /api/jobs` reads it: parsed and validated, or refused with
/// field errors, never a panic; a valid one's URL is a web link.
pub fn submission_parser(data: &[u8]) {
    if let Ok(submission) = serde_json::from_slice::<JobSubmission>(data) {
        match submission.validate() {
            Ok(job) => assert!(is_linkable(job.input_url.as_str())),
            Err(errors) => assert!(!errors.0.is_empty()),
        }
    }
}

/// A page cursor (`before=`) and a change position (`after=`, `Last-Event-ID`): parsed or
/// refused, never a panic (nor an overflow); what parses writes itself back the same.
pub fn cursors(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cursor) = text.parse::<PageCursor>() {
        assert_eq!(cursor.to_string().parse::<PageCursor>(), Ok(cursor));
    }
    if let Ok(position) = text.parse::<ChangePosition>() {
        assert_eq!(position.to_string().parse::<ChangePosition>(), Ok(position));
    }
}
