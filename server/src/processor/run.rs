//! Running ffmpeg for one attempt, within bounds.
//!
//! ffmpeg reports its position on stdout (`-progress pipe:1`); from it the worker records
//! progress and enforces three limits, each of which stops the whole process group with
//! SIGTERM and, [`Limits::kill_grace`] later, SIGKILL:
//! - **the media limit** on decoded time, so an input whose length ffprobe could not tell (a
//!   raw `.h264` stream) cannot run past `REELTIME_PROCESSOR_MAX_DURATION_SECS`;
//! - **a time limit** per run ([`Limits::time_limit_for`]);
//! - **a stall watchdog**: no output from ffmpeg for [`Limits::stall`].
//!
//! The last two count the time the machine gave ffmpeg ([`super::given`]): wall time less
//! the time it waited for a CPU, which in the idle class it does whenever the dashboard or
//! the database is busy.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use uuid::Uuid;

use super::confine::Group;
use super::error::{JobError, Tool};
use super::given::GivenClock;
use super::media::{MediaOptions, Output, ProgressParser, VideoCodec};
use super::probe::failure_reason;
use super::store::{self, ProcessorJob};
use super::webhook::{JobWebhooks, PROGRESS_EVERY};
use super::Processor;

/// How many of the last lines of ffmpeg's stderr are kept (the error message reads them, and
/// a failed job's page shows them).
const STDERR_LINES: usize = 200;
/// The longest line kept of them, in characters.
const STDERR_LINE_CHARS: usize = 500;

/// How an attempt's work was done, as the job object reports it (`details`, a Reeltime
/// extension): the ffmpeg command (its files named `input` and `output` in the attempt's own
/// directory, so no server path shows), what ffprobe found in the input and the output, and
/// on failure the end of ffmpeg's stderr, or the technical detail of a failed download.
#[derive(Debug, Default, serde::Serialize)]
pub struct Details {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<super::probe::Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<super::probe::Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Why it failed, technically, where the job's error says it plainly: a download's chain
    /// of network messages ([`super::error::JobError::technical`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl Details {
    /// `program` and `args` as one shell-quoted line.
    pub fn command_line(program: &str, args: &[String]) -> String {
        std::iter::once(program)
            .chain(args.iter().map(String::as_str))
            .map(|arg| {
                let plain = !arg.is_empty()
                    && arg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.,:=/+%@".contains(c));
                if plain {
                    arg.to_owned()
                } else {
                    format!("'{}'", arg.replace('\'', "'\\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The bounds on one ffmpeg run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest media accepted, also counted on decoded time.
    pub max_duration: Duration,
    /// A fixed wall-clock limit per run; `None` takes it from the media ([`time_limit_for`]).
    ///
    /// [`time_limit_for`]: Limits::time_limit_for
    pub time_limit: Option<Duration>,
    /// How long ffmpeg may go without reporting before it is stopped as stalled.
    pub stall: Duration,
    /// How long a stopped ffmpeg gets between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

/// The least time any run is given.
const TIME_LIMIT_FLOOR: Duration = Duration::from_secs(300);

impl Limits {
    /// The wall-clock limit for a run making `options` from `media_secs` of media (the
    /// longest accepted when unknown): the setting if set, else a multiple of real time by
    /// what is made (VP9 encodes slowest), plus a floor for start-up and stills.
    pub fn time_limit_for(&self, options: &MediaOptions, media_secs: Option<f64>) -> Duration {
        if let Some(fixed) = self.time_limit {
            return fixed;
        }
        let factor = match &options.output {
            Output::Video(video) if matches!(video.codec, VideoCodec::Vp9) => 40.0,
            Output::Video(_) | Output::Animation(_) => 10.0,
            Output::Audio(_) => 2.0,
            Output::Image(_) => 0.0,
        };
        let media = media_secs
            .filter(|secs| secs.is_finite() && *secs > 0.0)
            .unwrap_or(self.max_duration.as_secs_f64());
        TIME_LIMIT_FLOOR + Duration::from_secs_f64(media * factor)
    }
}

/// Why a run was stopped.
enum Stop {
    Media(f64),
    TimeLimit(Duration),
    Stalled(Duration),
}

/// One attempt at a job, as the run reports it.
pub(super) struct Attempt<'a> {
    pub job: &'a ProcessorJob,
    pub owner: Uuid,
    pub hooks: Option<&'a JobWebhooks>,
}

impl Processor {
    /// Runs ffmpeg with `args`, confined, turning its `-progress` output into progress reports
    /// at most every [`PROGRESS_EVERY`] and stopping it at the first limit it reaches.
    pub(super) async fn ffmpeg(
        &self,
        attempt: &Attempt<'_>,
        dir: &std::path::Path,
        args: &[String],
        expected_secs: Option<f64>,
        time_limit: Duration,
        details: &mut Details,
    ) -> Result<(), JobError> {
        let settings = &self.inner.settings;
        let limits = settings.limits;
        let mut child = settings
            .confine
            .command(&settings.ffmpeg)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| JobError::spawn(Tool::Ffmpeg, &err))?;
        let group = Group::of(child.id());
        // The limits count the time the machine gave ffmpeg, not time it spent waiting for a
        // CPU behind the dashboard (it runs in the idle class; see `given`).
        let mut clock = GivenClock::start(child.id());
        let stderr = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(read_tail(stderr)));
        let mut lines = child.stdout.take().map(|out| BufReader::new(out).lines());

        let mut parser = ProgressParser::new(expected_secs);
        let mut reported = 0u8;
        let mut heard = Duration::ZERO;
        let max_media = limits.max_duration.as_secs_f64();
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let status = loop {
            tokio::select! {
                line = next_line(&mut lines) => match line {
                    Some(line) => {
                        // The last tick's sample: reading /proc for each line would cost
                        // more than the tick's error of at most PROGRESS_EVERY.
                        heard = clock.last();
                        parser.feed_line(&line);
                        if let Some(decoded) = parser.out_time_secs().filter(|t| *t > max_media) {
                            return Err(stop(child, group, limits, Stop::Media(decoded)).await);
                        }
                    }
                    None => lines = None,
                },
                status = child.wait() => break status,
                _ = tick.tick() => {
                    let ran = clock.elapsed();
                    if ran >= time_limit {
                        return Err(stop(child, group, limits, Stop::TimeLimit(time_limit)).await);
                    }
                    if ran.saturating_sub(heard) >= limits.stall {
                        return Err(stop(child, group, limits, Stop::Stalled(limits.stall)).await);
                    }
                    let percent = parser.percent().min(99);
                    if percent > reported {
                        reported = percent;
                        self.report_progress(attempt, percent).await;
                    }
                }
            }
        };
        let status = status.map_err(|err| JobError::ToolFailed {
            tool: Tool::Ffmpeg,
            reason: format!("waiting for it failed ({err})"),
        })?;
        drop(group);
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
        details.stderr = Some(stderr.clone());
        Err(JobError::Input(format!(
            "ffmpeg could not process the input: {}",
            failure_reason(&stderr)
        )))
    }

    /// Record `percent` for `attempt` and send it on, unless the job is no longer its.
    async fn report_progress(&self, attempt: &Attempt<'_>, percent: u8) {
        match store::progress(self.pool(), &attempt.job.id, attempt.owner, percent).await {
            Ok(Some(row)) => {
                if let Some(hooks) = attempt.hooks {
                    hooks.progress(&row.to_json());
                }
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "could not record progress"),
        }
    }
}

/// The next line of ffmpeg's progress, or never once the stream has ended (the run then ends
/// with the process).
async fn next_line(
    lines: &mut Option<tokio::io::Lines<BufReader<tokio::process::ChildStdout>>>,
) -> Option<String> {
    match lines {
        Some(reader) => reader.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// Stop a run: SIGTERM to its group, SIGKILL after the grace period; the error says why.
async fn stop(mut child: Child, group: Group, limits: Limits, why: Stop) -> JobError {
    group.signal(libc::SIGTERM);
    if tokio::time::timeout(limits.kill_grace, child.wait())
        .await
        .is_err()
    {
        tracing::warn!("ffmpeg ignored SIGTERM; killing it");
    }
    // Dropping the group kills whatever is left of it.
    drop(group);
    let _ = child.wait().await;
    match why {
        Stop::Media(decoded) => JobError::Input(format!(
            "the input is over the {} s limit: ffmpeg had decoded {decoded:.0} s of it \
             (REELTIME_PROCESSOR_MAX_DURATION_SECS)",
            limits.max_duration.as_secs()
        )),
        Stop::TimeLimit(limit) => JobError::TimeLimit(limit),
        Stop::Stalled(quiet) => JobError::Stalled(quiet),
    }
}

/// The last [`STDERR_LINES`] lines of a stream (each cut at [`STDERR_LINE_CHARS`]), read to
/// its end.
async fn read_tail(stream: impl AsyncRead + Unpin) -> String {
    let mut kept = std::collections::VecDeque::with_capacity(STDERR_LINES);
    let mut lines = BufReader::new(stream).split(b'\n');
    while let Ok(Some(line)) = lines.next_segment().await {
        let line = String::from_utf8_lossy(&line);
        let line: String = line.trim_end().chars().take(STDERR_LINE_CHARS).collect();
        if kept.len() == STDERR_LINES {
            kept.pop_front();
        }
        kept.push_back(line);
    }
    Vec::from(kept).join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reeltime::JobKind;
    use serde_json::json;

    #[tokio::test]
    async fn the_last_lines_of_stderr_are_kept_each_cut_short() {
        let text: String = (0..250).map(|i| format!("line {i}\n")).collect();
        let kept = read_tail(text.as_bytes()).await;
        let lines: Vec<&str> = kept.lines().collect();
        assert_eq!(lines.len(), STDERR_LINES);
        assert_eq!((lines[0], lines[199]), ("line 50", "line 249"));
        let long = "x".repeat(STDERR_LINE_CHARS + 50);
        assert_eq!(read_tail(long.as_bytes()).await.len(), STDERR_LINE_CHARS);
    }

    #[test]
    fn the_command_reads_as_a_shell_line() {
        let args: Vec<String> = ["-i", "file:input", "-vf", "scale=-2:720", "a b", "it's"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            Details::command_line("ffmpeg", &args),
            "ffmpeg -i file:input -vf scale=-2:720 'a b' 'it'\\''s'"
        );
    }

    #[test]
    fn the_time_limit_follows_the_media_and_what_is_made() {
        let limits = Limits {
            max_duration: Duration::from_secs(7200),
            time_limit: None,
            stall: Duration::from_secs(120),
            kill_grace: Duration::from_secs(10),
        };
        let parse = |kind, options| MediaOptions::parse(kind, &options).unwrap();
        let h264 = parse(JobKind::Video, json!({}));
        let vp9 = parse(JobKind::Video, json!({"format": "webm"}));
        let still = parse(JobKind::Image, json!({}));
        let secs = |d: Duration| d.as_secs();
        assert_eq!(secs(limits.time_limit_for(&h264, Some(60.0))), 300 + 600);
        assert_eq!(secs(limits.time_limit_for(&vp9, Some(60.0))), 300 + 2400);
        assert_eq!(secs(limits.time_limit_for(&still, Some(60.0))), 300);
        // Unknown length: as long as the longest accepted.
        assert_eq!(secs(limits.time_limit_for(&h264, None)), 300 + 72_000);
        let fixed = Limits {
            time_limit: Some(Duration::from_secs(5)),
            ..limits
        };
        assert_eq!(secs(fixed.time_limit_for(&vp9, Some(60.0))), 5);
    }
}
