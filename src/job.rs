//! Jobs: identity, kind, preset and the status state machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use strum::VariantArray;
use time::OffsetDateTime;
use uuid::Uuid;

/// The dashboard's own id for a job (the `jobs.id` primary key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = Uuid))]
pub struct JobId(pub Uuid);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(JobId)
    }
}

/// Where a job is in its life.
///
/// ```text
/// pending ─▶ queued ─▶ processing ─▶ succeeded | failed | cancelled
/// ```
///
/// A job only ever moves forward, it may skip steps (a webhook can report `succeeded` for a job
/// we still think is `queued`), and a terminal state never changes. See
/// `docs/decisions/001-job-status-state-machine.md`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "text", rename_all = "snake_case")
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[strum(
    serialize_all = "snake_case",
    parse_err_ty = UnknownStatus,
    parse_err_fn = UnknownStatus::new
)]
pub enum JobStatus {
    /// Inserted, not yet accepted by the processor.
    Pending,
    /// Accepted by the processor, waiting for a worker.
    Queued,
    /// Being worked on.
    Processing,
    /// Finished with an output.
    Succeeded,
    /// Finished without an output; `error` says why.
    Failed,
    /// Stopped on purpose before it finished.
    Cancelled,
}

impl JobStatus {
    /// Every status, from `pending` to `cancelled`.
    pub const ALL: &'static [JobStatus] = <JobStatus as VariantArray>::VARIANTS;

    /// The status's name, as stored and sent: `pending`, …, `cancelled`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// How far along a job is; every terminal state shares the last step.
    pub fn step(self) -> u8 {
        match self {
            JobStatus::Pending => 0,
            JobStatus::Queued => 1,
            JobStatus::Processing => 2,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled => 3,
        }
    }

    pub fn is_terminal(self) -> bool {
        self.step() == 3
    }

    /// Whether a job in `self` may move to `next`: forward only, never out of a terminal state.
    pub fn can_transition_to(self, next: JobStatus) -> bool {
        !self.is_terminal() && next.step() > self.step()
    }

    /// The status after a report of `reported`: the report if it is a legal move, otherwise the
    /// current status (stale, repeated and out-of-order reports change nothing).
    pub fn advance(self, reported: JobStatus) -> JobStatus {
        if self.can_transition_to(reported) {
            reported
        } else {
            self
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status {0:?}")]
pub struct UnknownStatus(pub String);

impl UnknownStatus {
    fn new(name: &str) -> Self {
        UnknownStatus(name.to_owned())
    }
}

/// The kind of media work, as Ittybit names it.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "text", rename_all = "snake_case")
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[strum(
    serialize_all = "snake_case",
    parse_err_ty = UnknownKind,
    parse_err_fn = UnknownKind::new
)]
pub enum JobKind {
    Video,
    Audio,
    Image,
    Animation,
    AdaptiveVideo,
}

impl JobKind {
    /// Every kind, from `video` to `adaptive_video`.
    pub const ALL: &'static [JobKind] = <JobKind as VariantArray>::VARIANTS;

    /// The kind's name, as Ittybit spells it: `video`, …, `adaptive_video`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job kind {0:?}")]
pub struct UnknownKind(pub String);

impl UnknownKind {
    fn new(name: &str) -> Self {
        UnknownKind(name.to_owned())
    }
}

/// A named set of processing options a person can pick in the dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Preset {
    /// The seed guide's preset: video, 1280 wide, MP4, high quality.
    #[serde(rename = "video_1280_mp4_high")]
    Video1280Mp4High,
    /// A smaller web video: 720 wide, WebM with VP9.
    #[serde(rename = "video_720_webm")]
    Video720Webm,
    /// A poster frame: the still at 1 s, JPEG, 1280 wide.
    #[serde(rename = "image_jpeg_1280")]
    ImageJpeg1280,
    /// A looping preview: the first 3 s as a 480-wide GIF at 10 fps.
    #[serde(rename = "animation_gif_480")]
    AnimationGif480,
    /// The soundtrack as a 192 kbit/s MP3.
    #[serde(rename = "audio_mp3_192")]
    AudioMp3192,
}

impl Preset {
    pub const ALL: [Preset; 5] = [
        Preset::Video1280Mp4High,
        Preset::Video720Webm,
        Preset::ImageJpeg1280,
        Preset::AnimationGif480,
        Preset::AudioMp3192,
    ];
    pub const DEFAULT: Preset = Preset::Video1280Mp4High;

    pub fn id(self) -> &'static str {
        match self {
            Preset::Video1280Mp4High => "video_1280_mp4_high",
            Preset::Video720Webm => "video_720_webm",
            Preset::ImageJpeg1280 => "image_jpeg_1280",
            Preset::AnimationGif480 => "animation_gif_480",
            Preset::AudioMp3192 => "audio_mp3_192",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Preset::Video1280Mp4High => "Video, 1280 wide, MP4, high quality",
            Preset::Video720Webm => "Video, 720 wide, WebM (VP9)",
            Preset::ImageJpeg1280 => "Still frame at 1 s, JPEG, 1280 wide",
            Preset::AnimationGif480 => "Animated GIF of the first 3 s, 480 wide",
            Preset::AudioMp3192 => "Audio only, MP3 192 kbit/s",
        }
    }

    pub fn kind(self) -> JobKind {
        match self {
            Preset::Video1280Mp4High | Preset::Video720Webm => JobKind::Video,
            Preset::ImageJpeg1280 => JobKind::Image,
            Preset::AnimationGif480 => JobKind::Animation,
            Preset::AudioMp3192 => JobKind::Audio,
        }
    }

    /// The `options` object sent to Ittybit for this preset.
    pub fn options(self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Preset::Video1280Mp4High => {
                json!({ "width": 1280, "format": "mp4", "quality": "high" })
            }
            Preset::Video720Webm => {
                json!({ "width": 720, "format": "webm", "codec": "vp9", "quality": "medium" })
            }
            Preset::ImageJpeg1280 => json!({ "format": "jpeg", "width": 1280, "start": 1 }),
            Preset::AnimationGif480 => {
                json!({ "format": "gif", "width": 480, "fps": 10, "start": 0, "end": 3 })
            }
            Preset::AudioMp3192 => json!({ "format": "mp3", "bitrate": 192000 }),
        }
    }

    pub fn from_id(id: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|preset| preset.id() == id)
    }
}

/// What is known about a job's output file; any of it may be missing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFacts {
    pub duration_ms: Option<u64>,
    /// Bytes.
    pub size: Option<u64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl OutputFacts {
    pub fn is_empty(&self) -> bool {
        *self == OutputFacts::default()
    }
}

/// A job as the API and the dashboard show it; with the `sqlx` feature, also a row of `jobs`
/// (the integer fields have the columns' types, and the columns' checks keep them in range).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: JobId,
    pub input_url: String,
    pub kind: JobKind,
    /// The processing options sent to the processor.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub options: serde_json::Value,
    pub status: JobStatus,
    /// The processor's id for this job, once it has accepted it.
    pub task_id: Option<String>,
    pub output_url: Option<String>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Percent done while processing (0-100); 100 once succeeded.
    #[serde(default)]
    pub progress: Option<i16>,
    /// The output's length in milliseconds (audio, video, animations), once succeeded.
    #[serde(default)]
    pub output_duration_ms: Option<i64>,
    /// The output's size in bytes, once succeeded.
    #[serde(default)]
    pub output_size: Option<i64>,
    /// The output's pixel size (video, images, animations), once succeeded.
    #[serde(default)]
    pub output_width: Option<i32>,
    #[serde(default)]
    pub output_height: Option<i32>,
    /// The input's size in bytes, once succeeded, if the processor said (the built-in one
    /// does; Ittybit does not).
    #[serde(default)]
    pub input_size: Option<i64>,
    /// Grows with every write to the row, in the order the writes committed: a copy with a
    /// smaller version is older.
    pub version: i64,
    /// The account that submitted the job (absent for jobs written by other means).
    #[serde(default)]
    pub created_by: Option<Uuid>,
    /// The failed or cancelled job this one retries.
    #[serde(default)]
    pub retry_of: Option<JobId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobStatus::*;

    #[test]
    fn happy_path_moves_forward() {
        assert!(Pending.can_transition_to(Queued));
        assert!(Queued.can_transition_to(Processing));
        assert!(Processing.can_transition_to(Succeeded));
        assert!(Processing.can_transition_to(Failed));
        assert!(Processing.can_transition_to(Cancelled));
    }

    #[test]
    fn steps_may_be_skipped() {
        // A dispatch that fails for good never reaches the processor's queue.
        assert!(Pending.can_transition_to(Failed));
        assert!(Pending.can_transition_to(Cancelled));
        // A finished-webhook can overtake the processing one.
        assert!(Queued.can_transition_to(Succeeded));
        assert!(Pending.can_transition_to(Processing));
    }

    #[test]
    fn never_backwards_or_sideways() {
        assert!(!Processing.can_transition_to(Queued));
        assert!(!Queued.can_transition_to(Pending));
        assert!(!Processing.can_transition_to(Processing));
        assert!(!Pending.can_transition_to(Pending));
    }

    #[test]
    fn terminal_states_never_change() {
        for from in [Succeeded, Failed, Cancelled] {
            assert!(from.is_terminal());
            for &to in JobStatus::ALL {
                assert!(
                    !from.can_transition_to(to),
                    "{from} -> {to} must be refused"
                );
                assert_eq!(from.advance(to), from);
            }
        }
    }

    #[test]
    fn advance_ignores_stale_reports() {
        assert_eq!(Processing.advance(Queued), Processing);
        assert_eq!(Queued.advance(Processing), Processing);
        assert_eq!(Processing.advance(Succeeded), Succeeded);
    }

    #[test]
    fn status_round_trips_through_its_name() {
        for &status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert!("completed".parse::<JobStatus>().is_err());
    }

    #[test]
    fn kind_round_trips_through_its_name() {
        for &kind in JobKind::ALL {
            assert_eq!(kind.as_str().parse::<JobKind>(), Ok(kind));
        }
        assert!("hologram".parse::<JobKind>().is_err());
    }

    #[test]
    fn unknown_names_are_quoted_in_the_error() {
        assert_eq!(
            "completed".parse::<JobStatus>(),
            Err(UnknownStatus("completed".into()))
        );
        assert_eq!(
            "Queued".parse::<JobStatus>().unwrap_err().to_string(),
            r#"unknown job status "Queued""#
        );
        assert_eq!(
            "hologram".parse::<JobKind>().unwrap_err().to_string(),
            r#"unknown job kind "hologram""#
        );
        for &kind in JobKind::ALL {
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        assert_eq!(JobKind::AdaptiveVideo.as_str(), "adaptive_video");
    }

    #[test]
    fn the_seed_preset_sends_the_seed_options() {
        let preset = Preset::from_id("video_1280_mp4_high").unwrap();
        assert_eq!(preset.kind(), JobKind::Video);
        assert_eq!(
            preset.options(),
            serde_json::json!({"width": 1280, "format": "mp4", "quality": "high"})
        );
    }
}
