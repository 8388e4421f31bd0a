//! The pages of issue 12, as the server renders them (the first HTML, before any JavaScript):
//! the dashboard's filters and status tabs, each row's preset and actions, and a job's page
//! with its story.

use reeltime::Role;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, ADMIN};

/// The job ids of the rows on a dashboard page, top to bottom.
fn rows(html: &str) -> Vec<String> {
    html.split("<tr data-job-id=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_filtered_dashboard_shows_only_its_jobs_with_counts_per_status() {
    let app = spawn_app().await;
    let pending = app
        .create_job(json!({"input_url": "https://example.com/keep.mp4"}))
        .await;
    let other = app
        .create_job(json!({"input_url": "https://example.com/gone.mp4"}))
        .await;
    let (status, _) = (
        app.client
            .post(app.url(&format!(
                "/api/jobs/{}/cancel",
                other["id"].as_str().unwrap()
            )))
            .send()
            .await
            .unwrap()
            .status(),
        (),
    );
    assert_eq!(status, 200);

    let html = app.get_text("/?status=cancelled").await;
    assert_eq!(rows(&html), [other["id"].as_str().unwrap()], "{html}");
    assert!(
        html.contains("aria-current=\"page\" data-status=\"cancelled\""),
        "the tab is marked"
    );
    assert!(
        html.contains(">All<span class=\"count\">2</span>"),
        "{html}"
    );
    assert!(html.contains(">Pending<span class=\"count\">1</span>"));
    assert!(html.contains("<input type=\"hidden\" name=\"status\" value=\"cancelled\""));

    let html = app.get_text("/?q=KEEP").await;
    assert_eq!(rows(&html), [pending["id"].as_str().unwrap()], "{html}");
    assert!(html.contains("value=\"KEEP\""), "the form shows the filter");

    let html = app.get_text("/?q=nothing-like-this").await;
    assert!(rows(&html).is_empty());
    assert!(html.contains("No jobs match these filters."));

    let html = app.get_text("/?status=done").await;
    assert!(
        html.contains("That filter is not valid: status: \"done\" is not a status"),
        "{html}"
    );
}

#[tokio::test]
async fn each_row_names_its_preset_and_offers_what_its_status_allows() {
    let app = spawn_app().await;
    let job = app
        .create_job(json!({"input_url": "https://example.com/a.mp4", "preset": "audio_mp3_192"}))
        .await;
    let id = job["id"].as_str().unwrap();
    let html = app.get_text("/").await;
    let row = html.split(&format!("data-job-id=\"{id}\"")).nth(1).unwrap();
    let row = row.split("</tr>").next().unwrap();
    assert!(row.contains(reeltime::Preset::AudioMp3192.label()), "{row}");
    assert!(
        row.contains(&format!("action=\"/jobs/{id}/cancel\"")),
        "{row}"
    );
    assert!(
        !row.contains("/retry\""),
        "a pending job cannot be retried: {row}"
    );
    assert!(
        row.contains(&format!("href=\"/jobs/{id}\"")),
        "the row links to its page"
    );

    // A viewer sees the row and its link, and no actions.
    app.create_user("viewer@example.com", Role::Viewer).await;
    let (viewer, _) = app.signed_in("viewer@example.com").await;
    let html = viewer
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("href=\"/jobs/{id}\"")));
    assert!(!html.contains(&format!("action=\"/jobs/{id}/cancel\"")));
}

#[tokio::test]
async fn a_jobs_page_tells_its_story_and_links_its_retries() {
    let app = spawn_app().await;
    let job = app
        .create_job(json!({"input_url": "https://example.com/b.mp4"}))
        .await;
    let id = job["id"].as_str().unwrap();
    app.client
        .post(app.url(&format!("/api/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    let retry: Value = app
        .client
        .post(app.url(&format!("/api/jobs/{id}/retry")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let retry_id = retry["job"]["id"].as_str().unwrap();

    let html = app.get_text(&format!("/jobs/{id}")).await;
    assert!(html.contains("<h2>History</h2>"), "{html}");
    assert!(html.contains(&format!("Created by {ADMIN}")), "{html}");
    assert!(html.contains(&format!("Cancelled by {ADMIN}")), "{html}");
    assert!(
        html.contains(&format!("Retried by {ADMIN} as {retry_id}")),
        "{html}"
    );
    assert!(
        html.contains(&format!("href=\"/jobs/{retry_id}\"")),
        "retried as, linked"
    );
    assert!(
        html.contains(&format!("action=\"/jobs/{id}/retry\"")),
        "a cancelled job can be retried again"
    );
    assert!(html.contains(&format!("action=\"/jobs/{id}/delete\"")));

    let html = app.get_text(&format!("/jobs/{retry_id}")).await;
    assert!(
        html.contains(&format!("href=\"/jobs/{id}\"")),
        "retry of, linked"
    );

    let response = app
        .client
        .get(app.url(&format!("/jobs/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("No such job"));
}
