//! Validated [`MediaOptions`] → the ffmpeg argument list that produces them.

use std::path::Path;

use super::types::{
    AnimationFormat, AudioFormat, Dimension, Fit, ImageFormat, MediaOptions, Output, Size,
    VideoCodec,
};

/// The demuxers an input may be read with: containers and raw streams of audio, video and
/// single images. Left out on purpose: every format that names other files or URLs
/// (`concat`/ffconcat, `hls`, `dash`, `image2` patterns, playlists, `tee`, subtitles that
/// load fonts…). ffmpeg still detects such an input by its content, then refuses it with
/// "Format not on whitelist".
pub const DEMUXERS: &str = "mov,matroska,avi,flv,mpegts,mpeg,mpegvideo,m4v,h264,hevc,h263,ivf,\
obu,ogg,wav,w64,aiff,caf,mp3,aac,ac3,eac3,dts,flac,wv,ape,amr,amrnb,amrwb,asf,dv,mxf,nut,rm,\
yuv4mpegpipe,mjpeg,gif,bmp_pipe,jpeg_pipe,png_pipe,webp_pipe,tiff_pipe,qoi_pipe";

/// Input options that keep ffmpeg and ffprobe to the one local file they are given: only the
/// `file` protocol (no network, no `concat:`/`subfile:`), only the [`DEMUXERS`].
pub const INPUT_GUARD: [&str; 4] = ["-protocol_whitelist", "file", "-format_whitelist", DEMUXERS];

/// The arguments every ffmpeg run starts with: no prompts, overwrite the output, errors only on
/// stderr, machine-readable progress on stdout (read it with [`ProgressParser`]), and the
/// [`INPUT_GUARD`] for the one input.
///
/// [`ProgressParser`]: super::ProgressParser
pub const BASE_ARGS: [&str; 12] = [
    "-nostdin",
    "-y",
    "-hide_banner",
    "-loglevel",
    "error",
    "-progress",
    "pipe:1",
    "-nostats",
    INPUT_GUARD[0],
    INPUT_GUARD[1],
    INPUT_GUARD[2],
    INPUT_GUARD[3],
];

/// The audio bitrate inside video outputs, in bits per second.
pub const VIDEO_AUDIO_BITRATE: u64 = 128_000;

/// Seconds for `-ss`/`-to`, rounded to the millisecond: `1.5`, `10`.
pub(super) fn seconds_arg(seconds: f64) -> String {
    format!("{}", (seconds * 1000.0).round() / 1000.0)
}

/// A bitrate for `-b:a`/`-b:v`: `128k` when whole kilobits, else bits per second.
pub(super) fn bitrate_arg(bits: u64) -> String {
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

/// The full ffmpeg argument list (without the program name) that turns `input` into `output` as
/// `options` describe. Both are passed to ffmpeg as given: for local files, pass [`file_arg`]'s
/// `file:` form. The output format is always given with `-f`, so `output`'s extension does not
/// matter.
pub fn ffmpeg_args(options: &MediaOptions, input: &str, output: &str) -> Vec<String> {
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
    args.push(output.to_owned());
    args
}

/// A local file as an ffmpeg or ffprobe argument: prefixed with `file:`, so a path can never be
/// read as another protocol (`http://…`, `concat:…`).
pub fn file_arg(path: &Path) -> String {
    format!("file:{}", path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::media::test_support::{error, line, parse};
    use crate::processor::media::types::{content_type, output_extension};
    use reeltime::JobKind;
    use serde_json::{json, Value};

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
            let args = ffmpeg_args(&parse(kind, options), "in.mp4", "/tmp/o.bin");
            assert_eq!(args[..12], BASE_ARGS.map(String::from));
            assert_eq!(args.last().map(String::as_str), Some("/tmp/o.bin"));
            let input = args.iter().position(|a| a == "-i").unwrap();
            assert_eq!(args[input + 1], "in.mp4");
            let guard = args.iter().position(|a| a == "-format_whitelist").unwrap();
            assert!(guard < input, "the guard is an input option");
        }
    }

    #[test]
    fn no_demuxer_that_names_other_files_is_allowed() {
        let allowed: Vec<&str> = DEMUXERS.split(',').collect();
        for refers in [
            "concat",
            "hls",
            "dash",
            "image2",
            "image2pipe",
            "tee",
            "ffmetadata",
            "mpl2",
            "srt",
            "ass",
            "webm_dash_manifest",
            "sdp",
            "rtsp",
            "data",
            "lavfi",
            "fd",
            "pipe",
        ] {
            assert!(!allowed.contains(&refers), "{refers} is allowed");
        }
        assert!(allowed
            .iter()
            .all(|name| !name.is_empty() && name.trim() == *name));
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
        assert!(ffmpeg_args(&jpg, "in", "o").join(" ").contains("-q:v 2 "));
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
}
