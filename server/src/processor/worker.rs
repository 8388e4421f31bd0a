//! The worker pool: each worker takes the oldest queued job, fetches its input, probes it,
//! runs ffmpeg, probes the output and reports, then takes the next.
//!
//! Queued jobs wait in `processor_jobs`; a worker claims one with `FOR UPDATE SKIP LOCKED`
//! and a lease it extends while ffmpeg runs, so a job whose process died is picked up again
//! once its lease has run out, by this instance after a restart or by another on the same
//! database.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reeltime::JobKind;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::media::{
    content_type, ffmpeg_args, file_arg, output_extension, MediaOptions, ProgressParser,
};
use super::probe::{failure_reason, ffprobe_args, parse_probe, Probe};
use super::store::{self, ProcessorJob, MAX_STARTS};
use super::webhook::{JobWebhooks, PROGRESS_EVERY};
use super::Processor;

/// How long a claimed job stays its worker's without news; extended every few seconds.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often the lease is extended when progress has not moved.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long ffprobe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries at downloading an input when the failures are worth retrying.
const FETCH_ATTEMPTS: u32 = 3;
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
        let hooks = job
            .webhook_url
            .clone()
            .map(|url| self.inner.webhooks.track(job.id.clone(), url));
        let started = Instant::now();
        let result = if job.attempts > MAX_STARTS {
            Err(format!(
                "processing was interrupted {MAX_STARTS} times; giving up"
            ))
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
        match &result {
            Ok(_) => {
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "job succeeded"
                )
            }
            Err(reason) => tracing::info!(%reason, "job failed"),
        }
        let outcome = result.as_ref().map_err(String::as_str);
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

    /// Does the work; `Ok` is the output's file object, `Err` a reason for a person.
    async fn process(
        &self,
        job: &ProcessorJob,
        hooks: Option<&JobWebhooks>,
    ) -> Result<Value, String> {
        let kind: JobKind = job.kind.parse().map_err(|err| format!("{err}"))?;
        let options = MediaOptions::parse(kind, &job.options).map_err(|err| err.to_string())?;
        let dirs = &self.inner.dirs;

        let input = dirs.work.join(format!("{}.input", job.id));
        let _input_guard = RemoveOnDrop(input.clone());
        self.fetch(&job.input, &input).await?;

        let probe = self.probe(&input).await?;
        probe.check_kind(kind).map_err(|err| err.to_string())?;
        let max = self.inner.settings.max_duration;
        if let Some(duration) = probe.duration.filter(|d| *d > max.as_secs_f64()) {
            return Err(format!(
                "the input is {duration:.0} s long, over the {} s limit \
                 (REELTIME_PROCESSOR_MAX_DURATION_SECS)",
                max.as_secs()
            ));
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
            .map_err(|err| format!("could not keep the output: {err}"))?;
        drop(part_guard);
        let size = tokio::fs::metadata(&output)
            .await
            .map(|meta| meta.len())
            .map_err(|err| format!("could not read the output: {err}"))?;
        let facts = self.probe(&output).await.unwrap_or_default();
        Ok(json!({
            "object": "file",
            "kind": kind.as_str(),
            "url": format!("{}/{name}", self.inner.settings.files_url),
            "format": ext,
            "content_type": content_type(ext),
            "width": facts.width,
            "height": facts.height,
            "duration": facts.duration,
            "size": size,
        }))
    }

    /// Downloads the input, trying again after a network failure, a timeout or a 5xx.
    async fn fetch(&self, url: &str, dest: &Path) -> Result<(), String> {
        let mut attempt = 1;
        loop {
            match self.inner.fetcher.download(url, dest).await {
                Ok(_) => return Ok(()),
                Err(err) if err.is_retryable() && attempt < FETCH_ATTEMPTS => {
                    tracing::info!(attempt, problem = %err, "fetching an input failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                    attempt += 1;
                }
                Err(err) => return Err(err.to_string()),
            }
        }
    }

    /// What ffprobe says about a local file.
    async fn probe(&self, path: &Path) -> Result<Probe, String> {
        let run = Command::new(&self.inner.settings.ffprobe)
            .args(ffprobe_args(&file_arg(path)))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(PROBE_TIMEOUT, run)
            .await
            .map_err(|_| "ffprobe took too long to read the input".to_owned())?
            .map_err(|err| missing_tool("ffprobe", &err))?;
        if !output.status.success() {
            return Err(failure_reason(&String::from_utf8_lossy(&output.stderr)));
        }
        parse_probe(&output.stdout).map_err(|err| err.to_string())
    }

    /// Runs ffmpeg, turning its `-progress` output into progress reports at most every
    /// [`PROGRESS_EVERY`], and extending the job's lease as it goes.
    async fn ffmpeg(
        &self,
        job: &ProcessorJob,
        args: &[String],
        expected_secs: Option<f64>,
        hooks: Option<&JobWebhooks>,
    ) -> Result<(), String> {
        let mut child = Command::new(&self.inner.settings.ffmpeg)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| missing_tool("ffmpeg", &err))?;
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
        let status = child
            .wait()
            .await
            .map_err(|err| format!("ffmpeg did not finish: {err}"))?;
        if status.success() {
            return Ok(());
        }
        let stderr = match stderr {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        Err(format!(
            "ffmpeg could not process the input: {}",
            failure_reason(&stderr)
        ))
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

fn missing_tool(tool: &str, err: &std::io::Error) -> String {
    if err.kind() == std::io::ErrorKind::NotFound {
        format!("{tool} is not installed on the server")
    } else {
        format!("could not run {tool}: {err}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_says_so() {
        let err = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(
            missing_tool("ffmpeg", &err),
            "ffmpeg is not installed on the server"
        );
    }

    #[tokio::test]
    async fn stderr_is_kept_up_to_its_limit_and_the_rest_drained() {
        let big = vec![b'x'; (STDERR_LIMIT as usize) + 10];
        let kept = read_limited(&big[..]).await;
        assert_eq!(kept.len(), STDERR_LIMIT as usize);
    }
}
