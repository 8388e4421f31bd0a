//! The dashboard page and its server functions, as a browser without JavaScript sees them.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_first_html_already_holds_the_jobs() {
    let app = spawn_app().await;
    app.post_job(json!({ "input_url": "https://example.com/rendered-on-the-server.mp4" }))
        .await;

    let response = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    let table = html
        .find("<table")
        .expect("the job table is in the first HTML");
    let row = html.find("rendered-on-the-server.mp4").unwrap();
    assert!(
        row > table,
        "the job is in the table, not only in hydration data"
    );
    assert!(html.contains(r#"data-status="pending""#));
    assert!(html.contains("Video, 1280 wide, MP4, high quality"));
}

#[tokio::test]
async fn an_empty_dashboard_says_so() {
    let app = spawn_app().await;
    let html = app
        .client
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("No jobs yet"), "{html}");
}

#[tokio::test]
async fn the_form_works_without_javascript() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/fn/submit_job"))
        .header("accept", "text/html,application/xhtml+xml")
        .header("referer", app.url("/"))
        .form(&[
            ("input_url", "https://example.com/no-js.mp4"),
            ("preset", "video_1280_mp4_high"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    // Leptos strips any earlier error from the Referer, which can leave a bare "?".
    assert_eq!(location.trim_end_matches('?'), app.url("/"));
    assert_eq!(app.job_count().await, 1);

    let html = app
        .client
        .get(location)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("no-js.mp4"));
}

#[tokio::test]
async fn without_javascript_a_bad_url_comes_back_as_an_inline_error() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/fn/submit_job"))
        .header("accept", "text/html")
        .header("referer", app.url("/"))
        .form(&[
            ("input_url", "not a url"),
            ("preset", "video_1280_mp4_high"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(app.job_count().await, 0);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("__err="), "{location}");

    let html = app
        .client
        .get(location)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let field_error = html.find(r#"id="input_url-error""#).unwrap();
    let message = html
        .find("That isn&#x27;t a URL")
        .or_else(|| html.find("That isn't a URL"));
    assert!(
        message.is_some_and(|m| m > field_error),
        "the message sits by the field"
    );
}

#[tokio::test]
async fn unknown_pages_are_404() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.text().await.unwrap().contains("Not found"));
}
