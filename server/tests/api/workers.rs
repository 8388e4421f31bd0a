//! `reeltime worker` processes (issue 13), through the real binary: a web instance that runs no
//! workers leaves its jobs to them; they announce themselves on the Stats page; a worker killed
//! mid-job loses the job to another once its lease runs out, and the job finishes once.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{eventually, spawn_app_with, test_database_url, TestApp};
use crate::processor::clip;
use crate::s3::S3Server;

const BUCKET: &str = "reeltime-workers";
const STORE: &str = "s3://reeltime-workers/shared";

/// A web instance's settings: the S3 store, the processor's API, no workers.
fn web_settings(s3: &S3Server) -> Vec<(&str, &str)> {
    let mut settings = s3.settings(STORE).to_vec();
    settings.extend([
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_WORKERS", "0"),
        ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
    ]);
    settings
}

/// The first web instance, on a fresh database and bucket.
async fn web_instance(s3: &S3Server) -> TestApp {
    s3.bucket(BUCKET).await;
    spawn_app_with(&web_settings(s3)).await
}

struct Worker {
    child: Child,
    data_dir: std::path::PathBuf,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A `reeltime worker` process with one slot, joining `app` through its database and `s3`.
async fn start_worker(app: &TestApp, s3: &S3Server) -> Worker {
    let data_dir =
        std::env::temp_dir().join(format!("reeltime-worker-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir).unwrap();
    // ffmpeg runs as nobody when the tests run as root: let it through.
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_reeltime"));
    command
        .arg("worker")
        .env_remove("ITTYBIT_API_KEY")
        .env_remove("ITTYBIT_WEBHOOK_SECRET")
        .env("DATABASE_URL", test_database_url(app))
        .env("REELTIME_PUBLIC_URL", &app.address)
        .env("REELTIME_DATA_DIR", &data_dir)
        .env("REELTIME_PROCESSOR_WORKERS", "1")
        .env("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true")
        .env("REELTIME_PROCESSOR_LEASE_SECS", "3")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (name, value) in s3.settings(STORE) {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("Reeltime worker running: 1 at once, outputs in s3://") {
                return;
            }
        }
        panic!("the worker exited before it was ready");
    })
    .await
    .expect("the worker started within 60 s");
    Worker { child, data_dir }
}

/// A server holding the clip at `/clip.mp4`, answering after `delay`.
async fn slow_media(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/clip.mp4"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "video/mp4")
                .set_body_bytes(clip())
                .set_delay(delay),
        )
        .mount(&server)
        .await;
    server
}

async fn processor_job(app: &TestApp, task: &str) -> (String, i32) {
    let row = sqlx::query!(
        "select status, attempts from processor_jobs where id = $1",
        task
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    (row.status, row.attempts)
}

async fn task_of(app: &TestApp, id: &str) -> String {
    eventually(Duration::from_secs(30), || async {
        let job = app.get_json(app.url(&format!("/api/jobs/{id}"))).await;
        job["task_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or(format!("not dispatched yet: {job}"))
    })
    .await
}

#[tokio::test]
async fn a_web_instance_without_workers_leaves_its_jobs_to_a_worker_process() {
    let s3 = S3Server::start().await;
    let app = web_instance(&s3).await;
    let media = slow_media(Duration::ZERO).await;
    let job = app
        .create_job(json!({
            "input_url": format!("{}/clip.mp4", media.uri()),
            "preset": "audio_mp3_192",
        }))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let task = task_of(&app, &id).await;
    // Nobody here runs it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(processor_job(&app, &task).await.0, "queued");
    let html = app.get_text("/stats").await;
    assert!(
        html.contains("No built-in processor workers are running"),
        "{html}"
    );

    let mut worker = start_worker(&app, &s3).await;
    let done = app.dashboard_wait(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(processor_job(&app, &task).await, ("succeeded".into(), 1));

    // It announced itself: its host, one slot, and the Stats page lists it.
    let row = sqlx::query!("select host, pid, slots from processor_workers")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(row.slots, 1);
    assert_eq!(row.pid as u32, worker.child.id().unwrap());
    let html = app.get_text("/stats").await;
    assert!(
        html.contains(&format!(
            "{}<span class=\"muted\"> (pid {})",
            row.host, row.pid
        )),
        "{html}"
    );

    // The web instance serves what the worker stored.
    let url = done["output_url"].as_str().unwrap();
    let response = app
        .client
        .get(url)
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    let stored = s3
        .storage(BUCKET, "shared")
        .read(&server::storage::Key::output(&format!("{task}.mp3")))
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap(), &stored[..10]);

    // SIGTERM: it stops cleanly and takes its row with it.
    let pid = worker.child.id().unwrap() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), worker.child.wait())
        .await
        .expect("the worker stopped within 30 s")
        .unwrap();
    assert!(status.success(), "{status}");
    let left = sqlx::query_scalar!(r#"select count(*) as "n!" from processor_workers"#)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_worker_killed_mid_job_loses_it_to_another_and_the_job_finishes_once() {
    let s3 = S3Server::start().await;
    let app = web_instance(&s3).await;
    // Slow enough that the job is still downloading when its worker's row lists it.
    let media = slow_media(Duration::from_secs(8)).await;
    let mut first = start_worker(&app, &s3).await;
    let mut second = start_worker(&app, &s3).await;
    let job = app
        .create_job(json!({
            "input_url": format!("{}/clip.mp4", media.uri()),
            "preset": "audio_mp3_192",
        }))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let task = task_of(&app, &id).await;

    // The worker whose row lists the job is killed outright.
    let holder = eventually(Duration::from_secs(30), || async {
        sqlx::query_scalar!(
            "select pid from processor_workers where $1 = any(jobs)",
            task
        )
        .fetch_optional(&app.pool)
        .await
        .unwrap()
        .ok_or("no worker lists the job yet".to_owned())
    })
    .await;
    let (killed, survivor) = if first.child.id() == Some(holder as u32) {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    assert_eq!(killed.child.id(), Some(holder as u32));
    killed.child.kill().await.unwrap();

    let done = app.dashboard_wait(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // Taken again once (after the lease), downloaded twice, finished once, one output.
    assert_eq!(processor_job(&app, &task).await, ("succeeded".into(), 2));
    assert_eq!(media.received_requests().await.unwrap().len(), 2);
    assert_eq!(
        s3.keys(BUCKET, "shared/outputs/").await,
        [format!("shared/outputs/{task}.mp3")]
    );
    let story = app::db::operate::events(&app.pool, id.parse().unwrap())
        .await
        .unwrap();
    let succeeded = story
        .iter()
        .filter(|event| event.describe().starts_with("Succeeded"))
        .count();
    assert_eq!(succeeded, 1, "{story:?}");
    // The survivor is still running; the killed one's row stays until it is a day old.
    assert!(survivor.child.try_wait().unwrap().is_none());
    let rows = sqlx::query_scalar!(r#"select count(*) as "n!" from processor_workers"#)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn two_web_instances_and_two_workers_run_twenty_jobs_and_an_upload_each_served_by_both() {
    let s3 = S3Server::start().await;
    let a = web_instance(&s3).await;
    let b = crate::helpers::spawn_second_instance_with(&a, &web_settings(&s3)).await;
    let _first = start_worker(&a, &s3).await;
    let _second = start_worker(&a, &s3).await;
    let media = slow_media(Duration::ZERO).await;

    // Twenty jobs, submitted to either instance.
    let mut ids = Vec::new();
    for i in 0..20 {
        let web = if i % 2 == 0 { &a } else { &b };
        let job = web
            .create_job(json!({
                "input_url": format!("{}/clip.mp4?n={i}", media.uri()),
                "preset": "audio_mp3_192",
            }))
            .await;
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    // And an upload through A.
    let clip = clip();
    let announced: serde_json::Value = a
        .client
        .post(a.url("/api/uploads"))
        .json(&json!({ "name": "clip.mp4", "size": clip.len(), "content_type": "video/mp4" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upload = announced["id"].as_str().unwrap();
    let stored = a
        .client
        .put(a.url(&format!("/api/uploads/{upload}/parts/0")))
        .body(clip.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    let done: serde_json::Value = a
        .client
        .post(a.url(&format!("/api/uploads/{upload}/complete")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = a
        .create_job(json!({ "input_url": done["input_url"], "preset": "audio_mp3_192" }))
        .await;
    ids.push(job["id"].as_str().unwrap().to_owned());

    for id in &ids {
        let done = a.dashboard_wait(id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let task = done["task_id"].as_str().unwrap();
        assert_eq!(processor_job(&a, task).await, ("succeeded".into(), 1));
        // Every output through both instances, with a range.
        let url = done["output_url"].as_str().unwrap();
        let path = url.split_once("/ittybit-local/").unwrap().1;
        let mut seen = Vec::new();
        for web in [&a, &b] {
            let response = web
                .client
                .get(web.url(&format!("/ittybit-local/{path}")))
                .header("range", "bytes=0-99")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 206, "{}", web.address);
            seen.push(response.bytes().await.unwrap());
        }
        assert_eq!(seen[0], seen[1]);
        assert_eq!(seen[0].len(), 100);
    }
    // The upload's own file, served by B too.
    let input = b
        .client
        .get(
            done["input_url"]
                .as_str()
                .unwrap()
                .replace(&a.address, &b.address),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(input.status(), 200);
    assert_eq!(input.bytes().await.unwrap(), clip);
    assert_eq!(s3.keys(BUCKET, "shared/outputs/").await.len(), 21);
}
