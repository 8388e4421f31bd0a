//! Benchmarks of the release server (`target/release/reeltime`, built by `cargo leptos build
//! --release`, or `cargo build --release -p server --bin reeltime` without the browser bundle),
//! each on a fresh database.
//!
//! `cargo run --release -p bench -- sse [--max-clients N]` measures, in one run:
//! - the floor: a bare LISTEN connection receiving the trigger's notification for an update;
//! - the time from just before a single-row update is sent to its event's arrival at every one
//!   of N SSE clients (1, 100, 1,000, 10,000);
//! - the highest rate of changes delivered to all of 1,000 clients with no reset;
//! - the server's resident memory per idle client at the largest N.
//!
//! `cargo run --release -p bench -- processor [--rounds N] [--poll-ms N]` measures the built-in
//! processor (one worker) transcoding the 10 s 1080p sample clip with the `video_1280_mp4_high`
//! preset against the same ffmpeg command run directly, alternating the two for N rounds
//! (default 5): the processor's own time (its job's created → finished and started → finished),
//! the dashboard job's time from its insert to the write that made it `succeeded` (both by the
//! database's clock; the job is polled every `--poll-ms`, default 250, only to know when it is
//! done), and their ratio to ffmpeg's.
//!
//! The database is `DATABASE_URL` (an admin URL; a fresh database is made on it) or
//! postgres://postgres@127.0.0.1:5432/postgres.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reeltime::{JobKind, Preset};
use serde_json::{json, Value};
use server::processor::media::{ffmpeg_args, file_arg, output_extension, MediaOptions};
use server::processor::sample;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a number"))
            })
            .unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("sse") => {
            let max_clients = flag("--max-clients", 10_000);
            raise_open_file_limit();
            sse(max_clients).await
        }
        Some("processor") => {
            let poll = Duration::from_millis(flag("--poll-ms", 250) as u64);
            processor(flag("--rounds", 5).max(1), poll).await
        }
        _ => {
            eprintln!(
                "usage: cargo run --release -p bench -- sse [--max-clients N]\n       \
                 cargo run --release -p bench -- processor [--rounds N] [--poll-ms N]"
            );
            std::process::exit(2);
        }
    }
}

fn raise_open_file_limit() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            println!("open-file limit: {}", limit.rlim_cur);
        }
    }
}

struct Server {
    child: Child,
    address: String,
    pid: u32,
}

/// Starts the server on `database_url`, with `env` on top of the defaults below.
async fn start_server(database_url: &str, env: &[(&str, &str)]) -> Result<Server> {
    let binary = std::env::var("REELTIME_BIN").unwrap_or_else(|_| "target/release/reeltime".into());
    let mut child = Command::new(&binary)
        .env("DATABASE_URL", database_url)
        .env("REELTIME_PORT", "0")
        .env("RUST_LOG", "warn")
        .env("REELTIME_EVENTS_BUFFER", "4096")
        .env("REELTIME_DB_MAX_CONNECTIONS", "10")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!("starting {binary}: {e} (build it with `cargo leptos build --release`)")
        })?;
    let pid = child.id().unwrap_or(0);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(url) = line.strip_prefix("Reeltime is running at http://") {
            return Ok(Server {
                child,
                address: url.trim().to_owned(),
                pid,
            });
        }
    }
    Err("the server exited before it was ready".into())
}

/// A fresh database on `DATABASE_URL`'s server, dropped by [`Database::drop`].
struct Database {
    admin: PgConnection,
    name: String,
    url: String,
}

impl Database {
    async fn create() -> Result<Database> {
        let admin = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("reeltime_bench_{}", std::process::id());
        let mut conn = PgConnection::connect(&admin).await?;
        conn.execute(sqlx::AssertSqlSafe(format!(
            "drop database if exists {name}"
        )))
        .await?;
        conn.execute(sqlx::AssertSqlSafe(format!("create database {name}")))
            .await?;
        let mut url = url::Url::parse(&admin)?;
        url.set_path(&name);
        Ok(Database {
            admin: conn,
            name,
            url: url.to_string(),
        })
    }

    async fn drop(mut self) -> Result<()> {
        self.admin
            .execute(sqlx::AssertSqlSafe(format!(
                "drop database if exists {} with (force)",
                self.name
            )))
            .await?;
        Ok(())
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Copy)]
struct Stats {
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(samples[((samples.len() as f64 - 1.0) * q).round() as usize]);
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: ms(*samples.last().unwrap()),
        samples: samples.len(),
    }
}

/// An SSE client on a raw socket: reports (marker, arrival time) for every `"error":"m<k>"`
/// it sees, and whether it ever got a reset.
async fn client(
    address: String,
    after: String,
    arrivals: mpsc::UnboundedSender<(u32, Instant)>,
    resets: mpsc::UnboundedSender<()>,
) -> Result<()> {
    let mut socket = TcpStream::connect(&address).await?;
    socket
        .write_all(
            format!("GET /api/events?after={after} HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut buffer = vec![0u8; 16 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    const MARK: &[u8] = b"\"error\":\"m";
    loop {
        let n = socket.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        let now = Instant::now();
        carry.extend_from_slice(&buffer[..n]);
        let mut consumed = 0;
        let mut i = 0;
        while i + MARK.len() < carry.len() {
            if carry[i..].starts_with(b"event: reset") {
                let _ = resets.send(());
            }
            if carry[i..].starts_with(MARK) {
                let digits = &carry[i + MARK.len()..];
                let end = digits.iter().position(|b| !b.is_ascii_digit());
                let Some(end) = end else { break };
                if let Ok(k) = std::str::from_utf8(&digits[..end]).unwrap().parse::<u32>() {
                    let _ = arrivals.send((k, now));
                }
                i += MARK.len() + end;
                consumed = i;
                continue;
            }
            i += 1;
        }
        // Keep a tail in case a marker straddles two reads.
        let keep_from = consumed.max(carry.len().saturating_sub(64));
        carry.drain(..keep_from);
    }
}

struct Clients {
    arrivals: mpsc::UnboundedReceiver<(u32, Instant)>,
    resets: mpsc::UnboundedReceiver<()>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
}

async fn connect_clients(address: &str, after: &str, n: usize) -> Result<Clients> {
    let (arrive_tx, arrivals) = mpsc::unbounded_channel();
    let (reset_tx, resets) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(500) {
        for _ in 0..500.min(n - chunk * 500) {
            tasks.push(tokio::spawn(client(
                address.to_owned(),
                after.to_owned(),
                arrive_tx.clone(),
                reset_tx.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let every stream settle (headers, retry preamble).
    tokio::time::sleep(Duration::from_millis(500 + n as u64 / 10)).await;
    Ok(Clients {
        arrivals,
        resets,
        tasks,
    })
}

async fn position(pool: &PgPool) -> Result<String> {
    Ok(app::db::log_position(pool).await?.to_string())
}

async fn sse(max_clients: usize) -> Result<()> {
    let database = Database::create().await?;
    let database_url = database.url.clone();

    let mut server = start_server(&database_url, &[]).await?;
    println!("server pid {} at {}", server.pid, server.address);
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // Measure the feed, not the disk's fsync.
                conn.execute("set synchronous_commit = off").await?;
                Ok(())
            })
        })
        .connect(&database_url)
        .await?;
    let job = sqlx::query_scalar!(
        "insert into jobs (input_url) values ('https://example.com/bench.mp4') returning id"
    )
    .fetch_one(&pool)
    .await?;
    let mut marker: u32 = 0;

    // The floor: LISTEN, update, wait for the notification.
    let mut listener = PgListener::connect(&database_url).await?;
    listener.listen("reeltime_job_changes").await?;
    let mut floor = Vec::new();
    for _ in 0..300 {
        marker += 1;
        let started = Instant::now();
        sqlx::query!(
            "update jobs set error = $1 where id = $2",
            format!("m{marker}"),
            job
        )
        .execute(&pool)
        .await?;
        listener.recv().await?;
        floor.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(listener);
    let floor = stats(floor);

    let mut rows = Vec::new();
    let idle_before = rss_kib(server.pid);
    let mut memory = None;
    for n in [1usize, 100, 1_000, 10_000] {
        if n > max_clients {
            break;
        }
        let after = position(&pool).await?;
        let mut clients = connect_clients(&server.address, &after, n).await?;
        if n == max_clients.min(10_000) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let rss = rss_kib(server.pid);
            memory = Some((n, idle_before, rss));
        }
        let (updates, spacing) = match n {
            1 => (300, 10),
            100 => (200, 20),
            1_000 => (100, 50),
            _ => (30, 250),
        };
        let mut sent: HashMap<u32, Instant> = HashMap::new();
        for _ in 0..updates {
            marker += 1;
            let started = Instant::now();
            sent.insert(marker, started);
            sqlx::query!(
                "update jobs set error = $1 where id = $2",
                format!("m{marker}"),
                job
            )
            .execute(&pool)
            .await?;
            tokio::time::sleep(Duration::from_millis(spacing)).await;
        }
        let expected = updates * n;
        let mut latencies = Vec::with_capacity(expected);
        let deadline = Instant::now() + Duration::from_secs(30);
        while latencies.len() < expected && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), clients.arrivals.recv()).await {
                Ok(Some((k, at))) => {
                    if let Some(started) = sent.get(&k) {
                        latencies.push(at.duration_since(*started));
                    }
                }
                _ => break,
            }
        }
        let resets = std::iter::from_fn(|| clients.resets.try_recv().ok()).count();
        let got = latencies.len();
        let s = stats(latencies);
        rows.push((n, s, got, expected, resets));
        for task in clients.tasks {
            task.abort();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Throughput: the highest rate every one of 1,000 clients receives in full, with no reset.
    let mut best = None;
    let fan_out = 1_000.min(max_clients);
    for rate in [100u32, 200, 400, 800, 1_600, 3_200] {
        let after = position(&pool).await?;
        let mut clients = connect_clients(&server.address, &after, fan_out).await?;
        let seconds = 2;
        let total = rate * seconds;
        let first = marker + 1;
        let started = Instant::now();
        let mut handles = Vec::new();
        for i in 0..total {
            marker += 1;
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
            let pool = pool.clone();
            let m = marker;
            handles.push(tokio::spawn(async move {
                sqlx::query!(
                    "update jobs set error = $1 where id = (select id from jobs limit 1)",
                    format!("m{m}")
                )
                .execute(&pool)
                .await
            }));
        }
        for h in handles {
            h.await??;
        }
        let sending = started.elapsed();
        let expected = (total as usize) * fan_out;
        let mut received = 0usize;
        loop {
            match tokio::time::timeout(Duration::from_secs(3), clients.arrivals.recv()).await {
                Ok(Some((k, _))) if k >= first => received += 1,
                Ok(Some(_)) => {}
                _ => break,
            }
            if received == expected {
                break;
            }
        }
        let resets = std::iter::from_fn(|| clients.resets.try_recv().ok()).count();
        let achieved = total as f64 / sending.as_secs_f64();
        let ok = received == expected && resets == 0;
        println!(
            "throughput: {rate}/s asked, {achieved:.0}/s sent, {received}/{expected} delivered, {resets} resets -> {}",
            if ok { "ok" } else { "NOT OK" }
        );
        for task in clients.tasks {
            task.abort();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if ok {
            best = Some(achieved);
        } else {
            break;
        }
    }

    println!();
    println!("## SSE latency, update sent -> event received (ms)");
    println!();
    println!("| clients | samples | p50 | p99 | max | p50 / floor p50 | p99 / floor p99 | delivered | resets |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| floor (bare LISTEN) | {} | {:.3} | {:.3} | {:.3} | 1.0 | 1.0 | | |",
        floor.samples, floor.p50, floor.p99, floor.max
    );
    for (n, s, got, expected, resets) in &rows {
        println!(
            "| {n} | {} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {got}/{expected} | {resets} |",
            s.samples,
            s.p50,
            s.p99,
            s.max,
            s.p50 / floor.p50,
            s.p99 / floor.p99
        );
    }
    println!();
    match best {
        Some(rate) => println!("Highest rate delivered in full to {fan_out} clients with no reset: {rate:.0} changes/s"),
        None => println!("Not even 100 changes/s reached all {fan_out} clients in full"),
    }
    if let Some((n, before, after)) = memory {
        println!(
            "Server RSS: {before} KiB idle, {after} KiB with {n} idle clients -> {:.1} KiB per idle client",
            (after.saturating_sub(before)) as f64 / n as f64
        );
    }

    let _ = server.child.start_kill();
    let _ = server.child.wait().await;
    pool.close().await;
    database.drop().await
}

/// `processor`: the built-in processor against the same ffmpeg command run directly.
async fn processor(rounds: usize, poll: Duration) -> Result<()> {
    let database = Database::create().await?;
    let dir = std::env::temp_dir().join(format!("reeltime_bench_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = match std::fs::create_dir_all(&dir) {
        Ok(()) => {
            let data_dir = dir.to_string_lossy().into_owned();
            let env = [
                ("REELTIME_DATA_DIR", data_dir.as_str()),
                ("REELTIME_PROCESSOR", "on"),
                ("REELTIME_PROCESSOR_WORKERS", "1"),
                ("REELTIME_SAMPLE_CLIP", "on"),
            ];
            match start_server(&database.url, &env).await {
                Ok(mut server) => {
                    println!("server pid {} at {}", server.pid, server.address);
                    let result = processor_rounds(&server, &database.url, &dir, rounds, poll).await;
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

/// One round's figures, in seconds.
struct Round {
    direct: f64,
    created_finished: f64,
    started_finished: f64,
    end_to_end: f64,
}

async fn processor_rounds(
    server: &Server,
    database_url: &str,
    dir: &Path,
    rounds: usize,
    poll: Duration,
) -> Result<()> {
    let version = Command::new("ffmpeg").arg("-version").output().await?;
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("ffmpeg: no version line")
        .to_owned();

    // The server writes the sample clip in the background at start (to a `.part`, then renamed).
    let clip = dir.join("samples").join(sample::NAME);
    let waiting = Instant::now();
    while !clip.exists() {
        if waiting.elapsed() > Duration::from_secs(120) {
            return Err(format!("no sample clip at {} after 2 minutes", clip.display()).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "sample clip ready after {:.1} s: {} ({} bytes)",
        waiting.elapsed().as_secs_f64(),
        clip.display(),
        std::fs::metadata(&clip)?.len()
    );

    let preset = Preset::Video1280Mp4High;
    let options = MediaOptions::parse(JobKind::Video, &preset.options())?;
    let direct_output = dir.join(format!("direct.{}", output_extension(&options)));
    let args = ffmpeg_args(&options, &file_arg(&clip), &file_arg(&direct_output));
    println!("direct: ffmpeg {}", args.join(" "));

    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await?;
    let input_url = format!("http://{}{}/{}", server.address, sample::PATH, sample::NAME);
    let submission = json!({ "input_url": input_url, "preset": preset.id() });

    let mut results = Vec::with_capacity(rounds);
    let mut processor_width = None;
    for round in 0..rounds {
        // Alternate which goes first, to spread cache and clock effects over both.
        let mut direct = None;
        let mut processed = None;
        for step in 0..2 {
            if (round + step) % 2 == 0 {
                direct = Some(run_direct(&args, &direct_output).await?);
            } else {
                let run = run_processor(&server.address, &submission, &pool, poll).await?;
                processor_width = Some(run.width);
                processed = Some(run);
            }
            // Let the other side's leftovers (webhooks, page cache writeback) settle.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (direct, processed) = (direct.unwrap(), processed.unwrap());
        println!(
            "round {}: direct {direct:.3} s, processor {:.3} s (started -> finished {:.3} s), \
             end to end {:.3} s",
            round + 1,
            processed.created_finished,
            processed.started_finished,
            processed.end_to_end
        );
        results.push(Round {
            direct,
            created_finished: processed.created_finished,
            started_finished: processed.started_finished,
            end_to_end: processed.end_to_end,
        });
    }
    pool.close().await;
    let direct_width = probe_width(&direct_output).await?;

    let column = |f: fn(&Round) -> f64| median(results.iter().map(f).collect());
    let direct = column(|r| r.direct);
    let created_finished = column(|r| r.created_finished);
    let started_finished = column(|r| r.started_finished);
    let end_to_end = column(|r| r.end_to_end);

    println!();
    println!("## Built-in processor vs ffmpeg run directly (s)");
    println!();
    println!("{version}");
    println!(
        "one processor worker; the dashboard job polled every {} ms",
        poll.as_millis()
    );
    println!(
        "output width: {direct_width} (direct, ffprobe), {} (processor, output_width)",
        processor_width.map_or("?".to_owned(), |w| w.to_string())
    );
    println!();
    println!("| round | direct ffmpeg | processor, created → finished | processor, started → finished | end to end |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for (i, r) in results.iter().enumerate() {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            i + 1,
            r.direct,
            r.created_finished,
            r.started_finished,
            r.end_to_end
        );
    }
    println!(
        "| median | {direct:.3} | {created_finished:.3} | {started_finished:.3} | {end_to_end:.3} |"
    );
    println!();
    let ratio = created_finished / direct;
    let overhead = (ratio - 1.0) * 100.0;
    println!(
        "processor (created → finished) / direct, medians: {ratio:.3} -> overhead {overhead:+.1} % \
         (target ≤ 5 %: {})",
        if overhead <= 5.0 { "met" } else { "missed" }
    );
    println!(
        "started → finished / direct: {:.3}; end to end / direct: {:.3}",
        started_finished / direct,
        end_to_end / direct
    );
    if direct_width != 1280 || processor_width != Some(1280) {
        return Err("an output is not 1280 wide".into());
    }
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Runs ffmpeg with `args`; the wall-clock time from spawn to exit, in seconds.
async fn run_direct(args: &[String], output: &Path) -> Result<f64> {
    let _ = std::fs::remove_file(output);
    let started = Instant::now();
    // `output()` drains stdout (`-progress pipe:1`) and stderr while ffmpeg runs.
    let run = Command::new("ffmpeg")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    if !run.status.success() {
        return Err(format!(
            "ffmpeg failed ({}): {}",
            run.status,
            String::from_utf8_lossy(&run.stderr).trim()
        )
        .into());
    }
    Ok(elapsed)
}

/// One job through the dashboard and the built-in processor, in seconds.
struct Processed {
    created_finished: f64,
    started_finished: f64,
    end_to_end: f64,
    width: u64,
}

async fn run_processor(
    address: &str,
    submission: &Value,
    pool: &PgPool,
    poll: Duration,
) -> Result<Processed> {
    let started = Instant::now();
    let (status, job) = http(address, "POST", "/api/jobs", Some(submission)).await?;
    if status != 201 {
        return Err(format!("POST /api/jobs: {status} {job}").into());
    }
    let id = job["id"]
        .as_str()
        .ok_or("POST /api/jobs: no id")?
        .to_owned();
    let path = format!("/api/jobs/{id}");
    let job = loop {
        let (status, job) = http(address, "GET", &path, None).await?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {job}").into());
        }
        match job["status"].as_str() {
            Some("succeeded") => break job,
            Some(end @ ("failed" | "cancelled")) => {
                return Err(format!("job {id} {end}: {}", job["error"]).into());
            }
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("job {id} did not finish in 10 minutes: {job}").into());
        }
        tokio::time::sleep(poll).await;
    };
    // End to end by the database's clock: from the insert to the write that made the job
    // succeeded (the last write to a finished job), so the polling interval does not matter.
    let end_to_end = sqlx::query_scalar!(
        r#"select extract(epoch from updated_at - created_at)::float8 as "seconds!"
         from jobs where id = $1::text::uuid"#,
        id
    )
    .fetch_one(pool)
    .await?;
    let width = job["output_width"]
        .as_u64()
        .ok_or_else(|| format!("job {id} has no output_width: {job}"))?;
    let times = sqlx::query!(
        r#"select extract(epoch from finished_at - created_at)::float8 as "created_finished!",
                extract(epoch from finished_at - started_at)::float8 as "started_finished!"
         from processor_jobs where metadata->>'job_id' = $1"#,
        id
    )
    .fetch_one(pool)
    .await?;
    Ok(Processed {
        created_finished: times.created_finished,
        started_finished: times.started_finished,
        end_to_end,
        width,
    })
}

/// A one-shot HTTP/1.0 request (so the body ends when the server closes the connection);
/// the status and the body as JSON (`null` when empty).
async fn http(
    address: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut socket = TcpStream::connect(address).await?;
    socket
        .write_all(
            format!(
                "{method} {path} HTTP/1.0\r\nHost: {address}\r\nAccept: application/json\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: a response without a body: {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no status in {head:?}"))?;
    let body = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body)
            .map_err(|err| format!("{method} {path}: {status} {body:?}: {err}"))?
    };
    Ok((status, body))
}

/// The width of the first video stream of a local file, from ffprobe.
async fn probe_width(path: &Path) -> Result<u64> {
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=width", "-of", "csv=p=0"])
        .arg(format!("file:{}", path.display()))
        .output()
        .await?;
    let text = String::from_utf8_lossy(&probe.stdout);
    Ok(text
        .trim()
        .parse()
        .map_err(|err| format!("ffprobe {}: {text:?}: {err}", path.display()))?)
}
