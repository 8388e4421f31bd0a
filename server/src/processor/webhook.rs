//! Webhooks from the built-in processor, signed as Ittybit signs them.
//!
//! Each job with a `webhook_url` gets one delivery task fed through a `watch` channel, so only
//! the newest state is ever waiting: progress is sent at most every [`PROGRESS_EVERY`] and a
//! slow receiver sees fewer, newer reports rather than a backlog. A progress report that fails
//! is not retried (the next one supersedes it); the final report (succeeded or failed) is
//! retried with exponential backoff until the receiver answers 2xx or the attempts run out.

use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::watch;

use reeltime::signature::sign;
use reeltime::SIGNATURE_HEADER;

/// Shortest gap between two progress webhooks for one job.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// How final webhooks are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// The wait before the second attempt; it doubles after each failure, up to 5 minutes.
    pub first_delay: Duration,
    pub max_attempts: u32,
}

impl RetryPolicy {
    fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
        self.first_delay
            .saturating_mul(factor)
            .min(Duration::from_secs(300))
    }
}

/// Sends signed webhooks.
#[derive(Clone)]
pub struct WebhookSender {
    http: reqwest::Client,
    secret: SecretString,
    retry: RetryPolicy,
}

/// One report to send.
#[derive(Clone, Debug)]
struct Report {
    body: Vec<u8>,
    last: bool,
}

/// Feeds one job's delivery task.
pub struct JobWebhooks {
    reports: watch::Sender<Option<Report>>,
}

impl JobWebhooks {
    /// Report the job's current state (progress); superseded by any later report.
    pub fn progress(&self, job: &Value) {
        self.send(job, false);
    }

    /// Report the job's final state and let the delivery task finish.
    pub fn finish(self, job: &Value) {
        self.send(job, true);
    }

    fn send(&self, job: &Value, last: bool) {
        let body = job.to_string().into_bytes();
        let _ = self.reports.send(Some(Report { body, last }));
    }
}

impl WebhookSender {
    pub fn new(secret: SecretString, retry: RetryPolicy) -> Result<WebhookSender, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Ittybit's receivers must answer within 5 s.
            .timeout(Duration::from_secs(5))
            .user_agent(concat!("reeltime-processor/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookSender {
            http,
            secret,
            retry,
        })
    }

    /// Start delivering reports for a job to `url`.
    pub fn track(&self, job_id: String, url: String) -> JobWebhooks {
        let (reports, mut latest) = watch::channel::<Option<Report>>(None);
        let sender = self.clone();
        tokio::spawn(async move {
            while latest.changed().await.is_ok() {
                let Some(report) = latest.borrow_and_update().clone() else {
                    continue;
                };
                let started = Instant::now();
                if report.last {
                    sender
                        .deliver_until_accepted(&job_id, &url, report.body)
                        .await;
                    return;
                }
                if let Err(problem) = sender.deliver(&url, report.body).await {
                    tracing::debug!(job = %job_id, %problem, "a progress webhook was not accepted");
                }
                tokio::time::sleep(PROGRESS_EVERY.saturating_sub(started.elapsed())).await;
            }
        });
        JobWebhooks { reports }
    }

    async fn deliver_until_accepted(&self, job_id: &str, url: &str, body: Vec<u8>) {
        for attempt in 1..=self.retry.max_attempts {
            match self.deliver(url, body.clone()).await {
                Ok(()) => return,
                Err(problem) if attempt < self.retry.max_attempts => {
                    let wait = self.retry.delay(attempt);
                    tracing::info!(job = %job_id, attempt, %problem, ?wait, "webhook not accepted; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(problem) => {
                    tracing::warn!(job = %job_id, attempt, %problem, "webhook not accepted; giving up");
                }
            }
        }
    }

    /// One POST; `Ok` when the receiver answered 2xx.
    async fn deliver(&self, url: &str, body: Vec<u8>) -> Result<(), String> {
        let signature = sign(self.secret.expose_secret().as_bytes(), &body);
        let response = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|err| err.without_url().to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered HTTP {}", response.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes() {
        let policy = RetryPolicy {
            first_delay: Duration::from_secs(1),
            max_attempts: 10,
        };
        assert_eq!(policy.delay(1), Duration::from_secs(1));
        assert_eq!(policy.delay(2), Duration::from_secs(2));
        assert_eq!(policy.delay(4), Duration::from_secs(8));
        assert_eq!(policy.delay(30), Duration::from_secs(300));
    }
}
