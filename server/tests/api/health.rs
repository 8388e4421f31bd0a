use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_follows_the_database() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // With the pool closed the database is out of reach: not ready, but still alive.
    app.pool.close().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "{id}");

    // A caller's own id is kept.
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
}

#[tokio::test]
async fn the_event_stream_has_the_layers_every_route_has() {
    // /api/events is layered apart from the other routes (routes/mod.rs, without the trace
    // layer's body wrapper): it keeps the request id, the security headers and the gate.
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/events"))
        .header("x-request-id", "stream-id-7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "stream-id-7");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert!(response.headers().contains_key("content-security-policy"));
    drop(response);

    let stranger = reqwest::Client::new();
    let response = stranger.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers().get("x-request-id").unwrap().len(), 36);
}

#[tokio::test]
async fn server_errors_are_opaque() {
    let app = spawn_app().await;
    // Break the table under the running app: the API must not leak the database's words.
    sqlx::query!("alter table jobs rename to jobs_gone")
        .execute(&app.pool)
        .await
        .unwrap();
    let response = app
        .client
        .post(app.url("/api/jobs"))
        .json(&serde_json::json!({ "input_url": "https://example.com/a.mp4" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let text = response.text().await.unwrap();
    assert!(!text.contains("jobs"), "{text}");
    assert!(!text.to_lowercase().contains("relation"), "{text}");
}
