//! The built-in processor under hostile input and real concurrency (issue 10): one worker per
//! job however slow its download, inputs that name other files refused, runs bounded by
//! decoded time, a wall-clock limit and a stall watchdog, ffmpeg confined, and nothing left
//! running or half-written after the server is killed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use server::processor::confine::is_root;
use server::processor::lease::Lease;
use server::processor::store::{self, NewProcessorJob, ProcessorJob};
use server::processor::Processor;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{eventually, spawn_app_with, test_database_url, TestApp};
use crate::processor::{clip, media_server, spawn_processor, start_processor, test_settings};
use crate::processor_paths::{files_in, pid_in, running, tool_dir};

/// Queue a job of `kind` with `options` straight into the processor's table.
async fn queue_job(
    app: &TestApp,
    kind: reeltime::JobKind,
    input: &str,
    options: serde_json::Value,
) -> String {
    let job = NewProcessorJob {
        kind,
        input,
        options: &options,
        metadata: &json!({}),
        webhook_url: None,
    };
    store::create(&app.pool, &job, None).await.unwrap().0.id
}

async fn job(app: &TestApp, id: &str) -> ProcessorJob {
    store::get(&app.pool, id).await.unwrap().unwrap()
}

/// Wait until the job has finished.
async fn finished(app: &TestApp, id: &str, within: Duration) -> ProcessorJob {
    eventually(within, || async {
        let job = job(app, id).await;
        match job.status.as_str() {
            "succeeded" | "failed" => Ok(job),
            other => Err(format!("the job is {other}")),
        }
    })
    .await
}

/// A script standing in for ffmpeg in `dir`: it answers `-version` as ffmpeg does and
/// otherwise runs `body` (with `$@` the arguments the processor passed).
fn stand_in(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join(name);
    std::fs::write(
        &script,
        format!("#!/bin/sh\nif [ \"$1\" = -version ]; then exec ffmpeg -version; fi\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.to_string_lossy().into_owned()
}

/// Every line a stand-in appended to `file`.
fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Queue an MP3 of the clip served by `media`, run it on `processor`, and read it back.
async fn run_audio_job(app: &TestApp, media: &MockServer, processor: &Processor) -> ProcessorJob {
    let id = queue_job(
        app,
        reeltime::JobKind::Audio,
        &format!("{}/clip.mp4", media.uri()),
        json!({"format": "mp3"}),
    )
    .await;
    assert!(processor.run_one().await.unwrap());
    job(app, &id).await
}

#[tokio::test]
async fn a_slow_download_keeps_its_job_from_every_other_worker() {
    let app = spawn_app_with(&[]).await;
    let tools = tool_dir("counting");
    let runs = tools.join("runs");
    let ffmpeg = stand_in(
        &tools,
        "ffmpeg",
        &format!("echo run >> {}\nexec ffmpeg \"$@\"", runs.display()),
    );
    // The input takes more than twice the lease to arrive; four workers wait for work.
    let lease = Duration::from_secs(2);
    let media = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/slow.mp4"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_bytes(clip())
                .set_delay(lease * 3),
        )
        .mount(&media)
        .await;
    let mut settings = test_settings(&app, &ffmpeg);
    settings.workers = 4;
    settings.lease = Lease::of(lease);
    let _processor = start_processor(&app, settings).await;
    let id = queue_job(
        &app,
        reeltime::JobKind::Audio,
        &format!("{}/slow.mp4", media.uri()),
        json!({"format": "mp3"}),
    )
    .await;

    let done = finished(&app, &id, Duration::from_secs(120)).await;
    assert_eq!(done.status, "succeeded", "{:?}", done.error);
    assert_eq!(done.attempts, 1, "no other worker took the job");
    assert_eq!(
        media.received_requests().await.unwrap().len(),
        1,
        "one download"
    );
    assert_eq!(lines(&runs).len(), 1, "one ffmpeg");
}

/// The reason a job whose input names other files fails with.
const NOT_READ: &str = "the input's format is one the built-in processor does not read: \
                        playlists, concat lists and image sequences may name other files";

#[tokio::test]
async fn inputs_that_name_other_files_are_refused_and_nothing_they_name_is_read() {
    let app = spawn_app_with(&[]).await;
    let media = media_server().await;
    // What the lists point at: another job's input (a real clip on this machine) and a URL
    // whose server counts what it is asked for.
    let other = tool_dir("other-job");
    let other_input = other.join("job_other.input");
    std::fs::write(&other_input, clip()).unwrap();
    let spy = MockServer::start().await;
    let bodies = [
        (
            "/list.ffconcat",
            format!(
                "ffconcat version 1.0\nfile job_other.input\nfile {}\nfile {}/secret.mp4\n",
                other_input.display(),
                spy.uri()
            ),
        ),
        (
            "/playlist.m3u8",
            "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:/etc/passwd\n\
             #EXTINF:10,\n../../outputs/anything.mp4\n#EXT-X-ENDLIST\n"
                .to_owned(),
        ),
        (
            "/frames.m3u8",
            format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{}/secret.ts\n#EXT-X-ENDLIST\n",
                spy.uri()
            ),
        ),
    ];
    for (route, body) in &bodies {
        Mock::given(method("GET"))
            .and(path(*route))
            .respond_with(ResponseTemplate::new(200).set_body_string(body.clone()))
            .mount(&media)
            .await;
    }
    let processor = start_processor(&app, test_settings(&app, "ffmpeg")).await;
    for (route, _) in &bodies {
        let id = queue_job(
            &app,
            reeltime::JobKind::Video,
            &format!("{}{route}", media.uri()),
            json!({}),
        )
        .await;
        assert!(processor.run_one().await.unwrap());
        let job = job(&app, &id).await;
        assert_eq!(job.status, "failed", "{route}");
        assert_eq!(job.error.as_deref(), Some(NOT_READ), "{route}");
        assert_eq!(job.output, None, "{route}");
    }
    assert!(
        spy.received_requests().await.unwrap().is_empty(),
        "nothing named was fetched"
    );
    assert!(
        files_in(&outputs(&processor, &app)).is_empty(),
        "no output was written"
    );
}

#[tokio::test]
async fn a_concat_name_is_not_an_input_the_processor_takes() {
    let app = spawn_processor().await;
    let (status, body) = app
        .processor_create(
            &json!({"input": "concat:/etc/passwd|/etc/hostname", "kind": "video"}),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("scheme concat: is not supported"),
        "{body}"
    );
    let (_, list) = app.processor_get("/jobs").await;
    assert_eq!(list["data"], json!([]), "nothing was queued");
}

/// Where a processor started by [`start_processor`] keeps its outputs.
fn outputs(_processor: &Processor, app: &TestApp) -> PathBuf {
    // test_settings puts each processor in data_dir/stepped-<random>; there is one per test.
    let stepped = files_in(&app.data_dir)
        .into_iter()
        .find(|name| name.starts_with("stepped-"))
        .expect("the test's processor directory");
    app.data_dir.join(stepped).join("outputs")
}

/// A raw H.264 stream of `secs` seconds: ffprobe cannot tell its length.
fn raw_h264(dir: &Path, secs: u32) -> Vec<u8> {
    let file = dir.join("raw.h264");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-y", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=160x120:rate=25:duration={secs}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-f", "h264"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(file).unwrap()
}

#[tokio::test]
async fn a_stream_of_unknown_length_is_held_to_the_limit_on_decoded_time() {
    let app = spawn_app_with(&[]).await;
    let dir = tool_dir("raw");
    let media = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/long.h264"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(raw_h264(&dir, 20)))
        .mount(&media)
        .await;
    let mut settings = test_settings(&app, "ffmpeg");
    settings.limits.max_duration = Duration::from_secs(5);
    let processor = start_processor(&app, settings).await;
    let id = queue_job(
        &app,
        reeltime::JobKind::Video,
        &format!("{}/long.h264", media.uri()),
        json!({}),
    )
    .await;
    assert!(processor.run_one().await.unwrap());
    let job = job(&app, &id).await;
    assert_eq!(job.status, "failed");
    let error = job.error.unwrap_or_default();
    assert!(
        error.starts_with("the input is over the 5 s limit"),
        "{error}"
    );
    assert!(files_in(&outputs(&processor, &app)).is_empty());
}

#[tokio::test]
async fn an_ffmpeg_that_runs_past_the_time_limit_is_stopped() {
    let app = spawn_app_with(&[]).await;
    let media = media_server().await;
    let tools = tool_dir("busy");
    let pid_file = tools.join("pid");
    // It keeps reporting (so the stall watchdog stays quiet) and never finishes.
    let ffmpeg = stand_in(
        &tools,
        "ffmpeg",
        &format!(
            "echo $$ > {}\nwhile :; do echo out_time_us=0; echo progress=continue; sleep 0.2; done",
            pid_file.display()
        ),
    );
    let mut settings = test_settings(&app, &ffmpeg);
    settings.limits.time_limit = Some(Duration::from_secs(2));
    let processor = start_processor(&app, settings).await;
    let started = Instant::now();
    let job = run_audio_job(&app, &media, &processor).await;
    assert_eq!(job.status, "failed");
    assert_eq!(
        job.error.as_deref(),
        Some(
            "ffmpeg ran past the job's 2 s time limit and was stopped \
             (REELTIME_PROCESSOR_TIME_LIMIT_SECS)"
        )
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    let pid = pid_in(&pid_file).expect("the stand-in wrote its pid");
    assert!(!running(pid), "the stand-in ({pid}) was stopped");
}

#[tokio::test]
async fn a_stalled_ffmpeg_is_stopped_even_when_it_ignores_sigterm() {
    let app = spawn_app_with(&[]).await;
    let media = media_server().await;
    let tools = tool_dir("stalled");
    let pid_file = tools.join("pid");
    // One progress block, then silence; SIGTERM is ignored, so only SIGKILL ends it.
    let ffmpeg = stand_in(
        &tools,
        "ffmpeg",
        &format!(
            "trap '' TERM\necho $$ > {}\necho out_time_us=0\necho progress=continue\nexec sleep 600",
            pid_file.display()
        ),
    );
    let mut settings = test_settings(&app, &ffmpeg);
    settings.limits.stall = Duration::from_secs(1);
    settings.limits.kill_grace = Duration::from_secs(1);
    let processor = start_processor(&app, settings).await;
    let job = run_audio_job(&app, &media, &processor).await;
    assert_eq!(job.status, "failed");
    assert_eq!(
        job.error.as_deref(),
        Some("stalled: ffmpeg made no progress for 1 s and was stopped")
    );
    let pid = pid_in(&pid_file).expect("the stand-in wrote its pid");
    assert!(!running(pid), "the stand-in ({pid}) was killed");
}

#[tokio::test]
async fn ffmpeg_runs_idle_niced_capped_in_its_own_group_and_unprivileged_under_root() {
    let app = spawn_app_with(&[]).await;
    let media = media_server().await;
    let tools = tool_dir("confined");
    let facts = tools.join("facts");
    // uid, pid, process group, nice value, scheduling policy, address-space limit (KiB),
    // then the real ffmpeg.
    let ffmpeg = stand_in(
        &tools,
        "ffmpeg",
        &format!(
            "echo $(id -u) $$ $(cut -d' ' -f5,19,41 /proc/$$/stat) $(ulimit -v) >> {}\nexec ffmpeg \"$@\"",
            facts.display()
        ),
    );
    let processor = start_processor(&app, test_settings(&app, &ffmpeg)).await;
    let job = run_audio_job(&app, &media, &processor).await;
    assert_eq!(job.status, "succeeded", "{:?}", job.error);
    let facts = lines(&facts);
    assert_eq!(facts.len(), 1, "{facts:?}");
    let fields: Vec<&str> = facts[0].split_whitespace().collect();
    assert_eq!(fields.len(), 6, "{facts:?}");
    // SAFETY: geteuid cannot fail.
    let own_uid = unsafe { libc::geteuid() };
    let expected_uid = if is_root() { 65534 } else { own_uid };
    assert_eq!(fields[0], expected_uid.to_string(), "the user: {facts:?}");
    assert_eq!(fields[2], fields[1], "its own process group: {facts:?}");
    assert_eq!(fields[3], "10", "niced: {facts:?}");
    assert_eq!(fields[4], "5", "in the idle class (SCHED_IDLE): {facts:?}");
    assert_eq!(fields[5], (4096 * 1024).to_string(), "capped: {facts:?}");
}

/// The real binary, run as an operator would, on the test's database.
fn reeltime(app: &TestApp, data_dir: &Path, ffmpeg: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_reeltime"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", test_database_url(app))
        .env("REELTIME_DATA_DIR", data_dir)
        .env("REELTIME_PORT", "0")
        .env("REELTIME_PROCESSOR", "on")
        .env("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true")
        .env("REELTIME_PROCESSOR_WORKERS", "1")
        .env("REELTIME_PROCESSOR_LEASE_SECS", "2")
        .env("REELTIME_PROCESSOR_FFMPEG", ffmpeg)
        .env("REELTIME_SAMPLE_CLIP", "off")
        .env(
            "ITTYBIT_WEBHOOK_SECRET",
            "whsec-kill-test-0123456789abcdef0123",
        )
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the reeltime binary starts")
}

/// An 8 s clip: at real-time speed, long enough to kill the server mid-job.
fn eight_second_clip(dir: &Path) -> Vec<u8> {
    let file = dir.join("eight.mp4");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-y", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("sine=frequency=440:sample_rate=48000:duration=8")
        .args(["-c:a", "aac"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(file).unwrap()
}

#[tokio::test]
async fn a_server_killed_mid_job_leaves_no_ffmpeg_and_no_partial_file_and_the_job_finishes_once() {
    let app = spawn_app_with(&[]).await;
    let tools = tool_dir("killed");
    let pids = tools.join("pids");
    // The real ffmpeg, reading its input at real-time speed.
    let ffmpeg = stand_in(
        &tools,
        "ffmpeg",
        &format!("echo $$ >> {}\nexec ffmpeg -re \"$@\"", pids.display()),
    );
    let media = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/eight.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(eight_second_clip(&tools)))
        .mount(&media)
        .await;
    let data_dir = tool_dir("killed-data");
    let id = queue_job(
        &app,
        reeltime::JobKind::Audio,
        &format!("{}/eight.mp4", media.uri()),
        json!({"format": "mp3"}),
    )
    .await;

    let mut server = reeltime(&app, &data_dir, &ffmpeg);
    let first: i32 = eventually(Duration::from_secs(120), || async {
        lines(&pids)
            .first()
            .and_then(|pid| pid.parse().ok())
            .ok_or_else(|| "ffmpeg has not started".to_owned())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(running(first), "ffmpeg runs mid-job");
    server.kill().await.unwrap(); // SIGKILL: no shutdown code runs
    eventually(Duration::from_secs(10), || async {
        match running(first) {
            false => Ok(()),
            true => Err(format!("ffmpeg ({first}) outlived the server")),
        }
    })
    .await;

    let _server = reeltime(&app, &data_dir, &ffmpeg);
    let done = finished(&app, &id, Duration::from_secs(180)).await;
    assert_eq!(done.status, "succeeded", "{:?}", done.error);
    assert_eq!(
        done.attempts, 2,
        "the killed start and the one that finished"
    );
    assert_eq!(lines(&pids).len(), 2, "ffmpeg ran once per start");
    let processor = data_dir.join("processor");
    assert_eq!(files_in(&processor.join("outputs")), [format!("{id}.mp3")]);
    assert!(
        files_in(&processor.join("work")).is_empty(),
        "no work directory or partial file is left"
    );
}
