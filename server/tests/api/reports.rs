//! Reports about a job (webhooks, the reconciler's read-backs) as the real path applies them:
//! signed deliveries through the callback route into `apply_report`'s SQL, checked against the
//! Rust rules (`oracle.rs`); the SQL status step against `JobStatus::step`; what counts as news
//! for the reconciler, and the reconciler on a job Ittybit no longer knows.

use std::time::Duration;

use app::db::jobs::{apply_report, Applied};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reeltime::signature::sign;
use reeltime::{normalize_webhook, JobId, JobStatus, Normalized, OutputFacts};
use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use server::dispatch::{DispatchSettings, Dispatcher};
use server::ittybit::{IttybitClient, IttybitConfig};

use crate::helpers::{spawn_app_with, TestApp};
use crate::oracle::{Delivery, Expected};

const SECRET: &str = "whsec_reports_0123456789abcdef0123456789";

/// An app that sends jobs to `ittybit` and verifies webhooks with [`SECRET`]; its own
/// reconciler waits a year, so the tests step one of their own.
async fn spawn_with_ittybit(ittybit: &MockServer) -> TestApp {
    spawn_app_with(&[
        ("ITTYBIT_API_KEY", "test-key"),
        ("ITTYBIT_API_URL", &ittybit.uri()),
        ("ITTYBIT_WEBHOOK_SECRET", SECRET),
        ("ITTYBIT_TIMEOUT_SECS", "10"),
        ("REELTIME_RECONCILE_AFTER_SECS", "31536000"),
    ])
    .await
}

/// A dispatcher of the test's own that reads back jobs quiet for a minute.
fn reconciler(app: &TestApp, ittybit: &MockServer) -> Dispatcher {
    let client = IttybitClient::new(IttybitConfig {
        service: "Ittybit",
        base_url: ittybit.uri(),
        api_key: "test-key".to_owned().into(),
        api_version: None,
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let settings = DispatchSettings {
        webhook_url: app.url("/api/ittybit/callback"),
        max_attempts: 2,
        backoff: Duration::ZERO,
        lease: Duration::from_secs(60),
        reconcile_after: Duration::from_secs(60),
        concurrency: 1,
    };
    Dispatcher::new(app.pool.clone(), client, settings)
}

/// A job Ittybit has accepted (`queued`, with `task_id`), with its last news an hour ago.
async fn quiet_job(app: &TestApp, task_id: &str) -> String {
    let id: String = sqlx::query_scalar!(
        r#"with job as (
             insert into jobs (input_url, status, task_id)
             values ('https://example.com/in.mp4', 'queued', $1) returning id),
         news as (
             insert into job_dispatch (job_id, last_news_at)
             select id, now() - interval '1 hour' from job)
         select id::text as "id!" from job"#,
        task_id
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    id
}

async fn post_signed(app: &TestApp, body: &[u8]) -> Value {
    let response = app
        .client
        .post(app.url("/api/ittybit/callback"))
        .header("content-type", "application/json")
        .header("Ittybit-Signature", sign(SECRET.as_bytes(), body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn ittybit_reading_back(task_id: &str, answer: ResponseTemplate) -> MockServer {
    let ittybit = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/jobs/{task_id}")))
        .respond_with(answer)
        .mount(&ittybit)
        .await;
    ittybit
}

async fn read_backs(ittybit: &MockServer) -> usize {
    ittybit
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .count()
}

async fn status(app: &TestApp, id: &str) -> Value {
    app.get_json(app.url(&format!("/api/jobs/{id}"))).await
}

#[tokio::test]
async fn a_replayed_webhook_that_changes_nothing_does_not_postpone_the_read_back() {
    let ittybit = ittybit_reading_back(
        "job_stuck",
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "job_stuck", "object": "job", "status": "succeeded",
            "output": "https://cdn.example.com/stuck.mp4",
        })),
    )
    .await;
    let app = spawn_with_ittybit(&ittybit).await;
    let reconciler = reconciler(&app, &ittybit);
    let id = quiet_job(&app, "job_stuck").await;

    // An old delivery, replayed with its valid signature: the job already says this.
    let replay = json!({ "id": "job_stuck", "status": "queued", "metadata": { "job_id": id } });
    let answer = post_signed(&app, replay.to_string().as_bytes()).await;
    assert_eq!(answer["outcome"], "unchanged");

    // It told us nothing: the stuck job is still read back.
    assert_eq!(reconciler.reconcile_once().await.unwrap(), 1);
    assert_eq!(read_backs(&ittybit).await, 1);
    let healed = status(&app, &id).await;
    assert_eq!(healed["status"], "succeeded");
    assert_eq!(healed["output_url"], "https://cdn.example.com/stuck.mp4");
}

#[tokio::test]
async fn news_postpones_the_read_back_for_a_quiet_period_and_a_read_back_counts_as_news() {
    let ittybit = ittybit_reading_back(
        "job_busy",
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "job_busy", "object": "job", "status": "processing",
            "tasks": [{ "progress": 30 }],
        })),
    )
    .await;
    let app = spawn_with_ittybit(&ittybit).await;
    let reconciler = reconciler(&app, &ittybit);
    let busy = quiet_job(&app, "job_busy").await;

    // A webhook that moves the job is news: nothing to read back for a quiet period.
    let news = json!({ "id": "job_busy", "status": "processing", "tasks": [{ "progress": 10 }],
                       "metadata": { "job_id": busy } });
    assert_eq!(
        post_signed(&app, news.to_string().as_bytes()).await["outcome"],
        "applied"
    );
    assert_eq!(reconciler.reconcile_once().await.unwrap(), 0);
    assert_eq!(read_backs(&ittybit).await, 0);

    // A quiet period later it is read back, once: the read itself is news.
    sqlx::query!(
        "update job_dispatch set last_news_at = now() - interval '1 hour' where job_id = $1::text::uuid",
        busy
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(reconciler.reconcile_once().await.unwrap(), 1);
    assert_eq!(status(&app, &busy).await["progress"], 30);
    assert_eq!(reconciler.reconcile_once().await.unwrap(), 0);
    // The same answer again, a quiet period later: read, nothing changes, not read again.
    sqlx::query!(
        "update job_dispatch set last_news_at = now() - interval '1 hour' where job_id = $1::text::uuid",
        busy
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(reconciler.reconcile_once().await.unwrap(), 1);
    assert_eq!(reconciler.reconcile_once().await.unwrap(), 0);
    assert_eq!(read_backs(&ittybit).await, 2);
}

#[tokio::test]
async fn the_reconciler_fails_a_job_ittybit_no_longer_knows() {
    let ittybit = ittybit_reading_back(
        "job_gone",
        ResponseTemplate::new(404)
            .set_body_json(json!({ "kind": "job_not_found", "message": "No such job." })),
    )
    .await;
    let app = spawn_with_ittybit(&ittybit).await;
    let id = quiet_job(&app, "job_gone").await;
    assert_eq!(
        reconciler(&app, &ittybit).reconcile_once().await.unwrap(),
        1
    );
    let failed = status(&app, &id).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"], "Ittybit no longer knows this job.");
}

#[tokio::test]
async fn a_read_back_that_fails_is_tried_again_after_a_quiet_period_not_every_pass() {
    let ittybit = ittybit_reading_back(
        "job_flaky",
        ResponseTemplate::new(503).set_body_json(json!({ "kind": "busy", "message": "later" })),
    )
    .await;
    let app = spawn_with_ittybit(&ittybit).await;
    let id = quiet_job(&app, "job_flaky").await;
    let reconciler = reconciler(&app, &ittybit);
    assert_eq!(reconciler.reconcile_once().await.unwrap(), 1);
    assert_eq!(reconciler.reconcile_once().await.unwrap(), 0);
    assert_eq!(read_backs(&ittybit).await, 1);
    assert_eq!(status(&app, &id).await["status"], "queued");
}

#[tokio::test]
async fn without_a_webhook_secret_every_webhook_is_refused() {
    let ittybit = MockServer::start().await;
    // An Ittybit account, but no ITTYBIT_WEBHOOK_SECRET.
    let app = spawn_app_with(&[
        ("ITTYBIT_API_KEY", "test-key"),
        ("ITTYBIT_API_URL", &ittybit.uri()),
    ])
    .await;
    let id = quiet_job(&app, "job_x").await;
    let body =
        json!({ "id": "job_x", "status": "succeeded", "metadata": { "job_id": id } }).to_string();
    for signature in [
        None,
        Some(sign(b"", body.as_bytes())),
        Some(sign(SECRET.as_bytes(), body.as_bytes())),
    ] {
        let mut request = app
            .client
            .post(app.url("/api/ittybit/callback"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(signature) = signature {
            request = request.header("Ittybit-Signature", signature);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "unauthorized");
    }
    assert_eq!(status(&app, &id).await["status"], "queued");
    let outcomes = sqlx::query_scalar!("select outcome from webhook_deliveries")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(outcomes, ["bad_signature"; 3]);
}

#[tokio::test]
async fn the_sql_status_rules_are_the_domains_for_every_pair_of_statuses() {
    let app = spawn_app_with(&[]).await;
    for &status in JobStatus::ALL {
        let row = sqlx::query!(
            r#"select reeltime_status_step($1) as "step!", reeltime_status_terminal($1) as "terminal!""#,
            status.as_str()
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(row.step, i32::from(status.step()), "{status}");
        assert_eq!(row.terminal, status.is_terminal(), "{status}");
    }
    for &from in JobStatus::ALL {
        for &to in JobStatus::ALL {
            let id = JobId(
                sqlx::query_scalar!(
                    "insert into jobs (input_url, status, progress)
                     values ('https://e.com/a', $1, 40) returning id",
                    from.as_str()
                )
                .fetch_one(&app.pool)
                .await
                .unwrap(),
            );
            let report = Normalized {
                ittybit_id: None,
                job_id: Some(id),
                status: to,
                progress: Some(60),
                output_url: Some("https://cdn.example.com/out.mp4".into()),
                output: OutputFacts::default(),
                input_size: None,
                details: None,
                error: None,
            };
            let before = Expected {
                status: from,
                progress: Some(40),
                ..Expected::queued()
            };
            let expected = before.apply(&report, "Ittybit");
            let applied = apply_report(&app.pool, id, &report, "Ittybit")
                .await
                .unwrap();
            let job = app::db::get_job(&app.pool, id).await.unwrap().unwrap();
            assert_eq!(job.status, from.advance(to), "{from} -> {to}");
            assert_eq!(expected_of(&job), expected, "{from} -> {to}");
            let changed = expected != before;
            assert_eq!(
                applied,
                if changed {
                    Applied::Changed(job.status)
                } else {
                    Applied::Unchanged
                },
                "{from} -> {to}"
            );
        }
    }
}

fn expected_of(job: &reeltime::Job) -> Expected {
    Expected {
        status: job.status,
        progress: job.progress,
        output_url: job.output_url.clone(),
        error: job.error.clone(),
        task_id: job.task_id.clone(),
    }
}

fn percent() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![Just(None), (-10.0..120.0f64).prop_map(Some)]
}

fn non_terminal() -> impl Strategy<Value = Delivery> {
    prop_oneof![
        percent().prop_map(Delivery::Queued),
        percent().prop_map(Delivery::Processing),
    ]
}

/// Non-terminal deliveries and one or more copies of one outcome, in any order, each in one
/// of the three payload shapes.
fn deliveries() -> impl Strategy<Value = (JobStatus, Vec<(Delivery, u8)>)> {
    let outcome = prop_oneof![
        Just(JobStatus::Succeeded),
        Just(JobStatus::Failed),
        Just(JobStatus::Cancelled)
    ];
    (
        prop::collection::vec(non_terminal(), 0..12),
        outcome,
        1..4usize,
    )
        .prop_flat_map(|(mut list, outcome, copies)| {
            list.extend(std::iter::repeat_n(Delivery::Terminal(outcome), copies));
            let shapes = prop::collection::vec(0..3u8, list.len());
            (Just(outcome), Just(list).prop_shuffle(), shapes)
        })
        .prop_map(|(outcome, list, shapes)| (outcome, list.into_iter().zip(shapes).collect()))
}

/// Send `list` through the callback route to a fresh job, checking the row against the
/// oracle after every delivery.
async fn check_sequence(
    app: &TestApp,
    outcome: JobStatus,
    list: &[(Delivery, u8)],
) -> Result<(), TestCaseError> {
    let id = JobId(
        sqlx::query_scalar!(
            "insert into jobs (input_url, status) values ('https://e.com/p.mp4', 'queued')
             returning id"
        )
        .fetch_one(&app.pool)
        .await
        .unwrap(),
    );
    let ittybit_id = format!("job_{}", id.0.simple());
    let mut expected = Expected::queued();
    for (delivery, shape) in list {
        let body = delivery.body(*shape, &id.to_string(), &ittybit_id);
        let report = normalize_webhook(&body).unwrap();
        let next = expected.apply(&report, "Ittybit");
        let answer = post_signed(app, &body).await;
        let outcome = if next != expected {
            "applied"
        } else {
            "unchanged"
        };
        prop_assert_eq!(answer["outcome"].as_str(), Some(outcome), "{:?}", delivery);
        let job = app::db::get_job(&app.pool, id).await.unwrap().unwrap();
        prop_assert_eq!(
            expected_of(&job),
            next.clone(),
            "after {:?} in shape {}",
            delivery,
            shape
        );
        prop_assert!(
            job.status.step() >= expected.status.step(),
            "never backwards"
        );
        expected = next;
    }
    prop_assert_eq!(expected.status, outcome);
    if outcome == JobStatus::Succeeded {
        prop_assert_eq!(expected.progress, Some(100));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn any_order_of_signed_deliveries_through_the_callback_ends_in_the_true_state() {
    let ittybit = MockServer::start().await;
    let app = spawn_with_ittybit(&ittybit).await;
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(48);
    let runtime = tokio::runtime::Handle::current();
    // proptest drives the cases (and shrinks a failure) on a thread of its own; each case
    // runs on the test's runtime, against the app.
    let result = tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config::with_cases(cases));
        let result = runner.run(&deliveries(), |(outcome, list)| {
            runtime.block_on(check_sequence(&app, outcome, &list))
        });
        result.map_err(|err| err.to_string())
    })
    .await
    .unwrap();
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
