//! `callbacks` (issue 16): signed webhooks per second through `POST /api/ittybit/callback`
//! (verify the signature, find the job, fold the report in, record the delivery, and the change
//! log and NOTIFY the triggers write) against the floor: the same changes made directly, one
//! `UPDATE … ; NOTIFY` statement each, on the same table, in the same run, with the same
//! concurrency. Target: callbacks ≥ 0.8 × the floor.
//!
//! Each of `--jobs` jobs (default 2,000; queued, with a task id, made by SQL) gets five progress
//! reports (20 % … 100 % of `processing`), so every report is a real change; `--concurrency`
//! (default 8) senders, one connection per request as Ittybit's deliveries come. The floor runs
//! on a second set of jobs made the same way.

use futures::StreamExt;

use super::*;

const SECRET: &str = "whsec_bench_secret_0123456789abcdef012345";
const REPORTS_PER_JOB: i64 = 5;

pub(crate) async fn callbacks(jobs: i64, concurrency: usize) -> Result<()> {
    let env = [
        ("ITTYBIT_API_KEY", "bench-key"),
        // Nothing is dispatched (the jobs are made queued, with their task ids), and the
        // reconciler has no reason to read any back within the run.
        ("ITTYBIT_API_URL", "http://127.0.0.1:9"),
        ("ITTYBIT_WEBHOOK_SECRET", SECRET),
        ("REELTIME_RECONCILE_AFTER_SECS", "3600"),
        ("REELTIME_PROCESSOR", "off"),
    ];
    on_fresh_server(&env, async |server, url| {
        run(server, url, jobs, concurrency).await
    })
    .await
}

/// Makes `n` queued jobs whose task ids start with `tag`; their (job id, task id).
async fn make_jobs(pool: &PgPool, tag: &str, n: i64) -> Result<Vec<(String, String)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "insert into jobs (input_url, status, task_id)
         select format('https://media.example.com/%s/%s.mp4', $1::text, i), 'queued',
                format('%s_%s', $1::text, i)
         from generate_series(1, $2) i
         returning id::text, task_id",
    )
    .bind(tag)
    .bind(n)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Every (job, task, progress) to report, in rounds: each job's 20 % before anyone's 40 %.
fn reports(jobs: &[(String, String)]) -> Vec<(String, String, i64)> {
    (1..=REPORTS_PER_JOB)
        .flat_map(|round| {
            jobs.iter()
                .map(move |(id, task)| (id.clone(), task.clone(), round * 100 / REPORTS_PER_JOB))
        })
        .collect()
}

async fn run(server: &Server, database_url: &str, jobs: i64, concurrency: usize) -> Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(concurrency as u32 + 1)
        .connect(database_url)
        .await?;
    let hooked = reports(&make_jobs(&pool, "hook", jobs).await?);
    let bare = reports(&make_jobs(&pool, "bare", jobs).await?);
    pool.execute("vacuum analyze jobs").await?;
    let total = hooked.len();

    // Signed webhooks, `concurrency` at a time.
    let address = server.address.clone();
    let started = Instant::now();
    let outcomes: Vec<Result<u16>> = futures::stream::iter(hooked)
        .map(|(id, task, progress)| {
            let address = address.clone();
            async move {
                let body = json!({
                    "id": task, "object": "job", "status": "processing",
                    "progress": progress, "metadata": { "job_id": id },
                })
                .to_string();
                let signature = reeltime::signature::sign(SECRET.as_bytes(), body.as_bytes());
                post_signed(&address, &body, &signature).await
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let hooks_secs = started.elapsed().as_secs_f64();
    let failed = outcomes
        .iter()
        .filter(|outcome| !matches!(outcome, Ok(200)))
        .count();
    if let Some(Err(err)) = outcomes.iter().find(|outcome| outcome.is_err()) {
        return Err(format!("a callback failed: {err}").into());
    }
    let applied: i64 =
        sqlx::query_scalar("select count(*) from webhook_deliveries where outcome = 'applied'")
            .fetch_one(&pool)
            .await?;

    // The floor: the same changes made directly, one statement each.
    let started = Instant::now();
    let floor: Vec<Result<()>> = futures::stream::iter(bare)
        .map(|(_, task, progress)| {
            let pool = pool.clone();
            async move {
                sqlx::query(
                    "with changed as (
                         update jobs set status = 'processing', progress = $2 where task_id = $1
                         returning id)
                     select pg_notify('bench_floor', id::text) from changed",
                )
                .bind(task)
                .bind(progress as i16)
                .execute(&pool)
                .await?;
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let floor_secs = started.elapsed().as_secs_f64();
    if let Some(Err(err)) = floor.into_iter().find(Result::is_err) {
        return Err(format!("a direct update failed: {err}").into());
    }

    let hooks_rate = total as f64 / hooks_secs;
    let floor_rate = total as f64 / floor_secs;
    let ratio = hooks_rate / floor_rate;
    println!();
    println!(
        "## Signed callbacks against the bare UPDATE + NOTIFY ({total} reports on {jobs} jobs, {concurrency} at a time)"
    );
    println!();
    println!("| path | reports | seconds | per second |");
    println!("| --- | ---: | ---: | ---: |");
    println!("| signed callbacks (HTTP, verify, resolve, apply, record) | {total} | {hooks_secs:.2} | {hooks_rate:.0} |");
    println!("| bare `UPDATE … ; NOTIFY`, one statement each | {total} | {floor_secs:.2} | {floor_rate:.0} |");
    println!();
    println!(
        "callbacks / floor: {ratio:.2} (target ≥ 0.8: {}); answered other than 200: {failed}; \
         deliveries recorded as applied: {applied}",
        if ratio >= 0.8 { "met" } else { "missed" }
    );
    pool.close().await;
    Ok(())
}

/// One signed webhook on its own connection; the answer's status.
async fn post_signed(address: &str, body: &str, signature: &str) -> Result<u16> {
    let request = format!(
        "POST /api/ittybit/callback HTTP/1.0\r\nHost: {address}\r\n\
         Content-Type: application/json\r\nIttybit-Signature: {signature}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    status_of(&exchange(address, &request).await?.0)
}
