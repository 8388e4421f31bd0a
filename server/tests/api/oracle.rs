//! The domain's rules for folding a report into a job, written out in Rust: the oracle the one
//! SQL statement that applies reports (`app::db::jobs::apply_report`) is checked against, here
//! by the property test and over HTTP by `bench -- chaos` (which includes this file).
//!
//! Status moves by `JobStatus::advance` (forward only, never out of a terminal state); progress
//! never goes backwards, is 100 on success and frozen by any other terminal state; the output
//! is kept on success and the error on failure; the processor's id is kept once known.

use reeltime::{JobStatus, Normalized};
use serde_json::json;

/// What a job should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub status: JobStatus,
    pub progress: Option<i16>,
    pub output_url: Option<String>,
    pub error: Option<String>,
    pub task_id: Option<String>,
}

impl Expected {
    /// A job the processor has accepted, before any report.
    pub fn queued() -> Expected {
        Expected {
            status: JobStatus::Queued,
            progress: None,
            output_url: None,
            error: None,
            task_id: None,
        }
    }

    /// The job after `report` from `service`.
    pub fn apply(&self, report: &Normalized, service: &str) -> Expected {
        if self.status.is_terminal() {
            return self.clone();
        }
        let status = self.status.advance(report.status);
        let advanced = status != self.status;
        let progress = match status {
            JobStatus::Succeeded => Some(100),
            terminal if terminal.is_terminal() => self.progress,
            _ => self.progress.max(report.progress.map(i16::from)),
        };
        let succeeded = advanced && status == JobStatus::Succeeded;
        let failed = advanced && status == JobStatus::Failed;
        Expected {
            status,
            progress,
            output_url: match succeeded {
                true => report.output_url.clone().or(self.output_url.clone()),
                false => self.output_url.clone(),
            },
            error: match failed {
                true => Some(
                    report
                        .error
                        .clone()
                        .unwrap_or_else(|| format!("{service} reported that the job failed.")),
                ),
                false => self.error.clone(),
            },
            task_id: self.task_id.clone().or(report.ittybit_id.clone()),
        }
    }
}

/// One webhook delivery, before it is put on the wire.
#[derive(Clone, Debug)]
pub enum Delivery {
    Queued(Option<f64>),
    Processing(Option<f64>),
    Terminal(JobStatus),
}

impl Delivery {
    /// The delivery about dashboard job `job_id` (Ittybit's `ittybit_id`) as a body in one of
    /// the contract's three shapes: 0 the job object, 1 the guide's, 2 an event envelope.
    pub fn body(&self, shape: u8, job_id: &str, ittybit_id: &str) -> Vec<u8> {
        let (status, progress) = match self {
            Delivery::Queued(p) => ("queued", *p),
            Delivery::Processing(p) => ("processing", *p),
            Delivery::Terminal(JobStatus::Succeeded) if shape == 1 => ("completed", None),
            Delivery::Terminal(JobStatus::Succeeded) => ("succeeded", None),
            Delivery::Terminal(JobStatus::Failed) => ("failed", None),
            Delivery::Terminal(_) => ("canceled", None),
        };
        let output = matches!(status, "succeeded" | "completed")
            .then(|| format!("https://cdn.example.com/{ittybit_id}.mp4"));
        let error = (status == "failed").then_some("unsupported codec");
        let body = match shape {
            0 => json!({
                "id": ittybit_id, "object": "job", "status": status, "output": output,
                "error": error, "metadata": { "job_id": job_id },
                "tasks": [{ "id": "task_1", "status": status, "progress": progress }]
            }),
            1 => json!({
                "id": ittybit_id, "status": status, "output": { "url": output },
                "error": { "message": error }, "metadata": { "job_id": job_id },
                "tasks": [{ "progress": progress }]
            }),
            _ => json!({
                "id": "evt_1", "object": "event", "kind": format!("task.{status}"),
                "data": { "id": "task_1", "object": "task", "job_id": ittybit_id,
                          "status": status, "progress": progress,
                          "metadata": { "job_id": job_id },
                          "outputs": [{ "url": output }] }
            }),
        };
        body.to_string().into_bytes()
    }
}
