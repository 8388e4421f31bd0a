//! The built-in processor's limits and its lifecycle, by what it does rather than how: an input
//! over the duration limit, a job whose starts keep being interrupted, and a shutdown in the
//! middle of a job.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use server::processor::store;
use sqlx::PgPool;

use crate::helpers::{eventually, spawn_app_with, spawn_second_instance_with, test_database_url};
use crate::processor::{media_server, queue, stepped_processor};

#[tokio::test]
async fn an_input_over_the_duration_limit_fails_the_job_saying_so() {
    let app = spawn_app_with(&[
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
        ("REELTIME_PROCESSOR_MAX_DURATION_SECS", "1"),
        (
            "ITTYBIT_WEBHOOK_SECRET",
            "whsec-duration-0123456789abcdef0123456789",
        ),
    ])
    .await;
    let media = media_server().await;
    // The 2 s clip, through the dashboard's API as a person would send it.
    let job: Value = app
        .create_job(json!({ "input_url": format!("{}/clip.mp4", media.uri()) }))
        .await;
    let failed = app.dashboard_wait(job["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("over the 1 s limit")
            && error.contains("REELTIME_PROCESSOR_MAX_DURATION_SECS"),
        "{error}"
    );
    assert_eq!(failed["output_url"], Value::Null);
}

#[tokio::test]
async fn a_job_interrupted_three_times_fails_and_one_interrupted_twice_still_runs() {
    let app = spawn_app_with(&[]).await;
    let media = media_server().await;
    let processor = stepped_processor(&app, "ffmpeg").await;
    let input = format!("{}/clip.mp4", media.uri());
    let twice = queue(&app, &input).await;
    let thrice = queue(&app, &input).await;
    // A start whose worker died: the job is claimed and its lease runs out unfinished.
    let interrupted = |n: usize| {
        let pool = app.pool.clone();
        async move {
            for _ in 0..n {
                store::claim(&pool, Duration::ZERO, uuid::Uuid::new_v4())
                    .await
                    .unwrap()
                    .unwrap();
            }
        }
    };
    interrupted(2).await; // the first job, the oldest
    assert!(processor.run_one().await.unwrap());
    let job = store::get(&app.pool, &twice).await.unwrap().unwrap();
    assert_eq!(job.status, "succeeded", "{:?}", job.error);

    interrupted(3).await;
    assert!(processor.run_one().await.unwrap());
    let job = store::get(&app.pool, &thrice).await.unwrap().unwrap();
    assert_eq!(job.status, "failed");
    assert_eq!(
        job.error.as_deref(),
        Some("processing was interrupted 3 times; giving up")
    );
}

/// A folder for stand-in tools and what they write: open to everyone, since the processor runs
/// its tools as an unprivileged user when the tests run as root.
pub(crate) fn tool_dir(name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir =
        std::env::temp_dir().join(format!("reeltime-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// An ffmpeg that never finishes: it answers `-version` as ffmpeg does, and otherwise writes
/// its pid to `pid_file` and sleeps.
pub(crate) fn endless_ffmpeg(dir: &Path, pid_file: &Path) -> String {
    let script = dir.join("ffmpeg-endless");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = -version ]; then exec ffmpeg -version; fi\n\
             echo $$ > {}\nexec sleep 600\n",
            pid_file.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.to_string_lossy().into_owned()
}

/// The pid a stand-in wrote to `file`, once it has.
pub(crate) fn pid_in(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Wait, up to `within`, until a stand-in has started and written its pid to `file`.
pub(crate) async fn started(file: &Path, within: Duration) -> i32 {
    eventually(within, || async {
        pid_in(file).ok_or_else(|| "ffmpeg has not started".to_owned())
    })
    .await
}

/// The files in `dir`, sorted (none when it does not exist).
pub(crate) fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

pub(crate) fn running(pid: i32) -> bool {
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = state
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    !state.is_empty() && !zombie
}

#[tokio::test]
async fn on_shutdown_ffmpeg_is_stopped_and_the_job_goes_back_to_the_queue() {
    let dir = tool_dir("endless");
    let pid_file = dir.join("ffmpeg.pid");
    let ffmpeg = endless_ffmpeg(&dir, &pid_file);
    let mut app = spawn_app_with(&[
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
        ("REELTIME_PROCESSOR_WORKERS", "1"),
        ("REELTIME_PROCESSOR_FFMPEG", &ffmpeg),
    ])
    .await;
    let media = media_server().await;
    let id = queue(&app, &format!("{}/clip.mp4", media.uri())).await;
    let ffmpeg_pid = started(&pid_file, Duration::from_secs(60)).await;
    let pool = PgPool::connect(&test_database_url(&app)).await.unwrap();
    let job = store::get(&pool, &id).await.unwrap().unwrap();
    assert_eq!((job.status.as_str(), job.attempts), ("processing", 1));

    app.shut_down();
    let job = eventually(Duration::from_secs(30), || async {
        let job = store::get(&pool, &id).await.unwrap().unwrap();
        match job.status.as_str() {
            "queued" => Ok(job),
            other => Err(format!("the job is {other}")),
        }
    })
    .await;
    assert_eq!(job.attempts, 0, "a shutdown is not an interrupted start");
    eventually(Duration::from_secs(10), || async {
        match running(ffmpeg_pid) {
            false => Ok(()),
            true => Err(format!("ffmpeg ({ffmpeg_pid}) still runs")),
        }
    })
    .await;

    // The next start (another instance on the same database, with the real ffmpeg) does it.
    let _next = spawn_second_instance_with(
        &app,
        &[
            ("REELTIME_PROCESSOR", "on"),
            ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
        ],
    )
    .await;
    let job = eventually(Duration::from_secs(240), || async {
        let job = store::get(&pool, &id).await.unwrap().unwrap();
        match job.status.as_str() {
            "succeeded" | "failed" => Ok(job),
            other => Err(format!("the job is {other}")),
        }
    })
    .await;
    assert_eq!(job.status, "succeeded", "{:?}", job.error);
    assert_eq!(job.attempts, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
