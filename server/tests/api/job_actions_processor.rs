//! Operators' actions reaching the built-in processor (issue 12): a cancelled job's ffmpeg is
//! stopped within two seconds and its files removed; a deleted job's output goes too.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app_with};
use crate::processor::media_server;
use crate::processor_paths::{endless_ffmpeg, files_in, running, started, tool_dir};

#[tokio::test]
async fn cancelling_a_running_job_stops_its_ffmpeg_within_two_seconds() {
    let tools = tool_dir("cancel");
    let pid_file = tools.join("pid");
    let ffmpeg = endless_ffmpeg(&tools, &pid_file);
    let app = spawn_app_with(&[
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
        ("REELTIME_PROCESSOR_WORKERS", "1"),
        ("REELTIME_PROCESSOR_FFMPEG", &ffmpeg),
    ])
    .await;
    let media = media_server().await;
    let job = app
        .create_job(
            json!({"input_url": format!("{}/clip.mp4", media.uri()), "preset": "audio_mp3_192"}),
        )
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let pid = started(&pid_file, Duration::from_secs(120)).await;
    let work = app.data_dir.join("processor").join("work");
    assert_eq!(files_in(&work).len(), 1, "the attempt's directory");

    let response = app
        .client
        .post(app.url(&format!("/api/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    let cancelled_at = Instant::now();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["job"]["status"], "cancelled");
    assert_eq!(
        body["note"],
        Value::Null,
        "the built-in processor was told: {body}"
    );
    eventually(Duration::from_secs(2), || async {
        match running(pid) {
            false => Ok(()),
            true => Err(format!("ffmpeg ({pid}) still runs")),
        }
    })
    .await;
    assert!(cancelled_at.elapsed() <= Duration::from_secs(2));
    eventually(Duration::from_secs(5), || async {
        match files_in(&work).as_slice() {
            [] => Ok(()),
            left => Err(format!("left in the work directory: {left:?}")),
        }
    })
    .await;
    let task = body["job"]["task_id"].as_str().unwrap().to_owned();
    let processor_job = server::processor::store::get(&app.pool, &task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(processor_job.status, "cancelled");
    // Its final webhook (cancelled) and anything after change nothing on the dashboard.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let job = app.get_json(app.url(&format!("/api/jobs/{id}"))).await;
    assert_eq!(job["status"], "cancelled");
}

#[tokio::test]
async fn deleting_a_finished_job_deletes_its_output() {
    let app = spawn_app_with(&[
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
    ])
    .await;
    let media = media_server().await;
    let job = app
        .create_job(
            json!({"input_url": format!("{}/clip.mp4", media.uri()), "preset": "audio_mp3_192"}),
        )
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let done = app.dashboard_wait(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let outputs = app.data_dir.join("processor").join("outputs");
    assert_eq!(files_in(&outputs).len(), 1);

    // Its story: created, sent by the dispatcher, each step credited to the processor.
    let story = app::db::operate::events(&app.pool, id.parse().unwrap())
        .await
        .unwrap();
    let told: Vec<String> = story.iter().map(reeltime::JobEvent::describe).collect();
    assert_eq!(
        told[0],
        format!("Created by {}", crate::helpers::ADMIN),
        "{told:?}"
    );
    assert!(
        told.contains(&"Sent to The built-in processor (attempt 1)".to_owned()),
        "{told:?}"
    );
    assert_eq!(
        told.last().unwrap(),
        "Succeeded (The built-in processor)",
        "{told:?}"
    );
    // Its page lists the signed callbacks, verified, with their bodies.
    let html = app.get_text(&format!("/jobs/{id}")).await;
    assert!(
        html.contains("verified, reported succeeded: applied"),
        "{html}"
    );
    assert!(html.contains("class=\"delivery-body\""), "{html}");
    // How it was done: the ffmpeg command, with no server path in it, and the probe facts.
    let command = html
        .split("class=\"job-command\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no command: {html}"));
    assert!(command.starts_with("ffmpeg -nostdin"), "{command}");
    assert!(
        command.contains("-i file:input") && command.ends_with("file:output"),
        "{command}"
    );
    assert!(
        !command.contains(&*app.data_dir.to_string_lossy()),
        "{command}"
    );
    assert!(
        html.contains("has_audio: true"),
        "the input's facts: {html}"
    );

    let response = app
        .client
        .delete(app.url(&format!("/api/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        files_in(&outputs).is_empty(),
        "the output went with the job"
    );
    let task = done["task_id"].as_str().unwrap();
    assert!(server::processor::store::get(&app.pool, task)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_failed_download_reads_plainly_with_its_technical_detail_on_the_jobs_page() {
    let app = spawn_app_with(&[
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
        ("REELTIME_PROCESSOR_WORKERS", "1"),
    ])
    .await;
    // A port nothing listens on; the input's URL carries a token, as signed URLs do.
    let port = crate::proxy::free_port();
    let job = app
        .create_job(json!({
            "input_url": format!("http://127.0.0.1:{port}/clip.mp4?token=s3cr3t"),
            "preset": "audio_mp3_192",
        }))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    // Three tries at the download, two and four seconds apart.
    let failed =
        crate::ittybit::wait_for_status(&app, &id, "failed", Duration::from_secs(60)).await;
    assert_eq!(
        failed["error"], "the input URL's server refused the connection",
        "{failed}"
    );

    let html = app.get_text(&format!("/jobs/{id}")).await;
    let failure = html
        .split_once("<pre class=\"job-failure\">")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(failure, _)| failure)
        .unwrap_or_else(|| panic!("no technical detail on the page: {html}"));
    assert!(html.contains("<dt>Why it failed</dt>"), "{html}");
    assert!(
        failure.contains("Connection refused (os error 111)"),
        "{failure}"
    );
    assert!(
        !failure.contains("s3cr3t") && !failure.contains("clip.mp4"),
        "the detail never carries the URL: {failure}"
    );
}
