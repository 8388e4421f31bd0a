//! What is in an input, read from `ffprobe -show_format -show_streams` JSON, and short readable
//! reasons for ffprobe's and ffmpeg's failures.

use reeltime::JobKind;
use serde::Deserialize;
use serde_json::Value;

use super::media::INPUT_GUARD;

/// The facts about an input the processor needs (and that a job's page shows).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Probe {
    /// Seconds; `None` for stills and streams of unknown length.
    pub duration: Option<f64>,
    /// A real video stream (cover art attached to audio does not count).
    pub has_video: bool,
    pub has_audio: bool,
    /// Of the first video stream.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub video_codec: Option<String>,
    /// ffprobe's demuxer names, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub format_name: Option<String>,
}

/// Why an input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The bytes are not ffprobe's JSON.
    #[error("ffprobe's output is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// ffprobe read the input but found neither audio nor video.
    #[error("the input has no audio or video stream")]
    NoMediaStreams,
    /// The input lacks the stream a job of this kind needs.
    #[error("the input has no {needed} stream, which a {kind} job needs")]
    MissingStream { kind: JobKind, needed: &'static str },
}

#[derive(Deserialize)]
struct RawProbe {
    #[serde(default)]
    streams: Vec<RawStream>,
    #[serde(default)]
    format: Option<RawFormat>,
}

#[derive(Deserialize)]
struct RawStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    duration: Option<Value>,
    disposition: Option<RawDisposition>,
}

#[derive(Deserialize)]
struct RawDisposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Deserialize)]
struct RawFormat {
    format_name: Option<String>,
    duration: Option<Value>,
}

impl RawStream {
    fn is(&self, codec_type: &str) -> bool {
        self.codec_type.as_deref() == Some(codec_type)
    }

    fn is_cover_art(&self) -> bool {
        self.disposition
            .as_ref()
            .is_some_and(|disposition| disposition.attached_pic == 1)
    }
}

/// A positive, finite number of seconds from ffprobe's `"1.000000"` (or a number); `N/A` and
/// anything else is `None`.
fn seconds(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
    .filter(|secs| secs.is_finite() && *secs > 0.0)
}

/// The arguments (without the program name) that make ffprobe describe `input` as JSON,
/// reading it under the [`INPUT_GUARD`] (one local file, media demuxers only).
pub fn ffprobe_args(input: &str) -> Vec<String> {
    let head = [
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ];
    head.iter()
        .chain(&INPUT_GUARD)
        .chain(&[input])
        .map(|arg| arg.to_string())
        .collect()
}

/// Reads ffprobe's JSON. The duration is the container's, else the longest stream's.
pub fn parse_probe(json: &[u8]) -> Result<Probe, ProbeError> {
    let raw: RawProbe = serde_json::from_slice(json)?;
    let video = raw
        .streams
        .iter()
        .find(|stream| stream.is("video") && !stream.is_cover_art());
    let has_audio = raw.streams.iter().any(|stream| stream.is("audio"));
    if video.is_none() && !has_audio {
        return Err(ProbeError::NoMediaStreams);
    }
    let format = raw.format.as_ref();
    let duration = format
        .and_then(|format| seconds(format.duration.as_ref()))
        .or_else(|| {
            raw.streams
                .iter()
                .filter_map(|stream| seconds(stream.duration.as_ref()))
                .reduce(f64::max)
        });
    Ok(Probe {
        duration,
        has_video: video.is_some(),
        has_audio,
        width: video.and_then(|v| v.width).filter(|w| *w > 0),
        height: video.and_then(|v| v.height).filter(|h| *h > 0),
        video_codec: video.and_then(|v| v.codec_name.clone()),
        format_name: format.and_then(|format| format.format_name.clone()),
    })
}

impl Probe {
    /// Whether the input has what a job of `kind` needs: audio for audio jobs, video for the
    /// others.
    pub fn check_kind(&self, kind: JobKind) -> Result<(), ProbeError> {
        let (needed, present) = match kind {
            JobKind::Audio => ("audio", self.has_audio),
            JobKind::Video | JobKind::Image | JobKind::Animation | JobKind::AdaptiveVideo => {
                ("video", self.has_video)
            }
        };
        if present {
            Ok(())
        } else {
            Err(ProbeError::MissingStream { kind, needed })
        }
    }
}

/// Longest reason [`failure_reason`] returns, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// A short reason for a failed ffprobe or ffmpeg run, from its stderr. Known failures get a
/// plain sentence; anything else is the last message line without its `[demuxer @ 0x…]` or
/// `<input>:` prefix (so signed URLs do not leak into job errors), cut to
/// [`MAX_REASON_CHARS`].
pub fn failure_reason(stderr: &str) -> String {
    const KNOWN: [(&str, &str); 18] = [
        (
            "not on whitelist",
            "the input's format is one the built-in processor does not read: playlists, \
             concat lists and image sequences may name other files",
        ),
        ("404 not found", "the input URL was not found (HTTP 404)"),
        (
            "401 unauthorized",
            "the input URL refused access (HTTP 401)",
        ),
        ("403 forbidden", "the input URL refused access (HTTP 403)"),
        (
            "server returned 5",
            "the input URL's server failed (HTTP 5xx)",
        ),
        (
            "failed to resolve hostname",
            "the input URL's host could not be found",
        ),
        (
            "connection refused",
            "the input URL's server refused the connection",
        ),
        ("timed out", "the input URL's server did not answer in time"),
        (
            "protocol not found",
            "the input's URL scheme is not one ffmpeg can read",
        ),
        (
            "moov atom not found",
            "the input is an incomplete MP4/MOV file (no moov atom)",
        ),
        (
            "invalid data found when processing input",
            "the input is not a media file ffmpeg can read",
        ),
        ("no such file or directory", "the input file does not exist"),
        (
            "permission denied",
            "the input cannot be read (permission denied)",
        ),
        (
            "'0:a:0' matches no streams",
            "the input has no audio stream",
        ),
        (
            "'0:v:0' matches no streams",
            "the input has no video stream",
        ),
        (
            "output file is empty",
            "nothing was decoded: is `start` past the end of the input?",
        ),
        (
            "does not contain any stream",
            "the input has no stream this job can use",
        ),
        (
            "unknown encoder",
            "this ffmpeg build lacks an encoder the job needs",
        ),
    ];
    let lower = stderr.to_ascii_lowercase();
    if let Some((_, reason)) = KNOWN.iter().find(|(needle, _)| lower.contains(needle)) {
        return (*reason).to_owned();
    }
    let Some(last) = stderr.lines().map(str::trim).rfind(|line| !line.is_empty()) else {
        return "the media tool failed without saying why".to_owned();
    };
    let mut line = last;
    // "[http @ 0x55d0c] message" → "message".
    if let Some(rest) = line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
        .map(|(_, rest)| rest)
    {
        line = rest;
    }
    // "<input url>: message" → "message".
    if let Some((_, rest)) = line.rsplit_once(": ") {
        if !rest.trim().is_empty() {
            line = rest.trim();
        }
    }
    match line.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ffprobe -v error -print_format json -show_format -show_streams` of a one-second
    /// 320×240 H.264 + AAC MP4 made with ffmpeg 5.1's testsrc and sine (trimmed).
    const MP4: &str = r#"{
        "streams": [
            {
                "index": 0, "codec_name": "h264", "profile": "High 4:4:4 Predictive",
                "codec_type": "video", "codec_tag_string": "avc1",
                "width": 320, "height": 240, "coded_width": 320, "coded_height": 240,
                "pix_fmt": "yuv444p", "r_frame_rate": "25/1", "avg_frame_rate": "25/1",
                "time_base": "1/12800", "start_time": "0.000000", "duration_ts": 12800,
                "duration": "1.000000", "bit_rate": "61192", "nb_frames": "25",
                "disposition": { "default": 1, "attached_pic": 0, "still_image": 0 },
                "tags": { "language": "und", "handler_name": "VideoHandler" }
            },
            {
                "index": 1, "codec_name": "aac", "profile": "LC", "codec_type": "audio",
                "sample_fmt": "fltp", "sample_rate": "44100", "channels": 1,
                "channel_layout": "mono", "time_base": "1/44100", "duration": "1.000000",
                "bit_rate": "70280", "nb_frames": "45",
                "disposition": { "default": 1, "attached_pic": 0 }
            }
        ],
        "format": {
            "filename": "/tmp/x.mp4", "nb_streams": 2, "nb_programs": 0,
            "format_name": "mov,mp4,m4a,3gp,3g2,mj2", "format_long_name": "QuickTime / MOV",
            "start_time": "0.000000", "duration": "1.000000", "size": "18890",
            "bit_rate": "151120", "probe_score": 100,
            "tags": { "major_brand": "isom", "encoder": "Lavf59.27.100" }
        }
    }"#;

    #[test]
    fn an_mp4_with_video_and_audio() {
        assert_eq!(
            parse_probe(MP4.as_bytes()).unwrap(),
            Probe {
                duration: Some(1.0),
                has_video: true,
                has_audio: true,
                width: Some(320),
                height: Some(240),
                video_codec: Some("h264".into()),
                format_name: Some("mov,mp4,m4a,3gp,3g2,mj2".into()),
            }
        );
    }

    #[test]
    fn cover_art_is_not_video() {
        let json = r#"{"streams": [
            {"codec_type": "audio", "codec_name": "mp3", "duration": "183.4"},
            {"codec_type": "video", "codec_name": "mjpeg", "width": 500, "height": 500,
             "duration": "N/A", "disposition": {"attached_pic": 1}}
        ], "format": {"format_name": "mp3", "duration": "183.400000"}}"#;
        let probe = parse_probe(json.as_bytes()).unwrap();
        assert!(probe.has_audio);
        assert!(!probe.has_video);
        assert_eq!((probe.width, probe.video_codec.as_deref()), (None, None));
        assert_eq!(probe.duration, Some(183.4));
        assert!(probe.check_kind(JobKind::Audio).is_ok());
        let e = probe.check_kind(JobKind::Image).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the input has no video stream, which a image job needs"
        );
    }

    #[test]
    fn a_still_image_has_video_and_no_duration() {
        let json = r#"{"streams": [{"index": 0, "codec_name": "png", "codec_type": "video",
            "width": 320, "height": 240, "disposition": {"default": 0, "attached_pic": 0}}],
            "format": {"filename": "/tmp/s.png", "format_name": "png_pipe", "size": "1203"}}"#;
        let probe = parse_probe(json.as_bytes()).unwrap();
        assert!(probe.has_video && !probe.has_audio);
        assert_eq!(probe.duration, None);
        assert_eq!(probe.video_codec.as_deref(), Some("png"));
        assert_eq!(probe.format_name.as_deref(), Some("png_pipe"));
        assert!(probe.check_kind(JobKind::Video).is_ok());
        assert!(matches!(
            probe.check_kind(JobKind::Audio),
            Err(ProbeError::MissingStream {
                needed: "audio",
                ..
            })
        ));
    }

    #[test]
    fn the_duration_falls_back_to_the_longest_stream() {
        let json = r#"{"streams": [
            {"codec_type": "video", "codec_name": "vp9", "width": 0, "duration": "4.5"},
            {"codec_type": "audio", "codec_name": "opus", "duration": 5.25}
        ], "format": {"format_name": "matroska,webm", "duration": "N/A"}}"#;
        let probe = parse_probe(json.as_bytes()).unwrap();
        assert_eq!(probe.duration, Some(5.25));
        assert_eq!(probe.width, None, "a zero width is unknown");
        let no_format = r#"{"streams": [{"codec_type": "audio", "duration": "0.000000"}]}"#;
        assert_eq!(parse_probe(no_format.as_bytes()).unwrap().duration, None);
    }

    #[test]
    fn no_media_streams_is_an_error() {
        // What ffprobe prints for a file it cannot read, and a subtitles-only file.
        for json in [
            "{\n\n}",
            r#"{"streams": [{"codec_type": "subtitle"}], "format": {}}"#,
        ] {
            let e = parse_probe(json.as_bytes()).unwrap_err();
            assert!(matches!(e, ProbeError::NoMediaStreams), "{e:?}");
        }
    }

    #[test]
    fn output_that_is_not_json_is_an_error() {
        for bytes in [&b""[..], b"not json", b"[1, 2]", b"{\"streams\": 3}"] {
            let e = parse_probe(bytes).unwrap_err();
            assert!(matches!(e, ProbeError::Json(_)), "{e:?}");
        }
    }

    #[test]
    fn ffprobe_is_asked_for_format_and_streams_as_json() {
        let args = ffprobe_args("file:/w/a b.mp4");
        assert_eq!(
            args[..6],
            [
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_format",
                "-show_streams"
            ]
        );
        assert_eq!(args[6..10], INPUT_GUARD);
        assert_eq!(args[10..], ["file:/w/a b.mp4"]);
    }

    #[test]
    fn known_failures_read_as_short_sentences() {
        let cases = [
            (
                "/tmp/n.txt: Invalid data found when processing input\n",
                "the input is not a media file ffmpeg can read",
            ),
            (
                "/tmp/missing.mp4: No such file or directory",
                "the input file does not exist",
            ),
            (
                "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x5581] moov atom not found\n\
                 /tmp/cut.mp4: Invalid data found when processing input",
                "the input is an incomplete MP4/MOV file (no moov atom)",
            ),
            (
                "[https @ 0x55d0] HTTP error 404 Not Found\n\
                 https://example.com/x.mp4?sig=secret: Server returned 404 Not Found",
                "the input URL was not found (HTTP 404)",
            ),
            (
                "https://example.com/x: Server returned 403 Forbidden (access denied)",
                "the input URL refused access (HTTP 403)",
            ),
            (
                "https://example.com/x: Server returned 5XX Server Error reply",
                "the input URL's server failed (HTTP 5xx)",
            ),
            (
                "[tcp @ 0x1] Failed to resolve hostname nope.invalid: Name or service not known",
                "the input URL's host could not be found",
            ),
            (
                "[tcp @ 0x1] Connection to tcp://127.0.0.1:9 failed: Connection refused",
                "the input URL's server refused the connection",
            ),
            (
                "Stream map '0:a:0' matches no streams.\n\
                 To ignore this, add a trailing '?' to the map.",
                "the input has no audio stream",
            ),
            (
                "[concat @ 0x55] Format not on whitelist 'mov,matroska'\nfile:/w/input: Invalid argument",
                "the input's format is one the built-in processor does not read: playlists, \
                 concat lists and image sequences may name other files",
            ),
            (
                "Output file is empty, nothing was encoded",
                "nothing was decoded: is `start` past the end of the input?",
            ),
        ];
        for (stderr, reason) in cases {
            assert_eq!(failure_reason(stderr), reason, "{stderr}");
        }
    }

    #[test]
    fn unknown_failures_keep_the_last_message_without_prefixes() {
        assert_eq!(
            failure_reason(
                "[h264 @ 0x55] error while decoding MB 10 20\nhttps://x/y?sig=secret: Some odd thing\n\n"
            ),
            "Some odd thing"
        );
        assert_eq!(
            failure_reason("[aac @ 0x55d] Too many bits per frame requested"),
            "Too many bits per frame requested"
        );
        assert_eq!(failure_reason("Conversion failed!"), "Conversion failed!");
        assert_eq!(
            failure_reason(" \n\t\n"),
            "the media tool failed without saying why"
        );
        let long = failure_reason(&"é".repeat(500));
        assert_eq!(long.chars().count(), MAX_REASON_CHARS + 1);
        assert!(long.ends_with('…'));
    }
}
