//! Why a job of the built-in processor did not produce an output, kept apart by whose problem
//! it is: the input's (the person who submitted it can do something about it) or the
//! server's (a missing or crashing tool, the disk, the database: the operator's). The job's
//! `error`, which every viewer of the dashboard sees, gets [`JobError::message`]; the server's
//! own faults are logged with their detail for the operator by [`JobError::log`].

use std::io;
use std::time::Duration;

/// One of the external programs the processor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Ffmpeg,
    Ffprobe,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Ffmpeg => "ffmpeg",
            Tool::Ffprobe => "ffprobe",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The input or the options cannot be processed; the text says why, in plain words.
    #[error("{0}")]
    Input(String),
    /// The input could not be downloaded; the text says why in plain words, and
    /// [`JobError::technical`] keeps the network's own messages for the job's page.
    #[error("{0}")]
    Download(super::fetch::FetchError),
    /// The job's worker kept dying with it.
    #[error("processing was interrupted {0} times; giving up")]
    Interrupted(i32),
    /// ffmpeg went quiet: no progress for this long, so it was stopped.
    #[error("stalled: ffmpeg made no progress for {} s and was stopped", .0.as_secs())]
    Stalled(Duration),
    /// ffmpeg ran past the job's time limit and was stopped.
    #[error(
        "ffmpeg ran past the job's {} s time limit and was stopped \
         (REELTIME_PROCESSOR_TIME_LIMIT_SECS)",
        .0.as_secs()
    )]
    TimeLimit(Duration),
    /// A tool is not installed.
    #[error("{} is not installed on the server", .0.name())]
    ToolMissing(Tool),
    /// A tool could not be started, crashed, or answered nonsense.
    #[error("{} failed on the server: {reason}", .tool.name())]
    ToolFailed { tool: Tool, reason: String },
    /// The disk is under the free-space floor (`REELTIME_MIN_FREE_DISK_MB`): no new work.
    #[error("{0}; this is a problem on the server, not with the input")]
    DiskFull(crate::disk::Shortage),
    /// A file of the server's own could not be written or read.
    #[error("the server could not {action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

impl JobError {
    pub fn input(reason: impl ToString) -> JobError {
        JobError::Input(reason.to_string())
    }

    pub fn io(action: &'static str) -> impl FnOnce(io::Error) -> JobError {
        move |source| JobError::Io { action, source }
    }

    /// Starting `tool` failed with `err`.
    pub fn spawn(tool: Tool, err: &io::Error) -> JobError {
        if err.kind() == io::ErrorKind::NotFound {
            JobError::ToolMissing(tool)
        } else {
            JobError::ToolFailed {
                tool,
                reason: format!("it could not be started ({err})"),
            }
        }
    }

    /// Whether the fault is the server's (the operator's to fix), not the input's.
    pub fn is_servers(&self) -> bool {
        !matches!(
            self,
            JobError::Input(_)
                | JobError::Download(_)
                | JobError::Interrupted(_)
                | JobError::TimeLimit(_)
        )
    }

    /// What the job's `error` says. The server's faults are named without their internals
    /// (paths, OS errors), which go to the log.
    pub fn message(&self) -> String {
        match self {
            JobError::Io { action, .. } => {
                format!("the server could not {action}; this is a problem on the server, not with the input")
            }
            JobError::ToolFailed { tool, .. } => format!(
                "{} failed on the server; this is a problem on the server, not with the input",
                tool.name()
            ),
            other => other.to_string(),
        }
    }

    /// The technical detail behind [`JobError::message`] that the job's page may show to its
    /// viewers (`details.failure`): a download's chain of network messages. The server's own
    /// faults keep theirs in the log (paths and OS errors say too much about the server).
    pub fn technical(&self) -> Option<String> {
        match self {
            JobError::Download(err) => err.technical().map(str::to_owned),
            _ => None,
        }
    }

    /// One line in the server's log: a warning with the detail for the server's own faults,
    /// an info line for the input's.
    pub fn log(&self) {
        if self.is_servers() {
            tracing::warn!(error = %self, "job failed on the server's side");
        } else {
            tracing::info!(reason = %self, "job failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_the_servers_fault_and_says_so() {
        let err = JobError::spawn(Tool::Ffmpeg, &io::Error::from(io::ErrorKind::NotFound));
        assert!(err.is_servers());
        assert_eq!(err.message(), "ffmpeg is not installed on the server");
    }

    #[test]
    fn the_servers_internals_stay_out_of_the_jobs_error() {
        let err = JobError::io("keep the output")(io::Error::other("/secret/path: disk full"));
        assert!(err.is_servers());
        assert!(!err.message().contains("/secret/path"), "{}", err.message());
        assert!(
            err.to_string().contains("/secret/path"),
            "the log keeps the detail"
        );
        let input = JobError::input("the input has no video stream");
        assert!(!input.is_servers());
        assert_eq!(input.message(), "the input has no video stream");
        assert_eq!(input.technical(), None);
    }

    #[test]
    fn a_failed_download_is_the_inputs_problem_and_keeps_its_detail() {
        let err = JobError::Download(super::super::fetch::FetchError::Network {
            plain: "the input URL's server refused the connection",
            detail: "tcp connect error: Connection refused (os error 111)".to_owned(),
        });
        assert!(!err.is_servers());
        assert_eq!(
            err.message(),
            "the input URL's server refused the connection"
        );
        assert_eq!(
            err.technical().as_deref(),
            Some("tcp connect error: Connection refused (os error 111)")
        );
    }
}
