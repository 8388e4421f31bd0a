//! `processor`, second phase (issue 10): the dashboard's latency with every processor worker
//! busy against the same server idle.
//!
//! A fresh database and server with `REELTIME_PROCESSOR_WORKERS` = the number of cores. Once the
//! sample clip is written, the bench measures, idle and then with one long job (the clip with
//! the VP9 `video_720_webm` preset) per worker, all `processing`:
//! - `GET /api/jobs` (the data the dashboard page loads; pages take a session cookie, the bench
//!   a Bearer token) and `GET /login` (a server-rendered page), each `samples` times in a row, one
//!   connection per request, from connect to the end of the response;
//! - `/api/events`: the time from just before an `UPDATE` of a job row the bench inserted to that
//!   change's arrival on an open event stream, `samples` times, one at a time.
//!
//! The busy jobs are cancelled at the end, which stops their ffmpeg (and ffmpeg dies with the
//! server anyway: `PR_SET_PDEATHSIG`, see `server/src/processor/confine.rs`).

use super::*;

/// Busy jobs queued per worker.
const JOBS_PER_WORKER: usize = 4;

/// How many processor workers are checked busy before and after the busy measurements.
struct Busy {
    workers: usize,
    at_start: usize,
    at_end: usize,
}

/// One phase's figures for the three probes.
struct Phase {
    jobs: Stats,
    login: Stats,
    events: Stats,
}

pub(crate) async fn busy(samples: usize) -> Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let database = Database::create().await?;
    let dir = std::env::temp_dir().join(format!("reeltime_bench_busy_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = match std::fs::create_dir_all(&dir) {
        Ok(()) => {
            let data_dir = dir.to_string_lossy().into_owned();
            let workers_text = workers.to_string();
            let env = [
                ("REELTIME_DATA_DIR", data_dir.as_str()),
                ("REELTIME_PROCESSOR", "on"),
                ("REELTIME_PROCESSOR_WORKERS", workers_text.as_str()),
                ("REELTIME_SAMPLE_CLIP", "on"),
            ];
            match start_server(&database.url, &env).await {
                Ok(mut server) => {
                    println!(
                        "busy phase: server pid {} at {}, {workers} workers",
                        server.pid, server.address
                    );
                    let result = measure(&server, &database.url, &dir, workers, samples).await;
                    let _ = server.child.start_kill();
                    let _ = server.child.wait().await;
                    result
                }
                Err(err) => Err(err),
            }
        }
        Err(err) => Err(format!("could not create {}: {err}", dir.display()).into()),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let dropped = database.drop().await;
    result.and(dropped)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn measure(
    server: &Server,
    database_url: &str,
    dir: &Path,
    workers: usize,
    samples: usize,
) -> Result<()> {
    processor::wait_for_clip(dir).await?;
    // The clip is made by ffmpeg on the server's cores: let that settle before the idle phase.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(database_url)
        .await?;
    // The row whose updates are timed on the event stream; the same statement as the `sse` bench.
    let row = sqlx::query_scalar!(
        "insert into jobs (input_url) values ('https://example.com/bench.mp4') returning id"
    )
    .fetch_one(&pool)
    .await?;
    let after = app::db::log_position(&pool).await?.to_string();
    let (arrive_tx, mut arrivals) = mpsc::unbounded_channel();
    let (reset_tx, mut resets) = mpsc::unbounded_channel();
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    let stream = tokio::spawn(sse::client(
        server.address.clone(),
        after,
        ready_tx,
        arrive_tx,
        reset_tx,
    ));
    tokio::time::timeout(Duration::from_secs(30), ready.recv())
        .await
        .map_err(|_| "the event stream did not open in 30 s")?;
    let mut marker = 0u32;

    println!("idle: load average {}", load_average());
    let idle = phase(
        server,
        &pool,
        row,
        &mut marker,
        &mut arrivals,
        samples,
        "idle",
    )
    .await?;

    // Every worker busy: a queue of long jobs, four per worker, so a worker that finishes one
    // takes the next (ffmpeg's own threads encode the clip in about 10 s here).
    let input_url = format!("http://{}{}/{}", server.address, sample::PATH, sample::NAME);
    let preset = Preset::Video720Webm;
    let submission = json!({ "input_url": input_url, "preset": preset.id() });
    let mut ids = Vec::with_capacity(workers * JOBS_PER_WORKER);
    for _ in 0..workers * JOBS_PER_WORKER {
        let (status, job) = http(&server.address, "POST", "/api/jobs", Some(&submission)).await?;
        if status != 201 {
            return Err(format!("POST /api/jobs: {status} {job}").into());
        }
        ids.push(
            job["id"]
                .as_str()
                .ok_or("POST /api/jobs: no id")?
                .to_owned(),
        );
    }
    let waiting = Instant::now();
    loop {
        let processing = processing(&server.address, &ids).await?;
        if processing == workers {
            break;
        }
        if waiting.elapsed() > Duration::from_secs(120) {
            return Err(
                format!("{processing} of {workers} jobs processing after 2 minutes").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "all {workers} jobs ({}) processing after {:.1} s",
        preset.id(),
        waiting.elapsed().as_secs_f64()
    );
    // Let ffmpeg get past its start-up (and ffprobe) into the steady encode.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at_start = processing(&server.address, &ids).await?;
    println!("busy: load average {}", load_average());
    let busy_started = Instant::now();
    let busy = phase(
        server,
        &pool,
        row,
        &mut marker,
        &mut arrivals,
        samples,
        "busy",
    )
    .await?;
    let at_end = processing(&server.address, &ids).await?;
    println!(
        "busy phase took {:.1} s; load average {}",
        busy_started.elapsed().as_secs_f64(),
        load_average()
    );
    let reset_count = std::iter::from_fn(|| resets.try_recv().ok()).count();
    stream.abort();

    for id in &ids {
        let path = format!("/api/jobs/{id}/cancel");
        let (status, body) = http(&server.address, "POST", &path, None).await?;
        if status != 200 {
            println!("POST {path}: {status} {body}");
        }
    }
    let waiting = Instant::now();
    while processing(&server.address, &ids).await? > 0 && waiting.elapsed().as_secs() < 30 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    pool.close().await;

    report(
        &idle,
        &busy,
        &Busy {
            workers,
            at_start,
            at_end,
        },
        reset_count,
    );
    Ok(())
}

/// How many of the jobs `ids` the dashboard shows as `processing`.
/// How many of the busy jobs are processing (the rest wait their turn, or are done).
async fn processing(address: &str, ids: &[String]) -> Result<usize> {
    let mut count = 0;
    for id in ids {
        let path = format!("/api/jobs/{id}");
        let (status, job) = http(address, "GET", &path, None).await?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {job}").into());
        }
        match job["status"].as_str() {
            Some("processing") => count += 1,
            Some("failed") => {
                return Err(format!("job {id} failed during the busy phase: {job}").into())
            }
            _ => {}
        }
    }
    Ok(count)
}

async fn phase(
    server: &Server,
    pool: &PgPool,
    row: uuid::Uuid,
    marker: &mut u32,
    arrivals: &mut mpsc::UnboundedReceiver<(u32, Instant)>,
    samples: usize,
    name: &str,
) -> Result<Phase> {
    let mut jobs = Vec::with_capacity(samples);
    for _ in 0..samples {
        jobs.push(timed_get(&server.address, "/api/jobs", "application/json").await?);
    }
    let mut login = Vec::with_capacity(samples);
    for _ in 0..samples {
        login.push(timed_get(&server.address, "/login", "text/html").await?);
    }
    let mut events = Vec::with_capacity(samples);
    while events.len() < samples {
        *marker += 1;
        let started = Instant::now();
        sqlx::query!(
            "update jobs set error = $1 where id = $2",
            format!("m{marker}"),
            row
        )
        .execute(pool)
        .await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), arrivals.recv()).await {
                Ok(Some((k, at))) if k == *marker => {
                    events.push(at.duration_since(started));
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err("the event stream closed".into()),
                Err(_) => {
                    return Err(format!("{name}: change m{marker} not on the stream in 5 s").into())
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Phase {
        jobs: stats(jobs),
        login: stats(login),
        events: stats(events),
    })
}

/// One `GET` on a fresh connection (HTTP/1.0, so the response ends at close), from connect to
/// the last byte; an error unless it is a 200.
async fn timed_get(address: &str, path: &str, accept: &str) -> Result<Duration> {
    let started = Instant::now();
    let mut socket = TcpStream::connect(address).await?;
    socket
        .write_all(
            format!(
                "GET {path} HTTP/1.0\r\nHost: {address}\r\n{}Accept: {accept}\r\n\r\n",
                authorization()
            )
            .as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await?;
    let elapsed = started.elapsed();
    let head = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
    if head.split_whitespace().nth(1) != Some("200") {
        return Err(format!("GET {path}: {head:?}").into());
    }
    Ok(elapsed)
}

fn report(idle: &Phase, busy: &Phase, workers: &Busy, resets: usize) {
    println!();
    println!("## Dashboard latency, idle vs every processor worker busy (ms)");
    println!();
    println!(
        "{} workers; busy jobs processing: {}/{} before the busy measurements, {}/{} after; \
         event-stream resets: {resets}",
        workers.workers, workers.at_start, workers.workers, workers.at_end, workers.workers
    );
    println!();
    println!("| probe | samples | idle p50 | busy p50 | × | idle p95 | busy p95 | × | idle p99 | busy p99 | × | target ≤ 2× |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    let rows = [
        ("GET /api/jobs", &idle.jobs, &busy.jobs),
        ("GET /login", &idle.login, &busy.login),
        ("/api/events, update → event", &idle.events, &busy.events),
    ];
    for (name, i, b) in rows {
        let ratios = [b.p50 / i.p50, b.p95 / i.p95, b.p99 / i.p99];
        let missed: Vec<&str> = ["p50", "p95", "p99"]
            .into_iter()
            .zip(ratios)
            .filter(|(_, r)| *r > 2.0)
            .map(|(q, _)| q)
            .collect();
        let verdict = if missed.is_empty() {
            "met".to_owned()
        } else {
            format!("missed ({})", missed.join(", "))
        };
        println!(
            "| {name} | {} | {:.3} | {:.3} | {:.2} | {:.3} | {:.3} | {:.2} | {:.3} | {:.3} | {:.2} | {verdict} |",
            b.samples, i.p50, b.p50, ratios[0], i.p95, b.p95, ratios[1], i.p99, b.p99, ratios[2]
        );
    }
    if workers.at_start < workers.workers || workers.at_end < workers.workers {
        println!();
        println!("NOTE: not every worker was busy for the whole busy phase; the busy figures are suspect");
    }
}
