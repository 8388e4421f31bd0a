//! Bad input over HTTP is answered with a 4xx and a JSON error, never a 5xx or a panic.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_page_cursor_too_large_for_its_arithmetic_is_400() {
    let app = spawn_app().await;
    for before in [
        "999999999999999999999999999999999999.00000000000000000000000000001234",
        "-170141183460469231731687303715884105728.00000000000000000000000000001234",
    ] {
        let response = app
            .client
            .get(app.url(&format!("/api/jobs?before={before}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{before}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "bad_request");
    }
}

#[tokio::test]
async fn a_bad_resume_position_is_400_by_url_and_a_reset_by_header() {
    let app = spawn_app().await;
    for after in ["yesterday", "1.-1", "99999999999999999999.1", "1.2.3"] {
        let response = app
            .client
            .get(app.url(&format!("/api/events?after={after}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{after}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "bad_request");
    }
    // A browser sends back whatever id it last saw: a bad one is answered with a fresh start.
    let mut events = crate::sse::subscribe(&app, None, Some("not-a-position")).await;
    assert_eq!(crate::sse::next(&mut events).await.event, "reset");
}
