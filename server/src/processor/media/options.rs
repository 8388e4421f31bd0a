//! Ittybit job `options` → validated [`MediaOptions`].
//!
//! Parsing is tolerant the way Ittybit is: `options` may be absent or `null`, unknown keys and
//! `null` values are ignored, strings are trimmed and case-insensitive, and numbers may be sent as
//! JSON numbers or numeric strings. A value the built-in processor cannot honour (an unknown
//! format, `h265`, a width of 0, …) is an [`OptionsError`] naming the option and what it accepts.

use reeltime::JobKind;
use serde_json::{Map, Value};

use super::args::{bitrate_arg, seconds_arg};
use super::progress::parse_timestamp;
use super::types::{
    AnimationFormat, AnimationOutput, AudioFormat, AudioOutput, Choice, Dimension, Fit,
    ImageFormat, ImageOutput, MediaOptions, Output, Quality, Size, VideoCodec, VideoFormat,
    VideoOutput,
};

/// Smallest and largest width or height accepted, in pixels.
pub const DIMENSION_RANGE: (u32, u32) = (2, 8192);
/// Accepted frame rates, in frames per second.
pub const FPS_RANGE: (f64, f64) = (1.0, 60.0);
/// Accepted video `bitrate` (a ceiling on top of the quality's CRF), in bits per second.
pub const VIDEO_BITRATE_RANGE: (u64, u64) = (50_000, 200_000_000);
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

    /// One of `T`'s values, trimmed and matched case-insensitively (aliases included).
    fn choice<T: Choice>(&self, option: &'static str) -> Result<Option<T>, OptionsError> {
        let Some(value) = self.get(option) else {
            return Ok(None);
        };
        match value.as_str().and_then(|s| s.trim().parse::<T>().ok()) {
            Some(choice) => Ok(Some(choice)),
            None => {
                let names: Vec<&str> = T::ALL.iter().map(|choice| choice.as_str()).collect();
                Err(self.invalid(option, format!("one of {}", names.join(", "))))
            }
        }
    }

    fn quality(&self) -> Result<Quality, OptionsError> {
        Ok(self
            .choice::<Quality>("quality")?
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
            fit: self.choice::<Fit>("fit")?.unwrap_or(Fit::Fill),
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
        let format = self.choice::<VideoFormat>("format")?;
        let codec = self.choice::<VideoCodec>("codec")?;
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
            .choice::<AudioFormat>("format")?
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
                .choice::<ImageFormat>("format")?
                .unwrap_or(ImageFormat::Jpeg),
            size: self.size()?,
            quality: self.quality()?,
        })
    }

    fn animation(&self) -> Result<AnimationOutput, OptionsError> {
        Ok(AnimationOutput {
            format: self
                .choice::<AnimationFormat>("format")?
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::media::test_support::{error, line, parse};
    use serde_json::json;

    fn video(options: Value) -> VideoOutput {
        match parse(JobKind::Video, options).output {
            Output::Video(video) => video,
            other => panic!("not video: {other:?}"),
        }
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
}
