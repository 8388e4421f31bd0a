//! Dispatch to Ittybit, its webhooks and the reconciler, with wiremock as Ittybit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reeltime::signature::sign;
use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use server::dispatch::{DispatchSettings, Dispatcher};
use server::ittybit::{IttybitClient, IttybitConfig};

use crate::helpers::{
    eventually, spawn_app_with, spawn_second_instance_with, test_database_url, TestApp,
};

const SECRET: &str = "whsec_test_secret_0123456789abcdef0123";

fn settings(ittybit: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("ITTYBIT_API_KEY", "test-key".into()),
        ("ITTYBIT_API_URL", ittybit.uri()),
        ("ITTYBIT_WEBHOOK_SECRET", SECRET.into()),
        ("ITTYBIT_TIMEOUT_SECS", "1".into()),
        ("REELTIME_DISPATCH_BACKOFF_MS", "20".into()),
        ("REELTIME_DISPATCH_MAX_ATTEMPTS", "4".into()),
    ]
}

async fn spawn_with_ittybit(ittybit: &MockServer, extra: &[(&'static str, &str)]) -> TestApp {
    let mut owned = settings(ittybit);
    owned.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
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

/// Answers a create with a job, and remembers when each request came.
#[derive(Clone, Default)]
struct Created(Arc<Mutex<Vec<Instant>>>);

impl Respond for Created {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut seen = self.0.lock().unwrap();
        seen.push(Instant::now());
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        // Like Ittybit: the same key gives the same job.
        ResponseTemplate::new(201).set_body_json(ittybit_job(&format!("job_{key}"), request))
    }
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

async fn job(app: &TestApp, id: &str) -> Value {
    app.get_json(app.url(&format!("/api/jobs/{id}"))).await
}

/// Wait until the job reaches `status` (or fail after `within`).
async fn wait_for_status(app: &TestApp, id: &str, status: &str, within: Duration) -> Value {
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
    let queued = wait_for_status(&app, &id, "queued", Duration::from_secs(10)).await;
    assert_eq!(queued["task_id"], format!("job_{id}"));
    let requests = creates(&ittybit).await;
    assert_eq!(requests.len(), 3);
    assert!(requests
        .iter()
        .all(|r| r.headers["idempotency-key"] == id.as_str()));
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let (ittybit, _) = ittybit_failing_first(
        ResponseTemplate::new(201).set_delay(Duration::from_secs(3)),
        1,
    )
    .await;
    let app = spawn_with_ittybit(&ittybit, &[]).await;
    let id = submit(&app, "https://example.com/slow.mp4").await;
    wait_for_status(&app, &id, "queued", Duration::from_secs(10)).await;
    assert_eq!(creates(&ittybit).await.len(), 2);
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
    sqlx::query!(
        r#"insert into jobs (input_url, options)
         select 'https://example.com/many-' || n || '.mp4', '{"width": 1280}'
         from generate_series(1, 200) n"#
    )
    .execute(&first.pool)
    .await
    .unwrap();
    eventually(Duration::from_secs(30), || async {
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
    let requests = creates(&ittybit).await;
    let mut keys: Vec<String> = requests
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(requests.len(), 200, "exactly one create call per job");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 200);
    let queued = sqlx::query_scalar!(
        r#"select count(*) as "count!" from jobs where status = 'queued' and task_id is not null"#
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

    let requests = creates(&ittybit).await;
    assert_eq!(requests.len(), 2, "one call, one retry");
    assert!(requests
        .iter()
        .all(|r| r.headers["idempotency-key"] == id.as_str()));
}

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

    // Progress moves forward only.
    let e = queued_job(&app, "job_e").await;
    for progress in [40, 20, 60] {
        let (body, signature) = signed(
            json!({ "id": "job_e", "status": "processing", "tasks": [{ "progress": progress }], "metadata": { "job_id": e } }),
        );
        post_webhook(&app, &body, Some(signature)).await;
    }
    let stored = job(&app, &e).await;
    assert_eq!(stored["status"], "processing");
    assert_eq!(stored["progress"], 60);
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
}

/// A dispatcher of the test's own, on the app's database, sending to `ittybit`.
fn dispatcher(app: &TestApp, ittybit: &MockServer, concurrency: usize) -> Dispatcher {
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
