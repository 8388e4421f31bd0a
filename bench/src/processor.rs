//! `processor`: the built-in processor against the same ffmpeg command run directly.

use super::*;

/// `processor`: the built-in processor against the same ffmpeg command run directly.
pub(crate) async fn processor(rounds: usize, poll: Duration) -> Result<()> {
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

    let clip = wait_for_clip(dir).await?;

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

/// Waits (up to 2 minutes) for the sample clip the server writes in the background at start (to
/// a `.part`, then renamed) under the data directory `dir`; its path.
pub(crate) async fn wait_for_clip(dir: &Path) -> Result<std::path::PathBuf> {
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
    Ok(clip)
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
