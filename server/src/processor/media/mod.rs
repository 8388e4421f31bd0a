//! Ittybit job `options` → validated [`MediaOptions`] → an ffmpeg argument list, and ffmpeg's
//! `-progress pipe:1` output → a percentage.
//!
//! - [`options`]: reads Ittybit's `options` JSON, tolerantly, into [`MediaOptions`].
//! - [`types`]: [`MediaOptions`] and what it is made of: the outputs, sizes and option values.
//! - [`args`]: the ffmpeg argument list for [`MediaOptions`].
//! - [`progress`]: ffmpeg's progress output as a percentage.

pub mod args;
pub mod options;
pub mod progress;
pub mod types;

pub use args::{
    ffmpeg_args, file_arg, scale_filter, BASE_ARGS, DEMUXERS, INPUT_GUARD, VIDEO_AUDIO_BITRATE,
};
pub use options::{
    OptionsError, DEFAULT_ANIMATION_FPS, DIMENSION_RANGE, FPS_RANGE, VIDEO_BITRATE_RANGE,
};
pub use progress::{parse_timestamp, ProgressParser};
pub use types::{
    content_type, output_extension, AnimationFormat, AnimationOutput, AudioFormat, AudioOutput,
    Choice, Dimension, Fit, ImageFormat, ImageOutput, MediaOptions, Output, Quality, Size,
    VideoCodec, VideoFormat, VideoOutput,
};

/// Helpers the tests of several files share.
#[cfg(test)]
mod test_support {
    use reeltime::JobKind;
    use serde_json::Value;

    use super::{ffmpeg_args, MediaOptions, OptionsError};

    use super::DEMUXERS;

    pub fn base() -> String {
        format!(
            "-nostdin -y -hide_banner -loglevel error -progress pipe:1 -nostats \
             -protocol_whitelist file -format_whitelist {DEMUXERS}"
        )
    }

    pub fn parse(kind: JobKind, options: Value) -> MediaOptions {
        MediaOptions::parse(kind, &options).unwrap_or_else(|e| panic!("{options}: {e}"))
    }

    pub fn error(kind: JobKind, options: Value) -> OptionsError {
        MediaOptions::parse(kind, &options).expect_err(&options.to_string())
    }

    /// The argument list as one line, without the common prefix.
    pub fn line(kind: JobKind, options: Value) -> String {
        let args = ffmpeg_args(&parse(kind, options), "in.mp4", "/tmp/out");
        let line = args.join(" ");
        line.strip_prefix(&base())
            .unwrap_or_else(|| panic!("missing base arguments: {line}"))
            .trim_start()
            .to_owned()
    }
}
