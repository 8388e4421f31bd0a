//! Benchmarks of the release server (`target/release/reeltime`, built by `cargo xtask build`,
//! or `cargo build --release -p server --bin reeltime` without the browser bundle),
//! each on a fresh database.
//!
//! `cargo run --release -p bench -- sse [--max-clients N]` measures, in one run:
//! - the floor: a bare LISTEN connection receiving the trigger's notification for an update;
//! - the time from just before a single-row update is sent to its event's arrival at every one
//!   of N SSE clients (1, 100, 1,000, 10,000), and at each N the same for the fan-out floor, a
//!   minimal server in a process of its own that writes each change to every socket
//!   (`fanout_floor.rs`);
//! - the highest rate of changes delivered to all of 1,000 clients with no reset;
//! - the server's resident memory per idle client at the largest N.
//!
//! `cargo run --release -p bench -- processor [--rounds N] [--poll-ms N]` measures the built-in
//! processor (one worker) transcoding the 10 s 1080p sample clip with the `video_1280_mp4_high`
//! preset against the same ffmpeg command run directly, alternating the two for N rounds
//! (default 5): the processor's own time (its job's created → finished and started → finished),
//! the dashboard job's time from its insert to the write that made it `succeeded` (both by the
//! database's clock; the job is polled every `--poll-ms`, default 250, only to know when it is
//! done), and their ratio to ffmpeg's. Then (issue 10, `busy.rs`), on a second server with as
//! many workers as cores: `GET /api/jobs`, `GET /login` and `/api/events` latency, `--samples`
//! each (default 200), idle and then with every worker busy on a long job, and their ratio.
//!
//! The database is `DATABASE_URL` (an admin URL; a fresh database is made on it) or
//! postgres://postgres@127.0.0.1:5432/postgres.
//!
//! `cargo run --release -p bench -- operate [--jobs N] [--changes N] [--samples N]` measures
//! filtered pages and bulk actions on a generated table (issue 12; see `operate.rs`), and the
//! dashboard's server-rendered first HTML at a day of change log (issue 16; `pages.rs`).
//!
//! `cargo run --release -p bench -- callbacks [--jobs N] [--concurrency N]` measures signed
//! webhooks per second against the bare `UPDATE … ; NOTIFY` (issue 16; `callbacks.rs`).
//!
//! `cargo run --release -p bench -- first-load` sums what a first visit to the dashboard
//! downloads, gzip and brotli, with each file's `Cache-Control` (issue 16; `first_load.rs`).
//!
//! `cargo run --release -p bench -- chaos [--full] [--only NAME]` is the fault and load suite,
//! on a Postgres cluster of its own (see `chaos/mod.rs` and `docs/reliability.md`).
//!
//! `cargo run --release -p bench -- workers [--jobs N] [--upload-mb N]` measures jobs per
//! minute with one `reeltime worker` process against two, and uploads through `/api/uploads`
//! against a plain PUT to the same S3-compatible store (issue 13; `workers.rs`).
//!
//! Every `/api/*` route needs an account (issue 11): each server the benches start gets an
//! admin and a personal API token written into its database ([`sign_in`]), and every request
//! the benches make carries it ([`authorization`]).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use app::db::users;
use reeltime::{JobKind, Preset, Role, TokenScope};
use serde_json::{json, Value};
use server::processor::media::{ffmpeg_args, file_arg, output_extension, MediaOptions};
use server::processor::sample;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

mod busy;
mod callbacks;
mod chaos;
mod fanout_floor;
mod first_load;
mod operate;
mod pages;
mod processor;
mod sse;
mod workers;

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
            sse::sse(max_clients).await
        }
        Some("fanout-floor") => {
            // Started by `sse` itself: the fan-out floor's own process.
            raise_open_file_limit();
            let database_url = args
                .get(1)
                .ok_or("fanout-floor <database url> <frame bytes>")?;
            let frame_bytes = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1024);
            fanout_floor::serve(database_url, frame_bytes).await
        }
        Some("processor") => {
            let poll = Duration::from_millis(flag("--poll-ms", 250) as u64);
            processor::processor(flag("--rounds", 5).max(1), poll).await?;
            busy::busy(flag("--samples", 200).max(1)).await
        }
        Some("chaos") => chaos::chaos(&args[1..]).await,
        Some("callbacks") => {
            callbacks::callbacks(
                flag("--jobs", 2_000) as i64,
                flag("--concurrency", 8).max(1),
            )
            .await
        }
        Some("first-load") => first_load::first_load().await,
        Some("workers") => {
            workers::workers(flag("--jobs", 6).max(1), flag("--upload-mb", 64).max(1)).await
        }
        Some("operate") => {
            operate::operate(
                flag("--jobs", 100_000),
                flag("--changes", 1_000_000) as i64,
                flag("--samples", 100),
            )
            .await
        }
        _ => {
            eprintln!(
                "usage: cargo run --release -p bench -- sse [--max-clients N]\n       \
                 cargo run --release -p bench -- processor [--rounds N] [--poll-ms N] [--samples N]
       \
                 cargo run --release -p bench -- chaos [--full] [--only NAME]
       \
                 cargo run --release -p bench -- operate [--jobs N] [--changes N] [--samples N]
       \
                 cargo run --release -p bench -- callbacks [--jobs N] [--concurrency N]
       \
                 cargo run --release -p bench -- first-load
       \
                 cargo run --release -p bench -- workers [--jobs N] [--upload-mb N]"
            );
            std::process::exit(2);
        }
    }
}

/// The median, the 95th percentile and the maximum of `times`.
fn percentiles(mut times: Vec<f64>) -> (f64, f64, f64) {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.95), at(1.0))
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

/// The benches' one personal API token, made once per run: [`sign_in`] stores its hash in the
/// database of every server the benches start, so one header serves every server.
static TOKEN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(server::auth::secrets::new_token);

/// The account the token belongs to.
const BENCH_ADMIN: &str = "bench@example.com";

/// The `Authorization` header line (with its CRLF) that every request of the benches sends:
/// the JSON API, the event streams, the page probes. The one place it is built.
pub fn authorization() -> String {
    format!("Authorization: Bearer {}\r\n", *TOKEN)
}

/// An admin and [`TOKEN`] in the (migrated) database at `database_url`, as the server's own
/// tests make them (`server/tests/api/helpers.rs`); nothing if a server before this one on
/// the same database (a restart, a second instance) made them already.
async fn sign_in(database_url: &str) -> Result<()> {
    use server::auth::secrets::{sha256, token_prefix};
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await?;
    if users::user_by_email(&pool, BENCH_ADMIN).await?.is_none() {
        // Nobody signs in with a password: a random one, hashed as the server would.
        let hash = server::auth::password::hash(server::auth::secrets::new_token()).await?;
        let user = users::create_user(&pool, BENCH_ADMIN, &hash, Role::Admin).await?;
        users::create_token(
            &pool,
            user.id,
            "bench",
            TokenScope::Write,
            &sha256(&TOKEN),
            &token_prefix(&TOKEN),
        )
        .await?;
    }
    pool.close().await;
    Ok(())
}

struct Server {
    child: Child,
    address: String,
    pid: u32,
}

/// Starts the server on `database_url`, with `env` on top of the defaults below, and signs the
/// benches in to it ([`sign_in`]) once it is up (its database migrated).
async fn start_server(database_url: &str, env: &[(&str, &str)]) -> Result<Server> {
    let binary = std::env::var("REELTIME_BIN").unwrap_or_else(|_| "target/release/reeltime".into());
    let child = Command::new(&binary)
        .env("DATABASE_URL", database_url)
        .env("REELTIME_PORT", "0")
        .env("RUST_LOG", "warn")
        .env("REELTIME_EVENTS_BUFFER", "4096")
        .env("REELTIME_DB_MAX_CONNECTIONS", "10")
        // These are the benches' own servers, and every request comes from the one bench
        // account: the per-person limits (20 open event streams, 60 submissions a minute by
        // default) would stop the benches' thousands of streams and hundreds of jobs.
        .env("REELTIME_STREAMS_PER_USER", "1000000")
        .env("REELTIME_SUBMISSIONS_PER_MINUTE", "1000000")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {binary}: {e} (build it with `cargo xtask build`)"))?;
    let server = announced(child, "Reeltime is running at http://").await?;
    sign_in(database_url).await?;
    Ok(server)
}

/// A started process (its stdout piped) as a [`Server`], once it has printed the line that
/// starts with `prefix` followed by its address.
async fn announced(mut child: Child, prefix: &str) -> Result<Server> {
    let pid = child.id().unwrap_or(0);
    let mut lines = BufReader::new(child.stdout.take().ok_or("stdout is not piped")?).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(address) = line.strip_prefix(prefix) {
            return Ok(Server {
                child,
                address: address.trim().to_owned(),
                pid,
            });
        }
    }
    Err(format!("the process exited before it printed {prefix:?}").into())
}

/// `run` against a server of its own on a fresh database (`env` on top of the defaults), the
/// server stopped and the database dropped afterwards, whatever `run` answered.
async fn on_fresh_server(
    env: &[(&str, &str)],
    run: impl AsyncFnOnce(&Server, &str) -> Result<()>,
) -> Result<()> {
    let database = Database::create().await?;
    let result = match start_server(&database.url, env).await {
        Ok(mut server) => {
            let result = run(&server, &database.url).await;
            let _ = server.child.start_kill();
            let _ = server.child.wait().await;
            result
        }
        Err(err) => Err(err),
    };
    let dropped = database.drop().await;
    result.and(dropped)
}

/// One request written as is on its own connection; the answer's head and body.
async fn exchange(address: &str, request: &str) -> Result<(String, String)> {
    let (head, body) = exchange_bytes(address, request.as_bytes()).await?;
    Ok((head, String::from_utf8_lossy(&body).into_owned()))
}

/// [`exchange`] with a request of any bytes; the body's bytes as sent (a compressed file, counted).
async fn exchange_bytes(address: &str, request: &[u8]) -> Result<(String, Vec<u8>)> {
    let mut socket = TcpStream::connect(address).await?;
    socket.write_all(request).await?;
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await?;
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "an answer without a body: {:?}",
                String::from_utf8_lossy(&response)
            )
        })?;
    let head = String::from_utf8_lossy(&response[..at]).into_owned();
    Ok((head, response[at + 4..].to_vec()))
}

/// The values of the header `name` in an answer's head, in order.
fn header_values<'a>(head: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
}

/// The status code in an answer's head.
fn status_of(head: &str) -> Result<u16> {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}").into())
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
    p95: f64,
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
        p95: at(0.95),
        p99: at(0.99),
        max: ms(*samples.last().unwrap()),
        samples: samples.len(),
    }
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
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\n{}Accept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        authorization(),
        body.len()
    );
    let (head, body) = exchange(address, &request)
        .await
        .map_err(|err| format!("{method} {path}: {err}"))?;
    let status = status_of(&head).map_err(|err| format!("{method} {path}: {err}"))?;
    let body = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body)
            .map_err(|err| format!("{method} {path}: {status} {body:?}: {err}"))?
    };
    Ok((status, body))
}
