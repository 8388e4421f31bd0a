//! Ittybit job `options` → validated [`MediaOptions`] → an ffmpeg argument list, and ffmpeg's
//! `-progress pipe:1` output → a percentage.
//!
//! Parsing is tolerant the way Ittybit is: `options` may be absent or `null`, unknown keys and
//! `null` values are ignored, strings are trimmed and case-insensitive, and numbers may be sent as
//! JSON numbers or numeric strings. A value the built-in processor cannot honour (an unknown
//! format, `h265`, a width of 0, …) is an [`OptionsError`] naming the option and what it accepts.
//!
//! Quality maps to a constant rate factor (lower is better) per codec:
//!
//! | quality     | h264 (libx264, 0–51) | vp9 (libvpx-vp9, 0–63) |
//! | ----------- | -------------------- | ---------------------- |
//! | `very_low`  | 33                   | 45                     |
//! | `low`       | 28                   | 38                     |
//! | `medium`    | 23 (x264's default)  | 33                     |
//! | `high`      | 20                   | 28                     |
//! | `very_high` | 18                   | 24                     |
//!
//! and, where the output is lossy and no explicit `bitrate` is given, to an audio bitrate, a JPEG
//! `-q:v` or a WebP `-quality` (see [`Quality::audio_bitrate`], [`Quality::jpeg_qscale`] and
//! [`Quality::webp_quality`]). The default quality is `medium`.

use std::fmt;
use std::path::Path;

use reeltime::JobKind;
use serde_json::{Map, Value};

/// The arguments every ffmpeg run starts with: no prompts, overwrite the output, errors only on
/// stderr, and machine-readable progress on stdout (read it with [`ProgressParser`]).
pub const BASE_ARGS: [&str; 8] = [
    "-nostdin",
    "-y",
    "-hide_banner",
    "-loglevel",
    "error",
    "-progress",
    "pipe:1",
    "-nostats",
];

/// Smallest and largest width or height accepted, in pixels.
pub const DIMENSION_RANGE: (u32, u32) = (2, 8192);
/// Accepted frame rates, in frames per second.
pub const FPS_RANGE: (f64, f64) = (1.0, 60.0);
/// Accepted video `bitrate` (a ceiling on top of the quality's CRF), in bits per second.
pub const VIDEO_BITRATE_RANGE: (u64, u64) = (50_000, 200_000_000);
/// The audio bitrate inside video outputs, in bits per second.
pub const VIDEO_AUDIO_BITRATE: u64 = 128_000;
/// The animation frame rate when `fps` is not given.
pub const DEFAULT_ANIMATION_FPS: f64 = 10.0;

/// Why an `options` object cannot be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// The built-in processor does not produce this kind of output.
    #[error(
        "the built-in processor does not handle {0} jobs; it handles video, audio, image and animation"
    )]
    UnsupportedKind(JobKind),
    /// `options` is present but not a JSON object.
    #[error("options must be a JSON object, not {0}")]
    NotAnObject(String),
    /// One option has a value outside what is accepted.
    #[error("option `{option}` is {value}; expected {expected}")]
    Invalid {
        /// The option's key, e.g. `codec`.
        option: &'static str,
        /// The value as sent, rendered as JSON.
        value: String,
        /// What is accepted, e.g. `one of h264, vp9`.
        expected: String,
    },
    /// Two options that are each valid do not go together.
    #[error("{0}")]
    Conflict(String),
}

impl OptionsError {
    /// The option the error is about, when it is about one.
    pub fn option(&self) -> Option<&'static str> {
        match self {
            OptionsError::Invalid { option, .. } => Some(option),
            _ => None,
        }
    }
}

/// Declares a closed set of option values with their Ittybit spelling.
macro_rules! choice_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every accepted value, in the order error messages list them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as Ittybit spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice_enum! {
    /// The `quality` option.
    Quality {
        VeryLow => "very_low",
        Low => "low",
        Medium => "medium",
        High => "high",
        VeryHigh => "very_high",
    }
}

choice_enum! {
    /// A video container (`mov` is not supported).
    VideoFormat { Mp4 => "mp4", Webm => "webm" }
}

choice_enum! {
    /// A video codec (`h265` and `av1` are not supported).
    VideoCodec { H264 => "h264", Vp9 => "vp9" }
}

choice_enum! {
    /// An audio format (`ogg` is not supported; `opus` is written in an Ogg container).
    AudioFormat { Mp3 => "mp3", Aac => "aac", Opus => "opus", Wav => "wav", Flac => "flac" }
}

choice_enum! {
    /// A still image format (`avif` is not supported; `jpg` is read as `jpeg`).
    ImageFormat { Jpeg => "jpeg", Png => "png", Webp => "webp" }
}

choice_enum! {
    /// An animation format.
    AnimationFormat { Gif => "gif", Webp => "webp" }
}

choice_enum! {
    /// How a frame is fitted when both width and height are given in pixels.
    Fit {
        /// Stretch to exactly width × height (Ittybit's default).
        Fill => "fill",
        /// Scale to fit inside, keeping the aspect ratio, and pad to width × height with black.
        Contain => "contain",
        /// Scale to cover, keeping the aspect ratio, and crop the overflow from the centre.
        Cover => "cover",
    }
}

impl Quality {
    /// The constant rate factor for `codec` (see the table in the module documentation).
    pub fn crf(self, codec: VideoCodec) -> u8 {
        let (h264, vp9) = match self {
            Quality::VeryLow => (33, 45),
            Quality::Low => (28, 38),
            Quality::Medium => (23, 33),
            Quality::High => (20, 28),
            Quality::VeryHigh => (18, 24),
        };
        match codec {
            VideoCodec::H264 => h264,
            VideoCodec::Vp9 => vp9,
        }
    }

    /// The bitrate, in bits per second, for a lossy audio `format` when none is given:
    /// mp3 and aac 64k/96k/128k/192k/256k, opus 32k/48k/64k/96k/128k from very_low to very_high;
    /// `None` for the lossless formats.
    pub fn audio_bitrate(self, format: AudioFormat) -> Option<u64> {
        let step = self as usize;
        match format {
            AudioFormat::Mp3 | AudioFormat::Aac => {
                Some([64_000, 96_000, 128_000, 192_000, 256_000][step])
            }
            AudioFormat::Opus => Some([32_000, 48_000, 64_000, 96_000, 128_000][step]),
            AudioFormat::Wav | AudioFormat::Flac => None,
        }
    }

    /// The mjpeg `-q:v` (2 best … 31 worst): 16, 10, 6, 4, 2 from very_low to very_high.
    pub fn jpeg_qscale(self) -> u8 {
        [16, 10, 6, 4, 2][self as usize]
    }

    /// The libwebp `-quality` (0–100): 40, 60, 75, 85, 95 from very_low to very_high.
    pub fn webp_quality(self) -> u8 {
        [40, 60, 75, 85, 95][self as usize]
    }
}

impl VideoFormat {
    /// The only codec this container is produced with.
    pub fn codec(self) -> VideoCodec {
        match self {
            VideoFormat::Mp4 => VideoCodec::H264,
            VideoFormat::Webm => VideoCodec::Vp9,
        }
    }
}

impl VideoCodec {
    /// The only container this codec is produced in.
    pub fn format(self) -> VideoFormat {
        match self {
            VideoCodec::H264 => VideoFormat::Mp4,
            VideoCodec::Vp9 => VideoFormat::Webm,
        }
    }
}

impl AudioFormat {
    /// The accepted `bitrate` range in bits per second, or `None` for lossless formats (which
    /// ignore `bitrate` and `quality`).
    pub fn bitrate_range(self) -> Option<(u64, u64)> {
        match self {
            AudioFormat::Mp3 => Some((8_000, 320_000)),
            AudioFormat::Aac => Some((8_000, 512_000)),
            AudioFormat::Opus => Some((6_000, 510_000)),
            AudioFormat::Wav | AudioFormat::Flac => None,
        }
    }
}

/// A requested width or height.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dimension {
    /// An exact size in pixels, already rounded down to an even number.
    Pixels(u32),
    /// A share of the input's size, in (0, 100].
    Percent(f64),
}

/// The requested output size. With one dimension the other follows the aspect ratio; `fit`
/// applies only when both are given in pixels (otherwise each axis is scaled on its own).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Size {
    pub width: Option<Dimension>,
    pub height: Option<Dimension>,
    pub fit: Fit,
}

/// A video output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VideoOutput {
    pub format: VideoFormat,
    pub codec: VideoCodec,
    pub size: Size,
    pub quality: Quality,
    /// Output frame rate; `None` keeps the input's.
    pub fps: Option<f64>,
    /// A ceiling in bits per second on top of the quality's CRF.
    pub max_bitrate: Option<u64>,
}

/// An audio output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AudioOutput {
    pub format: AudioFormat,
    /// Bits per second; `None` for lossless formats.
    pub bitrate: Option<u64>,
}

/// A still image taken at [`MediaOptions::start`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageOutput {
    pub format: ImageFormat,
    pub size: Size,
    pub quality: Quality,
}

/// An animated GIF or WebP.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnimationOutput {
    pub format: AnimationFormat,
    pub size: Size,
    pub fps: f64,
    /// Used by WebP; GIF quality comes from its palette.
    pub quality: Quality,
}

/// What to produce, by job kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Output {
    Video(VideoOutput),
    Audio(AudioOutput),
    Image(ImageOutput),
    Animation(AnimationOutput),
}

/// A job's validated options: what to produce and which part of the input to use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MediaOptions {
    pub output: Output,
    /// Where to start reading the input, in seconds (0 = the beginning); for an image, the
    /// time of the frame.
    pub start: f64,
    /// Where to stop reading the input, in seconds; always after `start`. Never set for images.
    pub end: Option<f64>,
}

impl MediaOptions {
    /// Validates Ittybit `options` (an object, or `null` for the defaults) for a job of `kind`.
    pub fn parse(kind: JobKind, options: &Value) -> Result<MediaOptions, OptionsError> {
        let map = match options {
            Value::Null => None,
            Value::Object(map) => Some(map),
            other => return Err(OptionsError::NotAnObject(show(other))),
        };
        let reader = Reader { map };
        let output = match kind {
            JobKind::Video => Output::Video(reader.video()?),
            JobKind::Audio => Output::Audio(reader.audio()?),
            JobKind::Image => Output::Image(reader.image()?),
            JobKind::Animation => Output::Animation(reader.animation()?),
            JobKind::AdaptiveVideo => return Err(OptionsError::UnsupportedKind(kind)),
        };
        let start = reader.seconds("start")?.unwrap_or(0.0);
        let end = match output {
            Output::Image(_) => None,
            _ => reader.seconds("end")?,
        };
        if let Some(end) = end {
            if end <= start {
                return Err(OptionsError::Invalid {
                    option: "end",
                    value: show(reader.get("end").unwrap_or(&Value::Null)),
                    expected: format!("a time after `start` ({} s)", seconds_arg(start)),
                });
            }
        }
        Ok(MediaOptions { output, start, end })
    }

    /// The job kind these options are for.
    pub fn kind(&self) -> JobKind {
        match self.output {
            Output::Video(_) => JobKind::Video,
            Output::Audio(_) => JobKind::Audio,
            Output::Image(_) => JobKind::Image,
            Output::Animation(_) => JobKind::Animation,
        }
    }

    /// How long the output will be, in seconds, given the input's duration when known; what
    /// [`ProgressParser::new`] expects. `None` for images (progress is 0 then 100) and when
    /// neither `end` nor the input duration is known.
    pub fn expected_duration(&self, input_duration: Option<f64>) -> Option<f64> {
        if matches!(self.output, Output::Image(_)) {
            return None;
        }
        let stop = match (self.end, input_duration) {
            (Some(end), Some(total)) => end.min(total),
            (Some(end), None) => end,
            (None, Some(total)) => total,
            (None, None) => return None,
        };
        Some((stop - self.start).max(0.0))
    }
}

/// Reads typed values out of the options object.
struct Reader<'a> {
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Reader<'a> {
    /// The value under `key`, treating `null` as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map
            .and_then(|map| map.get(key))
            .filter(|value| !value.is_null())
    }

    fn invalid(&self, option: &'static str, expected: impl Into<String>) -> OptionsError {
        OptionsError::Invalid {
            option,
            value: show(self.get(option).unwrap_or(&Value::Null)),
            expected: expected.into(),
        }
    }

    /// One of `all`, matched case-insensitively against `as_str` or an alias.
    fn choice<T: Copy + 'static>(
        &self,
        option: &'static str,
        all: &[T],
        as_str: fn(T) -> &'static str,
        aliases: &[(&str, T)],
    ) -> Result<Option<T>, OptionsError> {
        let Some(value) = self.get(option) else {
            return Ok(None);
        };
        let wanted = value.as_str().map(|s| s.trim().to_ascii_lowercase());
        let found = wanted.as_deref().and_then(|wanted| {
            all.iter()
                .copied()
                .find(|choice| as_str(*choice) == wanted)
                .or_else(|| {
                    aliases
                        .iter()
                        .find(|(alias, _)| *alias == wanted)
                        .map(|(_, choice)| *choice)
                })
        });
        match found {
            Some(choice) => Ok(Some(choice)),
            None => {
                let names: Vec<&str> = all.iter().map(|choice| as_str(*choice)).collect();
                Err(self.invalid(option, format!("one of {}", names.join(", "))))
            }
        }
    }

    fn quality(&self) -> Result<Quality, OptionsError> {
        Ok(self
            .choice("quality", Quality::ALL, Quality::as_str, &[])?
            .unwrap_or(Quality::Medium))
    }

    /// A time in seconds: a number, or a string like `"12.5"`, `"12.5s"`, `"01:02.5"`.
    fn seconds(&self, option: &'static str) -> Result<Option<f64>, OptionsError> {
        let Some(value) = self.get(option) else {
            return Ok(None);
        };
        let seconds = match value {
            Value::Number(n) => n.as_f64().filter(|s| s.is_finite() && *s >= 0.0),
            Value::String(s) => parse_timestamp(s.trim().trim_end_matches('s')),
            _ => None,
        };
        seconds.map(Some).ok_or_else(|| {
            self.invalid(
                option,
                "a time in seconds of 0 or more, e.g. 12.5 or \"00:01:02.5\"",
            )
        })
    }

    /// A width or height: whole pixels (a number or `"1280"`/`"1280px"`) or `"50%"`.
    fn dimension(&self, option: &'static str) -> Result<Option<Dimension>, OptionsError> {
        let Some(value) = self.get(option) else {
            return Ok(None);
        };
        let (min, max) = DIMENSION_RANGE;
        let expected = || {
            self.invalid(
                option,
                format!("whole pixels from {min} to {max}, or a percentage such as \"50%\""),
            )
        };
        if let Some(percent) = value.as_str().and_then(|s| s.trim().strip_suffix('%')) {
            return match percent.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Ok(Some(Dimension::Percent(p))),
                _ => Err(self.invalid(option, "a percentage above 0% and at most 100%")),
            };
        }
        let pixels = match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().trim_end_matches("px").trim().parse::<f64>().ok(),
            _ => None,
        };
        match pixels {
            Some(p) if p.fract() == 0.0 && p >= f64::from(min) && p <= f64::from(max) => {
                // Lossless: p is a whole number within u32's range. Odd sizes round down,
                // since yuv420p needs even dimensions.
                let even = (p as u32) & !1;
                Ok(Some(Dimension::Pixels(even)))
            }
            _ => Err(expected()),
        }
    }

    fn size(&self) -> Result<Size, OptionsError> {
        Ok(Size {
            width: self.dimension("width")?,
            height: self.dimension("height")?,
            fit: self
                .choice("fit", Fit::ALL, Fit::as_str, &[])?
                .unwrap_or(Fit::Fill),
        })
    }

    fn fps(&self) -> Result<Option<f64>, OptionsError> {
        let Some(value) = self.get("fps") else {
            return Ok(None);
        };
        let (min, max) = FPS_RANGE;
        match number(value) {
            Some(fps) if (min..=max).contains(&fps) => Ok(Some(fps)),
            _ => Err(self.invalid("fps", format!("a frame rate from {min} to {max}"))),
        }
    }

    /// A bitrate in bits per second: a number, or a string like `"128k"`, `"2.5M"`, `"96kbps"`.
    fn bitrate(&self, (min, max): (u64, u64)) -> Result<Option<u64>, OptionsError> {
        let Some(value) = self.get("bitrate") else {
            return Ok(None);
        };
        let bits = match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => parse_bitrate(s),
            _ => None,
        };
        match bits {
            Some(b) if b >= min as f64 && b <= max as f64 => Ok(Some(b.round() as u64)),
            _ => Err(self.invalid(
                "bitrate",
                format!(
                    "bits per second from {} to {}, e.g. \"{}\" (a bare number is bits per second)",
                    bitrate_arg(min),
                    bitrate_arg(max),
                    bitrate_arg(min.max(128_000).min(max)),
                ),
            )),
        }
    }

    fn video(&self) -> Result<VideoOutput, OptionsError> {
        let format = self.choice("format", VideoFormat::ALL, VideoFormat::as_str, &[])?;
        let codec = self.choice("codec", VideoCodec::ALL, VideoCodec::as_str, &[])?;
        let (format, codec) = match (format, codec) {
            (None, None) => (VideoFormat::Mp4, VideoCodec::H264),
            (Some(format), None) => (format, format.codec()),
            (None, Some(codec)) => (codec.format(), codec),
            (Some(format), Some(codec)) if format.codec() == codec => (format, codec),
            (Some(format), Some(codec)) => {
                return Err(OptionsError::Conflict(format!(
                    "options `format` {format} and `codec` {codec} do not go together: \
                     mp4 is made with h264 and webm with vp9"
                )))
            }
        };
        Ok(VideoOutput {
            format,
            codec,
            size: self.size()?,
            quality: self.quality()?,
            fps: self.fps()?,
            max_bitrate: self.bitrate(VIDEO_BITRATE_RANGE)?,
        })
    }

    fn audio(&self) -> Result<AudioOutput, OptionsError> {
        let format = self
            .choice("format", AudioFormat::ALL, AudioFormat::as_str, &[])?
            .unwrap_or(AudioFormat::Mp3);
        let quality = self.quality()?;
        let bitrate = match format.bitrate_range() {
            Some(range) => self
                .bitrate(range)?
                .or_else(|| quality.audio_bitrate(format)),
            None => None,
        };
        Ok(AudioOutput { format, bitrate })
    }

    fn image(&self) -> Result<ImageOutput, OptionsError> {
        Ok(ImageOutput {
            format: self
                .choice(
                    "format",
                    ImageFormat::ALL,
                    ImageFormat::as_str,
                    &[("jpg", ImageFormat::Jpeg)],
                )?
                .unwrap_or(ImageFormat::Jpeg),
            size: self.size()?,
            quality: self.quality()?,
        })
    }

    fn animation(&self) -> Result<AnimationOutput, OptionsError> {
        Ok(AnimationOutput {
            format: self
                .choice("format", AnimationFormat::ALL, AnimationFormat::as_str, &[])?
                .unwrap_or(AnimationFormat::Gif),
            size: self.size()?,
            fps: self.fps()?.unwrap_or(DEFAULT_ANIMATION_FPS),
            quality: self.quality()?,
        })
    }
}

/// A JSON value for an error message, cut short when long.
fn show(value: &Value) -> String {
    const MAX: usize = 60;
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A number sent as a JSON number or a numeric string.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|n| n.is_finite())
}

/// Seconds from `"12.5"`, `"02:03.5"` or `"01:02:03.5"`; `None` when malformed or negative.
pub fn parse_timestamp(text: &str) -> Option<f64> {
    let text = text.trim();
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() > 3 || parts.iter().any(|part| part.trim().is_empty()) {
        return None;
    }
    let mut seconds = 0.0;
    for part in parts {
        let value: f64 = part.trim().parse().ok()?;
        if !value.is_finite() || value < 0.0 || part.trim().starts_with('-') {
            return None;
        }
        seconds = seconds * 60.0 + value;
    }
    Some(seconds)
}

/// Bits per second from `"128k"`, `"128 kbps"`, `"2.5M"`, `"128000"`.
fn parse_bitrate(text: &str) -> Option<f64> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower
        .strip_suffix("bps")
        .or_else(|| lower.strip_suffix("b/s"))
        .unwrap_or(&lower)
        .trim_end();
    let (digits, scale) = match lower.strip_suffix('k') {
        Some(digits) => (digits, 1e3),
        None => match lower.strip_suffix('m') {
            Some(digits) => (digits, 1e6),
            None => (lower, 1.0),
        },
    };
    digits
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .map(|n| n * scale)
}

/// Seconds for `-ss`/`-to`, rounded to the millisecond: `1.5`, `10`.
fn seconds_arg(seconds: f64) -> String {
    format!("{}", (seconds * 1000.0).round() / 1000.0)
}

/// A bitrate for `-b:a`/`-b:v`: `128k` when whole kilobits, else bits per second.
fn bitrate_arg(bits: u64) -> String {
    if bits.is_multiple_of(1000) {
        format!("{}k", bits / 1000)
    } else {
        bits.to_string()
    }
}

/// One axis for the scale filter: pixels, or an even share of the input's `axis` (`iw`/`ih`).
fn dimension_expr(dimension: Dimension, axis: &str) -> String {
    match dimension {
        Dimension::Pixels(pixels) => pixels.to_string(),
        Dimension::Percent(percent) => {
            format!("trunc({axis}*{}/200)*2", seconds_arg(percent))
        }
    }
}

/// The filters that resize to `size`, always to even dimensions; `None` when no size is given.
/// One dimension keeps the aspect ratio through `-2`.
pub fn scale_filter(size: &Size) -> Option<String> {
    match (size.width, size.height) {
        (None, None) => None,
        (Some(width), None) => Some(format!("scale={}:-2", dimension_expr(width, "iw"))),
        (None, Some(height)) => Some(format!("scale=-2:{}", dimension_expr(height, "ih"))),
        (Some(Dimension::Pixels(w)), Some(Dimension::Pixels(h))) => Some(match size.fit {
            Fit::Fill => format!("scale={w}:{h}"),
            Fit::Contain => format!(
                "scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2,\
                 pad={w}:{h}:(ow-iw)/2:(oh-ih)/2"
            ),
            Fit::Cover => {
                format!("scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h}")
            }
        }),
        (Some(width), Some(height)) => Some(format!(
            "scale={}:{}",
            dimension_expr(width, "iw"),
            dimension_expr(height, "ih")
        )),
    }
}

/// The full ffmpeg argument list (without the program name) that turns `input` (a path or a URL
/// ffmpeg can read) into `output` as `options` describe. The output format is always given with
/// `-f`, so `output`'s extension does not matter; the path is passed lossily as UTF-8.
pub fn ffmpeg_args(options: &MediaOptions, input: &str, output: &Path) -> Vec<String> {
    let mut args: Vec<String> = BASE_ARGS.iter().map(|arg| arg.to_string()).collect();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|item| item.to_string()));

    // Input options: seek before decoding; `-to` is a position in the input's timeline.
    if options.start > 0.0 {
        push(&["-ss", &seconds_arg(options.start)]);
    }
    if let Some(end) = options.end {
        push(&["-to", &seconds_arg(end)]);
    }
    push(&["-i", input]);

    match &options.output {
        Output::Video(video) => {
            push(&["-map", "0:v:0", "-map", "0:a:0?"]);
            let mut filters = Vec::new();
            if let Some(fps) = video.fps {
                filters.push(format!("fps={}", seconds_arg(fps)));
            }
            // yuv420p needs even dimensions, so even a keep-the-size output is rounded down.
            filters.push(
                scale_filter(&video.size)
                    .unwrap_or_else(|| "scale=trunc(iw/2)*2:trunc(ih/2)*2".to_owned()),
            );
            push(&["-vf", &filters.join(",")]);
            let crf = video.quality.crf(video.codec).to_string();
            match video.codec {
                VideoCodec::H264 => {
                    push(&["-c:v", "libx264", "-crf", &crf, "-pix_fmt", "yuv420p"]);
                    if let Some(max) = video.max_bitrate {
                        push(&["-maxrate", &bitrate_arg(max)]);
                        push(&["-bufsize", &bitrate_arg(max * 2)]);
                    }
                    push(&["-c:a", "aac", "-b:a", &bitrate_arg(VIDEO_AUDIO_BITRATE)]);
                    push(&["-movflags", "+faststart", "-f", "mp4"]);
                }
                VideoCodec::Vp9 => {
                    // `-b:v 0` is constant quality; a bitrate makes it constrained quality.
                    let target = video.max_bitrate.map_or("0".to_owned(), bitrate_arg);
                    push(&["-c:v", "libvpx-vp9", "-b:v", &target, "-crf", &crf]);
                    push(&["-row-mt", "1", "-pix_fmt", "yuv420p"]);
                    push(&["-c:a", "libopus", "-b:a", &bitrate_arg(VIDEO_AUDIO_BITRATE)]);
                    push(&["-f", "webm"]);
                }
            }
        }
        Output::Audio(audio) => {
            push(&["-map", "0:a:0"]);
            let (codec, muxer) = match audio.format {
                AudioFormat::Mp3 => ("libmp3lame", "mp3"),
                AudioFormat::Aac => ("aac", "ipod"),
                AudioFormat::Opus => ("libopus", "ogg"),
                AudioFormat::Wav => ("pcm_s16le", "wav"),
                AudioFormat::Flac => ("flac", "flac"),
            };
            push(&["-c:a", codec]);
            if let Some(bitrate) = audio.bitrate {
                push(&["-b:a", &bitrate_arg(bitrate)]);
            }
            if audio.format == AudioFormat::Aac {
                push(&["-movflags", "+faststart"]);
            }
            push(&["-f", muxer]);
        }
        Output::Image(image) => {
            push(&["-map", "0:v:0", "-frames:v", "1"]);
            if let Some(scale) = scale_filter(&image.size) {
                push(&["-vf", &scale]);
            }
            match image.format {
                ImageFormat::Jpeg => {
                    let q = image.quality.jpeg_qscale().to_string();
                    push(&["-c:v", "mjpeg", "-q:v", &q, "-update", "1", "-f", "image2"]);
                }
                ImageFormat::Png => push(&["-c:v", "png", "-update", "1", "-f", "image2"]),
                ImageFormat::Webp => {
                    let q = image.quality.webp_quality().to_string();
                    push(&["-c:v", "libwebp", "-quality", &q, "-f", "webp"]);
                }
            }
        }
        Output::Animation(animation) => {
            push(&["-map", "0:v:0"]);
            let mut chain = format!("fps={}", seconds_arg(animation.fps));
            if let Some(scale) = scale_filter(&animation.size) {
                chain = format!("{chain},{scale}");
            }
            match animation.format {
                AnimationFormat::Gif => {
                    let graph = format!("{chain},split[a][b];[a]palettegen[p];[b][p]paletteuse");
                    push(&["-vf", &graph, "-loop", "0", "-f", "gif"]);
                }
                AnimationFormat::Webp => {
                    let q = animation.quality.webp_quality().to_string();
                    push(&["-vf", &chain, "-c:v", "libwebp", "-quality", &q]);
                    push(&["-loop", "0", "-f", "webp"]);
                }
            }
        }
    }
    args.push(output.to_string_lossy().into_owned());
    args
}

/// A local file as an ffmpeg or ffprobe argument: prefixed with `file:`, so a path can never be
/// read as another protocol (`http://…`, `concat:…`).
pub fn file_arg(path: &Path) -> String {
    format!("file:{}", path.to_string_lossy())
}

/// The file extension (without a dot) for the output `options` describe. AAC is written in an
/// MP4 audio container (`m4a`), Opus in Ogg (`opus`).
pub fn output_extension(options: &MediaOptions) -> &'static str {
    match &options.output {
        Output::Video(video) => video.format.as_str(),
        Output::Audio(audio) => match audio.format {
            AudioFormat::Aac => "m4a",
            other => other.as_str(),
        },
        Output::Image(image) => match image.format {
            ImageFormat::Jpeg => "jpg",
            other => other.as_str(),
        },
        Output::Animation(animation) => animation.format.as_str(),
    }
}

/// The `Content-Type` for a file extension (with or without the dot, any case);
/// `application/octet-stream` when unknown.
pub fn content_type(ext: &str) -> &'static str {
    match ext.trim_start_matches('.').to_ascii_lowercase().as_str() {
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "m4a" | "aac" => "audio/mp4",
        "opus" | "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        _ => "application/octet-stream",
    }
}

/// Turns ffmpeg's `-progress pipe:1` output, fed one line at a time, into a percentage.
///
/// ffmpeg writes blocks of `key=value` lines, each ending with `progress=continue` or, last,
/// `progress=end`. The position comes from `out_time_us`, `out_time_ms` (which, despite its
/// name, is also in microseconds) or `out_time` (`HH:MM:SS.micro`); `N/A` and negative values
/// are skipped. The percentage never goes down and stays at most 99 until `progress=end`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressParser {
    expected_us: Option<f64>,
    out_time_us: Option<u64>,
    percent: u8,
    finished: bool,
}

impl ProgressParser {
    /// A parser for an output expected to last `expected_secs` (see
    /// [`MediaOptions::expected_duration`]); with `None` or 0 it reports only 0 and then 100.
    pub fn new(expected_secs: Option<f64>) -> Self {
        ProgressParser {
            expected_us: expected_secs
                .filter(|secs| secs.is_finite() && *secs > 0.0)
                .map(|secs| secs * 1e6),
            out_time_us: None,
            percent: 0,
            finished: false,
        }
    }

    /// Reads one line; returns the new percentage when it went up.
    pub fn feed_line(&mut self, line: &str) -> Option<u8> {
        if self.finished {
            return None;
        }
        let (key, value) = line.trim().split_once('=')?;
        let value = value.trim();
        match key.trim() {
            "out_time_us" | "out_time_ms" => self.observe(value.parse::<u64>().ok()),
            "out_time" => self.observe(
                value
                    .strip_prefix('-')
                    .map_or_else(|| parse_timestamp(value), |_| None)
                    .map(|secs| (secs * 1e6).round() as u64),
            ),
            "progress" if value == "end" => {
                self.finished = true;
                self.percent = 100;
                Some(100)
            }
            _ => None,
        }
    }

    fn observe(&mut self, out_time_us: Option<u64>) -> Option<u8> {
        let out_time_us = out_time_us?;
        self.out_time_us = Some(self.out_time_us.map_or(out_time_us, |t| t.max(out_time_us)));
        let expected = self.expected_us?;
        // Truncation is intended: 99.9% is not done.
        let percent = ((out_time_us as f64 / expected) * 100.0).floor().min(99.0) as u8;
        (percent > self.percent).then(|| {
            self.percent = percent;
            percent
        })
    }

    /// The percentage so far, 0–100.
    pub fn percent(&self) -> u8 {
        self.percent
    }

    /// Whether `progress=end` has been read.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The furthest output position read, in seconds.
    pub fn out_time_secs(&self) -> Option<f64> {
        self.out_time_us.map(|us| us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_files_are_never_read_as_another_protocol() {
        assert_eq!(
            file_arg(Path::new("http://evil/x.mp4")),
            "file:http://evil/x.mp4"
        );
        assert_eq!(
            file_arg(Path::new("/data/job.input")),
            "file:/data/job.input"
        );
    }
    use serde_json::json;

    const BASE: &str = "-nostdin -y -hide_banner -loglevel error -progress pipe:1 -nostats";

    fn parse(kind: JobKind, options: Value) -> MediaOptions {
        MediaOptions::parse(kind, &options).unwrap_or_else(|e| panic!("{options}: {e}"))
    }

    fn error(kind: JobKind, options: Value) -> OptionsError {
        MediaOptions::parse(kind, &options).expect_err(&options.to_string())
    }

    /// The argument list as one line, without the common prefix.
    fn line(kind: JobKind, options: Value) -> String {
        let args = ffmpeg_args(&parse(kind, options), "in.mp4", Path::new("/tmp/out"));
        let line = args.join(" ");
        line.strip_prefix(BASE)
            .unwrap_or_else(|| panic!("missing base arguments: {line}"))
            .trim_start()
            .to_owned()
    }

    fn video(options: Value) -> VideoOutput {
        match parse(JobKind::Video, options).output {
            Output::Video(video) => video,
            other => panic!("not video: {other:?}"),
        }
    }

    fn size(kind: JobKind, options: Value) -> Option<String> {
        let size = match parse(kind, options).output {
            Output::Video(v) => v.size,
            Output::Image(i) => i.size,
            Output::Animation(a) => a.size,
            Output::Audio(_) => panic!("audio has no size"),
        };
        scale_filter(&size)
    }

    #[test]
    fn every_run_starts_with_the_base_arguments_and_ends_with_the_output() {
        for (kind, options) in [
            (JobKind::Video, json!({})),
            (JobKind::Audio, json!({})),
            (JobKind::Image, json!({})),
            (JobKind::Animation, json!({})),
        ] {
            let args = ffmpeg_args(&parse(kind, options), "in.mp4", Path::new("/tmp/o.bin"));
            assert_eq!(args[..8], BASE_ARGS.map(String::from));
            assert_eq!(args.last().map(String::as_str), Some("/tmp/o.bin"));
            let input = args.iter().position(|a| a == "-i").unwrap();
            assert_eq!(args[input + 1], "in.mp4");
        }
    }

    #[test]
    fn the_seed_preset_makes_a_1280_wide_high_quality_mp4() {
        assert_eq!(
            line(
                JobKind::Video,
                json!({"width": 1280, "format": "mp4", "quality": "high"})
            ),
            "-i in.mp4 -map 0:v:0 -map 0:a:0? -vf scale=1280:-2 -c:v libx264 -crf 20 \
             -pix_fmt yuv420p -c:a aac -b:a 128k -movflags +faststart -f mp4 /tmp/out"
        );
    }

    #[test]
    fn video_defaults_to_an_even_sized_medium_h264_mp4() {
        for options in [
            json!(null),
            json!({}),
            json!({"unknown": 1, "format": null}),
        ] {
            let parsed = parse(JobKind::Video, options.clone());
            assert_eq!(parsed.start, 0.0);
            assert_eq!(parsed.end, None);
            assert_eq!(output_extension(&parsed), "mp4");
            assert_eq!(
                line(JobKind::Video, options),
                "-i in.mp4 -map 0:v:0 -map 0:a:0? -vf scale=trunc(iw/2)*2:trunc(ih/2)*2 \
                 -c:v libx264 -crf 23 -pix_fmt yuv420p -c:a aac -b:a 128k \
                 -movflags +faststart -f mp4 /tmp/out"
            );
        }
    }

    #[test]
    fn webm_is_constant_quality_vp9_with_opus() {
        assert_eq!(
            line(JobKind::Video, json!({"format": "webm", "quality": "low"})),
            "-i in.mp4 -map 0:v:0 -map 0:a:0? -vf scale=trunc(iw/2)*2:trunc(ih/2)*2 \
             -c:v libvpx-vp9 -b:v 0 -crf 38 -row-mt 1 -pix_fmt yuv420p \
             -c:a libopus -b:a 128k -f webm /tmp/out"
        );
    }

    #[test]
    fn format_and_codec_imply_each_other_and_mismatches_are_refused() {
        let pick = |options| {
            let v = video(options);
            (v.format, v.codec)
        };
        use {VideoCodec::*, VideoFormat::*};
        assert_eq!(pick(json!({"format": "webm"})), (Webm, Vp9));
        assert_eq!(pick(json!({"codec": "vp9"})), (Webm, Vp9));
        assert_eq!(pick(json!({"codec": "h264"})), (Mp4, H264));
        assert_eq!(
            pick(json!({"format": " MP4 ", "codec": "H264"})),
            (Mp4, H264)
        );
        for options in [
            json!({"format": "mp4", "codec": "vp9"}),
            json!({"format": "webm", "codec": "h264"}),
        ] {
            let e = error(JobKind::Video, options);
            assert!(matches!(e, OptionsError::Conflict(_)), "{e:?}");
            assert!(e.to_string().contains("mp4 is made with h264"), "{e}");
        }
    }

    #[test]
    fn unsupported_values_name_the_option_and_the_allowed_values() {
        let cases = [
            (
                JobKind::Video,
                json!({"codec": "h265"}),
                "codec",
                "one of h264, vp9",
            ),
            (
                JobKind::Video,
                json!({"codec": "av1"}),
                "codec",
                "one of h264, vp9",
            ),
            (
                JobKind::Video,
                json!({"format": "mov"}),
                "format",
                "one of mp4, webm",
            ),
            (
                JobKind::Video,
                json!({"quality": "ultra"}),
                "quality",
                "one of very_low, low, medium, high, very_high",
            ),
            (
                JobKind::Video,
                json!({"fit": "stretch"}),
                "fit",
                "one of fill, contain, cover",
            ),
            (
                JobKind::Audio,
                json!({"format": "ogg"}),
                "format",
                "one of mp3, aac, opus, wav, flac",
            ),
            (
                JobKind::Image,
                json!({"format": "avif"}),
                "format",
                "one of jpeg, png, webp",
            ),
            (
                JobKind::Animation,
                json!({"format": 3}),
                "format",
                "one of gif, webp",
            ),
        ];
        for (kind, options, option, allowed) in cases {
            let e = error(kind, options.clone());
            assert_eq!(e.option(), Some(option), "{options}");
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("option `{option}` is ")),
                "{message}"
            );
            assert!(message.ends_with(allowed), "{message}");
        }
        assert_eq!(
            error(JobKind::Video, json!({"codec": "h265"})).to_string(),
            "option `codec` is \"h265\"; expected one of h264, vp9"
        );
    }

    #[test]
    fn adaptive_video_and_non_objects_are_refused() {
        let e = error(JobKind::AdaptiveVideo, json!({"format": "hls"}));
        assert_eq!(e, OptionsError::UnsupportedKind(JobKind::AdaptiveVideo));
        assert!(e.to_string().contains("adaptive_video"), "{e}");
        for options in [json!("mp4"), json!([1]), json!(12)] {
            let e = error(JobKind::Video, options);
            assert!(matches!(e, OptionsError::NotAnObject(_)), "{e:?}");
        }
    }

    #[test]
    fn one_dimension_keeps_the_aspect_ratio_with_an_even_other_side() {
        let v = JobKind::Video;
        assert_eq!(
            size(v, json!({"width": 1280})),
            Some("scale=1280:-2".into())
        );
        assert_eq!(size(v, json!({"height": 720})), Some("scale=-2:720".into()));
        assert_eq!(
            size(v, json!({"width": "640"})),
            Some("scale=640:-2".into())
        );
        assert_eq!(
            size(v, json!({"width": "640px"})),
            Some("scale=640:-2".into())
        );
        assert_eq!(
            size(v, json!({"width": 1280.0})),
            Some("scale=1280:-2".into())
        );
    }

    #[test]
    fn odd_sizes_round_down_to_even() {
        let v = JobKind::Video;
        assert_eq!(
            size(v, json!({"width": 1281})),
            Some("scale=1280:-2".into())
        );
        assert_eq!(size(v, json!({"height": 3})), Some("scale=-2:2".into()));
        assert_eq!(
            size(v, json!({"width": 641, "height": 361})),
            Some("scale=640:360".into())
        );
    }

    #[test]
    fn both_dimensions_follow_fit_which_defaults_to_fill() {
        let v = JobKind::Video;
        assert_eq!(
            size(v, json!({"width": 640, "height": 640})),
            Some("scale=640:640".into())
        );
        assert_eq!(
            size(v, json!({"width": 640, "height": 640, "fit": "fill"})),
            Some("scale=640:640".into())
        );
        assert_eq!(
            size(v, json!({"width": 640, "height": 360, "fit": "Contain"})),
            Some(
                "scale=640:360:force_original_aspect_ratio=decrease:force_divisible_by=2,\
                 pad=640:360:(ow-iw)/2:(oh-ih)/2"
                    .into()
            )
        );
        assert_eq!(
            size(v, json!({"width": 1080, "height": 1920, "fit": "cover"})),
            Some("scale=1080:1920:force_original_aspect_ratio=increase,crop=1080:1920".into())
        );
        // fit alone changes nothing.
        assert_eq!(
            size(v, json!({"width": 640, "fit": "cover"})),
            Some("scale=640:-2".into())
        );
    }

    #[test]
    fn percentages_scale_from_the_input_to_even_sizes() {
        let v = JobKind::Video;
        assert_eq!(
            size(v, json!({"width": "50%"})),
            Some("scale=trunc(iw*50/200)*2:-2".into())
        );
        assert_eq!(
            size(v, json!({"width": "50%", "height": "25%", "fit": "cover"})),
            Some("scale=trunc(iw*50/200)*2:trunc(ih*25/200)*2".into())
        );
        assert_eq!(
            size(v, json!({"width": 640, "height": "33.5%"})),
            Some("scale=640:trunc(ih*33.5/200)*2".into())
        );
    }

    #[test]
    fn bad_sizes_are_refused() {
        for bad in [
            json!(0),
            json!(1),
            json!(-640),
            json!(8193),
            json!(640.5),
            json!("wide"),
            json!("0%"),
            json!("150%"),
            json!(true),
        ] {
            let e = error(JobKind::Video, json!({ "width": bad }));
            assert_eq!(e.option(), Some("width"), "{bad}");
            let e = error(JobKind::Image, json!({ "height": bad }));
            assert_eq!(e.option(), Some("height"), "{bad}");
        }
        assert!(error(JobKind::Video, json!({"width": 0}))
            .to_string()
            .contains("whole pixels from 2 to 8192"));
    }

    #[test]
    fn quality_maps_to_the_documented_crf_per_codec() {
        use Quality::*;
        let table = [
            (VeryLow, 33, 45),
            (Low, 28, 38),
            (Medium, 23, 33),
            (High, 20, 28),
            (VeryHigh, 18, 24),
        ];
        for (quality, h264, vp9) in table {
            assert_eq!(quality.crf(VideoCodec::H264), h264, "{quality}");
            assert_eq!(quality.crf(VideoCodec::Vp9), vp9, "{quality}");
            let mp4 = line(JobKind::Video, json!({ "quality": quality.as_str() }));
            assert!(mp4.contains(&format!("-crf {h264} ")), "{mp4}");
            let webm = line(
                JobKind::Video,
                json!({ "quality": quality.as_str(), "format": "webm" }),
            );
            assert!(webm.contains(&format!("-crf {vp9} ")), "{webm}");
        }
        // Better quality always means a lower CRF.
        for codec in VideoCodec::ALL {
            let crfs: Vec<u8> = Quality::ALL.iter().map(|q| q.crf(*codec)).collect();
            assert!(crfs.windows(2).all(|w| w[0] > w[1]), "{codec}: {crfs:?}");
        }
    }

    #[test]
    fn fps_is_a_filter_before_scaling_within_1_to_60() {
        assert_eq!(
            line(JobKind::Video, json!({"fps": 30, "width": 640})),
            "-i in.mp4 -map 0:v:0 -map 0:a:0? -vf fps=30,scale=640:-2 -c:v libx264 -crf 23 \
             -pix_fmt yuv420p -c:a aac -b:a 128k -movflags +faststart -f mp4 /tmp/out"
        );
        assert_eq!(video(json!({"fps": "29.97"})).fps, Some(29.97));
        assert_eq!(video(json!({"fps": 1})).fps, Some(1.0));
        assert_eq!(video(json!({"fps": 60})).fps, Some(60.0));
        for bad in [json!(0), json!(0.5), json!(61), json!("fast"), json!(-1)] {
            let e = error(JobKind::Video, json!({ "fps": bad }));
            assert_eq!(e.option(), Some("fps"), "{bad}");
            assert!(e.to_string().ends_with("a frame rate from 1 to 60"), "{e}");
        }
    }

    #[test]
    fn start_and_end_seek_the_input() {
        let parsed = parse(JobKind::Video, json!({"start": 5, "end": "10.25"}));
        assert_eq!((parsed.start, parsed.end), (5.0, Some(10.25)));
        assert!(line(JobKind::Video, json!({"start": 5, "end": "10.25"}))
            .starts_with("-ss 5 -to 10.25 -i in.mp4 "));
        assert!(line(JobKind::Video, json!({"end": 3})).starts_with("-to 3 -i in.mp4 "));
        assert!(line(JobKind::Audio, json!({"start": "1.5s"})).starts_with("-ss 1.5 -i in.mp4 "));
        assert!(
            line(JobKind::Animation, json!({"start": 0, "end": 2})).starts_with("-to 2 -i in.mp4 ")
        );
        assert_eq!(
            parse(JobKind::Video, json!({"start": "00:01:02.5"})).start,
            62.5
        );
        assert_eq!(parse(JobKind::Video, json!({"start": "1:30"})).start, 90.0);
    }

    #[test]
    fn bad_times_are_refused() {
        for bad in [
            json!(-1),
            json!("soon"),
            json!("-00:01"),
            json!("1:2:3:4"),
            json!([]),
        ] {
            let e = error(JobKind::Video, json!({ "start": bad }));
            assert_eq!(e.option(), Some("start"), "{bad}");
        }
        for (start, end) in [(5, 5), (10, 2)] {
            let e = error(JobKind::Audio, json!({ "start": start, "end": end }));
            assert_eq!(e.option(), Some("end"));
            assert!(e.to_string().contains("a time after `start`"), "{e}");
        }
    }

    #[test]
    fn a_video_bitrate_caps_the_crf() {
        let mp4 = line(JobKind::Video, json!({"bitrate": "2M"}));
        assert!(
            mp4.contains("-c:v libx264 -crf 23 -pix_fmt yuv420p -maxrate 2000k -bufsize 4000k "),
            "{mp4}"
        );
        let webm = line(
            JobKind::Video,
            json!({"bitrate": 1_500_000, "format": "webm"}),
        );
        assert!(
            webm.contains("-c:v libvpx-vp9 -b:v 1500k -crf 33 -row-mt 1 "),
            "{webm}"
        );
        let e = error(JobKind::Video, json!({"bitrate": "10k"}));
        assert_eq!(e.option(), Some("bitrate"));
    }

    #[test]
    fn each_audio_format_has_its_codec_and_container() {
        let cases = [
            (
                "mp3",
                "-c:a libmp3lame -b:a 128k -f mp3",
                "mp3",
                "audio/mpeg",
            ),
            (
                "aac",
                "-c:a aac -b:a 128k -movflags +faststart -f ipod",
                "m4a",
                "audio/mp4",
            ),
            ("opus", "-c:a libopus -b:a 64k -f ogg", "opus", "audio/ogg"),
            ("wav", "-c:a pcm_s16le -f wav", "wav", "audio/wav"),
            ("flac", "-c:a flac -f flac", "flac", "audio/flac"),
        ];
        for (format, codec_args, ext, mime) in cases {
            let options = json!({ "format": format });
            assert_eq!(
                line(JobKind::Audio, options.clone()),
                format!("-i in.mp4 -map 0:a:0 {codec_args} /tmp/out")
            );
            let ext_found = output_extension(&parse(JobKind::Audio, options));
            assert_eq!(ext_found, ext);
            assert_eq!(content_type(ext_found), mime);
        }
        // mp3 is the default.
        assert_eq!(
            line(JobKind::Audio, json!({})),
            "-i in.mp4 -map 0:a:0 -c:a libmp3lame -b:a 128k -f mp3 /tmp/out"
        );
    }

    #[test]
    fn audio_bitrates_are_read_in_several_spellings() {
        let bitrate = |options| match parse(JobKind::Audio, options).output {
            Output::Audio(audio) => audio.bitrate,
            other => panic!("{other:?}"),
        };
        assert_eq!(bitrate(json!({"bitrate": "192k"})), Some(192_000));
        assert_eq!(bitrate(json!({"bitrate": "192K"})), Some(192_000));
        assert_eq!(bitrate(json!({"bitrate": "96 kbps"})), Some(96_000));
        assert_eq!(bitrate(json!({"bitrate": 96000})), Some(96_000));
        assert_eq!(bitrate(json!({"bitrate": "96000"})), Some(96_000));
        assert_eq!(bitrate(json!({"bitrate": "0.32M"})), Some(320_000));
        assert!(line(JobKind::Audio, json!({"bitrate": 100_500})).contains("-b:a 100500 "));
        // Without a bitrate, quality picks one.
        assert_eq!(bitrate(json!({"quality": "very_high"})), Some(256_000));
        assert_eq!(
            bitrate(json!({"format": "opus", "quality": "high"})),
            Some(96_000)
        );
        // Lossless formats ignore both.
        assert_eq!(bitrate(json!({"format": "flac", "bitrate": "1x"})), None);
        assert_eq!(bitrate(json!({"format": "wav", "quality": "low"})), None);
    }

    #[test]
    fn bad_audio_bitrates_say_what_is_accepted() {
        for bad in [
            json!(128),
            json!("128"),
            json!("fast"),
            json!("1.5M"),
            json!(-5),
        ] {
            let e = error(JobKind::Audio, json!({ "bitrate": bad }));
            assert_eq!(e.option(), Some("bitrate"), "{bad}");
        }
        assert_eq!(
            error(JobKind::Audio, json!({"bitrate": 128})).to_string(),
            "option `bitrate` is 128; expected bits per second from 8k to 320k, e.g. \"128k\" \
             (a bare number is bits per second)"
        );
        // The range depends on the format: aac goes higher than mp3.
        assert!(
            MediaOptions::parse(JobKind::Audio, &json!({"format": "aac", "bitrate": "384k"}))
                .is_ok()
        );
        assert!(
            MediaOptions::parse(JobKind::Audio, &json!({"format": "mp3", "bitrate": "384k"}))
                .is_err()
        );
    }

    #[test]
    fn an_image_is_one_frame_at_start() {
        assert_eq!(
            line(JobKind::Image, json!({})),
            "-i in.mp4 -map 0:v:0 -frames:v 1 -c:v mjpeg -q:v 6 -update 1 -f image2 /tmp/out"
        );
        assert_eq!(
            line(
                JobKind::Image,
                json!({"start": 3, "end": 9, "format": "png", "width": 320})
            ),
            "-ss 3 -i in.mp4 -map 0:v:0 -frames:v 1 -vf scale=320:-2 -c:v png -update 1 \
             -f image2 /tmp/out"
        );
        assert_eq!(
            line(JobKind::Image, json!({"format": "webp", "quality": "high"})),
            "-i in.mp4 -map 0:v:0 -frames:v 1 -c:v libwebp -quality 85 -f webp /tmp/out"
        );
        let jpg = parse(
            JobKind::Image,
            json!({"format": "JPG", "quality": "very_high"}),
        );
        assert_eq!(jpg.end, None);
        assert_eq!(output_extension(&jpg), "jpg");
        assert!(ffmpeg_args(&jpg, "in", Path::new("o"))
            .join(" ")
            .contains("-q:v 2 "));
    }

    #[test]
    fn a_gif_uses_its_own_palette_at_10_fps_by_default() {
        assert_eq!(
            line(
                JobKind::Animation,
                json!({"width": 320, "start": 1, "end": 4})
            ),
            "-ss 1 -to 4 -i in.mp4 -map 0:v:0 \
             -vf fps=10,scale=320:-2,split[a][b];[a]palettegen[p];[b][p]paletteuse \
             -loop 0 -f gif /tmp/out"
        );
        assert_eq!(
            line(JobKind::Animation, json!({"fps": 15})),
            "-i in.mp4 -map 0:v:0 -vf fps=15,split[a][b];[a]palettegen[p];[b][p]paletteuse \
             -loop 0 -f gif /tmp/out"
        );
    }

    #[test]
    fn an_animated_webp_loops_forever() {
        let options = json!({"format": "webp", "height": 240, "quality": "low"});
        assert_eq!(
            line(JobKind::Animation, options.clone()),
            "-i in.mp4 -map 0:v:0 -vf fps=10,scale=-2:240 -c:v libwebp -quality 60 -loop 0 \
             -f webp /tmp/out"
        );
        assert_eq!(
            output_extension(&parse(JobKind::Animation, options)),
            "webp"
        );
    }

    #[test]
    fn extensions_and_content_types_match() {
        let cases = [
            (JobKind::Video, json!({}), "mp4", "video/mp4"),
            (
                JobKind::Video,
                json!({"format": "webm"}),
                "webm",
                "video/webm",
            ),
            (JobKind::Image, json!({}), "jpg", "image/jpeg"),
            (JobKind::Image, json!({"format": "png"}), "png", "image/png"),
            (
                JobKind::Image,
                json!({"format": "webp"}),
                "webp",
                "image/webp",
            ),
            (JobKind::Animation, json!({}), "gif", "image/gif"),
        ];
        for (kind, options, ext, mime) in cases {
            let parsed = parse(kind, options);
            assert_eq!(parsed.kind(), kind);
            assert_eq!(output_extension(&parsed), ext);
            assert_eq!(content_type(ext), mime);
        }
        assert_eq!(content_type(".MP4"), "video/mp4");
        assert_eq!(content_type("jpeg"), "image/jpeg");
        assert_eq!(content_type("exe"), "application/octet-stream");
        assert_eq!(content_type(""), "application/octet-stream");
    }

    #[test]
    fn the_expected_duration_is_the_trimmed_part_of_the_input() {
        let duration = |kind, options, input| parse(kind, options).expected_duration(input);
        let v = JobKind::Video;
        assert_eq!(duration(v, json!({}), Some(60.0)), Some(60.0));
        assert_eq!(duration(v, json!({}), None), None);
        assert_eq!(duration(v, json!({"start": 10}), Some(60.0)), Some(50.0));
        assert_eq!(
            duration(v, json!({"start": 10, "end": 20}), Some(60.0)),
            Some(10.0)
        );
        assert_eq!(
            duration(v, json!({"start": 10, "end": 90}), Some(60.0)),
            Some(50.0)
        );
        assert_eq!(duration(v, json!({"end": 5}), None), Some(5.0));
        assert_eq!(duration(v, json!({"start": 70}), Some(60.0)), Some(0.0));
        assert_eq!(duration(JobKind::Image, json!({}), Some(60.0)), None);
    }

    /// ffmpeg 5.1's `-progress pipe:1` output for a one-second output.
    const PROGRESS: &str = "frame=1\nfps=0.00\nstream_0_0_q=0.0\nbitrate=   8.3kbits/s\n\
        total_size=48\nout_time_us=46440\nout_time_ms=46440\nout_time=00:00:00.046440\n\
        dup_frames=0\ndrop_frames=0\nspeed=15.5x\nprogress=continue\n\
        frame=13\nfps=0.00\nstream_0_0_q=28.0\nbitrate=N/A\ntotal_size=9000\n\
        out_time_us=520000\nout_time_ms=520000\nout_time=00:00:00.520000\n\
        dup_frames=0\ndrop_frames=0\nspeed=12x\nprogress=continue\n\
        frame=25\nfps=0.00\nstream_0_0_q=-1.0\nbitrate= 146.5kbits/s\ntotal_size=18707\n\
        out_time_us=1021678\nout_time_ms=1021678\nout_time=00:00:01.021678\n\
        dup_frames=0\ndrop_frames=0\nspeed=23.5x\nprogress=end\n";

    #[test]
    fn progress_rises_stays_below_100_and_ends_at_100() {
        let mut parser = ProgressParser::new(Some(1.0));
        let reported: Vec<u8> = PROGRESS
            .lines()
            .filter_map(|l| parser.feed_line(l))
            .collect();
        // 1021678 µs of a 1 s output is capped at 99 until `progress=end`.
        assert_eq!(reported, vec![4, 52, 99, 100]);
        assert_eq!(parser.percent(), 100);
        assert!(parser.is_finished());
        assert_eq!(parser.out_time_secs(), Some(1.021678));
    }

    #[test]
    fn progress_is_99_at_most_before_the_end() {
        let mut parser = ProgressParser::new(Some(10.0));
        assert_eq!(parser.feed_line("out_time_us=9999999"), Some(99));
        assert_eq!(parser.feed_line("out_time_us=20000000"), None);
        assert_eq!(parser.feed_line("progress=continue"), None);
        assert_eq!(parser.percent(), 99);
        assert!(!parser.is_finished());
        assert_eq!(parser.feed_line("progress=end"), Some(100));
        assert_eq!(parser.feed_line("out_time_us=1"), None);
        assert_eq!(parser.feed_line("progress=end"), None);
        assert_eq!(parser.percent(), 100);
    }

    #[test]
    fn progress_never_goes_down() {
        let mut parser = ProgressParser::new(Some(100.0));
        assert_eq!(parser.feed_line("out_time_us=50000000"), Some(50));
        assert_eq!(parser.feed_line("out_time_us=20000000"), None);
        assert_eq!(parser.percent(), 50);
        assert_eq!(parser.out_time_secs(), Some(50.0));
        assert_eq!(parser.feed_line("out_time_us=50900000"), None);
        assert_eq!(parser.feed_line("out_time_us=51000000"), Some(51));
    }

    #[test]
    fn progress_skips_na_negative_and_malformed_values() {
        let mut parser = ProgressParser::new(Some(10.0));
        for line in [
            "out_time_us=N/A",
            "out_time_ms=N/A",
            "out_time=N/A",
            "out_time_us=-9223372036854775807",
            "out_time=-577014:32:22.775808",
            "out_time_us=",
            "garbage",
            "",
            "speed=N/A",
            "bitrate=N/A",
        ] {
            assert_eq!(parser.feed_line(line), None, "{line}");
        }
        assert_eq!(parser.percent(), 0);
        assert_eq!(parser.out_time_secs(), None);
    }

    #[test]
    fn progress_reads_out_time_ms_and_out_time_as_microsecond_positions() {
        let mut parser = ProgressParser::new(Some(4.0));
        // ffmpeg writes microseconds under out_time_ms too.
        assert_eq!(parser.feed_line("out_time_ms=1000000"), Some(25));
        assert_eq!(parser.feed_line(" out_time = 00:00:02.000000 "), Some(50));
        assert_eq!(parser.feed_line("out_time=00:00:03.100000\r"), Some(77));
    }

    #[test]
    fn progress_without_a_known_duration_is_0_then_100() {
        for expected in [None, Some(0.0), Some(f64::NAN), Some(-3.0)] {
            let mut parser = ProgressParser::new(expected);
            assert_eq!(parser.feed_line("out_time_us=5000000"), None);
            assert_eq!(parser.percent(), 0);
            assert_eq!(parser.out_time_secs(), Some(5.0));
            assert_eq!(parser.feed_line("progress=end"), Some(100));
        }
    }

    #[test]
    fn timestamps_parse_in_seconds() {
        assert_eq!(parse_timestamp("12.5"), Some(12.5));
        assert_eq!(parse_timestamp("02:03.5"), Some(123.5));
        assert_eq!(parse_timestamp("01:02:03"), Some(3723.0));
        assert_eq!(parse_timestamp("00:00:01.021678"), Some(1.021678));
        for bad in ["", "N/A", "-1", "1::2", "a:b", "1:2:3:4", "inf"] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
