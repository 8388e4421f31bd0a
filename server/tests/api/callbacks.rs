//! Ittybit's signed webhooks through the callback route, and the reconciler that heals a lost
//! one, with wiremock as Ittybit.

use std::time::Duration;

use reeltime::signature::sign;
use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::TestApp;
use crate::ittybit::{job, spawn_with_ittybit, wait_for_status, SECRET};

async fn post_webhook(app: &TestApp, body: &[u8], signature: Option<String>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/ittybit/callback"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("Ittybit-Signature", signature);
    }
    request.send().await.unwrap()
}

async fn queued_job(app: &TestApp, task_id: &str) -> String {
    sqlx::query_scalar!(
        "insert into jobs (input_url, status, task_id)
         values ('https://example.com/in.mp4', 'queued', $1) returning id",
        task_id
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
    .to_string()
}

#[tokio::test]
async fn a_signed_webhook_updates_the_job_and_a_bad_one_changes_nothing() {
    let ittybit = MockServer::start().await;
    let app = spawn_with_ittybit(&ittybit, &[]).await;
    let id = queued_job(&app, "job_abc").await;
    let body = serde_json::to_vec(&json!({
        "id": "job_abc", "object": "job", "status": "succeeded",
        "output": "https://cdn.example.com/out.mp4", "metadata": { "job_id": id },
    }))
    .unwrap();

    // Refused: no signature, a wrong secret, a tampered body.
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("out.mp4", "evil.mp4");
    for (body, signature) in [
        (body.clone(), None),
        (body.clone(), Some(sign(b"wrong secret", &body))),
        (
            tampered.clone().into_bytes(),
            Some(sign(SECRET.as_bytes(), &body)),
        ),
    ] {
        let response = post_webhook(&app, &body, signature).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(job(&app, &id).await["status"], "queued", "nothing changed");
    }

    let response = post_webhook(&app, &body, Some(sign(SECRET.as_bytes(), &body))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let done = job(&app, &id).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["output_url"], "https://cdn.example.com/out.mp4");
    assert_eq!(done["progress"], 100);

    // A late "processing" for a finished job changes nothing.
    let late = serde_json::to_vec(
        &json!({ "id": "job_abc", "status": "processing", "metadata": { "job_id": id } }),
    )
    .unwrap();
    let response = post_webhook(&app, &late, Some(sign(SECRET.as_bytes(), &late))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(job(&app, &id).await["status"], "succeeded");

    let outcomes = sqlx::query!("select signature_ok, outcome from webhook_deliveries order by id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    let outcomes: Vec<(bool, &str)> = outcomes
        .iter()
        .map(|row| (row.signature_ok, row.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (false, "bad_signature"),
            (false, "bad_signature"),
            (false, "bad_signature"),
            (true, "applied"),
            (true, "unchanged"),
        ]
    );
}

#[tokio::test]
async fn every_payload_shape_in_the_contract_is_understood() {
    let ittybit = MockServer::start().await;
    let app = spawn_with_ittybit(&ittybit, &[]).await;
    let signed = |value: Value| {
        let body = serde_json::to_vec(&value).unwrap();
        let signature = sign(SECRET.as_bytes(), &body);
        (body, signature)
    };

    // 1. The job object itself.
    let a = queued_job(&app, "job_a").await;
    // 2. The guide's shape: completed, output.url.
    let b = queued_job(&app, "job_b").await;
    // 2'. The guide's failure: error.message.
    let c = queued_job(&app, "job_c").await;
    // 3. An event envelope, matched by Ittybit id alone (no metadata).
    let d = queued_job(&app, "job_d").await;
    let cases = [
        (
            json!({ "id": "job_a", "object": "job", "status": "succeeded", "output": "https://cdn.example.com/a.mp4", "metadata": { "job_id": a } }),
            &a,
            "succeeded",
            Some("https://cdn.example.com/a.mp4"),
            None,
        ),
        (
            json!({ "status": "completed", "output": { "url": "https://cdn.example.com/b.mp4" }, "metadata": { "job_id": b } }),
            &b,
            "succeeded",
            Some("https://cdn.example.com/b.mp4"),
            None,
        ),
        (
            json!({ "status": "failed", "error": { "message": "unsupported codec" }, "metadata": { "job_id": c } }),
            &c,
            "failed",
            None,
            Some("unsupported codec"),
        ),
        (
            json!({ "id": "evt_1", "object": "event", "kind": "task.succeeded", "data": { "id": "job_d", "object": "job", "outputs": [{ "url": "https://cdn.example.com/d.mp4" }] }, "created_at": 1711900000 }),
            &d,
            "succeeded",
            Some("https://cdn.example.com/d.mp4"),
            None,
        ),
    ];
    for (payload, id, status, output, error) in cases {
        let (body, signature) = signed(payload.clone());
        let response = post_webhook(&app, &body, Some(signature)).await;
        assert_eq!(response.status(), StatusCode::OK, "{payload}");
        let stored = job(&app, id).await;
        assert_eq!(stored["status"], status, "{payload}");
        assert_eq!(stored["output_url"].as_str(), output, "{payload}");
        assert_eq!(stored["error"].as_str(), error, "{payload}");
    }

    // Progress moves forward only: 40, 60, then a late 20 leaves 60.
    let e = queued_job(&app, "job_e").await;
    for progress in [40, 60, 20] {
        let (body, signature) = signed(
            json!({ "id": "job_e", "status": "processing", "tasks": [{ "progress": progress }], "metadata": { "job_id": e } }),
        );
        post_webhook(&app, &body, Some(signature)).await;
    }
    let stored = job(&app, &e).await;
    assert_eq!(stored["status"], "processing");
    assert_eq!(stored["progress"], 60);
    // Queued at 50, then processing at 10: processing, still at 50.
    let f = queued_job(&app, "job_f").await;
    for (status, progress) in [("queued", 50), ("processing", 10)] {
        let (body, signature) = signed(
            json!({ "id": "job_f", "status": status, "tasks": [{ "progress": progress }], "metadata": { "job_id": f } }),
        );
        post_webhook(&app, &body, Some(signature)).await;
    }
    let stored = job(&app, &f).await;
    assert_eq!(stored["status"], "processing");
    assert_eq!(stored["progress"], 50);
}

#[tokio::test]
async fn webhooks_for_unknown_jobs_are_acknowledged_and_bad_bodies_refused() {
    let ittybit = MockServer::start().await;
    let app = spawn_with_ittybit(&ittybit, &[]).await;

    let unknown = serde_json::to_vec(&json!({ "id": "job_nobody", "status": "succeeded", "metadata": { "job_id": uuid::Uuid::new_v4() } })).unwrap();
    let response = post_webhook(&app, &unknown, Some(sign(SECRET.as_bytes(), &unknown))).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "so Ittybit stops retrying"
    );

    let malformed = b"{not json".to_vec();
    let response = post_webhook(&app, &malformed, Some(sign(SECRET.as_bytes(), &malformed))).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // An unverified delivery is logged, but only its first 4 KiB.
    let junk = vec![b'x'; 10 * 1024];
    let response = post_webhook(&app, &junk, Some("0".repeat(64))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let kept = sqlx::query_scalar!(
        r#"select length(raw_body) as "length!" from webhook_deliveries
         where outcome = 'bad_signature'"#
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(kept, 4096);

    let huge = vec![b' '; 2 * 1024 * 1024];
    let response = post_webhook(&app, &huge, Some(sign(SECRET.as_bytes(), &huge))).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_reconciler_heals_a_lost_webhook() {
    let ittybit = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jobs/job_quiet"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "job_quiet", "object": "job", "status": "succeeded",
            "output": "https://cdn.example.com/healed.mp4",
        })))
        .mount(&ittybit)
        .await;
    let app = spawn_with_ittybit(&ittybit, &[("REELTIME_RECONCILE_AFTER_SECS", "1")]).await;
    let id = queued_job(&app, "job_quiet").await;
    let healed = wait_for_status(&app, &id, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(healed["output_url"], "https://cdn.example.com/healed.mp4");
    // The answer is kept for the job's page.
    let html = app.get_text(&format!("/jobs/{id}")).await;
    assert!(html.contains("Last read back"), "{html}");
    assert!(html.contains("healed.mp4"), "{html}");
}

#[tokio::test]
async fn a_verified_delivery_is_recorded_with_what_it_did_in_the_same_statement_as_the_change() {
    let ittybit = MockServer::start().await;
    let app = spawn_with_ittybit(&ittybit, &[]).await;
    let id = queued_job(&app, "job_rec").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let bodies = [
        json!({ "id": "job_rec", "status": "processing", "progress": 30, "metadata": { "job_id": id } }),
        json!({ "id": "job_gone", "status": "processing", "metadata": { "job_id": unknown } }),
    ]
    .map(|body| serde_json::to_vec(&body).unwrap());
    for body in &bodies {
        let response = post_webhook(&app, body, Some(sign(SECRET.as_bytes(), body))).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let rows = sqlx::query!(
        r#"select signature_ok, ittybit_id, job_id::text as "job_id!", status, outcome, raw_body
         from webhook_deliveries order by id"#
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "one row per delivery, none twice");
    let seen: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.signature_ok,
                r.ittybit_id.as_deref(),
                r.job_id.as_str(),
                r.status.as_deref(),
                r.outcome.as_str(),
                r.raw_body.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                true,
                Some("job_rec"),
                id.as_str(),
                Some("processing"),
                "applied",
                &bodies[0][..]
            ),
            (
                true,
                Some("job_gone"),
                unknown.as_str(),
                Some("processing"),
                "unknown_job",
                &bodies[1][..]
            ),
        ]
    );
    assert_eq!(job(&app, &id).await["progress"], 30);
}
