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
    /// The input as a file object: a Reeltime extension (the built-in processor sends it,
    /// with the downloaded input's `size`; Ittybit does not).
    #[serde(deserialize_with = "lenient_file")]
    pub input: Option<IttybitFile>,
    /// How the work was done: a Reeltime extension (the built-in processor sends its ffmpeg
    /// command, the input's and output's probe facts, and on failure the end of ffmpeg's
    /// stderr), kept for the job's page. Anything but an object is ignored.
    pub details: Value,
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
    /// The input: the URL string the job was created with, or a file object.
    #[serde(deserialize_with = "lenient_file")]
    pub input: Option<IttybitFile>,
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
            input_size: self.input_size(),
            details: self
                .tasks
                .last()
                .map(|task| &task.details)
                .filter(|details| details.is_object())
                .cloned(),
            error: self.error.clone(),
        }
    }

    /// The input's size: from the job's `input` if it is a file object with one, else from
    /// the last task's `input` (the built-in processor's extension, decision 007).
    fn input_size(&self) -> Option<u64> {
        let last_task = self.tasks.last().and_then(|task| task.input.as_ref());
        [self.input.as_ref(), last_task]
            .into_iter()
            .flatten()
            .find_map(|file| file.size)
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
    /// The input's size in bytes, when the processor says (a Reeltime extension).
    pub input_size: Option<u64>,
    /// How the work was done, when the processor says (a Reeltime extension).
    pub details: Option<Value>,
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
mod tests;
