//! Groundwork for the built-in, Ittybit-compatible processor: the pure parts that turn a job's
//! `options` into ffmpeg arguments, ffmpeg's progress output into a percentage, and ffprobe's
//! output into facts about an input. Nothing here spawns a process.

pub mod ffmpeg;
pub mod probe;

pub use ffmpeg::{
    content_type, ffmpeg_args, output_extension, MediaOptions, OptionsError, Output, ProgressParser,
};
pub use probe::{failure_reason, ffprobe_args, parse_probe, Probe, ProbeError};
