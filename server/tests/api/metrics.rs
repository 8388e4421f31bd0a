//! `GET /metrics`: Prometheus text, for an admin's token; requests counted by route pattern,
//! jobs by service and preset (who may scrape is also in the access table).

use std::time::Duration;

use reeltime::{Role, TokenScope};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{eventually, spawn_app, spawn_app_with};

#[tokio::test]
async fn an_admin_token_scrapes_prometheus_text_with_routes_and_jobs() {
    let app = spawn_app().await;
    let job = app
        .create_job(json!({ "input_url": "https://example.com/a.mp4", "preset": "video_720_webm" }))
        .await;
    let id = job["id"].as_str().unwrap();
    let response = app
        .client
        .get(app.url(&format!("/api/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let token = app.token(crate::helpers::ADMIN, TokenScope::Read).await;
    let scrape = || async {
        let response = reqwest::Client::new()
            .get(app.url("/metrics"))
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != StatusCode::OK {
            return Err(format!("status {}", response.status()));
        }
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
        let text = response.text().await.map_err(|e| e.to_string())?;
        let wanted = [
            // The pattern, not the job's id.
            r#"reeltime_http_requests_total{method="GET",route="/api/jobs/{id}",status="200"}"#,
            r#"reeltime_http_request_duration_seconds_bucket{method="POST",route="/api/jobs",le="#,
            r#"reeltime_jobs_created_total{service="none",preset="video_720_webm"}"#,
        ];
        match wanted.iter().find(|w| !text.contains(*w)) {
            Some(missing) => Err(format!("no {missing} in:\n{text}")),
            None => Ok(text),
        }
    };
    let text = eventually(Duration::from_secs(5), scrape).await;
    assert!(!text.contains(id), "a job id became a label");

    // An operator's token, however scoped, is not enough.
    app.create_user("ops@example.com", Role::Operator).await;
    let ops = app.token("ops@example.com", TokenScope::Write).await;
    let refused = reqwest::Client::new()
        .get(app.url("/metrics"))
        .bearer_auth(ops)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sse_clients_are_counted_while_connected() {
    let app = spawn_app().await;
    let mut stream = app.client.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["x-accel-buffering"], "no");
    // The first chunk: the preamble and the reset (no position was given).
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: reset"));
    let text = app.get_text("/metrics").await;
    let connected: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("reeltime_sse_clients "))
        .expect("the gauge is there")
        .parse()
        .unwrap();
    // Other tests in this process may hold streams too; this one is among them.
    assert!(connected >= 1.0, "{text}");
    assert!(text.contains("reeltime_sse_resets_total"), "{text}");
}

#[tokio::test]
async fn the_metrics_token_reads_metrics_and_nothing_else() {
    let secret = "m".repeat(40);
    let app = spawn_app_with(&[("REELTIME_METRICS_TOKEN", &secret)]).await;
    let get = |path: &'static str, token: String| {
        let url = app.url(path);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(get("/metrics", secret.clone()).await, StatusCode::OK);
    assert_eq!(
        get("/metrics", "m".repeat(39)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/api/jobs", secret.clone()).await,
        StatusCode::UNAUTHORIZED
    );
}
