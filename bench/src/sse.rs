//! `sse`: the change feed to N clients against the bare LISTEN floor and, at each N, against the
//! fan-out floor (`fanout_floor.rs`) in the same run; throughput; memory per idle client of both.

use super::*;

/// An SSE client on a raw socket: reports once on `ready` when its stream has begun (the
/// first bytes after the response's head), then (marker, arrival time) for every
/// `"error":"m<k>"` it sees, and whether it ever got a reset.
pub(crate) async fn client(
    address: String,
    after: String,
    ready: mpsc::UnboundedSender<()>,
    arrivals: mpsc::UnboundedSender<(u32, Instant)>,
    resets: mpsc::UnboundedSender<()>,
) -> Result<()> {
    let mut socket = TcpStream::connect(&address).await?;
    socket
        .write_all(
            format!(
                "GET /api/events?after={after} HTTP/1.1\r\nHost: {address}\r\n{}\r\n",
                authorization()
            )
            .as_bytes(),
        )
        .await?;
    let mut buffer = vec![0u8; 16 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    const MARK: &[u8] = b"\"error\":\"m";
    let mut started = false;
    loop {
        let n = socket.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        let now = Instant::now();
        carry.extend_from_slice(&buffer[..n]);
        if !started && carry.windows(6).any(|w| w == b"retry:") {
            started = true;
            let _ = ready.send(());
        }
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

/// `n` clients, returned once every one of them has its stream open. (A fixed pause used to
/// stand in for that: at 1,000 clients some were still being authenticated when the first
/// changes were sent, and got them by replay hundreds of milliseconds later, which read as a
/// stall of the feed.)
async fn connect_clients(address: &str, after: &str, n: usize) -> Result<Clients> {
    let (arrive_tx, arrivals) = mpsc::unbounded_channel();
    let (reset_tx, resets) = mpsc::unbounded_channel();
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(500) {
        for _ in 0..500.min(n - chunk * 500) {
            tasks.push(tokio::spawn(client(
                address.to_owned(),
                after.to_owned(),
                ready_tx.clone(),
                arrive_tx.clone(),
                reset_tx.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut open = 0;
    while open < n {
        match tokio::time::timeout_at(deadline.into(), ready.recv()).await {
            Ok(Some(())) => open += 1,
            _ => return Err(format!("only {open} of {n} event streams opened in 120 s").into()),
        }
    }
    // Let the last writes of the stream openings drain.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(Clients {
        arrivals,
        resets,
        tasks,
    })
}

#[derive(Clone, Copy)]
enum Target {
    Reeltime,
    Floor,
}

async fn position(pool: &PgPool) -> Result<String> {
    Ok(app::db::log_position(pool).await?.to_string())
}

pub(crate) async fn sse(max_clients: usize) -> Result<()> {
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

    // The fan-out floor (fanout_floor.rs): its own process, its own table, frames of the size
    // Reeltime sends for this job.
    pool.execute(fanout_floor::TABLE).await?;
    let (_, job_json) = http(&server.address, "GET", &format!("/api/jobs/{job}"), None).await?;
    let frame_bytes = format!("id: 1.1\nevent: update\ndata: {job_json}\n\n").len();
    let mut fan_floor = fanout_floor::start(&database_url, frame_bytes).await?;
    println!(
        "fan-out floor pid {} at {} ({frame_bytes} B frames)",
        fan_floor.pid, fan_floor.address
    );

    let mut rows = Vec::new();
    let mut floor_rows = Vec::new();
    let idle_before = rss_kib(server.pid);
    let floor_idle_before = rss_kib(fan_floor.pid);
    let mut memory = None;
    let mut floor_memory = None;
    for n in [1usize, 100, 1_000, 10_000] {
        if n > max_clients {
            break;
        }
        let (updates, spacing) = match n {
            1 => (300, 10),
            100 => (200, 20),
            1_000 => (100, 50),
            _ => (30, 250),
        };
        let largest = n == max_clients.min(10_000);
        for (target, serving) in [(Target::Reeltime, &server), (Target::Floor, &fan_floor)] {
            let after = position(&pool).await?;
            let mut clients = connect_clients(&serving.address, &after, n).await?;
            if largest {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let rss = rss_kib(serving.pid);
                match target {
                    Target::Reeltime => memory = Some((n, idle_before, rss)),
                    Target::Floor => floor_memory = Some((n, floor_idle_before, rss)),
                }
            }
            let mut sent: HashMap<u32, Instant> = HashMap::new();
            for _ in 0..updates {
                marker += 1;
                let started = Instant::now();
                sent.insert(marker, started);
                let value = format!("m{marker}");
                match target {
                    Target::Reeltime => {
                        sqlx::query!("update jobs set error = $1 where id = $2", value, job)
                            .execute(&pool)
                            .await?;
                    }
                    Target::Floor => {
                        sqlx::query(fanout_floor::UPDATE)
                            .bind(value)
                            .execute(&pool)
                            .await?;
                    }
                }
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
            match target {
                Target::Reeltime => rows.push((n, s, got, expected, resets)),
                Target::Floor => floor_rows.push((n, s)),
            }
            for task in clients.tasks {
                task.abort();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let _ = fan_floor.child.start_kill();
    let _ = fan_floor.child.wait().await;

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
    println!("## Against the fan-out floor, same run (ms)");
    println!();
    println!("| clients | floor p50 | floor p99 | Reeltime p50 | Reeltime p99 | p50 / floor | p99 / floor |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for ((n, s, ..), (_, f)) in rows.iter().zip(&floor_rows) {
        println!(
            "| {n} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} |",
            f.p50,
            f.p99,
            s.p50,
            s.p99,
            s.p50 / f.p50,
            s.p99 / f.p99
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
    if let Some((n, before, after)) = floor_memory {
        println!(
            "Fan-out floor RSS: {before} KiB idle, {after} KiB with {n} idle clients -> {:.1} KiB per idle client",
            (after.saturating_sub(before)) as f64 / n as f64
        );
    }

    let _ = server.child.start_kill();
    let _ = server.child.wait().await;
    pool.close().await;
    database.drop().await
}
