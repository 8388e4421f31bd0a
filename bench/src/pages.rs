//! The dashboard's first HTML at the sizes users reach (issue 16), for `operate`: the change log
//! grown to a day's worth of rows, then `GET /` and `GET /?status=failed` rendered by the server
//! (SSR, 50 jobs on the page) for a signed-in viewer, sequentially, p50 / p95 / max (target:
//! p50 ≤ 5 ms at 100,000 jobs and 1,000,000 change-log rows), and the plans of the statements
//! every page load runs, from `EXPLAIN ANALYZE`.

use super::*;

/// Rows added to the change log per statement (each its own transaction, as a day of writes is).
const BATCH: i64 = 100_000;
const VIEWER: &str = "viewer@bench.invalid";
const PASSWORD: &str = "bench-viewer-password";

/// Fills the change log up to `rows` rows with copies of the jobs spread over the last 23 hours
/// (retention keeps 24), as a day of progress reports leaves it.
pub(crate) async fn grow_change_log(pool: &PgPool, rows: i64) -> Result<i64> {
    loop {
        let now: i64 = sqlx::query_scalar("select count(*) from job_changes")
            .fetch_one(pool)
            .await?;
        if now >= rows {
            // As a day of writes leaves it: vacuumed, its statistics current, and no
            // checkpoint of the bulk insert still writing while the bench measures.
            pool.execute("vacuum analyze job_changes, jobs").await?;
            if let Err(err) = pool.execute("checkpoint").await {
                eprintln!("(no checkpoint: {err})");
            }
            return Ok(now);
        }
        sqlx::query(
            "insert into job_changes (op, job_id, row_data, changed_at)
             select 'update', j.id, to_jsonb(j), now() - random() * interval '23 hours'
             from jobs j cross join generate_series(1, 10) copy
             limit $1",
        )
        .bind((rows - now).min(BATCH))
        .execute(pool)
        .await?;
    }
}

/// A session cookie for a viewer, signed in through the sign-in form.
pub(crate) async fn viewer_cookie(server: &Server, pool: &PgPool) -> Result<String> {
    if users::user_by_email(pool, VIEWER).await?.is_none() {
        let hash = server::auth::password::hash(PASSWORD.to_owned()).await?;
        users::create_user(pool, VIEWER, &hash, Role::Viewer).await?;
    }
    let form = format!(
        "email={}&password={PASSWORD}&next=%2F",
        VIEWER.replace('@', "%40")
    );
    let head = exchange(
        &server.address,
        &format!(
            "POST /login HTTP/1.0\r\nHost: {0}\r\nOrigin: http://{0}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {1}\r\n\r\n{form}",
            server.address,
            form.len()
        ),
    )
    .await?
    .0;
    header_values(&head, "set-cookie")
        .filter_map(|value| value.split(';').next())
        .map(str::to_owned)
        .reduce(|all, one| format!("{all}; {one}"))
        .ok_or_else(|| format!("signing in set no cookie: {head}").into())
}

/// Times the server-rendered dashboard and prints the plans behind it.
pub(crate) async fn ssr(server: &Server, pool: &PgPool, samples: usize) -> Result<()> {
    let cookie = viewer_cookie(server, pool).await?;
    println!();
    println!("## The dashboard's first HTML (SSR, {samples} requests each, sequential)");
    println!();
    println!("| page | p50 ms | p95 ms | max ms | rows | target p50 ≤ 5 ms |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for path in ["/", "/?status=failed"] {
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nCookie: {cookie}\r\nAccept: text/html\r\n\r\n",
            server.address
        );
        let mut times = Vec::with_capacity(samples);
        let mut rows = 0;
        for i in 0..samples + 5 {
            let at = Instant::now();
            let (head, body) = exchange(&server.address, &request).await?;
            let ms = at.elapsed().as_secs_f64() * 1000.0;
            if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
                return Err(format!("GET {path}: {head}").into());
            }
            rows = body.matches("<tr data-job-id=").count();
            if i >= 5 {
                times.push(ms);
            }
        }
        let (p50, p95, max) = percentiles(times);
        println!(
            "| `GET {path}` | {p50:.1} | {p95:.1} | {max:.1} | {rows} | {} |",
            if p50 <= 5.0 { "met" } else { "missed" }
        );
    }
    println!();
    println!("## The plans of what each page load asks");
    for (what, sql) in [
        (
            "the change log's horizon",
            "select reeltime_change_horizon()",
        ),
        (
            "the feed's position (the last entry below the horizon)",
            "select tx_key, seq from job_changes
             where tx_key < (select reeltime_change_horizon())
             order by tx_key desc, seq desc limit 1",
        ),
        (
            "the status tabs' counts, unfiltered",
            "select status, sum(delta) from job_status_counts group by status having sum(delta) <> 0",
        ),
        (
            "the first page",
            "select id from reeltime_filtered_jobs(null, null, null, null, null, null, null)
             order by created_at desc, id desc limit 51",
        ),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "explain (analyze, buffers off, costs off) {sql}"
        )))
        .fetch_all(pool)
        .await?;
        println!();
        println!("{what}:");
        println!("```");
        for line in plan {
            println!("{line}");
        }
        println!("```");
    }
    Ok(())
}
