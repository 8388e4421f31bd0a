//! The worker pool: each worker takes the oldest queued job, fetches its input, probes it,
//! runs ffmpeg, probes the output and reports, then takes the next.
//!
//! Queued jobs wait in `processor_jobs`; a worker claims one with `FOR UPDATE SKIP LOCKED`
//! and a lease in its own name ([`store::claim`]), kept alive by a heartbeat for the whole
//! attempt ([`Heartbeat`]), so a job whose process died is picked up again once its lease has
//! run out, by this instance after a restart or by another on the same database, and a job
//! whose worker is merely slow never is. Every write of an attempt names its lease; an attempt
//! that lost it stops its ffmpeg and writes nothing. Each attempt works in a directory of its
//! own ([`WorkDir`]).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use backon::Retryable;
use reeltime::JobKind;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::confine::Group;
use super::error::{JobError, Tool};
use super::fetch::FetchError;
use super::lease::Heartbeat;
use super::media::{content_type, ffmpeg_args, output_extension, MediaOptions};
use super::probe::{failure_reason, ffprobe_args, parse_probe, Probe};
use super::run::{Attempt, Details};
use super::store::{self, Done, ProcessorJob, MAX_STARTS};
use super::workdir::{self, WorkDir};
use super::Processor;
use crate::backoff::Backoff;
use crate::storage::Key;

/// How long ffprobe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries at downloading an input when the failures are worth retrying.
const FETCH_ATTEMPTS: usize = 3;
/// The waits between them.
const FETCH_RETRY: Backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(8));

/// One worker: claim, process, repeat, until `cancel`.
pub async fn run(processor: Processor, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        match processor.claim().await {
            Ok(Some((job, owner))) => processor.run_job(job, owner, &cancel).await,
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

impl Processor {
    /// Claim the next job under a new lease token.
    pub(super) async fn claim(&self) -> Result<Option<(ProcessorJob, Uuid)>, sqlx::Error> {
        let owner = Uuid::new_v4();
        let job = store::claim(self.pool(), self.inner.settings.lease.length, owner).await?;
        Ok(job.map(|job| (job, owner)))
    }

    /// Process one claimed job to its end. On `cancel` (shutdown), ffmpeg is stopped and the
    /// job goes back to the queue for the next start; if the lease is lost, ffmpeg is stopped
    /// and nothing is written.
    #[tracing::instrument(name = "process", skip_all, fields(task_id = %job.id, job_id = tracing::field::Empty))]
    pub(super) async fn run_job(&self, job: ProcessorJob, owner: Uuid, cancel: &CancellationToken) {
        if let Some(job_id) = job.metadata.get("job_id").and_then(Value::as_str) {
            tracing::Span::current().record("job_id", job_id);
        }
        let _busy = crate::metrics::GaugeGuard::new(crate::metrics::WORKERS_BUSY);
        let _listed = self.inner.running.hold(&job.id);
        let heartbeat = Heartbeat::start(
            self.pool().clone(),
            job.id.clone(),
            owner,
            self.inner.settings.lease,
        );
        let hooks = job
            .webhook_url
            .clone()
            .map(|url| self.inner.webhooks.track(job.id.clone(), url));
        let started = Instant::now();
        let mut details = Details::default();
        let result = if job.attempts > MAX_STARTS {
            Err(JobError::Interrupted(MAX_STARTS))
        } else {
            if let Some(hooks) = &hooks {
                hooks.progress(&job.to_json());
            }
            let attempt = Attempt {
                job: &job,
                owner,
                hooks: hooks.as_ref(),
            };
            tokio::select! {
                result = self.process(&attempt, &mut details) => result,
                _ = cancel.cancelled() => {
                    // Dropping `process` kills ffmpeg; the job waits for the next start.
                    if let Err(err) = store::requeue(self.pool(), &job.id, owner).await {
                        tracing::warn!(error = %err, "could not requeue a job");
                    }
                    return;
                }
                _ = heartbeat.lost().cancelled() => {
                    // Another worker has the job now: stop, and leave it to that one.
                    return;
                }
            }
        };
        drop(heartbeat);
        let message = match &result {
            Ok(_) => {
                let elapsed_ms = started.elapsed().as_millis() as u64;
                tracing::info!(elapsed_ms, "job succeeded");
                None
            }
            Err(err) => {
                err.log();
                details.failure = err.technical();
                Some(err.message())
            }
        };
        let outcome = match (&result, &message) {
            (Ok(file), _) => Ok(file),
            (Err(_), message) => Err(message.as_deref().unwrap_or_default()),
        };
        let details = serde_json::to_value(&details).unwrap_or_default();
        match store::finish(self.pool(), &job.id, owner, outcome, &details).await {
            Ok(Some(finished)) => {
                if let Some(hooks) = hooks {
                    hooks.finish(&finished.to_json());
                }
            }
            Ok(None) => {
                tracing::warn!("the job was no longer this worker's; its result is dropped")
            }
            Err(err) => {
                // The lease runs out and the job is processed again.
                tracing::error!(error = %err, "could not record a finished job");
            }
        }
    }

    /// Does the work in the attempt's own directory; `Ok` is the output's file object and the
    /// input's size.
    async fn process(
        &self,
        attempt: &Attempt<'_>,
        details: &mut Details,
    ) -> Result<Done, JobError> {
        let job = attempt.job;
        self.check_disk()?;
        let kind: JobKind = job.kind.parse().map_err(JobError::input)?;
        let options = MediaOptions::parse(kind, &job.options).map_err(JobError::input)?;
        let settings = &self.inner.settings;
        let run_as = settings.confine.run_as;
        let dir = WorkDir::create(&self.inner.dirs.work, &job.id, attempt.owner, run_as)
            .await
            .map_err(JobError::io("make a work directory"))?;

        // Named without extensions, so no demuxer guesses from a name.
        let input = dir.join("input");
        let input_size = self.fetch(&job.input, &input).await?;
        if let Some(user) = run_as {
            workdir::hand_over(&input, user).map_err(JobError::io("hand the input to ffmpeg"))?;
        }

        let probe = self.probe(dir.path(), "input").await?;
        details.input = Some(probe.clone());
        probe.check_kind(kind).map_err(JobError::input)?;
        let max = settings.limits.max_duration;
        if let Some(duration) = probe.duration.filter(|d| *d > max.as_secs_f64()) {
            return Err(JobError::Input(format!(
                "the input is {duration:.0} s long, over the {} s limit \
                 (REELTIME_PROCESSOR_MAX_DURATION_SECS)",
                max.as_secs()
            )));
        }

        let ext = output_extension(&options);
        let part = dir.join("output");
        // Named relative to the attempt's directory, ffmpeg's working directory: the command
        // a job's page shows holds no server path.
        let mut args = ffmpeg_args(&options, "file:input", "file:output");
        settings.confine.apply_threads(&mut args);
        let expected = options.expected_duration(probe.duration);
        let time_limit = settings.limits.time_limit_for(&options, probe.duration);
        details.command = Some(Details::command_line("ffmpeg", &args));
        self.ffmpeg(attempt, dir.path(), &args, expected, time_limit, details)
            .await?;

        let size = tokio::fs::metadata(&part)
            .await
            .map(|meta| meta.len())
            .map_err(JobError::io("read the output"))?;
        let facts = self.probe(dir.path(), "output").await.unwrap_or_default();
        details.output = Some(facts.clone());
        let name = format!("{}.{ext}", job.id);
        // Streamed to the store in parts; the attempt's directory (and the local copy) goes
        // when the attempt ends.
        self.inner
            .storage
            .put_file(&Key::output(&name), &part)
            .await
            .map_err(|err| JobError::io("store the output")(err.into()))?;
        let output = json!({
            "object": "file",
            "kind": kind.as_str(),
            "url": format!("{}/{name}", settings.files_url),
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
            Err(err) => Err(JobError::Download(err)),
        }
    }

    /// What ffprobe says about the file `name` in `dir`, read as confined as ffmpeg reads it.
    async fn probe(&self, dir: &Path, name: &str) -> Result<Probe, JobError> {
        let settings = &self.inner.settings;
        let child = settings
            .confine
            .command(&settings.ffprobe)
            .args(ffprobe_args(&format!("file:{name}")))
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| JobError::spawn(Tool::Ffprobe, &err))?;
        // Killed with everything it started if it takes too long.
        let _group = Group::of(child.id());
        let output = tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| JobError::input("ffprobe took too long to read the input"))?
            .map_err(|err| JobError::ToolFailed {
                tool: Tool::Ffprobe,
                reason: format!("waiting for it failed ({err})"),
            })?;
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
}
