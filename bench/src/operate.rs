//! `operate`: operators' views and actions at the sizes users reach (issue 12). The release
//! server on a fresh database holding `--jobs` jobs (default 100,000, made by SQL with their
//! triggers, so the change log and the story table grow with them; the change log then grown to
//! `--changes` rows, default 1,000,000, a day's worth), then:
//! - filtered pages (`GET /api/jobs?…`) and the status counts (`GET /api/jobs/counts?…`), each
//!   asked for sequentially, p50 / p95 / max (target: p95 ≤ 50 ms);
//! - bulk actions (`POST /api/jobs/bulk` with a filter) on 10,000 matching jobs: cancel, retry
//!   (10,000 new jobs), delete (target: each under 2 s);
//! - the plans of the slowest filter, from `EXPLAIN ANALYZE`;
//! - the dashboard's server-rendered first HTML and the plans behind it (`pages.rs`, issue 16).

use super::*;

/// The filters the pages are read with: the common views, and the worst case (a search that
/// matches nothing reads every row's URL and error).
const FILTERS: [&str; 8] = [
    "",
    "status=failed",
    "status=succeeded&kind=video",
    "preset=video_720_webm",
    "q=cdn7",
    "from=2026-11-10&to=2026-11-12",
    "status=processing&q=uploads",
    "q=matches-nothing-at-all",
];

pub(crate) async fn operate(jobs: usize, changes: i64, samples: usize) -> Result<()> {
    on_fresh_server(&[("REELTIME_PROCESSOR", "off")], async |server, url| {
        run(server, url, jobs, changes, samples).await
    })
    .await
}

async fn run(
    server: &Server,
    database_url: &str,
    jobs: usize,
    changes: i64,
    samples: usize,
) -> Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(database_url)
        .await?;
    let started = Instant::now();
    pool.execute(sqlx::AssertSqlSafe(format!(
        "insert into jobs (input_url, kind, options, status, error, progress, created_at)
         select format('https://%s%s.example.com/media/%s.mp4',
                       (array['cdn', 'media', 'uploads'])[1 + i % 3], i % 10, i),
                (array['video', 'video', 'audio', 'image'])[1 + i % 4],
                case when i % 4 in (0, 1) and i % 5 = 0 then '{{\"width\": 720, \"format\": \"webm\", \"codec\": \"vp9\", \"quality\": \"medium\"}}'::jsonb
                     else '{{}}'::jsonb end,
                (array['succeeded', 'succeeded', 'succeeded', 'failed', 'cancelled', 'processing', 'queued', 'pending'])[1 + i % 8],
                case when i % 8 = 3 then 'the input URL was not found (HTTP 404)' end,
                case when i % 8 = 5 then 40 end,
                timestamptz '2026-11-01 00:00Z' + i * interval '25 seconds'
         from generate_series(1, {jobs}) i"
    )))
    .await?;
    pool.execute("analyze jobs").await?;
    let changes = super::pages::grow_change_log(&pool, changes).await?;
    println!(
        "{jobs} jobs made in {:.1} s ({changes} change-log rows)",
        started.elapsed().as_secs_f64()
    );

    println!();
    println!("## Filtered pages at {jobs} jobs ({samples} requests each, sequential)");
    println!();
    println!("| request | p50 ms | p95 ms | max ms | rows |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut worst_p95 = 0.0f64;
    for filter in FILTERS {
        for path in [
            format!("/api/jobs?limit=50&{filter}"),
            format!("/api/jobs/counts?{filter}"),
        ] {
            let (times, rows) = timed(server, &path, samples).await?;
            let (p50, p95, max) = percentiles(times);
            worst_p95 = worst_p95.max(p95);
            println!("| `GET {path}` | {p50:.1} | {p95:.1} | {max:.1} | {rows} |");
        }
    }
    println!();
    println!(
        "worst p95: {worst_p95:.1} ms (target ≤ 50 ms: {})",
        if worst_p95 <= 50.0 { "met" } else { "missed" }
    );

    println!();
    println!("## Bulk actions on 10,000 matching jobs");
    println!();
    pool.execute(
        "insert into jobs (input_url, status)
         select format('https://bulk.example.com/tagged-%s.mp4', i), 'pending'
         from generate_series(1, 10000) i",
    )
    .await?;
    println!("| action | jobs changed | seconds | target ≤ 2 s |");
    println!("| --- | ---: | ---: | --- |");
    for (action, filter) in [
        ("cancel", json!({"q": "bulk.example.com/tagged-"})),
        (
            "retry",
            json!({"q": "bulk.example.com/tagged-", "status": "cancelled"}),
        ),
        (
            "delete",
            json!({"q": "bulk.example.com/tagged-", "status": "cancelled"}),
        ),
    ] {
        let body = json!({"action": action, "filter": filter});
        let at = Instant::now();
        let (status, answer) = http(&server.address, "POST", "/api/jobs/bulk", Some(&body)).await?;
        let secs = at.elapsed().as_secs_f64();
        if status != 200 {
            return Err(format!("bulk {action}: {status} {answer}").into());
        }
        let changed = answer["changed"].as_u64().unwrap_or(0);
        println!(
            "| {action} | {changed} | {secs:.2} | {} |",
            if secs <= 2.0 { "met" } else { "missed" }
        );
    }

    println!();
    println!("## The plan of the slowest filter (a search that matches nothing)");
    println!();
    let plan: Vec<String> = sqlx::query_scalar(
        "explain (analyze, buffers off, costs off)
         select id from reeltime_filtered_jobs(null, null, null, null, '%matches-nothing-at-all%',
                                               null, null)
         order by created_at desc, id desc limit 51",
    )
    .fetch_all(&pool)
    .await?;
    println!("```");
    for line in plan {
        println!("{line}");
    }
    println!("```");
    super::pages::ssr(server, &pool, samples).await?;
    pool.close().await;
    Ok(())
}

/// `samples` sequential GETs of `path` after five to warm up; their times in ms and the rows
/// (jobs, or statuses) of the last answer.
async fn timed(server: &Server, path: &str, samples: usize) -> Result<(Vec<f64>, usize)> {
    let mut times = Vec::with_capacity(samples);
    let mut rows = 0;
    for i in 0..samples + 5 {
        let at = Instant::now();
        let (status, body) = http(&server.address, "GET", path, None).await?;
        let ms = at.elapsed().as_secs_f64() * 1000.0;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}").into());
        }
        rows = body["jobs"]
            .as_array()
            .map_or_else(|| body.as_object().map_or(0, |o| o.len()), Vec::len);
        if i >= 5 {
            times.push(ms);
        }
    }
    Ok((times, rows))
}
