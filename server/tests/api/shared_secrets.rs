//! Several instances on one database: the built-in processor's queue is shared, so the job one
//! instance accepted may be run, and its webhooks signed, by another. They must agree on the
//! processor's key and webhook secret, which the first one stores in the database.

use std::time::Duration;

use reeltime::signature::sign;
use serde_json::json;

use crate::helpers::{eventually, spawn_app_with, spawn_second_instance_with, TestApp};
use crate::processor::{media_server, queue};
use crate::processor_paths::{endless_ffmpeg, tool_dir};

async fn queued_dashboard_job(app: &TestApp) -> String {
    sqlx::query_scalar!(
        "insert into jobs (input_url, status) values ('https://example.com/in.mp4', 'queued')
         returning id"
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
    .to_string()
}

async fn bad_signatures(app: &TestApp) -> i64 {
    sqlx::query_scalar!(
        r#"select count(*) as "count!" from webhook_deliveries where not signature_ok"#
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_job_accepted_by_one_instance_and_run_by_another_is_signed_as_the_first_expects() {
    let dir = tool_dir("shared");
    let pid_file = dir.join("ffmpeg.pid");
    let ffmpeg = endless_ffmpeg(&dir, &pid_file);
    // No ITTYBIT_WEBHOOK_SECRET anywhere: each instance would make one up.
    let first = spawn_app_with(&[
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
        ("REELTIME_PROCESSOR_WORKERS", "1"),
        ("REELTIME_PROCESSOR_FFMPEG", &ffmpeg),
    ])
    .await;
    let media = media_server().await;
    // The first instance's only worker is kept busy by a job that never ends, so the next
    // job can only be run by the second instance.
    queue(&first, &format!("{}/clip.mp4", media.uri())).await;
    eventually(Duration::from_secs(60), || async {
        match pid_file.exists() {
            true => Ok(()),
            false => Err("the first instance's worker has not taken the blocker".to_owned()),
        }
    })
    .await;
    let second = spawn_second_instance_with(
        &first,
        &[
            ("REELTIME_PROCESSOR", "on"),
            ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
        ],
    )
    .await;
    assert!(first.processor_key.is_some());
    assert_eq!(
        first.processor_key, second.processor_key,
        "one key for both"
    );

    // Submitted to the first instance's processor, reporting to the first instance.
    let id = queued_dashboard_job(&first).await;
    let (status, created) = first
        .processor_create(
            &json!({"input": format!("{}/clip.mp4", media.uri()), "kind": "video",
                    "options": {"width": 320}, "metadata": {"job_id": id},
                    "webhook_url": first.url("/api/ittybit/callback")}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{created}");

    let job = first.dashboard_wait(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let output = job["output_url"].as_str().unwrap();
    assert!(
        output.starts_with(&second.address),
        "the second instance ran it: {output}"
    );
    assert_eq!(
        bad_signatures(&first).await,
        0,
        "every webhook was accepted"
    );
    drop(second);
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_environment_secret_wins_over_the_stored_one() {
    let first = spawn_app_with(&[("REELTIME_PROCESSOR", "on")]).await;
    let stored = sqlx::query_scalar!(
        "select value from instance_secrets where name = 'processor_webhook_secret'"
    )
    .fetch_one(&first.pool)
    .await
    .unwrap();
    let from_env = "whsec-from-the-environment-0123456789abcdef";
    let second = spawn_second_instance_with(
        &first,
        &[
            ("REELTIME_PROCESSOR", "on"),
            ("ITTYBIT_WEBHOOK_SECRET", from_env),
        ],
    )
    .await;
    assert_eq!(first.processor_key, second.processor_key);

    let id = queued_dashboard_job(&first).await;
    let body = serde_json::to_vec(&json!({
        "id": "job_env", "object": "job", "status": "processing", "metadata": { "job_id": id },
    }))
    .unwrap();
    let post = |app: &TestApp, secret: &str| {
        app.client
            .post(app.url("/api/ittybit/callback"))
            .header("content-type", "application/json")
            .header("Ittybit-Signature", sign(secret.as_bytes(), &body))
            .body(body.clone())
            .send()
    };
    assert_eq!(post(&second, from_env).await.unwrap().status(), 200);
    assert_eq!(post(&second, &stored).await.unwrap().status(), 401);
    // The instance without the variable still signs and verifies with the stored one.
    assert_eq!(post(&first, &stored).await.unwrap().status(), 200);
    assert_eq!(post(&first, from_env).await.unwrap().status(), 401);
}
