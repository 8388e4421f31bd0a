//! The change feed under faults and load: the server killed mid-stream, Postgres restarted,
//! a reconnect storm, and (full form) thousands of idle clients for ten minutes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::watch;

use super::clients::{self, Shared};
use super::pg::PrivatePg;
use super::{free_port, wait_for, Outcome, Size};
use crate::{rss_kib, start_server, stats, Result, Server};

/// `jobs` rows the writers update, in one statement.
async fn seed_jobs(pool: &PgPool, n: i64) -> Result<Vec<uuid::Uuid>> {
    Ok(sqlx::query_scalar!(
        "insert into jobs (input_url) select 'https://example.com/chaos-' || g || '.mp4'
         from generate_series(1, $1::bigint) g returning id",
        n
    )
    .fetch_all(pool)
    .await?)
}

/// Update job `k % jobs` to carry marker `k`, once: a retry after an error that hid a commit
/// changes nothing (and so sends nothing).
async fn write_marker(pool: &PgPool, jobs: &[uuid::Uuid], k: u64) -> Result<()> {
    let id = jobs[k as usize % jobs.len()];
    sqlx::query!(
        "update jobs set error = $1 where id = $2 and error is distinct from $1",
        format!("m{k}"),
        id
    )
    .execute(pool)
    .await?;
    Ok(())
}

async fn position(pool: &PgPool) -> Result<String> {
    Ok(app::db::log_position(pool).await?.to_string())
}

fn snapshot(clients: &[Shared]) -> Vec<clients::Seen> {
    clients.iter().map(|c| c.lock().unwrap().clone()).collect()
}

/// How many clients saw exactly `1..=n`, in order, once each, with no reset.
fn exact(seen: &[clients::Seen], n: u64) -> usize {
    let expected: Vec<u64> = (1..=n).collect();
    seen.iter()
        .filter(|s| s.resets == 0 && s.markers == expected)
        .count()
}

async fn server_on(url: &str, port: u16, env: &[(&str, &str)]) -> Result<Server> {
    let port = port.to_string();
    let mut all = vec![
        ("REELTIME_PORT", port.as_str()),
        ("REELTIME_PROCESSOR", "off"),
        ("RUST_LOG", "error"),
    ];
    all.extend_from_slice(env);
    start_server(url, &all).await
}

/// The server is killed with SIGKILL and restarted while updates are written and clients
/// follow: every client, reconnecting with `Last-Event-ID`, applies every change once, in
/// order.
pub async fn sigkill(size: Size) -> Result<Outcome> {
    let (updates, n_clients) = size.pick((300u64, 20usize), (1_000, 100));
    let pg = PrivatePg::start().await?;
    let url = pg.database("chaos").await?;
    let port = free_port()?;
    let mut server = server_on(&url, port, &[]).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await?;
    let jobs = seed_jobs(&pool, 10).await?;
    let start = position(&pool).await?;
    let (stop_tx, stop) = watch::channel(false);
    let followers: Vec<Shared> = (0..n_clients)
        .map(|_| clients::spawn(server.address.clone(), Some(start.clone()), stop.clone()))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let kill_at = updates / 3;
    let mut downtime = Duration::ZERO;
    for k in 1..=updates {
        write_marker(&pool, &jobs, k).await?;
        if k == kill_at {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(server.pid as i32, libc::SIGKILL) };
            let _ = server.child.wait().await;
            let down = Instant::now();
            server = server_on(&url, port, &[]).await?;
            downtime = down.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let caught_up = wait_for(
        Duration::from_secs(60),
        "every client caught up",
        || async {
            let all = snapshot(&followers).iter().all(|s| {
                s.markers.last() == Some(&updates) || s.view.values().any(|k| *k == updates)
            });
            Ok(all.then_some(()))
        },
    )
    .await;
    let _ = stop_tx.send(true);
    let seen = snapshot(&followers);
    let good = exact(&seen, updates);
    let resets: usize = seen.iter().map(|s| s.resets).sum();
    let reconnects: usize = seen.iter().map(|s| s.reconnects).sum();
    let duplicates: usize = seen
        .iter()
        .map(|s| s.markers.len().saturating_sub(dedup_len(&s.markers)))
        .sum();
    let missing: usize = seen
        .iter()
        .map(|s| (updates as usize).saturating_sub(dedup_len(&s.markers)))
        .sum();
    Ok(Outcome {
        scenario: "sigkill",
        done: format!(
            "{updates} updates by SQL, {n_clients} SSE clients, SIGKILL at update {kill_at}, restart on the same port"
        ),
        figures: format!(
            "back in {:.0} ms; {reconnects} reconnects; {good}/{n_clients} clients applied all {updates} once, in order",
            downtime.as_secs_f64() * 1000.0
        ),
        lost: format!("{missing} missing, {duplicates} duplicated, {resets} resets"),
        passed: caught_up.is_ok() && good == n_clients,
    })
}

fn dedup_len(markers: &[u64]) -> usize {
    let mut sorted = markers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len()
}

/// Postgres is restarted (fast, then immediate shutdown) while updates are written and
/// clients follow: the server stays up, its listener reconnects, every client ends showing
/// every job's last change, and a client that was not reset saw every change once, in order.
pub async fn postgres_restart(size: Size) -> Result<Outcome> {
    let (updates, n_clients) = size.pick((300u64, 20usize), (1_000, 100));
    let pg = PrivatePg::start().await?;
    let url = pg.database("chaos").await?;
    let mut server = server_on(&url, free_port()?, &[]).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&url)
        .await?;
    let jobs = seed_jobs(&pool, 10).await?;
    let start = position(&pool).await?;
    let (stop_tx, stop) = watch::channel(false);
    let followers: Vec<Shared> = (0..n_clients)
        .map(|_| clients::spawn(server.address.clone(), Some(start.clone()), stop.clone()))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let pg = std::sync::Arc::new(pg);
    let mut failed_writes = 0;
    let mut restarts = Vec::new();
    let mut restarting: Option<tokio::task::JoinHandle<Result<String>>> = None;
    for k in 1..=updates {
        if k == updates / 3 || k == 2 * updates / 3 {
            if let Some(previous) = restarting.take() {
                restarts.push(previous.await??);
            }
            let mode = if k == updates / 3 {
                "fast"
            } else {
                "immediate"
            };
            // In the background: the writer goes on writing (and retrying) meanwhile.
            let pg = pg.clone();
            restarting = Some(tokio::task::spawn_blocking(move || {
                let began = Instant::now();
                pg.restart(mode)?;
                Ok(format!("{mode} {:.1} s", began.elapsed().as_secs_f64()))
            }));
        }
        // Retried until it lands: the database may be on its way back.
        while let Err(err) = write_marker(&pool, &jobs, k).await {
            failed_writes += 1;
            if failed_writes > 2_000 {
                return Err(format!("writes keep failing: {err}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    if let Some(last) = restarting.take() {
        restarts.push(last.await??);
    }
    // The last marker of every job, as the database holds it.
    let truth: HashMap<String, u64> = sqlx::query!("select id, error from jobs")
        .fetch_all(&pool)
        .await?
        .into_iter()
        .filter_map(|row| {
            Some((
                row.id.to_string(),
                row.error?.strip_prefix('m')?.parse().ok()?,
            ))
        })
        .collect();
    let converged = wait_for(
        Duration::from_secs(90),
        "every client shows the last state",
        || {
            let truth = truth.clone();
            let followers = followers.clone();
            async move {
                let all = snapshot(&followers).iter().all(|s| s.view == truth);
                Ok(all.then_some(()))
            }
        },
    )
    .await;
    let alive = server.child.try_wait()?.is_none();
    let _ = stop_tx.send(true);
    let seen = snapshot(&followers);
    let reset_clients = seen.iter().filter(|s| s.resets > 0).count();
    let wrong_views = seen.iter().filter(|s| s.view != truth).count();
    // A client never reset must have every change, once, in order.
    let not_reset_bad = seen
        .iter()
        .filter(|s| s.resets == 0 && s.markers != (1..=updates).collect::<Vec<_>>())
        .count();
    let out_of_order = seen
        .iter()
        .filter(|s| s.markers.windows(2).any(|w| w[0] >= w[1]))
        .count();
    let _ = server.child.start_kill();
    Ok(Outcome {
        scenario: "postgres-restart",
        done: format!(
            "{updates} updates, {n_clients} clients, Postgres restarted ({})",
            restarts.join(", ")
        ),
        figures: format!(
            "server up: {alive}; {failed_writes} writes retried while it was down; {reset_clients} clients reset, {} resumed",
            n_clients - reset_clients
        ),
        lost: format!(
            "{wrong_views} clients with a wrong final view, {not_reset_bad} resumed clients missing a change, {out_of_order} out of order"
        ),
        passed: alive && converged.is_ok() && wrong_views == 0 && not_reset_bad == 0 && out_of_order == 0,
    })
}

/// Latencies of signed callbacks (about job `job`) and page loads (`/login` and `/api/jobs`)
/// from four probes at once, while `busy` runs; and how many requests failed. (`/login` is the
/// server-rendered page a token can load: pages take a session, and send a token to sign in.)
async fn probe_during(
    address: &str,
    job: &str,
    busy: impl std::future::Future<Output = ()>,
) -> (Vec<Duration>, Vec<Duration>, usize) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    let probe = || async {
        let (mut callbacks, mut pages, mut errors) = (Vec::new(), Vec::new(), 0);
        let mut progress = 0;
        while !stop.load(Ordering::Relaxed) {
            progress = (progress + 1) % 100;
            let body = serde_json::json!({ "id": "job_probe", "status": "processing",
                "tasks": [{ "progress": progress }], "metadata": { "job_id": job } });
            let started = Instant::now();
            match super::dispatch::post_callback(address, &body).await {
                Ok(200) => callbacks.push(started.elapsed()),
                _ => errors += 1,
            }
            for path in ["/login", "/api/jobs"] {
                let started = Instant::now();
                match super::dispatch::get_status(address, path).await {
                    Ok(200) => pages.push(started.elapsed()),
                    _ => errors += 1,
                }
            }
        }
        (callbacks, pages, errors)
    };
    let work = async {
        busy.await;
        stop.store(true, Ordering::Relaxed);
    };
    let (results, ()) = tokio::join!(futures::future::join_all((0..4).map(|_| probe())), work);
    results.into_iter().fold(
        (Vec::new(), Vec::new(), 0),
        |(mut c, mut p, e), (c2, p2, e2)| {
            c.extend(c2);
            p.extend(p2);
            (c, p, e + e2)
        },
    )
}

/// Clients resume at once, as after a restart: callbacks and page loads keep answering.
/// Run twice: positions the restarted server holds in memory (the end of the log it loads),
/// and positions older than that (each resume reads the log), for comparison.
pub async fn reconnect_storm(size: Size) -> Result<Outcome> {
    let n_clients = size.pick(2_000usize, 10_000);
    let mut figures = Vec::new();
    let mut passed = true;
    let mut lost = Vec::new();
    for (label, buffer) in [("from memory", "4096"), ("from the log", "16")] {
        let pg = PrivatePg::start().await?;
        let url = pg.database("chaos").await?;
        let port = free_port()?;
        let env = [
            ("REELTIME_EVENTS_BUFFER", buffer),
            ("REELTIME_DB_MAX_CONNECTIONS", "10"),
            ("ITTYBIT_API_KEY", "storm"),
            ("ITTYBIT_API_URL", "http://127.0.0.1:9"),
            ("ITTYBIT_WEBHOOK_SECRET", super::dispatch::SECRET),
            ("REELTIME_RECONCILE_AFTER_SECS", "31536000"),
        ];
        let mut server = server_on(&url, port, &env).await?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await?;
        let jobs = seed_jobs(&pool, 50).await?;
        // The callbacks' job: no marker, so its changes are not counted as missed ones.
        let probe_job = seed_jobs(&pool, 1).await?[0];
        sqlx::query!("update jobs set status = 'queued'")
            .execute(&pool)
            .await?;
        let start = position(&pool).await?;
        // The clients were following from `start` when the server went away...
        unsafe { libc::kill(server.pid as i32, libc::SIGKILL) };
        let _ = server.child.wait().await;
        // ...and missed these while it was down.
        let missed = 100u64;
        for k in 1..=missed {
            write_marker(&pool, &jobs, k).await?;
        }
        server = server_on(&url, port, &env).await?;
        let (stop_tx, stop) = watch::channel(false);
        let began = Instant::now();
        let followers: Vec<Shared> = (0..n_clients)
            .map(|_| clients::spawn(server.address.clone(), Some(start.clone()), stop.clone()))
            .collect();
        let address = server.address.clone();
        let job = probe_job.to_string();
        let storm = async {
            let _ = wait_for(Duration::from_secs(120), "every client resumed", || async {
                let done = snapshot(&followers)
                    .iter()
                    .all(|s| dedup_len(&s.markers) as u64 == missed || s.resets > 0);
                Ok(done.then_some(()))
            })
            .await;
        };
        let (callbacks, pages, errors) = probe_during(&address, &job, storm).await;
        let took = began.elapsed();
        let _ = stop_tx.send(true);
        let seen = snapshot(&followers);
        let complete = exact(&seen, missed);
        let resets = seen.iter().filter(|s| s.resets > 0).count();
        let (c, p) = (stats_or_zero(callbacks), stats_or_zero(pages));
        figures.push(format!(
            "{label}: {complete}/{n_clients} had their changes after {:.1} s ({resets} reset), callbacks p99 {:.0} ms (max {:.0}, {} samples), page loads p99 {:.0} ms (max {:.0}), {errors} errors",
            took.as_secs_f64(), c.p99, c.max, c.samples, p.p99, p.max
        ));
        if label == "from memory" {
            // Generous bounds for a shared 2-core machine; the figures are the point.
            passed &= complete == n_clients && errors == 0 && c.p99 < 2_000.0 && p.p99 < 2_000.0;
            lost.push(format!(
                "{} clients short of the {missed} missed changes, {resets} reset",
                n_clients - complete
            ));
        }
        let _ = server.child.start_kill();
    }
    Ok(Outcome {
        scenario: "reconnect-storm",
        done: format!("{n_clients} clients resume at once after a SIGKILL and restart, 100 changes missed; pool of 10"),
        figures: figures.join("; "),
        lost: lost.join("; "),
        passed,
    })
}

fn stats_or_zero(samples: Vec<Duration>) -> crate::Stats {
    if samples.is_empty() {
        return crate::Stats {
            p50: 0.0,
            p95: 0.0,
            p99: 0.0,
            max: 0.0,
            samples: 0,
        };
    }
    stats(samples)
}

/// Full form only: idle clients for ten minutes with 10 changes a second: the server's memory
/// stays flat (the slope is reported) and no client misses an event.
pub async fn idle_clients(size: Size) -> Result<Outcome> {
    let (n_clients, minutes) = size.pick((1_000usize, 1u64), (10_000, 10));
    let pg = PrivatePg::start().await?;
    let url = pg.database("chaos").await?;
    let server = server_on(&url, free_port()?, &[("REELTIME_EVENTS_BUFFER", "4096")]).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await?;
    let jobs = seed_jobs(&pool, 100).await?;
    let start = position(&pool).await?;
    let (stop_tx, stop) = watch::channel(false);
    let followers: Vec<Shared> = (0..n_clients)
        .map(|_| clients::spawn(server.address.clone(), Some(start.clone()), stop.clone()))
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let began = Instant::now();
    let mut samples = Vec::new();
    let mut k = 0u64;
    let mut next_sample = Instant::now();
    // Ten a second by the clock, whatever a write takes (a slow one is caught up on).
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    while began.elapsed() < Duration::from_secs(minutes * 60) {
        ticks.tick().await;
        k += 1;
        write_marker(&pool, &jobs, k).await?;
        if Instant::now() >= next_sample {
            samples.push((
                began.elapsed().as_secs_f64() / 60.0,
                rss_kib(server.pid) as f64,
            ));
            next_sample += Duration::from_secs(10);
        }
    }
    let written = k;
    let _ = wait_for(
        Duration::from_secs(60),
        "every client has the last change",
        || async {
            Ok(snapshot(&followers)
                .iter()
                .all(|s| s.markers.last() == Some(&written))
                .then_some(()))
        },
    )
    .await;
    let _ = stop_tx.send(true);
    let seen = snapshot(&followers);
    let good = exact(&seen, written);
    let slope = slope(&samples);
    let (first, last) = (
        samples.first().map_or(0.0, |s| s.1),
        samples.last().map_or(0.0, |s| s.1),
    );
    Ok(Outcome {
        scenario: "idle-clients",
        done: format!("{n_clients} clients for {minutes} min, {written} changes at 10/s"),
        figures: format!(
            "RSS {:.0} → {:.0} MiB (each minute: {}), slope {:.2} MiB/min over {} samples, {:.2} in the second half",
            first / 1024.0,
            last / 1024.0,
            samples
                .iter()
                .step_by(6)
                .map(|(_, kib)| format!("{:.0}", kib / 1024.0))
                .collect::<Vec<_>>()
                .join(" "),
            slope / 1024.0,
            samples.len(),
            self::slope(&samples[samples.len() / 2..]) / 1024.0
        ),
        lost: format!("{} clients missed or repeated a change", n_clients - good),
        passed: good == n_clients && slope.abs() / 1024.0 < 1.0,
    })
}

/// Least-squares slope of (x, y) points.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let num: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}
