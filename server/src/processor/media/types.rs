//! What a job asks for, validated: the output types and the closed sets of option values
//! ([`Quality`], formats, codecs, [`Fit`]) with their Ittybit spelling.
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

use std::str::FromStr;

use reeltime::JobKind;
use strum::{Display, EnumString, IntoStaticStr, VariantArray};

/// A closed set of option values with their Ittybit spelling, named and parsed by strum's
/// derives: `snake_case` names, read case-insensitively (`jpg` is an alias of `jpeg`).
pub trait Choice: Copy + FromStr + VariantArray + Into<&'static str> {
    /// Every accepted value, in the order error messages list them.
    const ALL: &'static [Self] = Self::VARIANTS;

    /// The value as Ittybit spells it.
    fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The `quality` option.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case", ascii_case_insensitive)]
pub enum Quality {
    VeryLow,
    Low,
    Medium,
    High,
    VeryHigh,
}

/// A video container (`mov` is not supported).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case", ascii_case_insensitive)]
pub enum VideoFormat {
    Mp4,
    Webm,
}

/// A video codec (`h265` and `av1` are not supported).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case", ascii_case_insensitive)]
pub enum VideoCodec {
    H264,
    Vp9,
}

/// An audio format (`ogg` is not supported; `opus` is written in an Ogg container).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case", ascii_case_insensitive)]
pub enum AudioFormat {
    Mp3,
    Aac,
    Opus,
    Wav,
    Flac,
}

/// A still image format (`avif` is not supported; `jpg` is read as `jpeg`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case", ascii_case_insensitive)]
pub enum ImageFormat {
    #[strum(to_string = "jpeg", serialize = "jpg")]
    Jpeg,
    Png,
    Webp,
}

/// An animation format.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case", ascii_case_insensitive)]
pub enum AnimationFormat {
    Gif,
    Webp,
}

/// How a frame is fitted when both width and height are given in pixels.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case", ascii_case_insensitive)]
pub enum Fit {
    /// Stretch to exactly width × height (Ittybit's default).
    Fill,
    /// Scale to fit inside, keeping the aspect ratio, and pad to width × height with black.
    Contain,
    /// Scale to cover, keeping the aspect ratio, and crop the overflow from the centre.
    Cover,
}

impl Choice for Quality {}
impl Choice for VideoFormat {}
impl Choice for VideoCodec {}
impl Choice for AudioFormat {}
impl Choice for ImageFormat {}
impl Choice for AnimationFormat {}
impl Choice for Fit {}

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
    ///
    /// [`ProgressParser::new`]: super::ProgressParser::new
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

/// The media type an output's extension stands for (one table for the whole app, in the core).
pub use reeltime::upload::content_type;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::media::test_support::{line, parse};
    use serde_json::json;

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
    fn every_option_value_reads_back_from_its_name_in_any_case() {
        fn check<T: Choice + PartialEq + std::fmt::Debug + std::fmt::Display>() {
            for &choice in T::ALL {
                let name = choice.as_str();
                assert_eq!(choice.to_string(), name);
                assert_eq!(name.parse::<T>().ok(), Some(choice), "{name}");
                let upper = name.to_ascii_uppercase();
                assert_eq!(upper.parse::<T>().ok(), Some(choice), "{upper}");
            }
        }
        check::<Quality>();
        check::<VideoFormat>();
        check::<VideoCodec>();
        check::<AudioFormat>();
        check::<ImageFormat>();
        check::<AnimationFormat>();
        check::<Fit>();
        assert_eq!("JPG".parse::<ImageFormat>().ok(), Some(ImageFormat::Jpeg));
        assert_eq!(ImageFormat::Jpeg.as_str(), "jpeg");
        assert_eq!(Quality::VeryHigh.as_str(), "very_high");
        assert_eq!(VideoCodec::H264.as_str(), "h264");
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
}
