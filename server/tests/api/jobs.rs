use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_valid_submission_is_stored_and_returned() {
    let app = spawn_app().await;

    let response = app
        .post_job(json!({ "input_url": "https://example.com/clip.mp4" }))
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/jobs/{}", job["id"].as_str().unwrap())
    );
    assert_eq!(job["input_url"], "https://example.com/clip.mp4");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["kind"], "video");
    assert_eq!(
        job["options"],
        json!({ "width": 1280, "format": "mp4", "quality": "high" })
    );

    let row = sqlx::query!(
        "select input_url, status, kind from jobs where id = $1::text::uuid",
        job["id"].as_str().unwrap()
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(row.input_url, "https://example.com/clip.mp4");
    assert_eq!(row.status, "pending");
    assert_eq!(row.kind, "video");
}

#[tokio::test]
async fn preset_and_matching_kind_are_accepted() {
    let app = spawn_app().await;
    let response = app
        .post_job(json!({
            "input_url": "http://media.example.org/a.mov",
            "preset": "video_1280_mp4_high",
            "kind": "video",
        }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn invalid_input_is_422_with_field_errors_and_writes_nothing() {
    let app = spawn_app().await;
    let cases = [
        (json!({ "input_url": "" }), "input_url"),
        (json!({ "input_url": "not a url" }), "input_url"),
        (
            json!({ "input_url": "ftp://example.com/a.mp4" }),
            "input_url",
        ),
        (json!({ "input_url": "https://" }), "input_url"),
        (
            json!({ "input_url": format!("https://example.com/{}", "a".repeat(2100)) }),
            "input_url",
        ),
        (
            json!({ "input_url": "https://example.com/a.mp4", "kind": "hologram" }),
            "kind",
        ),
        (
            json!({ "input_url": "https://example.com/a.mp4", "kind": "audio" }),
            "kind",
        ),
        (
            json!({ "input_url": "https://example.com/a.mp4", "preset": "8k_imax" }),
            "preset",
        ),
    ];
    for (body, field) in cases {
        let response = app.post_job(body.clone()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "validation_failed", "{body}");
        assert!(
            error["fields"][field]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}: {error}"
        );
    }
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn malformed_json_is_400_and_writes_nothing() {
    let app = spawn_app().await;
    for body in [
        r#"{"input_url": "#,
        "not json",
        r#"{"input_url": "https://example.com/a.mp4""#,
    ] {
        let response = app
            .client
            .post(app.url("/api/jobs"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "bad_request");
    }
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_is_422() {
    let app = spawn_app().await;
    for body in [json!({}), json!({ "input_url": 42 }), json!([1, 2])] {
        let response = app.post_job(body.clone()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
    }
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn json_must_be_declared() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/jobs"))
        .body(r#"{"input_url": "https://example.com/a.mp4"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = spawn_app().await;
    let huge = json!({ "input_url": format!("https://example.com/{}", "a".repeat(100_000)) });
    let response = app.post_job(huge).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.job_count().await, 0);
}

async fn insert_at(app: &crate::helpers::TestApp, url: &str, created_at: &str) {
    sqlx::query!(
        "insert into jobs (input_url, created_at) values ($1, $2::text::timestamptz)",
        url,
        created_at
    )
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_list_is_newest_first_and_pages_without_gaps_or_repeats() {
    let app = spawn_app().await;
    // Five jobs, two of them created at the very same instant (the id breaks the tie).
    for (url, at) in [
        ("https://e.com/1", "2026-01-01T00:00:01Z"),
        ("https://e.com/2", "2026-01-01T00:00:02Z"),
        ("https://e.com/3", "2026-01-01T00:00:03Z"),
        ("https://e.com/4", "2026-01-01T00:00:03Z"),
        ("https://e.com/5", "2026-01-01T00:00:05Z"),
    ] {
        insert_at(&app, url, at).await;
    }
    // Newest first; among equal times, the larger id first.
    let order: Vec<String> =
        sqlx::query_scalar!("select id from jobs order by created_at desc, id desc")
            .fetch_all(&app.pool)
            .await
            .unwrap()
            .into_iter()
            .map(|id| id.to_string())
            .collect();

    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = app.url("/api/jobs?limit=2");
        if let Some(cursor) = &before {
            url.push_str(&format!("&before={cursor}"));
        }
        let page: Value = app.get_json(url).await;
        pages += 1;
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2);
        seen.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        match page["next_before"].as_str() {
            Some(cursor) => before = Some(cursor.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, order);

    // Without a limit: everything (under 50) on one page, same order.
    let page: Value = app.get_json(app.url("/api/jobs")).await;
    let ids: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, order);
    assert!(page["next_before"].is_null());
    assert_eq!(page["jobs"][0]["input_url"], "https://e.com/5");
}

#[tokio::test]
async fn the_default_page_holds_fifty() {
    let app = spawn_app().await;
    sqlx::query!(
        "insert into jobs (input_url, created_at)
         select 'https://e.com/' || n, now() - n * interval '1 second' from generate_series(1, 51) n"
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let page: Value = app.get_json(app.url("/api/jobs")).await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 50);
    let cursor = page["next_before"].as_str().unwrap();
    let rest: Value = app
        .get_json(app.url(&format!("/api/jobs?before={cursor}")))
        .await;
    assert_eq!(rest["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(rest["jobs"][0]["input_url"], "https://e.com/51");
}

#[tokio::test]
async fn bad_list_parameters_are_400() {
    let app = spawn_app().await;
    for query in ["limit=0", "limit=101", "limit=ten", "before=yesterday"] {
        let response = app
            .client
            .get(app.url(&format!("/api/jobs?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{query}"
        );
    }
}

#[tokio::test]
async fn a_job_can_be_read_by_id() {
    let app = spawn_app().await;
    let created: Value = app
        .create_job(json!({ "input_url": "https://example.com/one.mp4" }))
        .await;
    let id = created["id"].as_str().unwrap();

    let response = app
        .client
        .get(app.url(&format!("/api/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job, created);

    for missing in ["00000000-0000-0000-0000-000000000000", "not-a-uuid"] {
        let response = app
            .client
            .get(app.url(&format!("/api/jobs/{missing}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
    }
}

#[tokio::test]
async fn the_database_keeps_updated_at_current() {
    let app = spawn_app().await;
    let created: Value = app
        .create_job(json!({ "input_url": "https://example.com/one.mp4" }))
        .await;
    let id = created["id"].as_str().unwrap();
    let row = sqlx::query!(
        r#"with old as (select updated_at from jobs where id = $1::text::uuid),
         upd as (update jobs set status = 'queued' where id = $1::text::uuid returning updated_at)
         select (select updated_at from old) as "before!", (select updated_at from upd) as "after!""#,
        id
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(row.after > row.before, "{} -> {}", row.before, row.after);
}

#[tokio::test]
async fn the_database_refuses_unknown_statuses() {
    let app = spawn_app().await;
    let result = sqlx::query!(
        "insert into jobs (input_url, status) values ('https://e.com/a', 'completed')"
    )
    .execute(&app.pool)
    .await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("jobs_status_check"), "{err}");
}

/// A page read cancelled at any point (a client hanging up mid-request) leaves its pooled
/// connection outside any transaction. Before `db::begin`, a cancellation between `BEGIN` and
/// sqlx's bookkeeping returned the connection still inside the read-only transaction, and the
/// next writer on it failed (seen as sign-ins answering 500).
#[tokio::test]
async fn a_cancelled_page_read_leaves_no_connection_inside_its_transaction() {
    let app = spawn_app().await;
    app.create_job(json!({ "input_url": "https://example.com/clip.mp4" }))
        .await;
    // One connection, so every read and every check uses the same one.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&crate::helpers::test_database_url(&app))
        .await
        .unwrap();
    let limit = reeltime::PageLimit::new(50).unwrap();
    let mut cancelled = 0;
    for step in 0..300u64 {
        // Deadlines from 0 to ~3 ms hit every point of the read: before, during and after BEGIN.
        let deadline = std::time::Duration::from_micros(step * 10);
        let filter = reeltime::JobFilter::default();
        let read = app::db::list_jobs(&pool, &filter, None, limit);
        if tokio::time::timeout(deadline, read).await.is_err() {
            cancelled += 1;
        }
        let read_only =
            sqlx::query_scalar!(r#"select current_setting('transaction_read_only') as "v!""#)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            read_only, "off",
            "after {step} reads the pooled connection is still inside a read-only transaction"
        );
    }
    assert!(
        cancelled > 0,
        "no read was cancelled: the test tested nothing"
    );
}
