//! Dispatch to Ittybit, with wiremock as Ittybit: the create request, refusals, retries,
//! timeouts, `Retry-After`, two instances, a crash mid-call, and the dispatcher stepped.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use server::dispatch::{DispatchSettings, Dispatcher};
use server::ittybit::{IttybitClient, IttybitConfig};

use crate::helpers::{
    eventually, spawn_app_with, spawn_second_instance_with, test_database_url, TestApp,
};

pub(crate) const SECRET: &str = "whsec_test_secret_0123456789abcdef0123";

fn settings(ittybit: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("ITTYBIT_API_KEY", "test-key".into()),
        ("ITTYBIT_API_URL", ittybit.uri()),
        ("ITTYBIT_WEBHOOK_SECRET", SECRET.into()),
        // Generous: timing is not what most tests here are about (the timeout test sets 1).
        ("ITTYBIT_TIMEOUT_SECS", "10".into()),
        ("REELTIME_DISPATCH_BACKOFF_MS", "20".into()),
        ("REELTIME_DISPATCH_MAX_ATTEMPTS", "4".into()),
    ]
}

pub(crate) async fn spawn_with_ittybit(
    ittybit: &MockServer,
    extra: &[(&'static str, &str)],
) -> TestApp {
    // The test's own settings first: the first of a name wins.
    let mut owned: Vec<(&str, String)> = extra.iter().map(|(k, v)| (*k, v.to_string())).collect();
    owned.extend(settings(ittybit));
    let borrowed: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(&borrowed).await
}

/// Ittybit's answer to a create: the job object, queued.
fn ittybit_job(id: &str, request: &Request) -> Value {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    json!({
        "id": id, "object": "job", "kind": body["kind"], "input": body["input"],
        "options": body["options"], "metadata": body["metadata"],
        "status": "queued", "output": null, "error": null, "tasks": [],
        "created_at": 1711900000000u64, "updated_at": 1711900000000u64,
    })
}

/// Answers a create as Ittybit does (the same idempotency key gives the same job back), and
/// remembers when each request came.
#[derive(Clone, Default)]
struct Created(Arc<Mutex<Vec<Instant>>>);

impl Respond for Created {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.lock().unwrap().push(Instant::now());
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        ResponseTemplate::new(201).set_body_json(ittybit_job(&format!("job_{key}"), request))
    }
}

/// Ittybit made exactly one job for each of `ids`: every create carried one of their ids as
/// its idempotency key, and each id was sent (an Ittybit job per distinct key). A repeated
/// call with a key already used is a retry Ittybit answers with the same job, so the number
/// of calls may be higher.
async fn one_ittybit_job_per_dashboard_job(ittybit: &MockServer, ids: &[String]) {
    let mut keys: Vec<String> = creates(ittybit)
        .await
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys.dedup();
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(keys, expected, "one key per job: each job's own id");
}

/// Ittybit that answers the first `times` creates with `first`, then creates jobs.
async fn ittybit_failing_first(first: impl Respond + 'static, times: u64) -> (MockServer, Created) {
    let ittybit = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/jobs"))
        .respond_with(first)
        .up_to_n_times(times)
        .with_priority(1)
        .mount(&ittybit)
        .await;
    let created = Created::default();
    Mock::given(method("POST"))
        .and(path("/jobs"))
        .respond_with(created.clone())
        .mount(&ittybit)
        .await;
    (ittybit, created)
}

async fn submit(app: &TestApp, url: &str) -> String {
    let job: Value = app.create_job(json!({ "input_url": url })).await;
    job["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn job(app: &TestApp, id: &str) -> Value {
    app.get_json(app.url(&format!("/api/jobs/{id}"))).await
}

/// Wait until the job reaches `status` (or fail after `within`).
pub(crate) async fn wait_for_status(
    app: &TestApp,
    id: &str,
    status: &str,
    within: Duration,
) -> Value {
    eventually(within, || async {
        let current = job(app, id).await;
        if current["status"] == status {
            Ok(current)
        } else {
            Err(format!(
                "the job is {} (wanted {status}): {current}",
                current["status"]
            ))
        }
    })
    .await
}

async fn creates(ittybit: &MockServer) -> Vec<Request> {
    ittybit
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/jobs")
        .collect()
}

#[tokio::test]
async fn the_create_request_is_what_the_contract_says() {
    let ittybit = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/jobs"))
        .and(header("authorization", "Bearer test-key"))
        .respond_with(Created::default())
        .mount(&ittybit)
        .await;
    let app = spawn_with_ittybit(&ittybit, &[]).await;

    let id = submit(&app, "https://example.com/source.mp4").await;
    let queued = wait_for_status(&app, &id, "queued", Duration::from_secs(5)).await;
    assert_eq!(queued["task_id"], format!("job_{id}"));

    let requests = creates(&ittybit).await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.headers["idempotency-key"], id.as_str());
    assert_eq!(request.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        json!({
            "input": "https://example.com/source.mp4",
            "kind": "video",
            "options": { "width": 1280, "format": "mp4", "quality": "high" },
            "metadata": { "job_id": id },
            "webhook_url": format!("{}/api/ittybit/callback", app.address),
        })
    );
}

#[tokio::test]
async fn a_refusal_fails_the_job_with_ittybits_message() {
    let ittybit = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/jobs"))
        .respond_with(ResponseTemplate::new(422).set_body_json(
            json!({ "kind": "invalid_input", "message": "input is not a media file" }),
        ))
        .mount(&ittybit)
        .await;
    let app = spawn_with_ittybit(&ittybit, &[]).await;
    let id = submit(&app, "https://example.com/notes.txt").await;
    let failed = wait_for_status(&app, &id, "failed", Duration::from_secs(5)).await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("input is not a media file") && error.contains("invalid_input"),
        "{error}"
    );
    assert_eq!(creates(&ittybit).await.len(), 1, "a refusal is not retried");
}

#[tokio::test]
async fn server_errors_are_retried_into_one_ittybit_job() {
    let (ittybit, _) = ittybit_failing_first(
        ResponseTemplate::new(500).set_body_json(json!({ "kind": "internal", "message": "oops" })),
        2,
    )
    .await;
    let app = spawn_with_ittybit(&ittybit, &[]).await;
    let id = submit(&app, "https://example.com/flaky.mp4").await;
    let queued = wait_for_status(&app, &id, "queued", Duration::from_secs(30)).await;
    assert_eq!(queued["task_id"], format!("job_{id}"));
    // Two refusals and at least one answer, all under the job's key: one Ittybit job.
    assert!(creates(&ittybit).await.len() >= 3);
    one_ittybit_job_per_dashboard_job(&ittybit, &[id]).await;
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let (ittybit, _) = ittybit_failing_first(
        ResponseTemplate::new(201).set_delay(Duration::from_secs(3)),
        1,
    )
    .await;
    let app = spawn_with_ittybit(&ittybit, &[("ITTYBIT_TIMEOUT_SECS", "1")]).await;
    let id = submit(&app, "https://example.com/slow.mp4").await;
    wait_for_status(&app, &id, "queued", Duration::from_secs(30)).await;
    // The slow call and at least one more (a busy machine may time out a second one too).
    assert!(creates(&ittybit).await.len() >= 2);
    one_ittybit_job_per_dashboard_job(&ittybit, &[id]).await;
}

#[tokio::test]
async fn retry_after_is_respected() {
    let first = Arc::new(Mutex::new(None::<Instant>));
    let seen = first.clone();
    let (ittybit, created) = ittybit_failing_first(
        move |_: &Request| {
            *seen.lock().unwrap() = Some(Instant::now());
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({ "kind": "rate_limited", "message": "slow down" }))
        },
        1,
    )
    .await;
    let app = spawn_with_ittybit(&ittybit, &[]).await;
    let id = submit(&app, "https://example.com/busy.mp4").await;
    wait_for_status(&app, &id, "queued", Duration::from_secs(10)).await;
    let first = first.lock().unwrap().expect("the 429 was served");
    let second = created.0.lock().unwrap()[0];
    let waited = second.duration_since(first);
    // The backoff alone would be ~20 ms.
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
}

#[tokio::test]
async fn two_instances_send_each_of_200_jobs_exactly_once() {
    let ittybit = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/jobs"))
        .respond_with(Created::default())
        .mount(&ittybit)
        .await;
    let first = spawn_with_ittybit(&ittybit, &[]).await;
    let owned = settings(&ittybit);
    let borrowed: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _second = spawn_second_instance_with(&first, &borrowed).await;

    // Inserted by "anyone": plain SQL, not the API.
    let ids: Vec<String> = sqlx::query_scalar!(
        r#"insert into jobs (input_url, options)
         select 'https://example.com/many-' || n || '.mp4', '{"width": 1280}'
         from generate_series(1, 200) n
         returning id::text as "id!""#
    )
    .fetch_all(&first.pool)
    .await
    .unwrap();
    eventually(Duration::from_secs(60), || async {
        let pending = sqlx::query_scalar!(
            r#"select count(*) as "count!" from jobs where status = 'pending'"#
        )
        .fetch_one(&first.pool)
        .await
        .unwrap();
        match pending {
            0 => Ok(()),
            n => Err(format!("{n} jobs still pending")),
        }
    })
    .await;
    // Each job's own id as its key: exactly 200 Ittybit jobs, each stored on its own job.
    one_ittybit_job_per_dashboard_job(&ittybit, &ids).await;
    let queued = sqlx::query_scalar!(
        r#"select count(*) as "count!" from jobs
         where status = 'queued' and task_id = 'job_' || id::text"#
    )
    .fetch_one(&first.pool)
    .await
    .unwrap();
    assert_eq!(queued, 200);
}

#[tokio::test]
async fn a_crash_between_the_call_and_storing_it_retries_with_the_same_key() {
    // The first call is answered too late: the server dies while waiting for it.
    let (ittybit, _) = ittybit_failing_first(
        ResponseTemplate::new(201).set_delay(Duration::from_secs(5)),
        1,
    )
    .await;
    // The app that stays up, with Ittybit off, owns the database.
    let survivor = spawn_app_with(&[]).await;

    // The one that crashes: the real binary, killed mid-call.
    let mut doomed = tokio::process::Command::new(env!("CARGO_BIN_EXE_reeltime"))
        .env("DATABASE_URL", test_database_url(&survivor))
        .env("REELTIME_PORT", "0")
        .env("RUST_LOG", "warn")
        .env("ITTYBIT_API_KEY", "test-key")
        .env("ITTYBIT_API_URL", ittybit.uri())
        .env("ITTYBIT_TIMEOUT_SECS", "30")
        .env("REELTIME_DISPATCH_LEASE_SECS", "1")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let id = submit(&survivor, "https://example.com/crash.mp4").await;
    eventually(Duration::from_secs(30), || async {
        match creates(&ittybit).await.len() {
            0 => Err("the doomed server never called Ittybit".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    doomed.kill().await.unwrap();
    assert_eq!(job(&survivor, &id).await["status"], "pending");

    // A healthy instance takes over once the lease runs out.
    let owned = settings(&ittybit);
    let borrowed: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _healthy = spawn_second_instance_with(&survivor, &borrowed).await;
    wait_for_status(&survivor, &id, "queued", Duration::from_secs(15)).await;

    // The unanswered call and the healthy instance's, both under the job's key.
    assert!(creates(&ittybit).await.len() >= 2, "one call, one retry");
    one_ittybit_job_per_dashboard_job(&ittybit, &[id]).await;
}

/// A dispatcher of the test's own, on the app's database, sending to `ittybit`.
fn dispatcher(app: &TestApp, ittybit: &MockServer, concurrency: usize) -> Dispatcher {
    dispatcher_to(app, &ittybit.uri(), concurrency)
}

/// A dispatcher of the test's own, sending to whatever listens (or not) at `base_url`.
fn dispatcher_to(app: &TestApp, base_url: &str, concurrency: usize) -> Dispatcher {
    let client = IttybitClient::new(IttybitConfig {
        service: "Ittybit",
        base_url: base_url.to_owned(),
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
        reconcile_after: Duration::from_secs(600),
        concurrency,
    };
    Dispatcher::new(app.pool.clone(), client, settings)
}

#[tokio::test]
async fn the_dispatcher_can_be_stepped_one_claim_at_a_time() {
    let (ittybit, _) = ittybit_failing_first(
        ResponseTemplate::new(503).set_body_json(json!({ "kind": "busy", "message": "later" })),
        1,
    )
    .await;
    // No key, no processor: nothing dispatches but the test's own dispatcher.
    let app = spawn_app_with(&[]).await;
    let dispatcher = dispatcher(&app, &ittybit, 1);
    let first = submit(&app, "https://example.com/first.mp4").await;
    let second = submit(&app, "https://example.com/second.mp4").await;

    // Oldest first: the first job's call is answered 503 and scheduled again at once.
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    assert_eq!(job(&app, &first).await["status"], "pending");
    assert_eq!(job(&app, &second).await["status"], "pending");
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    assert_eq!(job(&app, &first).await["status"], "queued");
    assert_eq!(job(&app, &second).await["status"], "pending");
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    assert_eq!(job(&app, &second).await["status"], "queued");
    assert_eq!(dispatcher.run_once().await.unwrap(), 0, "nothing left");

    let keys: Vec<String> = creates(&ittybit)
        .await
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, [first.clone(), first, second]);
}

#[tokio::test]
async fn dispatch_gives_up_after_the_maximum_attempts() {
    let ittybit = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/jobs"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({ "kind": "internal", "message": "down" })),
        )
        .mount(&ittybit)
        .await;
    let app = spawn_app_with(&[]).await;
    let dispatcher = dispatcher(&app, &ittybit, 1);
    let id = submit(&app, "https://example.com/doomed.mp4").await;
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    assert_eq!(
        job(&app, &id).await["status"],
        "pending",
        "retried once more"
    );
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    let failed = job(&app, &id).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("down"),
        "{failed}"
    );
    assert_eq!(dispatcher.run_once().await.unwrap(), 0);
    assert_eq!(creates(&ittybit).await.len(), 2);
}

#[tokio::test]
async fn the_server_gives_up_after_reeltime_dispatch_max_attempts() {
    let ittybit = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/jobs"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(json!({ "kind": "unavailable", "message": "try later" })),
        )
        .mount(&ittybit)
        .await;
    let app = spawn_with_ittybit(&ittybit, &[("REELTIME_DISPATCH_MAX_ATTEMPTS", "3")]).await;
    let id = submit(&app, "https://example.com/never.mp4").await;
    let failed = wait_for_status(&app, &id, "failed", Duration::from_secs(30)).await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 503: try later"),
        "{failed}"
    );
    // Three attempts, the last one final: no fourth call however long one waits, which the
    // attempts counter tells without waiting.
    assert_eq!(creates(&ittybit).await.len(), 3);
    let attempts = sqlx::query_scalar!(
        "select attempts from job_dispatch where job_id = $1::text::uuid",
        id
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(attempts, 3);
}

#[tokio::test]
async fn an_unreachable_service_fails_the_job_plainly_and_its_page_keeps_the_detail() {
    // A port nothing listens on.
    let port = crate::proxy::free_port();
    let app = spawn_app_with(&[]).await;
    let dispatcher = dispatcher_to(&app, &format!("http://127.0.0.1:{port}"), 1);
    let id = submit(&app, "https://example.com/far.mp4").await;
    assert_eq!(dispatcher.run_once().await.unwrap(), 1, "the first try");
    assert_eq!(dispatcher.run_once().await.unwrap(), 1, "the last try");
    let failed = job(&app, &id).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["error"], "Ittybit could not be reached: the connection was refused",
        "plain words, not the network's: {failed}"
    );

    let html = app.get_text(&format!("/jobs/{id}")).await;
    assert!(
        html.contains(
            "Sending it failed (attempt 1), to be tried again: Ittybit could not be reached: \
             the connection was refused"
        ),
        "{html}"
    );
    assert!(
        html.contains("Sending it failed for good (attempt 2)"),
        "{html}"
    );
    assert_eq!(
        html.matches("<summary>Technical detail</summary>").count(),
        2,
        "each failed try keeps its detail: {html}"
    );
    assert!(
        html.contains("Connection refused (os error 111)"),
        "the network's own words are on the page: {html}"
    );
}
