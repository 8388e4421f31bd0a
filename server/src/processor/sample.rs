//! The sample clip the empty dashboard offers: ffmpeg's test pattern with a tone, 10 s at
//! 1080p, written once into the data directory and served at [`PATH`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::process::Command;
use tokio_util::task::TaskTracker;

use super::media::file_arg;

/// Where the app serves the files of the samples directory.
pub const PATH: &str = "/samples";
/// The clip's file name.
pub const NAME: &str = "sample-1080p.mp4";

/// The sample clip as it is offered.
#[derive(Clone, Debug)]
pub struct SampleClip {
    /// Where the processor fetches it.
    pub url: String,
    /// The folder it is served from.
    pub dir: PathBuf,
    /// Set once the file has been written; it is offered from then on.
    pub ready: Arc<AtomicBool>,
}

/// The ffmpeg arguments that write the clip to `output`.
pub fn args(output: &Path) -> Vec<String> {
    [
        "-nostdin",
        "-y",
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1920x1080:rate=30:duration=10",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=10",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .chain([file_arg(output)])
    .collect()
}

/// Writes the clip into `dir` unless it is there already; returns its path.
pub async fn ensure(dir: &Path, ffmpeg: &str) -> Result<PathBuf, String> {
    let path = dir.join(NAME);
    if tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Ok(path);
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|err| format!("could not create {}: {err}", dir.display()))?;
    let part = dir.join(format!("{NAME}.part"));
    let output = Command::new(ffmpeg)
        .args(args(&part))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| format!("could not run {ffmpeg}: {err}"))?;
    if !output.status.success() {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(format!(
            "ffmpeg could not write the sample clip: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    tokio::fs::rename(&part, &path)
        .await
        .map_err(|err| format!("could not keep the sample clip: {err}"))?;
    Ok(path)
}

/// Writes the clip into `dir` in the background (once) and returns the clip as the dashboard
/// offers it: at `<public_url>/samples/<NAME>`, ready once written.
pub fn offer(dir: PathBuf, public_url: &str, ffmpeg: String, tasks: &TaskTracker) -> SampleClip {
    let clip = SampleClip {
        url: format!("{public_url}{PATH}/{NAME}"),
        dir: dir.clone(),
        ready: Arc::new(AtomicBool::new(false)),
    };
    let ready = clip.ready.clone();
    tasks.spawn(async move {
        match ensure(&dir, &ffmpeg).await {
            Ok(path) => {
                ready.store(true, Ordering::Relaxed);
                tracing::info!(path = %path.display(), "the sample clip is ready");
            }
            Err(problem) => tracing::warn!(%problem, "no sample clip"),
        }
    });
    clip
}
