//! Webhooks from the built-in processor, signed as Ittybit signs them.
//!
//! Each job with a `webhook_url` gets one delivery task fed through a `watch` channel, so only
//! the newest state is ever waiting: progress is sent at most every [`PROGRESS_EVERY`] and a
//! slow receiver sees fewer, newer reports rather than a backlog. A progress report that fails
//! is not retried (the next one supersedes it); the final report (succeeded or failed) is
//! retried with exponential backoff until the receiver answers 2xx or the attempts run out.

use std::time::{Duration, Instant};

use backon::Retryable;
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use reeltime::signature::sign;
use reeltime::SIGNATURE_HEADER;

use crate::backoff::Backoff;

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
    fn backoff(&self) -> Backoff {
        Backoff::new(self.first_delay, Duration::from_secs(300))
    }
}

/// Sends signed webhooks.
#[derive(Clone)]
pub struct WebhookSender {
    http: reqwest::Client,
    secret: SecretString,
    retry: RetryPolicy,
    /// Delivery tasks belong to the server's tasks and stop at its shutdown (a final report
    /// not yet accepted then is caught up by the dashboard's reconciler).
    tasks: TaskTracker,
    cancel: CancellationToken,
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

/// The next report to send, `None` once the job's handle is gone and nothing is left. A
/// progress report is held until [`PROGRESS_EVERY`] after the last one sent, taking newer
/// reports meanwhile; a final report goes at once.
async fn next_report(
    latest: &mut watch::Receiver<Option<Report>>,
    last_progress: Option<Instant>,
) -> Option<Report> {
    latest.changed().await.ok()?;
    let mut report = latest.borrow_and_update().clone()?;
    if let Some(sent) = last_progress {
        let pause = tokio::time::sleep_until((sent + PROGRESS_EVERY).into());
        tokio::pin!(pause);
        while !report.last {
            tokio::select! {
                _ = &mut pause => break,
                changed = latest.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if let Some(newer) = latest.borrow_and_update().clone() {
                        report = newer;
                    }
                }
            }
        }
    }
    Some(report)
}

impl WebhookSender {
    pub fn new(
        secret: SecretString,
        retry: RetryPolicy,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Result<WebhookSender, reqwest::Error> {
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
            tasks: tasks.clone(),
            cancel: cancel.clone(),
        })
    }

    /// Start delivering reports for a job to `url`.
    pub fn track(&self, task_id: String, url: String) -> JobWebhooks {
        let (reports, mut latest) = watch::channel::<Option<Report>>(None);
        let sender = self.clone();
        let deliveries = async move {
            let mut last_progress = None;
            while let Some(report) = next_report(&mut latest, last_progress).await {
                if report.last {
                    sender.deliver_until_accepted(&url, report.body).await;
                    return;
                }
                last_progress = Some(Instant::now());
                if let Err(problem) = sender.deliver(&url, report.body).await {
                    tracing::debug!(%problem, "a progress webhook was not accepted");
                }
            }
        };
        let cancel = self.cancel.clone();
        let span = tracing::info_span!("webhooks", %task_id);
        self.tasks.spawn(tracing::Instrument::instrument(
            async move {
                tokio::select! {
                    _ = deliveries => {}
                    _ = cancel.cancelled() => {}
                }
            },
            span,
        ));
        JobWebhooks { reports }
    }

    async fn deliver_until_accepted(&self, url: &str, body: Vec<u8>) {
        let retries = self.retry.max_attempts.saturating_sub(1) as usize;
        let delivered = (|| self.deliver(url, body.clone()))
            .retry(self.retry.backoff().builder(retries))
            .notify(|problem, wait| {
                tracing::info!(%problem, ?wait, "webhook not accepted; retrying");
            })
            .await;
        if let Err(problem) = delivered {
            tracing::warn!(%problem, attempts = self.retry.max_attempts, "webhook not accepted; giving up");
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
    use std::sync::{Arc, Mutex};
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    /// Records when each webhook arrived, and its `n`.
    #[derive(Clone, Default)]
    struct Arrivals(Arc<Mutex<Vec<(Instant, Value)>>>);

    impl Respond for Arrivals {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            self.0
                .lock()
                .unwrap()
                .push((Instant::now(), body["n"].clone()));
            ResponseTemplate::new(200)
        }
    }

    async fn receiver() -> (MockServer, Arrivals) {
        let server = MockServer::start().await;
        let arrivals = Arrivals::default();
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(arrivals.clone())
            .mount(&server)
            .await;
        (server, arrivals)
    }

    fn sender() -> WebhookSender {
        let retry = RetryPolicy {
            first_delay: Duration::from_millis(10),
            max_attempts: 3,
        };
        let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
        WebhookSender::new(SecretString::from("s"), retry, &tasks, &cancel).unwrap()
    }

    async fn wait_for(arrivals: &Arrivals, count: usize) -> Vec<(Instant, Value)> {
        for _ in 0..300 {
            if arrivals.0.lock().unwrap().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        arrivals.0.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn progress_is_sent_at_most_every_interval_and_only_the_newest() {
        let (server, arrivals) = receiver().await;
        let hooks = sender().track("job_1".into(), format!("{}/hook", server.uri()));
        for n in 1..=3 {
            hooks.progress(&serde_json::json!({ "n": n }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = wait_for(&arrivals, 2).await;
        let numbers: Vec<&Value> = got.iter().map(|(_, n)| n).collect();
        assert_eq!(
            numbers,
            [&serde_json::json!(1), &serde_json::json!(3)],
            "2 was superseded"
        );
        assert!(got[1].0 - got[0].0 >= PROGRESS_EVERY - Duration::from_millis(5));
    }

    #[tokio::test]
    async fn the_final_report_does_not_wait_for_the_progress_interval() {
        let (server, arrivals) = receiver().await;
        let hooks = sender().track("job_1".into(), format!("{}/hook", server.uri()));
        hooks.progress(&serde_json::json!({ "n": 1 }));
        wait_for(&arrivals, 1).await;
        hooks.progress(&serde_json::json!({ "n": 2 }));
        let finished = Instant::now();
        hooks.finish(&serde_json::json!({ "n": "final" }));
        let got = wait_for(&arrivals, 2).await;
        assert_eq!(got[1].1, "final", "2 was superseded by the final report");
        assert!(
            got[1].0 - finished < PROGRESS_EVERY / 2,
            "the final report went at once, not after the interval"
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes() {
        let policy = RetryPolicy {
            first_delay: Duration::from_secs(1),
            max_attempts: 10,
        };
        let backoff = policy.backoff();
        for (failures, base) in [(1, 1), (2, 2), (4, 8), (30, 300)] {
            let got = backoff.delay(failures);
            let base = Duration::from_secs(base);
            assert!(got >= base && got < base * 2, "{failures}: {got:?}");
        }
    }

    #[tokio::test]
    async fn a_final_report_is_retried_until_accepted() {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(ResponseTemplate::new(500))
            .up_to_n_times(2)
            .mount(&server)
            .await;
        let (_, arrivals) = (0, Arrivals::default());
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(arrivals.clone())
            .mount(&server)
            .await;
        let hooks = sender().track("job_1".into(), format!("{}/hook", server.uri()));
        hooks.finish(&serde_json::json!({ "n": "final" }));
        let got = wait_for(&arrivals, 1).await;
        assert_eq!(got.len(), 1, "accepted on the third attempt");
        assert_eq!(server.received_requests().await.unwrap().len(), 3);
    }
}
