//! The Stats page: its figures from SQL over jobs stamped by the database's own trigger, and
//! the page drawn on the server with its SVG charts.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::spawn_app;
use crate::processor::{clip, media_server, spawn_processor};

#[tokio::test]
async fn figures_come_from_the_jobs_and_the_page_draws_them() {
    let app = spawn_app().await;
    for (i, end) in ["succeeded", "succeeded", "failed", "processing", "pending"]
        .iter()
        .enumerate()
    {
        let job = app
            .create_job(json!({ "input_url": format!("https://example.com/{i}.mp4") }))
            .await;
        let id = uuid::Uuid::parse_str(job["id"].as_str().unwrap()).unwrap();
        // Any writer: the trigger stamps when a job started and finished.
        if *end != "pending" {
            sqlx::query("update jobs set status = 'processing' where id = $1")
                .bind(id)
                .execute(&app.pool)
                .await
                .unwrap();
        }
        if matches!(*end, "succeeded" | "failed") {
            sqlx::query("update jobs set status = $2, output_size = 1500 where id = $1")
                .bind(id)
                .bind(end)
                .execute(&app.pool)
                .await
                .unwrap();
        }
    }
    let (stamped, finished): (i64, i64) =
        sqlx::query_as("select count(started_at), count(finished_at) from jobs")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((stamped, finished), (4, 3));

    let response = app
        .client
        .post(app.url("/api/fn/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let stats: Value = response.json().await.unwrap();
    assert_eq!(stats["finished"], 3);
    assert_eq!(stats["failed"], 1);
    assert_eq!(stats["processing"], 1);
    assert_eq!(stats["waiting"], 1);
    assert_eq!(stats["bytes_out"], 4500);
    // Nothing reported an input's size: bytes in and the space saved are unknown.
    assert_eq!(stats["bytes_in"], Value::Null);
    assert_eq!(stats["saved"], Value::Null);
    assert!(stats["run_p95"].as_f64().unwrap() >= 0.0);
    let hour: Vec<f64> = serde_json::from_value(stats["hour"]["per_minute"].clone()).unwrap();
    assert_eq!(hour.len(), 60);
    assert_eq!(hour.iter().sum::<f64>(), 5.0);

    let page = app.client.get(app.url("/stats")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("<svg"), "{html}");
    assert!(html.contains("Failure rate"));
    assert!(html.contains("33.3 %"), "{html}");
    assert!(html.contains("Space saved"), "{html}");
}

#[tokio::test]
async fn a_processed_job_records_its_input_size_and_the_space_saved() {
    let app = spawn_processor().await;
    let media = media_server().await;
    let job = app
        .create_job(json!({"input_url": format!("{}/clip.mp4", media.uri())}))
        .await;
    let job = app.dashboard_wait(job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // The built-in processor reported the downloaded input's size (the task's `input.size`).
    let input = clip().len() as i64;
    assert_eq!(job["input_size"].as_i64(), Some(input), "{job}");
    let output = job["output_size"].as_i64().unwrap();

    let stats: Value = app
        .client
        .post(app.url("/api/fn/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["finished"], 1, "{stats}");
    assert_eq!(stats["bytes_in"], input, "{stats}");
    assert_eq!(stats["bytes_out"], output, "{stats}");
    assert_eq!(stats["saved"], input - output, "{stats}");
    assert_eq!(stats["saved_of"], input, "{stats}");

    let html = app.get_text("/stats").await;
    let shown = app::stats::saved(Some(input - output), Some(input));
    assert!(shown.ends_with(" %)"), "{shown}");
    assert!(html.contains(&shown), "{shown} is on the page: {html}");
    assert!(html.contains(&app::stats::bytes(input)), "{html}");
}
