//! Ittybit's wire format: the create-job request, the job object it answers with, its error
//! body, and the webhook payloads, normalised into one shape that callbacks fold into a job.
//!
//! Ittybit's API generations disagree with each other, so everything read from it is parsed
//! tolerantly: a field that is missing or of an unexpected type reads as absent instead of
//! failing the whole payload.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::job::{JobId, JobKind, JobStatus, OutputFacts};
use crate::page::is_linkable;

/// The body of `POST /jobs`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CreateJobRequest {
    /// The media to process: an `http(s)://` or `s3://` URL.
    pub input: String,
    pub kind: JobKind,
    /// Kind-specific processing options.
    pub options: Value,
    /// Echoed back on the job and in webhooks: `{"job_id": "<dashboard job uuid>"}`.
    pub metadata: Value,
    /// Where Ittybit posts the job's status changes.
    pub webhook_url: String,
}

impl CreateJobRequest {
    /// A request for the dashboard job `job_id`, tagged so webhooks can be matched back to it.
    pub fn new(
        job_id: JobId,
        input: &str,
        kind: JobKind,
        options: Value,
        webhook_url: String,
    ) -> CreateJobRequest {
        CreateJobRequest {
            input: input.to_owned(),
            kind,
            options,
            metadata: json!({ "job_id": job_id }),
            webhook_url,
        }
    }
}

/// A file Ittybit produced: its URL and what is known about it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IttybitFile {
    #[serde(deserialize_with = "lenient_string")]
    pub url: Option<String>,
    /// Pixels, for video, images and animations.
    #[serde(deserialize_with = "lenient_count")]
    pub width: Option<u64>,
    #[serde(deserialize_with = "lenient_count")]
    pub height: Option<u64>,
    /// Seconds (fractions allowed), kept here in whole milliseconds.
    #[serde(deserialize_with = "lenient_millis")]
    pub duration: Option<u64>,
    /// Bytes; some generations call it `filesize`.
    #[serde(alias = "filesize", deserialize_with = "lenient_count")]
    pub size: Option<u64>,
}

impl IttybitFile {
    /// The facts this file carries.
    pub fn facts(&self) -> OutputFacts {
        OutputFacts {
            duration_ms: self.duration,
            size: self.size,
            width: self.width.and_then(|w| u32::try_from(w).ok()),
            height: self.height.and_then(|h| u32::try_from(h).ok()),
        }
    }
}

/// One task of a job, where Ittybit reports progress and per-step output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IttybitTask {
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    /// The raw status, as Ittybit spells it.
    #[serde(deserialize_with = "lenient_string")]
    pub status: Option<String>,
    /// Percent done, clamped to 0-100.
    #[serde(deserialize_with = "lenient_percent")]
    pub progress: Option<u8>,
    /// A bare URL string or a file object.
    #[serde(deserialize_with = "lenient_file")]
    pub output: Option<IttybitFile>,
    /// The error message, sent as a string or as `{"message": ...}`.
    #[serde(deserialize_with = "lenient_error")]
    pub error: Option<String>,
}

/// A job as Ittybit reports it (or, inside a webhook event envelope, a task or job).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IttybitJob {
    /// Ittybit's id for the job (or for the task, when `object` is `"task"`).
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    /// `"job"` or `"task"`.
    #[serde(deserialize_with = "lenient_string")]
    pub object: Option<String>,
    /// On a task: the id of the job it belongs to.
    #[serde(deserialize_with = "lenient_string")]
    pub job_id: Option<String>,
    /// The raw status, as Ittybit spells it.
    #[serde(deserialize_with = "lenient_string")]
    pub status: Option<String>,
    /// Percent done, clamped to 0-100 (tasks carry it; jobs usually do not).
    #[serde(deserialize_with = "lenient_percent")]
    pub progress: Option<u8>,
    /// A bare URL string or a file object.
    #[serde(deserialize_with = "lenient_file")]
    pub output: Option<IttybitFile>,
    /// The files listed by event envelopes.
    #[serde(deserialize_with = "lenient_files")]
    pub outputs: Vec<IttybitFile>,
    /// The error message, sent as a string or as `{"message": ...}`.
    #[serde(deserialize_with = "lenient_error")]
    pub error: Option<String>,
    /// Echoed from the create request; `metadata.job_id` is the dashboard's job id.
    pub metadata: Value,
    #[serde(deserialize_with = "lenient_tasks")]
    pub tasks: Vec<IttybitTask>,
    #[serde(deserialize_with = "lenient_time")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(deserialize_with = "lenient_time")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(deserialize_with = "lenient_time")]
    pub finished_at: Option<OffsetDateTime>,
    #[serde(deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
}

impl IttybitJob {
    /// What this job says about the dashboard job, by the contract's normalisation rules.
    pub fn normalize(&self) -> Normalized {
        Normalized {
            ittybit_id: self.ittybit_id(),
            job_id: job_id_in(&self.metadata),
            status: status_from(self.status.as_deref().unwrap_or_default()),
            progress: self.progress.or_else(|| {
                let last = self.tasks.last().and_then(|task| task.progress);
                last.or_else(|| self.tasks.first().and_then(|task| task.progress))
            }),
            output_url: self.output_url(),
            output: self.output_facts(),
            error: self.error.clone(),
        }
    }

    /// The facts of the first of `output`, `outputs[0]` and the last task's `output` that has
    /// any (the newest job object gives `output` as a bare URL and the facts on its task).
    fn output_facts(&self) -> OutputFacts {
        let last_task = self.tasks.last().and_then(|task| task.output.as_ref());
        [self.output.as_ref(), self.outputs.first(), last_task]
            .into_iter()
            .flatten()
            .map(IttybitFile::facts)
            .find(|facts| !facts.is_empty())
            .unwrap_or_default()
    }

    /// The Ittybit job id: a task's `job_id`, otherwise a job's own `id`.
    fn ittybit_id(&self) -> Option<String> {
        match (&self.job_id, self.object.as_deref()) {
            (Some(job_id), _) => Some(job_id.clone()),
            (None, Some("task")) => None,
            (None, _) => self.id.clone(),
        }
    }

    /// The first linkable URL of `output`, `outputs[0]` and the last task's `output`.
    fn output_url(&self) -> Option<String> {
        let last_task = self.tasks.last().and_then(|task| task.output.as_ref());
        [self.output.as_ref(), self.outputs.first(), last_task]
            .into_iter()
            .flatten()
            .filter_map(|file| file.url.as_deref())
            .map(str::trim)
            .find(|url| is_linkable(url))
            .map(str::to_owned)
    }
}

/// Ittybit's error body, `{"kind": "invalid_input", "message": "..."}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IttybitError {
    /// A machine-readable code such as `job_not_found`; empty if Ittybit sent none.
    #[serde(deserialize_with = "lenient_text")]
    pub kind: String,
    /// A human-readable explanation; empty if Ittybit sent none.
    #[serde(deserialize_with = "lenient_text")]
    pub message: String,
}

impl fmt::Display for IttybitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind.is_empty(), self.message.is_empty()) {
            (true, true) => f.write_str("unknown Ittybit error"),
            (true, false) => f.write_str(&self.message),
            (false, true) => f.write_str(&self.kind),
            (false, false) => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

impl std::error::Error for IttybitError {}

/// What one webhook delivery (or one read of a job) says, whatever shape it came in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// Ittybit's job id (never an event's or a task's own id).
    pub ittybit_id: Option<String>,
    /// The dashboard job, from `metadata.job_id`; absent if missing or not a UUID.
    pub job_id: Option<JobId>,
    pub status: JobStatus,
    /// Percent done, 0-100.
    pub progress: Option<u8>,
    /// The output, only if it is an `http(s)` URL.
    pub output_url: Option<String>,
    /// What the report says about the output.
    pub output: OutputFacts,
    pub error: Option<String>,
}

/// Why a webhook body could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("webhook body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("webhook body is not a JSON object")]
    NotAnObject,
}

/// Normalises a webhook body in any of the contract's three shapes: the job object, the
/// guide's `completed`/`output.url`/`error.message` shape, or an event envelope whose `data`
/// holds the task or job.
pub fn normalize_webhook(body: &[u8]) -> Result<Normalized, PayloadError> {
    let root: Value = serde_json::from_slice(body)?;
    if !root.is_object() {
        return Err(PayloadError::NotAnObject);
    }
    let Some(data) = root.get("data").filter(|data| data.is_object()) else {
        return Ok(IttybitJob::deserialize(&root)?.normalize());
    };
    let mut job = IttybitJob::deserialize(data)?;
    if job.status.is_none() {
        let root_status = root
            .get("status")
            .and_then(Value::as_str)
            .filter(|status| !status.trim().is_empty());
        let event_outcome = root
            .get("kind")
            .and_then(Value::as_str)
            .and_then(|kind| kind.rsplit_once('.'))
            .map(|(_, outcome)| outcome);
        job.status = root_status.or(event_outcome).map(str::to_owned);
    }
    let mut normalized = job.normalize();
    if let Some(job_id) = root.get("metadata").and_then(job_id_in) {
        normalized.job_id = Some(job_id);
    }
    Ok(normalized)
}

/// The status a callback has driven a job to, and how far along it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobProgress {
    pub status: JobStatus,
    pub progress: Option<u8>,
}

impl JobProgress {
    /// Folds in one delivery: the status only moves forward and a terminal one never changes;
    /// progress never goes backwards, is frozen once terminal, and is 100 on success.
    pub fn apply(self, n: &Normalized) -> JobProgress {
        if self.status.is_terminal() {
            return self;
        }
        let status = self.status.advance(n.status);
        let progress = match status {
            JobStatus::Succeeded => Some(100),
            status if status.is_terminal() => self.progress,
            _ => self.progress.max(n.progress),
        };
        JobProgress { status, progress }
    }
}

/// Maps Ittybit's (or the guide's) status words onto the dashboard's.
fn status_from(raw: &str) -> JobStatus {
    match raw.trim().to_ascii_lowercase().as_str() {
        "succeeded" | "completed" | "ready" => JobStatus::Succeeded,
        "failed" | "error" => JobStatus::Failed,
        "cancelled" | "canceled" => JobStatus::Cancelled,
        "queued" => JobStatus::Queued,
        _ => JobStatus::Processing,
    }
}

/// `metadata.job_id`, if it is a UUID.
fn job_id_in(metadata: &Value) -> Option<JobId> {
    metadata.get("job_id")?.as_str()?.trim().parse().ok()
}

/// A non-blank string (numbers are taken as their decimal text); anything else is absent.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) if !s.trim().is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// Like [`lenient_string`], with absent read as empty.
fn lenient_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    lenient_string(d).map(Option::unwrap_or_default)
}

/// A number (or numeric string) clamped to 0-100; fractions are cut off.
fn lenient_percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    let number = match Value::deserialize(d)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    Ok(number
        .filter(|p| p.is_finite())
        .map(|p| p.clamp(0.0, 100.0) as u8))
}

/// A finite, non-negative number (or numeric string); anything else is absent.
fn lenient_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let number = match Value::deserialize(d)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    Ok(number.filter(|n| n.is_finite() && *n >= 0.0))
}

/// A count (pixels, bytes), rounded to a whole number.
fn lenient_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(lenient_number(d)?
        .filter(|n| *n < 9.0e15)
        .map(|n| n.round() as u64))
}

/// Seconds as whole milliseconds.
fn lenient_millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(lenient_number(d)?
        .filter(|n| *n < 9.0e12)
        .map(|secs| (secs * 1000.0).round() as u64))
}

/// A file given as a bare URL string or as an object with a `url`.
fn file_from(value: Value) -> Option<IttybitFile> {
    match value {
        Value::String(url) => Some(IttybitFile {
            url: Some(url),
            ..IttybitFile::default()
        }),
        value @ Value::Object(_) => IttybitFile::deserialize(value).ok(),
        _ => None,
    }
}

fn lenient_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IttybitFile>, D::Error> {
    Value::deserialize(d).map(file_from)
}

/// A list of files; unreadable entries keep their place as files without a URL.
fn lenient_files<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IttybitFile>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .map(|item| file_from(item).unwrap_or_default())
            .collect(),
        _ => Vec::new(),
    })
}

/// A list of tasks; entries that are not objects are skipped.
fn lenient_tasks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IttybitTask>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .filter(Value::is_object)
            .filter_map(|item| IttybitTask::deserialize(item).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// An error message given as a string or as an object's `message`.
fn lenient_error<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Value::deserialize(d)?;
    let message = match &value {
        Value::String(s) => Some(s.as_str()),
        Value::Object(error) => error.get("message").and_then(Value::as_str),
        _ => None,
    };
    Ok(message
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned))
}

/// Numbers above this are Unix milliseconds, the rest Unix seconds.
const MILLIS_ABOVE: f64 = 1e11;

/// A timestamp given as Unix milliseconds or seconds (number or numeric string) or as an
/// ISO-8601 string (UTC assumed when it has no offset); anything else is absent.
fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => match n.as_i64() {
            Some(whole) => time_from_unix_int(whole),
            None => n.as_f64().and_then(time_from_unix_float),
        },
        Value::String(s) => time_from_str(s.trim()),
        _ => None,
    })
}

fn time_from_unix_int(whole: i64) -> Option<OffsetDateTime> {
    let nanos_per_unit: i128 = if whole as f64 > MILLIS_ABOVE {
        1_000_000
    } else {
        1_000_000_000
    };
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(whole) * nanos_per_unit).ok()
}

fn time_from_unix_float(number: f64) -> Option<OffsetDateTime> {
    if !number.is_finite() {
        return None;
    }
    let nanos_per_unit = if number > MILLIS_ABOVE { 1e6 } else { 1e9 };
    // Whole units and the fraction apart, so whole numbers stay exact.
    let whole = (number.trunc() as i128).checked_mul(nanos_per_unit as i128)?;
    let fraction = (number.fract() * nanos_per_unit).round() as i128;
    OffsetDateTime::from_unix_timestamp_nanos(whole + fraction).ok()
}

fn time_from_str(text: &str) -> Option<OffsetDateTime> {
    if let Ok(whole) = text.parse::<i64>() {
        return time_from_unix_int(whole);
    }
    if let Ok(number) = text.parse::<f64>() {
        return time_from_unix_float(number);
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(text, &Iso8601::DEFAULT))
        .ok()
        .or_else(|| {
            PrimitiveDateTime::parse(text, &Iso8601::DEFAULT)
                .ok()
                .map(PrimitiveDateTime::assume_utc)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;
    use JobStatus::*;

    const JOB: &str = "0b5e5a36-3c0b-4c8e-9a43-6d1f1f0e2a10";

    fn job_id() -> JobId {
        JOB.parse().unwrap()
    }

    /// Job `job_abc123` reported done with `out.mp4`, as every shape says it.
    fn succeeded_abc123() -> Normalized {
        Normalized {
            ittybit_id: Some("job_abc123".into()),
            job_id: Some(job_id()),
            status: Succeeded,
            progress: Some(100),
            output_url: Some("https://cdn.example.com/out.mp4".into()),
            output: OutputFacts::default(),
            error: None,
        }
    }

    fn normalize(value: Value) -> Normalized {
        normalize_webhook(value.to_string().as_bytes()).unwrap()
    }

    /// The job object from the contract's `POST /jobs` response.
    fn contract_job() -> Value {
        json!({
            "id": "job_abc123", "object": "job", "kind": "video",
            "input": "https://example.com/uploads/video.mp4", "output": null,
            "options": { "width": 1280, "format": "mp4", "quality": "high" },
            "metadata": { "job_id": JOB },
            "status": "queued", "error": null,
            "tasks": [
                { "id": "task_001", "object": "task", "kind": "video", "status": "processing",
                  "progress": 42, "error": null,
                  "output": { "object": "file", "kind": "video",
                              "url": "https://cdn.example.com/out.mp4",
                              "width": 1280, "height": 720, "duration": 62.5 } }
            ],
            "created_at": 1711900000000_i64, "started_at": null, "finished_at": null,
            "updated_at": 1711900000000_i64
        })
    }

    #[test]
    fn create_request_has_the_contract_shape() {
        let request = CreateJobRequest::new(
            job_id(),
            "https://example.com/uploads/video.mp4",
            JobKind::Video,
            json!({ "width": 1280, "format": "mp4", "quality": "high" }),
            "https://dash.example.com/api/ittybit/callback".to_owned(),
        );
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "input": "https://example.com/uploads/video.mp4",
                "kind": "video",
                "options": { "width": 1280, "format": "mp4", "quality": "high" },
                "metadata": { "job_id": JOB },
                "webhook_url": "https://dash.example.com/api/ittybit/callback"
            })
        );
        let adaptive = CreateJobRequest::new(
            job_id(),
            "s3://bucket/in.mov",
            JobKind::AdaptiveVideo,
            json!({}),
            String::new(),
        );
        assert_eq!(
            serde_json::to_value(adaptive).unwrap()["kind"],
            "adaptive_video"
        );
    }

    #[test]
    fn reads_the_contract_job_object() {
        let job = IttybitJob::deserialize(contract_job()).unwrap();
        assert_eq!(job.id.as_deref(), Some("job_abc123"));
        assert_eq!(job.status.as_deref(), Some("queued"));
        assert_eq!(job.output, None);
        assert_eq!(job.error, None);
        assert_eq!(job.tasks.len(), 1);
        assert_eq!(job.tasks[0].progress, Some(42));
        assert_eq!(job.tasks[0].status.as_deref(), Some("processing"));
        assert_eq!(
            job.tasks[0].output.as_ref().unwrap().url.as_deref(),
            Some("https://cdn.example.com/out.mp4")
        );
        assert_eq!(job.created_at, Some(datetime!(2024-03-31 15:46:40 UTC)));
        assert_eq!(job.started_at, None);
        assert_eq!(job.finished_at, None);

        assert_eq!(
            job.normalize(),
            Normalized {
                ittybit_id: Some("job_abc123".into()),
                job_id: Some(job_id()),
                status: Queued,
                progress: Some(42),
                output_url: Some("https://cdn.example.com/out.mp4".into()),
                // The task's file object: 1280x720, 62.5 s.
                output: OutputFacts {
                    duration_ms: Some(62_500),
                    size: None,
                    width: Some(1280),
                    height: Some(720),
                },
                error: None,
            }
        );
    }

    #[test]
    fn output_facts_come_from_the_first_file_that_has_them() {
        // The job's `output` is a bare URL; the facts are on its task, in any spelling.
        let n = normalize(json!({
            "status": "succeeded",
            "output": "https://cdn.example.com/out.mp3",
            "tasks": [{"output": {"url": "https://cdn.example.com/out.mp3",
                                   "duration": "3.0005", "filesize": 48213.0,
                                   "width": "wide", "height": -1}}]
        }));
        assert_eq!(
            n.output,
            OutputFacts {
                duration_ms: Some(3_001),
                size: Some(48_213),
                width: None,
                height: None,
            }
        );
        // An envelope's outputs[0] counts too.
        let n = normalize(json!({"kind": "task.succeeded",
            "data": {"outputs": [{"url": "https://x.example/a.png", "width": 640, "height": 360,
                                  "size": 1024}]}}));
        assert_eq!(n.output.width, Some(640));
        assert_eq!(n.output.size, Some(1024));
        // No facts anywhere: none.
        assert!(
            normalize(json!({"status": "succeeded", "output": "https://x.example/a"}))
                .output
                .is_empty()
        );
    }

    #[test]
    fn timestamps_may_be_millis_seconds_or_iso() {
        let at = |value: Value| {
            IttybitJob::deserialize(json!({ "created_at": value }))
                .unwrap()
                .created_at
        };
        let expected = Some(datetime!(2024-03-31 15:46:40 UTC));
        assert_eq!(at(json!(1711900000000_i64)), expected);
        assert_eq!(at(json!(1711900000)), expected);
        assert_eq!(at(json!("1711900000000")), expected);
        assert_eq!(at(json!("2024-03-31T15:46:40Z")), expected);
        assert_eq!(at(json!("2024-03-31T17:46:40+02:00")), expected);
        assert_eq!(at(json!("2024-03-31T15:46:40")), expected);
        assert_eq!(
            at(json!(1711900000.5)),
            Some(datetime!(2024-03-31 15:46:40.5 UTC))
        );
        assert_eq!(
            at(json!(1711900000123.0)),
            Some(datetime!(2024-03-31 15:46:40.123 UTC))
        );
        for absent in [
            json!(null),
            json!("yesterday"),
            json!(true),
            json!({}),
            json!(1e300),
            json!(-1e300),
            json!(i64::MAX),
            json!(u64::MAX),
        ] {
            assert_eq!(at(absent.clone()), None, "{absent}");
        }
        assert_eq!(IttybitJob::deserialize(json!({})).unwrap().created_at, None);
    }

    #[test]
    fn unknown_fields_and_odd_types_are_tolerated() {
        let job = IttybitJob::deserialize(json!({
            "id": 17, "status": ["?"], "output": 5, "outputs": "nope",
            "error": 3, "tasks": { "not": "a list" }, "progress": "57.9",
            "brand_new_field": { "deep": [1, 2, 3] }
        }))
        .unwrap();
        assert_eq!(job.id.as_deref(), Some("17"));
        assert_eq!(job.status, None);
        assert_eq!(job.output, None);
        assert!(job.outputs.is_empty());
        assert_eq!(job.error, None);
        assert!(job.tasks.is_empty());
        assert_eq!(job.progress, Some(57));
    }

    #[test]
    fn ittybit_error_is_tolerant() {
        let error: IttybitError = serde_json::from_value(
            json!({ "kind": "job_not_found", "message": "No job job_x", "status": 404 }),
        )
        .unwrap();
        assert_eq!(error.kind, "job_not_found");
        assert_eq!(error.message, "No job job_x");
        assert_eq!(error.to_string(), "job_not_found: No job job_x");

        let bare: IttybitError = serde_json::from_value(json!({ "message": null })).unwrap();
        assert_eq!(bare, IttybitError::default());
        assert_eq!(bare.to_string(), "unknown Ittybit error");
        let message_only: IttybitError =
            serde_json::from_value(json!({ "message": "bad input" })).unwrap();
        assert_eq!(message_only.to_string(), "bad input");
    }

    #[test]
    fn shape_1_the_job_object() {
        let n = normalize(json!({
            "id": "job_abc123", "object": "job", "status": "succeeded",
            "output": "https://cdn.example.com/out.mp4",
            "metadata": { "job_id": JOB }, "error": null,
            "tasks": [{ "id": "task_001", "status": "succeeded", "progress": 100 }],
            "created_at": 1711900000000_i64, "finished_at": 1711900060000_i64
        }));
        assert_eq!(n, succeeded_abc123());
    }

    #[test]
    fn shape_2_the_guide() {
        let done = normalize(json!({
            "id": "job_abc123", "status": "completed",
            "output": { "url": "https://cdn.example.com/out.mp4" },
            "metadata": { "job_id": JOB }
        }));
        assert_eq!(done.status, Succeeded);
        assert_eq!(
            done.output_url.as_deref(),
            Some("https://cdn.example.com/out.mp4")
        );
        assert_eq!(done.job_id, Some(job_id()));

        let failed = normalize(json!({
            "id": "job_abc123", "status": "failed", "output": null,
            "error": { "kind": "decode_error", "message": "Input is not a video" },
            "metadata": { "job_id": JOB }
        }));
        assert_eq!(failed.status, Failed);
        assert_eq!(failed.error.as_deref(), Some("Input is not a video"));
        assert_eq!(failed.output_url, None);
    }

    #[test]
    fn shape_3_an_event_envelope_around_a_task() {
        let n = normalize(json!({
            "id": "evt_123", "object": "event", "kind": "task.succeeded",
            "data": {
                "id": "task_001", "object": "task", "job_id": "job_abc123",
                "status": "succeeded", "progress": 100,
                "metadata": { "job_id": JOB },
                "outputs": [{ "object": "file", "url": "https://cdn.example.com/out.mp4" }]
            },
            "created_at": 1711900060000_i64
        }));
        assert_eq!(n, succeeded_abc123());
    }

    #[test]
    fn shape_3_an_event_envelope_around_a_job() {
        let n = normalize(json!({
            "id": "evt_124", "object": "event", "kind": "job.failed",
            "data": { "id": "job_abc123", "object": "job", "status": "failed",
                      "error": "Input unreachable", "metadata": { "job_id": JOB } }
        }));
        assert_eq!(n.ittybit_id.as_deref(), Some("job_abc123"));
        assert_eq!(n.status, Failed);
        assert_eq!(n.error.as_deref(), Some("Input unreachable"));
        assert_eq!(n.job_id, Some(job_id()));
    }

    #[test]
    fn an_envelope_without_a_status_takes_it_from_the_event_kind() {
        for (kind, status) in [
            ("task.succeeded", Succeeded),
            ("job.completed", Succeeded),
            ("task.failed", Failed),
            ("job.canceled", Cancelled),
            ("task.queued", Queued),
            ("task.progress", Processing),
        ] {
            let n = normalize(json!({
                "id": "evt_1", "object": "event", "kind": kind,
                "data": { "id": "task_1", "object": "task", "job_id": "job_1" }
            }));
            assert_eq!(n.status, status, "{kind}");
            assert_eq!(n.ittybit_id.as_deref(), Some("job_1"));
        }
    }

    #[test]
    fn a_task_without_its_job_id_names_no_ittybit_job() {
        let n = normalize(json!({
            "id": "evt_1", "object": "event", "kind": "task.succeeded",
            "data": { "id": "task_1", "object": "task", "status": "succeeded" }
        }));
        assert_eq!(n.ittybit_id, None);
        assert_eq!(n.job_id, None);
    }

    #[test]
    fn status_words_map_onto_job_statuses() {
        for (raw, status) in [
            ("succeeded", Succeeded),
            ("completed", Succeeded),
            ("ready", Succeeded),
            ("Completed", Succeeded),
            ("failed", Failed),
            ("error", Failed),
            ("cancelled", Cancelled),
            ("canceled", Cancelled),
            ("queued", Queued),
            ("processing", Processing),
            ("pending", Processing),
            ("uploading", Processing),
            ("", Processing),
        ] {
            assert_eq!(normalize(json!({ "status": raw })).status, status, "{raw}");
        }
        assert_eq!(normalize(json!({ "id": "job_1" })).status, Processing);
    }

    #[test]
    fn output_url_follows_the_contract_order() {
        let url = |value: Value| normalize(value).output_url;
        let task = |u: &str| json!({ "output": { "url": u } });
        assert_eq!(
            url(
                json!({ "output": "https://a/1", "outputs": [{ "url": "https://a/2" }],
                        "tasks": [task("https://a/3")] })
            ),
            Some("https://a/1".into())
        );
        assert_eq!(
            url(json!({ "output": { "url": "https://a/1" }, "tasks": [task("https://a/3")] })),
            Some("https://a/1".into())
        );
        assert_eq!(
            url(
                json!({ "outputs": [{ "url": "https://a/2" }, { "url": "https://a/9" }],
                        "tasks": [task("https://a/3")] })
            ),
            Some("https://a/2".into())
        );
        assert_eq!(
            url(json!({ "tasks": [task("https://a/3"), task("https://a/4")] })),
            Some("https://a/4".into())
        );
        // The last task, not the last task with an output.
        assert_eq!(
            url(json!({ "tasks": [task("https://a/3"), { "output": null }] })),
            None
        );
        assert_eq!(url(json!({ "output": null, "outputs": [] })), None);
    }

    #[test]
    fn only_http_output_urls_are_kept() {
        let url = |value: Value| normalize(value).output_url;
        assert_eq!(url(json!({ "output": "s3://bucket/out.mp4" })), None);
        assert_eq!(url(json!({ "output": "javascript:alert(1)" })), None);
        assert_eq!(
            url(json!({ "output": " HTTP://cdn.example.com/a.mp4 " })),
            Some("HTTP://cdn.example.com/a.mp4".into())
        );
        // An unusable candidate falls through to the next one.
        assert_eq!(
            url(json!({ "output": "s3://bucket/out.mp4",
                        "outputs": [{ "url": "https://cdn.example.com/out.mp4" }] })),
            Some("https://cdn.example.com/out.mp4".into())
        );
    }

    #[test]
    fn error_is_a_string_or_a_message() {
        let error = |value: Value| normalize(json!({ "error": value })).error;
        assert_eq!(error(json!("boom")), Some("boom".into()));
        assert_eq!(
            error(json!({ "kind": "x", "message": "boom" })),
            Some("boom".into())
        );
        assert_eq!(error(json!({ "kind": "x" })), None);
        assert_eq!(error(json!("  ")), None);
        assert_eq!(error(json!(null)), None);
    }

    #[test]
    fn job_id_must_be_a_uuid() {
        let id = |value: Value| normalize(json!({ "metadata": { "job_id": value } })).job_id;
        assert_eq!(id(json!(JOB)), Some(job_id()));
        assert_eq!(id(json!("job_abc123")), None);
        assert_eq!(id(json!(42)), None);
        assert_eq!(normalize(json!({ "metadata": "x" })).job_id, None);
        assert_eq!(normalize(json!({})).job_id, None);
    }

    #[test]
    fn an_envelope_may_carry_the_job_id_outside_data() {
        let n = normalize(json!({
            "object": "event", "kind": "job.succeeded", "metadata": { "job_id": JOB },
            "data": { "id": "job_abc123", "metadata": { "job_id": "not-a-uuid" } }
        }));
        assert_eq!(n.job_id, Some(job_id()));
        assert_eq!(n.status, Succeeded);
    }

    #[test]
    fn progress_comes_from_the_object_or_its_tasks() {
        let progress = |value: Value| normalize(value).progress;
        assert_eq!(progress(json!({ "progress": 12 })), Some(12));
        assert_eq!(
            progress(json!({ "progress": 12, "tasks": [{ "progress": 80 }] })),
            Some(12)
        );
        assert_eq!(
            progress(json!({ "tasks": [{ "progress": 100 }, { "progress": 30 }] })),
            Some(30)
        );
        assert_eq!(
            progress(json!({ "tasks": [{ "progress": 70 }, { "progress": null }] })),
            Some(70)
        );
        assert_eq!(progress(json!({ "progress": 42.9 })), Some(42));
        assert_eq!(progress(json!({ "progress": 150 })), Some(100));
        assert_eq!(progress(json!({ "progress": -5 })), Some(0));
        assert_eq!(progress(json!({ "progress": null })), None);
        assert_eq!(progress(json!({ "tasks": [] })), None);
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_refused() {
        for body in [&b"{not json"[..], b"", b"\xff\xfe"] {
            assert!(matches!(
                normalize_webhook(body),
                Err(PayloadError::Json(_))
            ));
        }
        for body in [&b"[]"[..], b"\"succeeded\"", b"42", b"null"] {
            assert!(matches!(
                normalize_webhook(body),
                Err(PayloadError::NotAnObject)
            ));
        }
    }

    fn delivery(status: JobStatus, progress: Option<u8>) -> Normalized {
        Normalized {
            ittybit_id: None,
            job_id: None,
            status,
            progress,
            output_url: None,
            output: OutputFacts::default(),
            error: None,
        }
    }

    const PENDING: JobProgress = JobProgress {
        status: Pending,
        progress: None,
    };

    #[test]
    fn apply_moves_forward_only() {
        let queued = PENDING.apply(&delivery(Queued, None));
        assert_eq!(queued.status, Queued);
        let running = queued.apply(&delivery(Processing, Some(40)));
        assert_eq!(
            running,
            JobProgress {
                status: Processing,
                progress: Some(40)
            }
        );
        let stale = running.apply(&delivery(Queued, None));
        assert_eq!(stale, running);
        let behind = running.apply(&delivery(Processing, Some(10)));
        assert_eq!(behind.progress, Some(40));
        let ahead = running.apply(&delivery(Processing, Some(90)));
        assert_eq!(ahead.progress, Some(90));
    }

    #[test]
    fn success_means_complete_and_terminal_states_stick() {
        let done = PENDING
            .apply(&delivery(Processing, Some(30)))
            .apply(&delivery(Succeeded, None));
        assert_eq!(
            done,
            JobProgress {
                status: Succeeded,
                progress: Some(100)
            }
        );
        for later in [
            delivery(Failed, None),
            delivery(Processing, Some(5)),
            delivery(Queued, None),
        ] {
            assert_eq!(done.apply(&later), done);
        }
    }

    #[test]
    fn failure_freezes_progress() {
        let failed = PENDING
            .apply(&delivery(Processing, Some(30)))
            .apply(&delivery(Failed, Some(60)));
        assert_eq!(
            failed,
            JobProgress {
                status: Failed,
                progress: Some(30)
            }
        );
        assert_eq!(failed.apply(&delivery(Processing, Some(99))), failed);
        let cancelled = PENDING.apply(&delivery(Cancelled, None));
        assert_eq!(cancelled.progress, None);
        assert_eq!(cancelled.apply(&delivery(Succeeded, None)), cancelled);
    }

    /// One webhook delivery, before it is put on the wire.
    #[derive(Clone, Debug)]
    enum Delivery {
        Queued,
        Processing(Option<f64>),
        Terminal(JobStatus),
    }

    impl Delivery {
        /// The delivery as a body in one of the contract's three shapes.
        fn body(&self, shape: u8) -> Vec<u8> {
            let (status, progress) = match self {
                Delivery::Queued => ("queued", None),
                Delivery::Processing(p) => ("processing", *p),
                Delivery::Terminal(Succeeded) => {
                    if shape == 1 {
                        ("completed", None)
                    } else {
                        ("succeeded", None)
                    }
                }
                Delivery::Terminal(Failed) => ("failed", None),
                Delivery::Terminal(_) => ("canceled", None),
            };
            let output = (status == "succeeded" || status == "completed")
                .then_some("https://cdn.example.com/out.mp4");
            let body = match shape {
                0 => json!({
                    "id": "job_1", "object": "job", "status": status, "output": output,
                    "metadata": { "job_id": JOB },
                    "tasks": [{ "id": "task_1", "status": status, "progress": progress }]
                }),
                1 => json!({
                    "id": "job_1", "status": status, "output": { "url": output },
                    "metadata": { "job_id": JOB },
                    "tasks": [{ "progress": progress }]
                }),
                _ => json!({
                    "id": "evt_1", "object": "event", "kind": format!("task.{status}"),
                    "data": { "id": "task_1", "object": "task", "job_id": "job_1",
                              "status": status, "progress": progress,
                              "metadata": { "job_id": JOB },
                              "outputs": [{ "url": output }] }
                }),
            };
            body.to_string().into_bytes()
        }
    }

    fn non_terminal() -> impl Strategy<Value = Delivery> {
        prop_oneof![
            Just(Delivery::Queued),
            Just(Delivery::Processing(None)),
            (-10.0..120.0f64).prop_map(|p| Delivery::Processing(Some(p))),
        ]
    }

    /// Non-terminal deliveries plus one or more copies of a single outcome, in any order.
    fn deliveries() -> impl Strategy<Value = (JobStatus, Vec<(Delivery, u8)>)> {
        let outcome = prop_oneof![Just(Succeeded), Just(Failed), Just(Cancelled)];
        (
            prop::collection::vec(non_terminal(), 0..20),
            outcome,
            1..4usize,
        )
            .prop_flat_map(|(mut list, outcome, copies)| {
                list.extend(std::iter::repeat_n(Delivery::Terminal(outcome), copies));
                let shapes = prop::collection::vec(0..3u8, list.len());
                (Just(outcome), Just(list).prop_shuffle(), shapes)
            })
            .prop_map(|(outcome, list, shapes)| (outcome, list.into_iter().zip(shapes).collect()))
    }

    proptest! {
        #[test]
        fn any_delivery_order_ends_in_the_outcome((outcome, list) in deliveries()) {
            let mut state = PENDING;
            for (delivery, shape) in &list {
                let n = normalize_webhook(&delivery.body(*shape)).unwrap();
                prop_assert_eq!(n.job_id, Some(job_id()));
                prop_assert_eq!(n.ittybit_id.as_deref(), Some("job_1"));
                let next = state.apply(&n);
                prop_assert!(next.status.step() >= state.status.step());
                prop_assert!(next.progress >= state.progress);
                state = next;
            }
            prop_assert_eq!(state.status, outcome);
            if outcome == Succeeded {
                prop_assert_eq!(state.progress, Some(100));
            }
        }
    }
}
