//! `workers` (issue 13), on an S3-compatible store (moto's server from `.tools/moto`, installed
//! by `ensure_moto`):
//! - jobs per minute with one `reeltime worker` process against two on this machine, each with
//!   its default slots (one per core), behind a web instance that runs none. The cores are the
//!   limit here, so the ratio says what a second process costs or gains on the same cores,
//!   not what a second machine would add;
//! - upload throughput: a file sent through `/api/uploads` in 8 MiB parts, against one plain
//!   `curl` PUT of the same file to the same store.

use std::path::PathBuf;

use super::*;

/// A moto server on a free port, stopped when dropped.
struct Moto {
    endpoint: String,
    _child: Child,
}

impl Moto {
    async fn start() -> Result<Moto> {
        let program = Path::new(".tools/moto/bin/moto_server");
        if !program.exists() {
            return Err("no .tools/moto: run `source scripts/lib.sh && ensure_moto`".into());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let address = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while TcpStream::connect(&address).await.is_err() {
            if started.elapsed() > Duration::from_secs(60) {
                return Err("moto did not start within a minute".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (head, _) = exchange(
            &address,
            &format!(
                "PUT /reeltime-bench HTTP/1.0\r\nHost: {address}\r\nContent-Length: 0\r\n\r\n"
            ),
        )
        .await?;
        if status_of(&head)? != 200 {
            return Err(format!("creating the bucket: {head}").into());
        }
        Ok(Moto {
            endpoint: format!("http://{address}"),
            _child: child,
        })
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("REELTIME_STORAGE_URL", "s3://reeltime-bench/bench"),
            ("REELTIME_STORAGE_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "bench"),
            ("AWS_SECRET_ACCESS_KEY", "bench-secret"),
            ("AWS_REGION", "us-east-1"),
        ]
    }
}

/// A data directory ffmpeg's unprivileged user can reach, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Result<Scratch> {
        use std::os::unix::fs::PermissionsExt;
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("reeltime-bench-{what}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        Ok(Scratch(dir))
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) async fn workers(jobs: usize, upload_mb: usize) -> Result<()> {
    let moto = Moto::start().await?;
    let mut rates = Vec::new();
    for processes in [1, 2] {
        rates.push(jobs_per_minute(&moto, processes, jobs).await?);
    }
    println!(
        "jobs per minute: one worker process {:.1}, two {:.1}: ratio {:.2} (same {} cores)",
        rates[0],
        rates[1],
        rates[1] / rates[0],
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    uploads(&moto, upload_mb).await
}

/// `jobs` sample-clip jobs (`video_1280_mp4_high`) run by `processes` worker processes.
async fn jobs_per_minute(moto: &Moto, processes: usize, jobs: usize) -> Result<f64> {
    let data = Scratch::new("web")?;
    let mut env = moto.env();
    env.extend([
        ("REELTIME_DATA_DIR", data.path()),
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_WORKERS", "0"),
        ("REELTIME_SAMPLE_CLIP", "on"),
    ]);
    let database = Database::create().await?;
    let result: Result<f64> = async {
        let mut server = start_server(&database.url, &env).await?;
        processor::wait_for_clip(&data.0).await?;
        let public = format!("http://{}", server.address);
        let mut scratch = Vec::new();
        let mut children = Vec::new();
        for _ in 0..processes {
            let dir = Scratch::new("worker")?;
            let binary =
                std::env::var("REELTIME_BIN").unwrap_or_else(|_| "target/release/reeltime".into());
            let mut child = Command::new(&binary)
                .arg("worker")
                .env("DATABASE_URL", &database.url)
                .env("REELTIME_PUBLIC_URL", &public)
                .env("REELTIME_DATA_DIR", dir.path())
                .env("RUST_LOG", "warn")
                .envs(moto.env())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
            loop {
                match lines.next_line().await? {
                    Some(line) if line.starts_with("Reeltime worker running") => break,
                    Some(_) => {}
                    None => return Err("a worker exited before it was ready".into()),
                }
            }
            scratch.push(dir);
            children.push(child);
        }
        let input_url = format!("{public}{}/{}", sample::PATH, sample::NAME);
        let started = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..jobs {
            let body = json!({ "input_url": input_url, "preset": Preset::DEFAULT.id() });
            let (status, job) = http(&server.address, "POST", "/api/jobs", Some(&body)).await?;
            if status != 201 {
                return Err(format!("POST /api/jobs: {status} {job}").into());
            }
            ids.push(job["id"].as_str().ok_or("no id")?.to_owned());
        }
        for id in &ids {
            loop {
                let (_, job) =
                    http(&server.address, "GET", &format!("/api/jobs/{id}"), None).await?;
                match job["status"].as_str() {
                    Some("succeeded") => break,
                    Some("failed" | "cancelled") => return Err(format!("job {id}: {job}").into()),
                    _ => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let rate = jobs as f64 / seconds * 60.0;
        println!(
            "{processes} worker process(es): {jobs} jobs in {seconds:.1} s, {rate:.1} jobs/min"
        );
        for child in &mut children {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        let _ = server.child.start_kill();
        let _ = server.child.wait().await;
        Ok(rate)
    }
    .await;
    let dropped = database.drop().await;
    let rate = result?;
    dropped?;
    Ok(rate)
}

/// One request with a byte body on its own connection; the answer's status and body.
async fn send_bytes(address: &str, method: &str, path: &str, body: &[u8]) -> Result<(u16, Value)> {
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\n{}Origin: http://{address}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        authorization(),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let (head, answer) = exchange_bytes(address, &request).await?;
    Ok((
        status_of(&head)?,
        serde_json::from_slice(&answer).unwrap_or(Value::Null),
    ))
}

/// A file of `mb` MiB through `/api/uploads`, and the same file PUT straight to the store.
async fn uploads(moto: &Moto, mb: usize) -> Result<()> {
    let data = Scratch::new("uploads")?;
    let file = data.0.join("upload.bin");
    let bytes: Vec<u8> = (0..mb << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &bytes)?;
    let mut env = moto.env();
    env.extend([
        ("REELTIME_DATA_DIR", data.path()),
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_WORKERS", "0"),
        ("REELTIME_SAMPLE_CLIP", "off"),
    ]);
    let megabytes = bytes.len() as f64 / 1e6;
    on_fresh_server(&env, async |server, _| {
        let started = Instant::now();
        let announce =
            json!({ "name": "upload.mp4", "size": bytes.len(), "content_type": "video/mp4" });
        let (status, upload) =
            http(&server.address, "POST", "/api/uploads", Some(&announce)).await?;
        if status != 201 {
            return Err(format!("POST /api/uploads: {status} {upload}").into());
        }
        let id = upload["id"].as_str().ok_or("no id")?.to_owned();
        let part = upload["part_bytes"].as_u64().ok_or("no part_bytes")? as usize;
        for (n, chunk) in bytes.chunks(part).enumerate() {
            let path = format!("/api/uploads/{id}/parts/{n}");
            let (status, answer) = send_bytes(&server.address, "PUT", &path, chunk).await?;
            if status != 200 {
                return Err(format!("PUT {path}: {status} {answer}").into());
            }
        }
        let (status, done) = http(
            &server.address,
            "POST",
            &format!("/api/uploads/{id}/complete"),
            None,
        )
        .await?;
        if status != 200 {
            return Err(format!("complete: {status} {done}").into());
        }
        let through_app = started.elapsed().as_secs_f64();

        let started = Instant::now();
        let curl = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-T"])
            .arg(&file)
            .arg(format!("{}/reeltime-bench/plain.bin", moto.endpoint))
            .output()
            .await?;
        let plain = started.elapsed().as_secs_f64();
        let code = String::from_utf8_lossy(&curl.stdout).into_owned();
        if code != "200" {
            return Err(format!("curl PUT: HTTP {code}").into());
        }
        println!(
            "upload of {megabytes:.0} MB: through /api/uploads {through_app:.2} s ({:.1} MB/s); \
             plain curl PUT to the same store {plain:.2} s ({:.1} MB/s); ratio {:.2}",
            megabytes / through_app,
            megabytes / plain,
            plain / through_app
        );
        Ok(())
    })
    .await
}
