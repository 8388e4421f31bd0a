//! The dashboard page and its server functions, as a browser without JavaScript sees them.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

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

/// Listing the page routes parks any resource first polled meanwhile, process-wide (leptos
/// issue 4773): while routers are built over and over, as each new instance in a process builds
/// one, every page still finishes. Before the list was made once per process, the first of
/// these requests hung (and a CI run hung for good on one).
#[tokio::test]
async fn pages_finish_while_routers_are_built_beside_them() {
    let app = spawn_app().await;
    app.post_job(json!({ "input_url": "https://example.com/beside-a-router.mp4" }))
        .await;
    let building = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let builder = tokio::task::spawn_blocking({
        let building = building.clone();
        move || {
            let mut built = 0u32;
            while building.load(std::sync::atomic::Ordering::Relaxed) {
                assert!(!server::routes::page_routes().is_empty());
                built += 1;
            }
            built
        }
    });
    let mut stalled = None;
    for round in 0..20 {
        let page =
            tokio::time::timeout(std::time::Duration::from_secs(10), app.get_text("/")).await;
        match page {
            Ok(html) => assert!(html.contains("beside-a-router.mp4"), "page {round}: {html}"),
            Err(_) => {
                stalled = Some(round);
                break;
            }
        }
    }
    // Stopped before any verdict, so a failure does not leave the builder spinning.
    building.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(stalled, None, "a page did not finish in 10 s");
    assert!(builder.await.unwrap() > 0, "routers were built meanwhile");
}

#[tokio::test]
async fn an_empty_dashboard_says_so() {
    let app = spawn_app().await;
    let html = get_html(&app, app.url("/")).await;
    assert!(html.contains("No jobs yet"), "{html}");
}

/// Post the dashboard's form as a browser without JavaScript does.
async fn post_form_without_js(app: &TestApp, input_url: &str, accept: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/fn/submit_job"))
        .header("accept", accept)
        .header("referer", app.url("/"))
        .form(&[
            ("csrf", app.csrf.as_str()),
            ("input_url", input_url),
            ("preset", "video_1280_mp4_high"),
        ])
        .send()
        .await
        .unwrap()
}

async fn get_html(app: &TestApp, url: String) -> String {
    app.client
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_form_works_without_javascript() {
    let app = spawn_app().await;
    let response = post_form_without_js(
        &app,
        "https://example.com/no-js.mp4",
        "text/html,application/xhtml+xml",
    )
    .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    // Leptos strips any earlier error from the Referer, which can leave a bare "?".
    assert_eq!(location.trim_end_matches('?'), app.url("/"));
    assert_eq!(app.job_count().await, 1);

    let html = get_html(&app, location).await;
    assert!(html.contains("no-js.mp4"));
}

#[tokio::test]
async fn without_javascript_a_bad_url_comes_back_as_an_inline_error() {
    let app = spawn_app().await;
    let response = post_form_without_js(&app, "not a url", "text/html").await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(app.job_count().await, 0);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("__err="), "{location}");

    let html = get_html(&app, location).await;
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

/// A release build's bundle is named by content (the site's hash.txt): the pages link those
/// names, browsers keep those files for a year, and everything else is revalidated.
#[tokio::test]
async fn hashed_bundle_files_are_linked_and_kept_and_the_rest_revalidated() {
    let site = std::env::temp_dir().join(format!("reeltime-site-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    std::fs::write(site.join("hash.txt"), "js: jS1\nwasm: wA2\ncss: cS3\n").unwrap();
    std::fs::write(site.join("pkg/reeltime.cS3.css"), "body{}").unwrap();
    std::fs::write(site.join("pkg/reeltime.jS1.js"), "export{}").unwrap();
    std::fs::write(site.join("favicon.svg"), "<svg/>").unwrap();
    let app = spawn_app_with(&[("LEPTOS_SITE_ROOT", site.to_str().unwrap())]).await;

    let html = get_html(&app, app.url("/")).await;
    for name in ["reeltime.cS3.css", "reeltime.jS1.js", "reeltime.wA2.wasm"] {
        assert!(
            html.contains(&format!("\"/pkg/{name}\"")),
            "{name} in {html}"
        );
    }
    let cache = |path: &'static str| {
        let client = app.client.clone();
        let url = app.url(path);
        async move {
            let response = client.get(url).send().await.unwrap();
            let status = response.status();
            let header = response
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, header)
        }
    };
    let forever = Some("public, max-age=31536000, immutable".to_owned());
    assert_eq!(
        cache("/pkg/reeltime.cS3.css").await,
        (StatusCode::OK, forever.clone())
    );
    assert_eq!(
        cache("/pkg/reeltime.jS1.js").await,
        (StatusCode::OK, forever)
    );
    assert_eq!(
        cache("/favicon.svg").await,
        (StatusCode::OK, Some("no-cache".to_owned()))
    );
    let (status, header) = cache("/pkg/reeltime.cS3.missing.css").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_ne!(
        header.as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    let _ = std::fs::remove_dir_all(&site);
}
