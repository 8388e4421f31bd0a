//! Dispatch and callbacks under faults: Ittybit failing for a while, random orders of signed
//! callbacks checked against the Rust rules, a lost final webhook, two instances and rows
//! inserted with `psql`; and schemathesis against `/api/openapi.json`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reeltime::{normalize_webhook, JobStatus};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::pg::PrivatePg;
use super::{free_port, wait_for, Outcome, Size};
use crate::{start_server, Result};

#[path = "../../../server/tests/api/oracle.rs"]
#[allow(dead_code)]
mod oracle;
use oracle::{Delivery, Expected};

/// The webhook secret of the suite's servers (the server wants 32 bytes or more).
pub const SECRET: &str = "whsec_chaos_0123456789abcdef0123456789abcdef";

/// One request on a fresh connection; the status.
async fn raw(address: &str, request: String) -> Result<(u16, String)> {
    let mut socket = TcpStream::connect(address).await?;
    socket.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "no status in {:?}",
                text.chars().take(80).collect::<String>()
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A signed-in `GET` (the benches' token); the status.
pub async fn get_status(address: &str, path: &str) -> Result<u16> {
    Ok(raw(
        address,
        format!(
            "GET {path} HTTP/1.0\r\nHost: {address}\r\n{}\r\n",
            crate::authorization()
        ),
    )
    .await?
    .0)
}

/// A signed callback with this body; the status.
pub async fn post_callback(address: &str, body: &Value) -> Result<u16> {
    Ok(post_signed(address, body.to_string().as_bytes()).await?.0)
}

async fn post_signed(address: &str, body: &[u8]) -> Result<(u16, String)> {
    let signature = reeltime::signature::sign(SECRET.as_bytes(), body);
    let head = format!(
        "POST /api/ittybit/callback HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Ittybit-Signature: {signature}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    raw(address, String::from_utf8_lossy(&request).into_owned()).await
}

/// Ittybit as the contract describes it: the first create with an idempotency key makes a job,
/// later ones with that key get it back; until `healthy_at`, answers 500, 429 or too late.
#[derive(Clone)]
struct Ittybit {
    healthy_at: Instant,
    log: Arc<Mutex<Log>>,
}

#[derive(Default)]
struct Log {
    calls: usize,
    failures: usize,
    /// The keys a job was made for (a job per key, as Ittybit's idempotency promises).
    created: HashSet<String>,
}

impl Respond for Ittybit {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut log = self.log.lock().unwrap();
        log.calls += 1;
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        if Instant::now() < self.healthy_at {
            log.failures += 1;
            return match log.calls % 3 {
                0 => ResponseTemplate::new(500)
                    .set_body_json(json!({"kind": "internal", "message": "down"})),
                1 => ResponseTemplate::new(429)
                    .insert_header("retry-after", "1")
                    .set_body_json(json!({"kind": "rate_limited", "message": "slow down"})),
                // Made, but the answer comes after the client gave up (it waits 2 s).
                _ => {
                    log.created.insert(key.clone());
                    ResponseTemplate::new(201)
                        .set_body_json(job_object(&key, "queued"))
                        .set_delay(Duration::from_secs(3))
                }
            };
        }
        log.created.insert(key.clone());
        ResponseTemplate::new(201).set_body_json(job_object(&key, "queued"))
    }
}

fn job_object(key: &str, status: &str) -> Value {
    json!({ "id": format!("job_{key}"), "object": "job", "status": status,
            "metadata": { "job_id": key }, "tasks": [] })
}

async fn mock_ittybit(outage: Duration) -> (MockServer, Ittybit) {
    let server = MockServer::start().await;
    let ittybit = Ittybit {
        healthy_at: Instant::now() + outage,
        log: Arc::default(),
    };
    Mock::given(method("POST"))
        .and(path("/jobs"))
        .respond_with(ittybit.clone())
        .mount(&server)
        .await;
    (server, ittybit)
}

fn ittybit_env(mock: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("ITTYBIT_API_KEY", "chaos".into()),
        ("ITTYBIT_API_URL", mock.uri()),
        ("ITTYBIT_WEBHOOK_SECRET", SECRET.into()),
        ("ITTYBIT_TIMEOUT_SECS", "2".into()),
        ("REELTIME_DISPATCH_BACKOFF_MS", "100".into()),
        ("REELTIME_DISPATCH_MAX_ATTEMPTS", "60".into()),
        ("REELTIME_PROCESSOR", "off".into()),
        ("RUST_LOG", "error".into()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Every job queued, each created at Ittybit exactly once under its own id.
async fn check_created(
    pool: &sqlx::PgPool,
    ittybit: &Ittybit,
    ids: &HashSet<String>,
) -> Result<(usize, String, bool)> {
    let queued: i64 = sqlx::query_scalar!(
        r#"select count(*) as "n!" from jobs where status = 'queued' and task_id = 'job_' || id::text"#
    )
    .fetch_one(pool)
    .await?;
    let log = ittybit.log.lock().unwrap();
    let strangers = log.created.difference(ids).count();
    let missing = ids.difference(&log.created).count();
    let ok = queued as usize == ids.len() && strangers == 0 && missing == 0;
    Ok((
        log.calls,
        format!(
            "{missing} jobs never created, {strangers} created under a key that is no job's id; {queued}/{} queued with their own Ittybit job",
            ids.len()
        ),
        ok,
    ))
}

/// Ittybit answers 500, 429 and too late for a while as jobs are submitted: after it recovers,
/// every job is created there exactly once.
pub async fn ittybit_outage(size: Size) -> Result<Outcome> {
    let (jobs, outage) = size.pick((100usize, 10u64), (500, 60));
    let pg = PrivatePg::start().await?;
    let url = pg.database("chaos").await?;
    let (mock, ittybit) = mock_ittybit(Duration::from_secs(outage)).await;
    let env = ittybit_env(&mock);
    let server = start_server(&url, &borrowed(&env)).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await?;
    let mut ids = HashSet::new();
    for n in 0..jobs {
        let body = json!({ "input_url": format!("https://example.com/outage-{n}.mp4") });
        let (status, job) = crate::http(&server.address, "POST", "/api/jobs", Some(&body)).await?;
        if status != 201 {
            return Err(format!("submitting: {status} {job}").into());
        }
        ids.insert(job["id"].as_str().unwrap_or_default().to_owned());
    }
    let began = Instant::now();
    let settled = wait_for(
        Duration::from_secs(outage + 180),
        "no job pending",
        || async {
            let pending: i64 = sqlx::query_scalar!(
                r#"select count(*) as "n!" from jobs where status = 'pending'"#
            )
            .fetch_one(&pool)
            .await?;
            Ok((pending == 0).then_some(()))
        },
    )
    .await;
    let (calls, lost, ok) = check_created(&pool, &ittybit, &ids).await?;
    let failures = ittybit.log.lock().unwrap().failures;
    Ok(Outcome {
        scenario: "ittybit-outage",
        done: format!("{jobs} jobs submitted while Ittybit failed for {outage} s (500, 429 with Retry-After, answers after the 2 s timeout)"),
        figures: format!("{calls} create calls ({failures} failed or too late); all dispatched {:.0} s after the last submission", began.elapsed().as_secs_f64()),
        lost,
        passed: settled.is_ok() && ok,
    })
}

/// Two instances on one database, rows inserted by `psql`: exactly one create per row.
pub async fn two_instances(size: Size) -> Result<Outcome> {
    let rows = size.pick(200usize, 1_000);
    let pg = PrivatePg::start().await?;
    let url = pg.database("chaos").await?;
    let (mock, ittybit) = mock_ittybit(Duration::ZERO).await;
    let env = ittybit_env(&mock);
    let _a = start_server(&url, &borrowed(&env)).await?;
    let _b = start_server(&url, &borrowed(&env)).await?;
    let script: String = (0..rows)
        .map(|n| {
            format!("insert into jobs (input_url) values ('https://example.com/psql-{n}.mp4');\n")
        })
        .collect();
    let file = pg.dir.join("inserts.sql");
    std::fs::write(&file, script)?;
    let status = std::process::Command::new("psql")
        .args([url.as_str(), "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&file)
        .status()?;
    if !status.success() {
        return Err("psql failed".into());
    }
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await?;
    let ids: HashSet<String> = sqlx::query_scalar!(r#"select id::text as "id!" from jobs"#)
        .fetch_all(&pool)
        .await?
        .into_iter()
        .collect();
    let settled = wait_for(Duration::from_secs(120), "no job pending", || async {
        let pending: i64 =
            sqlx::query_scalar!(r#"select count(*) as "n!" from jobs where status = 'pending'"#)
                .fetch_one(&pool)
                .await?;
        Ok((pending == 0).then_some(()))
    })
    .await;
    let (calls, lost, ok) = check_created(&pool, &ittybit, &ids).await?;
    Ok(Outcome {
        scenario: "two-instances",
        done: format!(
            "two servers on one database, {rows} rows inserted by psql (one statement each)"
        ),
        figures: format!("{calls} create calls for {} jobs", ids.len()),
        lost,
        passed: settled.is_ok() && ok && ids.len() == rows,
    })
}

/// A job's final webhook never comes: the reconciler reads it back and brings it to its state.
pub async fn lost_webhook(size: Size) -> Result<Outcome> {
    let jobs = size.pick(20usize, 100);
    let pg = PrivatePg::start().await?;
    let url = pg.database("chaos").await?;
    let (mock, _) = mock_ittybit(Duration::ZERO).await;
    Mock::given(method("GET"))
        .and(path_regex("^/jobs/job_.*$"))
        .respond_with(|request: &Request| {
            let key = request
                .url
                .path()
                .trim_start_matches("/jobs/job_")
                .to_owned();
            let mut job = job_object(&key, "succeeded");
            job["output"] = json!(format!("https://cdn.example.com/{key}.mp4"));
            ResponseTemplate::new(200).set_body_json(job)
        })
        .mount(&mock)
        .await;
    let mut env = ittybit_env(&mock);
    env.push(("REELTIME_RECONCILE_AFTER_SECS", "2".into()));
    let server = start_server(&url, &borrowed(&env)).await?;
    for n in 0..jobs {
        let body = json!({ "input_url": format!("https://example.com/lost-{n}.mp4") });
        crate::http(&server.address, "POST", "/api/jobs", Some(&body)).await?;
    }
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await?;
    let began = Instant::now();
    let healed = wait_for(Duration::from_secs(120), "every job succeeded", || async {
        let done: i64 = sqlx::query_scalar!(
            r#"select count(*) as "n!" from jobs
             where status = 'succeeded' and output_url = 'https://cdn.example.com/' || id::text || '.mp4'"#
        )
        .fetch_one(&pool)
        .await?;
        Ok((done as usize == jobs).then_some(()))
    })
    .await;
    let done: i64 =
        sqlx::query_scalar!(r#"select count(*) as "n!" from jobs where status = 'succeeded'"#)
            .fetch_one(&pool)
            .await?;
    Ok(Outcome {
        scenario: "lost-webhook",
        done: format!("{jobs} jobs dispatched, no webhook ever sent; reconcile after 2 s"),
        figures: format!(
            "all healed {:.1} s after submission",
            began.elapsed().as_secs_f64()
        ),
        lost: format!("{} jobs not at their true state", jobs - done as usize),
        passed: healed.is_ok(),
    })
}

/// Random orders of duplicated, reordered and replayed signed callbacks, through the real
/// endpoint: each sequence ends in the true state and never regresses (the Rust rules of
/// `server/tests/api/oracle.rs` as the oracle, checked after every delivery's answer and at
/// the end).
pub async fn callbacks(size: Size) -> Result<Outcome> {
    let sequences = size.pick(500usize, 10_000);
    let pg = PrivatePg::start().await?;
    let url = pg.database("chaos").await?;
    let (mock, _) = mock_ittybit(Duration::ZERO).await;
    let mut env = ittybit_env(&mock);
    env.push(("REELTIME_RECONCILE_AFTER_SECS", "31536000".into()));
    let server = start_server(&url, &borrowed(&env)).await?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await?;
    let mut rng = fastrand::Rng::with_seed(14);
    let cases: Vec<(JobStatus, Vec<(Delivery, u8)>)> =
        (0..sequences).map(|_| sequence(&mut rng)).collect();
    let deliveries: usize = cases.iter().map(|(_, list)| list.len()).sum();
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in cases.chunks(sequences.div_ceil(16)) {
        let chunk = chunk.to_vec();
        let (pool, address, failures) = (pool.clone(), server.address.clone(), failures.clone());
        tasks.spawn(async move {
            for (outcome, list) in chunk {
                if let Err(err) = run_sequence(&pool, &address, outcome, &list).await {
                    failures.lock().unwrap().push(err.to_string());
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let failures = failures.lock().unwrap().clone();
    Ok(Outcome {
        scenario: "callbacks",
        done: format!("{sequences} random sequences, {deliveries} signed deliveries in three shapes (duplicates, reorders, replays of a terminal report)"),
        figures: format!("{:.0} deliveries/s", deliveries as f64 / began.elapsed().as_secs_f64()),
        lost: match failures.first() {
            None => "0 sequences off the oracle".into(),
            Some(first) => format!("{} sequences off the oracle, first: {first}", failures.len()),
        },
        passed: failures.is_empty(),
    })
}

fn sequence(rng: &mut fastrand::Rng) -> (JobStatus, Vec<(Delivery, u8)>) {
    let outcome = [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ][rng.usize(..3)];
    let percent = |rng: &mut fastrand::Rng| (rng.u8(..4) > 0).then(|| rng.f64() * 130.0 - 10.0);
    let mut list: Vec<Delivery> = (0..rng.usize(..12))
        .map(|_| match rng.bool() {
            true => Delivery::Queued(percent(rng)),
            false => Delivery::Processing(percent(rng)),
        })
        .collect();
    list.extend((0..rng.usize(1..4)).map(|_| Delivery::Terminal(outcome)));
    rng.shuffle(&mut list);
    (
        outcome,
        list.into_iter().map(|d| (d, rng.u8(..3))).collect(),
    )
}

async fn run_sequence(
    pool: &sqlx::PgPool,
    address: &str,
    outcome: JobStatus,
    list: &[(Delivery, u8)],
) -> Result<()> {
    let id: uuid::Uuid = sqlx::query_scalar!(
        "insert into jobs (input_url, status) values ('https://example.com/cb.mp4', 'queued') returning id"
    )
    .fetch_one(pool)
    .await?;
    let ittybit_id = format!("job_{}", id.simple());
    let mut expected = Expected::queued();
    for (delivery, shape) in list {
        let body = delivery.body(*shape, &id.to_string(), &ittybit_id);
        let next = expected.apply(&normalize_webhook(&body)?, "Ittybit");
        let (status, answer) = post_signed(address, &body).await?;
        let want = if next != expected {
            "applied"
        } else {
            "unchanged"
        };
        if status != 200 || !answer.contains(want) {
            return Err(
                format!("{id}: {delivery:?} answered {status} {answer}, expected {want}").into(),
            );
        }
        expected = next;
    }
    let row = sqlx::query!(
        r#"select status as "status: String", progress, output_url, error, task_id from jobs where id = $1"#,
        id
    )
    .fetch_one(pool)
    .await?;
    let got = (
        row.status,
        row.progress,
        row.output_url,
        row.error,
        row.task_id,
    );
    let want = (
        expected.status.as_str().to_owned(),
        expected.progress,
        expected.output_url,
        expected.error,
        expected.task_id,
    );
    if got != want || expected.status != outcome {
        return Err(format!("{id}: ended {got:?}, the rules say {want:?}").into());
    }
    Ok(())
}

/// schemathesis (from `.tools/schemathesis`, installed by `scripts/test.sh`) against
/// `/api/openapi.json`: no 5xx, every answer as described (4xx with the JSON error).
pub async fn schemathesis(size: Size) -> Result<Outcome> {
    let tool = std::path::Path::new(".tools/schemathesis/bin/schemathesis");
    if !tool.exists() {
        return Ok(Outcome {
            scenario: "schemathesis",
            done: "skipped: .tools/schemathesis is not installed".into(),
            figures: String::new(),
            lost: String::new(),
            passed: true,
        });
    }
    let examples = size.pick("30", "300");
    let pg = PrivatePg::start().await?;
    let url = pg.database("chaos").await?;
    let (mock, _) = mock_ittybit(Duration::ZERO).await;
    let env = ittybit_env(&mock);
    let port = free_port()?.to_string();
    let mut all = borrowed(&env);
    all.push(("REELTIME_PORT", &port));
    let server = start_server(&url, &all).await?;
    // Signed in as the benches' admin, so the routes answer rather than refuse with 401.
    let authorization = crate::authorization();
    let output = tokio::process::Command::new(tool)
        .args([
            "run",
            &format!("http://{}/api/openapi.json", server.address),
            "--header",
            authorization.trim_end(),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--exclude-path",
            "/api/events",
            "--max-examples",
            examples,
            "--no-color",
        ])
        .output()
        .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "Test cases:" is followed by "N generated, N passed" (and failures, if any).
    let mut lines = text.lines().map(str::trim);
    let cases = lines
        .by_ref()
        .skip_while(|l| *l != "Test cases:")
        .nth(1)
        .unwrap_or("no summary")
        .to_owned();
    let summary = [format!("{cases} test cases")];
    std::fs::write("target/schemathesis.log", text.as_bytes())?;
    Ok(Outcome {
        scenario: "schemathesis",
        done: format!("schemathesis, up to {examples} examples per operation, every route but the event stream"),
        figures: summary.join(" / "),
        lost: if output.status.success() { "no 5xx, every answer as described".into() } else { "see target/schemathesis.log".into() },
        passed: output.status.success(),
    })
}
