//! The built-in processor, with real ffmpeg on small generated clips: its API as the Ittybit
//! contract describes it, the media it makes, its webhooks, and the whole pipeline from the
//! dashboard's API to a finished job.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use reeltime::signature;
use serde_json::{json, Value};
use server::processor::confine::{is_root, Confinement, RunAs};
use server::processor::lease::Lease;
use server::processor::media::file_arg;
use server::processor::run::Limits;
use server::processor::store::{self, NewProcessorJob};
use server::processor::webhook::RetryPolicy;
use server::processor::{Processor, ProcessorSettings};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{eventually, spawn_app_with, TestApp};

const SECRET: &str = "whsec-processor-tests-0123456789abcdef";

/// The processor on, fetching from the test's own (loopback) servers.
pub(crate) async fn spawn_processor() -> TestApp {
    spawn_app_with(&[
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
        ("ITTYBIT_WEBHOOK_SECRET", SECRET),
    ])
    .await
}

/// A 2 s, 640x360, 25 fps clip with a tone, made once per test run.
pub(crate) fn clip() -> &'static [u8] {
    static CLIP: OnceLock<Vec<u8>> = OnceLock::new();
    CLIP.get_or_init(|| {
        let path = std::env::temp_dir().join(format!(
            "reeltime-clip-{}.mp4",
            uuid::Uuid::new_v4().simple()
        ));
        let status = Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-y",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=25:duration=2",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000:duration=2",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-shortest",
            ])
            .arg(&path)
            .status()
            .expect("ffmpeg is installed");
        assert!(status.success(), "ffmpeg made the test clip");
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        bytes
    })
}

/// A server holding the clip at `/clip.mp4` and some text at `/notes.txt`.
pub(crate) async fn media_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/clip.mp4"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "video/mp4")
                .set_body_bytes(clip()),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/notes.txt"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/plain")
                .set_body_string("Shopping list: eggs, milk. Definitely not a video.\n"),
        )
        .mount(&server)
        .await;
    server
}

impl TestApp {
    fn processor_url(&self, path: &str) -> String {
        self.url(&format!("/ittybit-local{path}"))
    }

    fn bearer(&self) -> String {
        format!(
            "Bearer {}",
            self.processor_key.as_deref().expect("the processor runs")
        )
    }

    /// `POST /ittybit-local/jobs`, returning the status and body.
    pub(crate) async fn processor_create(&self, body: &Value, key: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .post(self.processor_url("/jobs"))
            .header("authorization", self.bearer())
            .json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    pub(crate) async fn processor_get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.processor_url(path))
            .header("authorization", self.bearer())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Creates a processor job and waits until it is finished.
    pub(crate) async fn processor_run(&self, body: Value) -> Value {
        let (status, job) = self.processor_create(&body, None).await;
        assert_eq!(status, 201, "{body}: {job}");
        self.processor_wait(job["id"].as_str().unwrap()).await
    }

    /// Reads a processor job until it is finished.
    pub(crate) async fn processor_wait(&self, id: &str) -> Value {
        eventually(FINISH_WITHIN, || async {
            let (status, job) = self.processor_get(&format!("/jobs/{id}")).await;
            assert_eq!(status, 200, "{job}");
            finished(job)
        })
        .await
    }

    /// Reads a dashboard job until it is finished.
    pub(crate) async fn dashboard_wait(&self, id: &str) -> Value {
        eventually(FINISH_WITHIN, || async {
            finished(self.get_json(self.url(&format!("/api/jobs/{id}"))).await)
        })
        .await
    }
}

/// How long a job on a 2 s clip may take on a busy 2-core machine.
const FINISH_WITHIN: Duration = Duration::from_secs(240);

/// The job, if it has finished.
fn finished(job: Value) -> Result<Value, String> {
    match job["status"].as_str() {
        Some("succeeded" | "failed" | "cancelled") => Ok(job),
        _ => Err(format!("the job has not finished: {job}")),
    }
}

/// What ffprobe says about a file (an output the test checks: read without the processor's
/// guard, which would take a `.jpg` for an image sequence).
fn ffprobe(file: &Path) -> Value {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(file_arg(file))
        .output()
        .expect("ffprobe is installed");
    assert!(
        output.status.success(),
        "ffprobe read {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// What a finished output must be.
struct Expect {
    codec: &'static str,
    /// One of ffprobe's demuxer names for the container.
    container: &'static str,
    width: Option<u64>,
}

#[tokio::test]
async fn every_kind_and_format_makes_the_file_its_options_describe() {
    let app = spawn_processor().await;
    let media = media_server().await;
    let input = format!("{}/clip.mp4", media.uri());
    let cases: Vec<(&str, Value, Expect)> = vec![
        (
            "video",
            json!({"format": "mp4", "width": 320, "quality": "low"}),
            Expect {
                codec: "h264",
                container: "mp4",
                width: Some(320),
            },
        ),
        (
            "video",
            json!({"format": "webm", "codec": "vp9", "width": 240, "quality": "very_low", "fps": 10}),
            Expect {
                codec: "vp9",
                container: "webm",
                width: Some(240),
            },
        ),
        (
            "video",
            json!({"format": "mp4", "height": 120, "start": 0.5, "end": 1.5}),
            Expect {
                codec: "h264",
                container: "mp4",
                width: Some(214),
            },
        ),
        (
            "audio",
            json!({"format": "mp3", "bitrate": "96k"}),
            Expect {
                codec: "mp3",
                container: "mp3",
                width: None,
            },
        ),
        (
            "audio",
            json!({"format": "aac"}),
            Expect {
                codec: "aac",
                container: "mp4",
                width: None,
            },
        ),
        (
            "audio",
            json!({"format": "opus", "start": 1}),
            Expect {
                codec: "opus",
                container: "ogg",
                width: None,
            },
        ),
        (
            "audio",
            json!({"format": "wav"}),
            Expect {
                codec: "pcm_s16le",
                container: "wav",
                width: None,
            },
        ),
        (
            "audio",
            json!({"format": "flac"}),
            Expect {
                codec: "flac",
                container: "flac",
                width: None,
            },
        ),
        (
            "image",
            json!({"format": "jpeg", "width": 200, "start": 1}),
            Expect {
                codec: "mjpeg",
                container: "",
                width: Some(200),
            },
        ),
        (
            "image",
            json!({"format": "png", "width": 160}),
            Expect {
                codec: "png",
                container: "",
                width: Some(160),
            },
        ),
        (
            "image",
            json!({"format": "webp", "width": 128}),
            Expect {
                codec: "webp",
                container: "webp_pipe",
                width: Some(128),
            },
        ),
        (
            "animation",
            json!({"format": "gif", "width": 160, "fps": 5}),
            Expect {
                codec: "gif",
                container: "gif",
                width: Some(160),
            },
        ),
    ];
    let mut ids = Vec::new();
    for (kind, options, _) in &cases {
        let (status, job) = app
            .processor_create(
                &json!({"input": input, "kind": kind, "options": options}),
                None,
            )
            .await;
        assert_eq!(status, 201, "{kind} {options}: {job}");
        assert_eq!(job["status"], "queued");
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    let dir = tempdir();
    for ((kind, options, expect), id) in cases.iter().zip(&ids) {
        let job = app.processor_wait(id).await;
        assert_eq!(job["status"], "succeeded", "{kind} {options}: {job}");
        assert_eq!(job["tasks"][0]["progress"], 100);
        let url = job["output"].as_str().unwrap();
        let file = job["tasks"][0]["output"].clone();
        let response = app.client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            file["content_type"].as_str().unwrap()
        );
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, file["size"].as_u64().unwrap());
        let local = dir.join(url.rsplit('/').next().unwrap());
        std::fs::write(&local, &bytes).unwrap();

        let probe = ffprobe(&local);
        let stream = &probe["streams"][0];
        assert_eq!(
            stream["codec_name"], expect.codec,
            "{kind} {options}: {probe}"
        );
        let container = probe["format"]["format_name"].as_str().unwrap();
        assert!(
            container.split(',').any(|name| name == expect.container)
                || expect.container.is_empty(),
            "{kind} {options}: container {container}"
        );
        if let Some(width) = expect.width {
            assert_eq!(stream["width"], width, "{kind} {options}");
            assert_eq!(file["width"], width, "the file object tells the width");
            let height = stream["height"].as_u64().unwrap();
            assert_eq!(height % 2, 0, "even sizes: {kind} {options}");
        }
        if *kind == "video" || *kind == "audio" {
            let duration: f64 = probe["format"]["duration"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let wanted = match (options.get("start"), options.get("end")) {
                (_, Some(end)) => end.as_f64().unwrap() - options["start"].as_f64().unwrap_or(0.0),
                (Some(start), None) => 2.0 - start.as_f64().unwrap(),
                (None, None) => 2.0,
            };
            assert!(
                (duration - wanted).abs() < 0.25,
                "{kind} {options}: {duration} s, wanted {wanted}"
            );
        }
    }
}

#[tokio::test]
async fn an_animated_webp_is_an_animation() {
    let app = spawn_processor().await;
    let media = media_server().await;
    let job = app
        .processor_run(
            json!({"input": format!("{}/clip.mp4", media.uri()), "kind": "animation",
                    "options": {"format": "webp", "width": 96, "fps": 4}}),
        )
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let bytes = app
        .client
        .get(job["output"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // A RIFF/WEBP file with an animation chunk (this ffmpeg's decoder cannot read them back).
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WEBP");
    assert!(bytes.windows(4).any(|w| w == b"ANIM"), "an ANIM chunk");
    assert!(
        bytes.windows(4).filter(|w| *w == b"ANMF").count() >= 4,
        "several frames"
    );
}

#[tokio::test]
async fn text_input_fails_with_a_readable_reason() {
    let app = spawn_processor().await;
    let media = media_server().await;
    let job = app
        .processor_run(json!({"input": format!("{}/notes.txt", media.uri()), "kind": "video"}))
        .await;
    assert_eq!(job["status"], "failed");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(message.contains("not a media file"), "{message}");
    assert!(
        !message.contains("notes.txt"),
        "no URL in the reason: {message}"
    );
}

#[tokio::test]
async fn private_addresses_are_refused() {
    let app = spawn_app_with(&[("REELTIME_PROCESSOR", "on")]).await;
    let media = media_server().await;

    // An address typed as an IP: refused when the job is created.
    let (status, body) = app
        .processor_create(
            &json!({"input": format!("{}/clip.mp4", media.uri()), "kind": "video"}),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["kind"], "invalid_input");
    assert!(
        body["message"].as_str().unwrap().contains("private"),
        "{body}"
    );

    // A name that resolves to one: refused when the processor fetches it, and the dashboard
    // job fails with the reason.
    let port = media.address().port();
    let job = app
        .create_job(json!({"input_url": format!("http://localhost:{port}/clip.mp4")}))
        .await;
    let job = app.dashboard_wait(job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("private, loopback or link-local"), "{error}");
    // Which address the name resolved to is the operator's to know (the log), not viewers'.
    assert!(
        !error.contains("127.0.0.1") && !error.contains("::1"),
        "{error}"
    );
    assert!(
        media.received_requests().await.unwrap().is_empty(),
        "nothing was fetched"
    );

    // Through the dashboard, an address typed as an IP fails the job with the refusal, naming
    // the processor (not Ittybit, which this user may never have heard of).
    let job = app
        .create_job(json!({"input_url": "http://10.0.0.5/private.mp4"}))
        .await;
    let job = app.dashboard_wait(job["id"].as_str().unwrap()).await;
    let error = job["error"].as_str().unwrap();
    assert!(
        error.starts_with("The built-in processor refused the job: "),
        "{error}"
    );
    assert!(error.contains("private, loopback or link-local"), "{error}");
}

#[tokio::test]
async fn webhooks_are_signed_and_a_failing_receiver_gets_the_result_again() {
    let app = spawn_processor().await;
    let media = media_server().await;
    let receiver = MockServer::start().await;
    // The first final report is refused; progress reports are accepted.
    Mock::given(method("POST"))
        .and(body_string_contains("\"status\":\"succeeded\""))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let (_, job) = app
        .processor_create(
            &json!({"input": format!("{}/clip.mp4", media.uri()), "kind": "video",
                    "options": {"width": 320}, "metadata": {"job_id": "x"},
                    "webhook_url": format!("{}/hook", receiver.uri())}),
            None,
        )
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    app.processor_wait(&id).await;

    let deliveries: Vec<Request> = eventually(Duration::from_secs(30), || async {
        let received = receiver.received_requests().await.unwrap();
        let finals = received
            .iter()
            .filter(|r| body(r)["status"] == "succeeded")
            .count();
        match finals {
            0 | 1 => Err(format!(
                "{finals} final reports; the refused one was not sent again"
            )),
            _ => Ok(received),
        }
    })
    .await;
    for delivery in &deliveries {
        let header = delivery
            .headers
            .get(reeltime::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok());
        assert!(
            signature::verify(SECRET.as_bytes(), &delivery.body, header).is_ok(),
            "every webhook verifies with the secret"
        );
        let job = body(delivery);
        assert_eq!(job["id"], id.as_str());
        assert_eq!(job["metadata"]["job_id"], "x", "metadata is echoed");
    }
    // A processing report came first, and the final ones are identical.
    assert_eq!(body(&deliveries[0])["status"], "processing");
    let finals: Vec<Value> = deliveries
        .iter()
        .map(body)
        .filter(|b| b["status"] == "succeeded")
        .collect();
    assert_eq!(finals[0], finals[1]);
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

#[tokio::test]
async fn the_pipeline_runs_end_to_end_without_an_account() {
    let app = spawn_processor().await;
    let media = media_server().await;
    let job = app
        .create_job(json!({"input_url": format!("{}/clip.mp4", media.uri())}))
        .await;
    let job = app.dashboard_wait(job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"], 100);
    assert_eq!(job["output_width"], 1280);
    assert_eq!(job["output_height"], 720);
    let duration = job["output_duration_ms"].as_u64().unwrap();
    assert!((1900..=2100).contains(&duration), "{duration} ms");
    assert!(job["task_id"].as_str().unwrap().starts_with("job_"));

    // The output is served with its type, and a range request gets just that range.
    let url = job["output_url"].as_str().unwrap();
    let response = app
        .client
        .get(url)
        .header("range", "bytes=0-99")
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["content-type"], "video/mp4");
    let total = job["output_size"].as_u64().unwrap();
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 0-99/{total}").as_str()
    );
    assert!(response.headers().get("content-encoding").is_none());
    assert_eq!(response.bytes().await.unwrap().len(), 100);

    // The webhooks were verified and applied (the dispatcher's client never polled).
    let verified = sqlx::query_scalar!(
        r#"select count(*) as "count!" from webhook_deliveries
         where signature_ok and outcome = 'applied'"#
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(verified >= 2, "{verified} applied webhooks");
}

#[tokio::test]
async fn the_api_speaks_the_contract() {
    let app = spawn_processor().await;
    let media = media_server().await;
    let input = format!("{}/notes.txt", media.uri());

    // Auth.
    let response = app
        .client
        .post(app.processor_url("/jobs"))
        .header("authorization", "Bearer wrong")
        .json(&json!({"input": input, "kind": "video"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["kind"], "unauthorized");

    // Bad input, in the error shape.
    for (bad, words) in [
        (json!({"kind": "video"}), "input is required"),
        (json!({"input": input, "kind": "hologram"}), "kind must be"),
        (
            json!({"input": "s3://bucket/key.mp4", "kind": "video"}),
            "s3",
        ),
        (
            json!({"input": input, "kind": "video", "options": {"format": "avi"}}),
            "format",
        ),
        (
            json!({"input": input, "kind": "adaptive_video"}),
            "adaptive_video",
        ),
        (
            json!({"input": input, "kind": "video", "webhook_url": "ftp://x"}),
            "webhook_url",
        ),
    ] {
        let (status, body) = app.processor_create(&bad, None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["kind"], "invalid_input");
        assert!(
            body["message"].as_str().unwrap().contains(words),
            "{bad}: {body}"
        );
    }

    // Idempotency: the same key returns the same job.
    let request = json!({"input": input, "kind": "video"});
    let (first_status, first) = app.processor_create(&request, Some("key-1")).await;
    let (again_status, again) = app.processor_create(&request, Some("key-1")).await;
    assert_eq!((first_status, again_status), (201, 201));
    assert_eq!(first["id"], again["id"]);
    let (_, other) = app.processor_create(&request, Some("key-2")).await;
    assert_ne!(first["id"], other["id"]);
    let (_, third) = app.processor_create(&request, None).await;

    // Millisecond timestamps and the task object.
    let created = first["created_at"].as_i64().unwrap();
    assert!(created > 1_700_000_000_000, "{created} is in milliseconds");
    assert_eq!(first["object"], "job");
    assert_eq!(first["tasks"][0]["object"], "task");

    // Unknown job.
    let (status, body) = app.processor_get("/jobs/job_nope").await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (404, Some("job_not_found"))
    );

    // Cursor paging, newest first: third, other, first.
    let (_, page) = app.processor_get("/jobs?limit=2").await;
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [third["id"].as_str().unwrap(), other["id"].as_str().unwrap()]
    );
    assert_eq!(page["has_more"], true);
    let (_, rest) = app
        .processor_get(&format!("/jobs?limit=2&after={}", ids[1]))
        .await;
    assert_eq!(rest["data"][0]["id"], first["id"]);
    assert_eq!(rest["has_more"], false);
    let (_, back) = app
        .processor_get(&format!(
            "/jobs?limit=5&before={}",
            first["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(back["data"].as_array().unwrap().len(), 2);
    assert_eq!(back["data"][0]["id"], third["id"]);
    let (_, oldest) = app.processor_get("/jobs?limit=1&order=asc").await;
    assert_eq!(oldest["data"][0]["id"], first["id"]);
    let (status, _) = app.processor_get("/jobs?limit=0").await;
    assert_eq!(status, 400);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reeltime-out-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn an_input_server_that_fails_once_is_tried_again() {
    let app = spawn_processor().await;
    let media = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&media)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(clip()))
        .with_priority(2)
        .mount(&media)
        .await;
    let job = app
        .processor_run(
            json!({"input": format!("{}/flaky.mp4", media.uri()), "kind": "audio",
                    "options": {"format": "mp3"}}),
        )
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(media.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn with_one_worker_queued_jobs_wait_their_turn_in_order() {
    let app = spawn_app_with(&[
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
        ("REELTIME_PROCESSOR_WORKERS", "1"),
    ])
    .await;
    let media = media_server().await;
    let mut ids = Vec::new();
    for format in ["wav", "flac", "mp3"] {
        let (_, job) = app
            .processor_create(
                &json!({"input": format!("{}/clip.mp4", media.uri()), "kind": "audio",
                        "options": {"format": format}}),
                None,
            )
            .await;
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    let mut previous_finish = 0;
    for id in &ids {
        let job = app.processor_wait(id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let started = job["started_at"].as_i64().unwrap();
        assert!(
            started >= previous_finish,
            "{id} started before the one ahead of it finished"
        );
        previous_finish = job["finished_at"].as_i64().unwrap();
    }
}

#[tokio::test]
async fn a_job_whose_worker_died_is_processed_once_its_lease_runs_out() {
    let app = spawn_processor().await;
    let media = media_server().await;
    // As a crashed instance leaves it: processing, lease expired, no worker.
    sqlx::query!(
        r#"insert into processor_jobs (id, kind, input, options, status, progress, started_at,
             lease_until, attempts)
         values ('job_crashed', 'audio', $1, '{"format": "mp3"}', 'processing', 40,
             now() - interval '1 minute', now() - interval '1 second', 1)"#,
        format!("{}/clip.mp4", media.uri())
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let job = app.processor_wait("job_crashed").await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let attempts =
        sqlx::query_scalar!("select attempts from processor_jobs where id = 'job_crashed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(attempts, 2);
}

/// A processor of the test's own with no workers, on the app's database: the test steps it.
pub(crate) async fn stepped_processor(app: &TestApp, ffmpeg: &str) -> Processor {
    start_processor(app, test_settings(app, ffmpeg)).await
}

/// A processor of the test's own with `settings`, on the app's database.
pub(crate) async fn start_processor(app: &TestApp, settings: ProcessorSettings) -> Processor {
    let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
    Processor::start(
        app.pool.clone(),
        settings,
        "key".to_owned().into(),
        "secret".to_owned().into(),
        &tasks,
        &cancel,
    )
    .await
    .unwrap()
}

/// Settings for a processor of the test's own: no workers (the test steps it), running
/// `ffmpeg`, confined as the server would confine it.
pub(crate) fn test_settings(app: &TestApp, ffmpeg: &str) -> ProcessorSettings {
    let confine = Confinement {
        run_as: is_root().then(|| RunAs::named("nobody").expect("a nobody user")),
        nice: 10,
        idle_cpu: true,
        memory_bytes: Some(4096 << 20),
        threads: Some(2),
    };
    ProcessorSettings {
        workers: 0,
        dir: app
            .data_dir
            .join(format!("stepped-{}", uuid::Uuid::new_v4().simple())),
        storage: None,
        files_url: app.url("/files"),
        lease: Lease::of(Duration::from_secs(30)),
        limits: Limits {
            max_duration: Duration::from_secs(60),
            time_limit: None,
            stall: Duration::from_secs(60),
            kill_grace: Duration::from_secs(2),
        },
        confine,
        allow_private: true,
        max_input_bytes: 10 << 20,
        fetch_timeout: Duration::from_secs(30),
        trusted_prefixes: Vec::new(),
        webhook_retry: RetryPolicy {
            first_delay: Duration::from_millis(10),
            max_attempts: 1,
        },
        ffmpeg: ffmpeg.to_owned(),
        ffprobe: "ffprobe".to_owned(),
        min_free_disk: 0,
    }
}

pub(crate) async fn queue(app: &TestApp, input: &str) -> String {
    let job = NewProcessorJob {
        kind: reeltime::JobKind::Audio,
        input,
        options: &json!({ "format": "mp3" }),
        metadata: &json!({}),
        webhook_url: None,
    };
    store::create(&app.pool, &job, None).await.unwrap().0.id
}

#[tokio::test]
async fn the_processor_can_be_stepped_one_job_at_a_time() {
    let app = spawn_app_with(&[]).await;
    let media = media_server().await;
    let processor = stepped_processor(&app, "ffmpeg").await;
    let first = queue(&app, &format!("{}/clip.mp4", media.uri())).await;
    let second = queue(&app, &format!("{}/notes.txt", media.uri())).await;

    assert!(processor.run_one().await.unwrap());
    let status = |id: String| {
        let pool = app.pool.clone();
        async move { store::get(&pool, &id).await.unwrap().unwrap().status }
    };
    assert_eq!(status(first.clone()).await, "succeeded");
    assert_eq!(status(second.clone()).await, "queued", "one job per step");
    assert!(processor.run_one().await.unwrap());
    assert_eq!(status(second).await, "failed");
    assert!(!processor.run_one().await.unwrap(), "nothing left");
}

#[tokio::test]
async fn a_missing_ffmpeg_is_reported_on_readyz_and_fails_jobs_plainly() {
    let app = spawn_app_with(&[
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_FFMPEG", "/nonexistent/ffmpeg"),
    ])
    .await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("ffmpeg not installed"),
        "{body}"
    );

    let media = media_server().await;
    let processor = stepped_processor(&app, "/nonexistent/ffmpeg").await;
    let id = queue(&app, &format!("{}/clip.mp4", media.uri())).await;
    // The app's own workers may take it first; either way it ends the same.
    processor.run_one().await.unwrap();
    let job = eventually(Duration::from_secs(30), || async {
        let job = store::get(&app.pool, &id).await.unwrap().unwrap();
        match job.status.as_str() {
            "failed" => Ok(job),
            other => Err(format!("the job is {other}")),
        }
    })
    .await;
    assert_eq!(
        job.error.as_deref(),
        Some("ffmpeg is not installed on the server")
    );
}
