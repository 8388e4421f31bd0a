//! The worker pool: each worker takes the oldest queued job, fetches its input, probes it,
//! runs ffmpeg, probes the output and reports, then takes the next.
//!
//! Queued jobs wait in `processor_jobs`; a worker claims one with `FOR UPDATE SKIP LOCKED`
//! and a lease it extends while ffmpeg runs, so a job whose process died is picked up again
//! once its lease has run out, by this instance after a restart or by another on the same
//! database.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use backon::Retryable;
use reeltime::JobKind;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::error::{JobError, Tool};
use super::fetch::FetchError;
use super::media::{
    content_type, ffmpeg_args, file_arg, output_extension, MediaOptions, ProgressParser,
};
use super::probe::{failure_reason, ffprobe_args, parse_probe, Probe};
use super::store::{self, Done, ProcessorJob, MAX_STARTS};
use super::webhook::{JobWebhooks, PROGRESS_EVERY};
use super::Processor;
use crate::backoff::Backoff;

/// How long a claimed job stays its worker's without news; extended every few seconds.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often the lease is extended when progress has not moved.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long ffprobe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries at downloading an input when the failures are worth retrying.
const FETCH_ATTEMPTS: usize = 3;
/// The waits between them.
const FETCH_RETRY: Backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(8));
/// How much of ffmpeg's stderr is kept for the error message.
const STDERR_LIMIT: u64 = 64 * 1024;

/// One worker: claim, process, repeat, until `cancel`.
pub async fn run(processor: Processor, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        match store::claim(processor.pool(), LEASE).await {
            Ok(Some(job)) => processor.run_job(job, &cancel).await,
            Ok(None) => {
                tokio::select! {
                    _ = processor.inner.wake.notified() => {}
                    // Another instance's jobs, and leases that ran out.
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = cancel.cancelled() => {}
                }
            }
            Err(err) => {
                if processor.pool().is_closed() {
                    return;
                }
                tracing::warn!(error = %err, "the processor could not claim a job");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = cancel.cancelled() => {}
                }
            }
        }
    }
}

/// Deletes a file when dropped (inputs and partial outputs, whatever happens).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Processor {
    /// Process one claimed job to its end. On `cancel` (shutdown), ffmpeg is stopped and the
    /// job goes back to the queue for the next start.
    #[tracing::instrument(name = "process", skip_all, fields(task_id = %job.id, job_id = tracing::field::Empty))]
    pub(super) async fn run_job(&self, job: ProcessorJob, cancel: &CancellationToken) {
        if let Some(job_id) = job.metadata.get("job_id").and_then(Value::as_str) {
            tracing::Span::current().record("job_id", job_id);
        }
        let _busy = crate::metrics::GaugeGuard::new(crate::metrics::WORKERS_BUSY);
        let hooks = job
            .webhook_url
            .clone()
            .map(|url| self.inner.webhooks.track(job.id.clone(), url));
        let started = Instant::now();
        let result = if job.attempts > MAX_STARTS {
            Err(JobError::Interrupted(MAX_STARTS))
        } else {
            if let Some(hooks) = &hooks {
                hooks.progress(&job.to_json());
            }
            tokio::select! {
                result = self.process(&job, hooks.as_ref()) => result,
                _ = cancel.cancelled() => {
                    // Dropping `process` kills ffmpeg; the job waits for the next start.
                    if let Err(err) = store::requeue(self.pool(), &job.id).await {
                        tracing::warn!(error = %err, "could not requeue a job");
                    }
                    return;
                }
            }
        };
        let message = match &result {
            Ok(_) => {
                let elapsed_ms = started.elapsed().as_millis() as u64;
                tracing::info!(elapsed_ms, "job succeeded");
                None
            }
            Err(err) => {
                err.log();
                Some(err.message())
            }
        };
        let outcome = match (&result, &message) {
            (Ok(file), _) => Ok(file),
            (Err(_), message) => Err(message.as_deref().unwrap_or_default()),
        };
        match store::finish(self.pool(), &job.id, outcome).await {
            Ok(Some(finished)) => {
                if let Some(hooks) = hooks {
                    hooks.finish(&finished.to_json());
                }
            }
            Ok(None) => {}
            Err(err) => {
                // The lease runs out and the job is processed again.
                tracing::error!(error = %err, "could not record a finished job");
            }
        }
    }

    /// Does the work; `Ok` is the output's file object and the input's size.
    async fn process(
        &self,
        job: &ProcessorJob,
        hooks: Option<&JobWebhooks>,
    ) -> Result<Done, JobError> {
        self.check_disk()?;
        let kind: JobKind = job.kind.parse().map_err(JobError::input)?;
        let options = MediaOptions::parse(kind, &job.options).map_err(JobError::input)?;
        let dirs = &self.inner.dirs;

        let input = dirs.work.join(format!("{}.input", job.id));
        let _input_guard = RemoveOnDrop(input.clone());
        let input_size = self.fetch(&job.input, &input).await?;

        let probe = self.probe(&input).await?;
        probe.check_kind(kind).map_err(JobError::input)?;
        let max = self.inner.settings.max_duration;
        if let Some(duration) = probe.duration.filter(|d| *d > max.as_secs_f64()) {
            return Err(JobError::Input(format!(
                "the input is {duration:.0} s long, over the {} s limit \
                 (REELTIME_PROCESSOR_MAX_DURATION_SECS)",
                max.as_secs()
            )));
        }

        let ext = output_extension(&options);
        let name = format!("{}.{ext}", job.id);
        let part = dirs.outputs.join(format!("{}.part.{ext}", job.id));
        let part_guard = RemoveOnDrop(part.clone());
        let args = ffmpeg_args(&options, &file_arg(&input), &file_arg(&part));
        let expected = options.expected_duration(probe.duration);
        self.ffmpeg(job, &args, expected, hooks).await?;

        let output = dirs.outputs.join(&name);
        tokio::fs::rename(&part, &output)
            .await
            .map_err(JobError::io("keep the output"))?;
        drop(part_guard);
        let size = tokio::fs::metadata(&output)
            .await
            .map(|meta| meta.len())
            .map_err(JobError::io("read the output"))?;
        let facts = self.probe(&output).await.unwrap_or_default();
        let output = json!({
            "object": "file",
            "kind": kind.as_str(),
            "url": format!("{}/{name}", self.inner.settings.files_url),
            "format": ext,
            "content_type": content_type(ext),
            "width": facts.width,
            "height": facts.height,
            "duration": facts.duration,
            "size": size,
        });
        Ok(Done { output, input_size })
    }

    /// Downloads the input, trying again after a network failure, a timeout or a 5xx; `Ok` is
    /// its size in bytes.
    async fn fetch(&self, url: &str, dest: &Path) -> Result<u64, JobError> {
        let fetched = (|| self.inner.fetcher.download(url, dest))
            .retry(FETCH_RETRY.builder(FETCH_ATTEMPTS - 1))
            .when(FetchError::is_retryable)
            .notify(|problem, wait| {
                tracing::info!(%problem, ?wait, "fetching an input failed; retrying");
            })
            .await;
        match fetched {
            Ok(bytes) => Ok(bytes),
            Err(FetchError::Io(source)) => Err(JobError::Io {
                action: "save the downloaded input",
                source,
            }),
            Err(err) => Err(JobError::input(err)),
        }
    }

    /// What ffprobe says about a local file.
    async fn probe(&self, path: &Path) -> Result<Probe, JobError> {
        let run = Command::new(&self.inner.settings.ffprobe)
            .args(ffprobe_args(&file_arg(path)))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(PROBE_TIMEOUT, run)
            .await
            .map_err(|_| JobError::input("ffprobe took too long to read the input"))?
            .map_err(|err| JobError::spawn(Tool::Ffprobe, &err))?;
        if let Some(signal) = output.status.signal() {
            return Err(JobError::ToolFailed {
                tool: Tool::Ffprobe,
                reason: format!("it was killed by signal {signal}"),
            });
        }
        if !output.status.success() {
            return Err(JobError::Input(failure_reason(&String::from_utf8_lossy(
                &output.stderr,
            ))));
        }
        parse_probe(&output.stdout).map_err(|err| JobError::ToolFailed {
            tool: Tool::Ffprobe,
            reason: err.to_string(),
        })
    }

    /// Runs ffmpeg, turning its `-progress` output into progress reports at most every
    /// [`PROGRESS_EVERY`], and extending the job's lease as it goes.
    async fn ffmpeg(
        &self,
        job: &ProcessorJob,
        args: &[String],
        expected_secs: Option<f64>,
        hooks: Option<&JobWebhooks>,
    ) -> Result<(), JobError> {
        let mut child = Command::new(&self.inner.settings.ffmpeg)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| JobError::spawn(Tool::Ffmpeg, &err))?;
        let stderr = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(read_limited(stderr)));
        let mut lines = child.stdout.take().map(|out| BufReader::new(out).lines());

        let mut parser = ProgressParser::new(expected_secs);
        let mut reported = 0u8;
        let mut last_write = Instant::now();
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while let Some(reader) = lines.as_mut() {
            tokio::select! {
                line = reader.next_line() => match line {
                    Ok(Some(line)) => {
                        parser.feed_line(&line);
                    }
                    _ => lines = None,
                },
                _ = tick.tick() => {
                    let percent = parser.percent().min(99);
                    if percent > reported || last_write.elapsed() >= HEARTBEAT {
                        last_write = Instant::now();
                        match store::progress(self.pool(), &job.id, percent, LEASE).await {
                            Ok(Some(row)) if percent > reported => {
                                reported = percent;
                                if let Some(hooks) = hooks {
                                    hooks.progress(&row.to_json());
                                }
                            }
                            Ok(_) => {}
                            Err(err) => tracing::warn!(error = %err, "could not record progress"),
                        }
                    }
                }
            }
        }
        let status = child.wait().await.map_err(|err| JobError::ToolFailed {
            tool: Tool::Ffmpeg,
            reason: format!("waiting for it failed ({err})"),
        })?;
        if status.success() {
            return Ok(());
        }
        if let Some(signal) = status.signal() {
            return Err(JobError::ToolFailed {
                tool: Tool::Ffmpeg,
                reason: format!("it was killed by signal {signal}"),
            });
        }
        let stderr = match stderr {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        Err(JobError::Input(format!(
            "ffmpeg could not process the input: {}",
            failure_reason(&stderr)
        )))
    }
}

/// Up to [`STDERR_LIMIT`] bytes of a stream, then drains the rest.
async fn read_limited(stream: impl AsyncRead + Unpin) -> String {
    let mut kept = Vec::new();
    let mut limited = stream.take(STDERR_LIMIT);
    let _ = limited.read_to_end(&mut kept).await;
    let _ = tokio::io::copy(&mut limited.into_inner(), &mut tokio::io::sink()).await;
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stderr_is_kept_up_to_its_limit_and_the_rest_drained() {
        let big = vec![b'x'; (STDERR_LIMIT as usize) + 10];
        let kept = read_limited(&big[..]).await;
        assert_eq!(kept.len(), STDERR_LIMIT as usize);
    }
}
