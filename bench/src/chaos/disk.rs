//! A full disk: the cluster's data directory on a small tmpfs, filled up while the server
//! runs. New work must be refused with a clear error, nothing stored may be lost or damaged,
//! and it must take work again once space is freed. (The built-in processor's own free-space
//! floor is issue 10's; this is the API and the database.)

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;

use super::pg::PrivatePg;
use super::{wait_for, Outcome, Size};
use crate::{http, start_server, Result};

pub async fn full_disk(_size: Size) -> Result<Outcome> {
    let dir = std::env::temp_dir().join(format!("reeltime-chaos-disk-{}", std::process::id()));
    let mount = dir.join("disk");
    std::fs::create_dir_all(&mount)?;
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96m", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(Outcome {
            scenario: "full-disk",
            done: "skipped: mounting a tmpfs needs root".into(),
            figures: String::new(),
            lost: String::new(),
            passed: true,
        });
    }
    let result = run(&dir, &mount).await;
    let _ = Command::new("umount").arg("-l").arg(&mount).status();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(dir: &std::path::Path, mount: &std::path::Path) -> Result<Outcome> {
    let pg = PrivatePg::start_in(
        dir.to_owned(),
        mount.join("data"),
        &["--wal-segsize=1"],
        "-c min_wal_size=4MB -c max_wal_size=16MB",
    )
    .await?;
    let url = pg.database("chaos").await?;
    // Its log would show each refusal; the outcome says what matters.
    let server = start_server(&url, &[("REELTIME_PROCESSOR", "off"), ("RUST_LOG", "off")]).await?;
    let submit = |n: usize| {
        let address = server.address.clone();
        async move {
            let body = json!({ "input_url": format!("https://example.com/disk-{n}.mp4") });
            http(&address, "POST", "/api/jobs", Some(&body)).await
        }
    };
    let mut stored = Vec::new();
    for n in 0..20 {
        let (status, job) = submit(n).await?;
        if status != 201 {
            return Err(format!("before filling: {status} {job}").into());
        }
        stored.push(job["id"].as_str().unwrap_or_default().to_owned());
    }

    // Fill the file system, leaving nothing.
    let filler = mount.join("filler");
    let mut file = std::fs::File::create(&filler)?;
    let block = vec![0u8; 1 << 20];
    while file.write_all(&block).is_ok() {}
    let _ = file.flush();
    drop(file);

    // New work, until it is refused (a page of the table may still have room at first).
    let mut refusals: Vec<(u16, Value)> = Vec::new();
    let mut accepted_while_full = 0;
    for n in 100..400 {
        match submit(n).await {
            Ok((201, job)) => {
                accepted_while_full += 1;
                stored.push(job["id"].as_str().unwrap_or_default().to_owned());
            }
            Ok((status, body)) => {
                refusals.push((status, body));
                if refusals.len() >= 5 {
                    break;
                }
            }
            Err(err) => refusals.push((0, json!({ "transport": err.to_string() }))),
        }
    }
    let clear = refusals
        .iter()
        .filter(|(status, body)| *status == 503 && body["error"] == "unavailable")
        .count();
    let message = refusals
        .iter()
        .find_map(|(_, body)| body["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", refusals.first()));
    let (list_status, _) = http(&server.address, "GET", "/api/jobs?limit=1", None).await?;

    // Space returns.
    std::fs::remove_file(&filler)?;
    let began = Instant::now();
    let recovered = wait_for(
        Duration::from_secs(120),
        "a job is accepted again",
        || async { Ok(matches!(submit(999).await, Ok((201, _))).then_some(())) },
    )
    .await;
    let took = began.elapsed();
    // Every job acknowledged with 201 is there and readable, and the table checks out.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    let present: i64 = sqlx::query_scalar!(
        r#"select count(*) as "n!" from jobs where id::text = any($1)"#,
        &stored
    )
    .fetch_one(&pool)
    .await?;
    let readable: i64 =
        sqlx::query_scalar!(r#"select count(*) as "n!" from (select * from jobs) j"#)
            .fetch_one(&pool)
            .await?;
    // Postgres' own check of the tables' B-tree indexes (amcheck ships with the server; it
    // checks B-trees only, not the trigram GIN indexes of the job search).
    let checked = sqlx::raw_sql(
        "create extension if not exists amcheck;
         select bt_index_check(c.oid, true) from pg_index i join pg_class c on c.oid = i.indexrelid
         where (i.indrelid = 'jobs'::regclass or i.indrelid = 'job_changes'::regclass)
           and c.relam = (select oid from pg_am where amname = 'btree')",
    )
    .execute(&pool)
    .await;
    let indexes = match &checked {
        Ok(_) => "the B-tree indexes of jobs and job_changes pass amcheck".to_owned(),
        Err(err) => format!("amcheck: {err}"),
    };
    let lost = stored.len() as i64 - present;
    Ok(Outcome {
        scenario: "full-disk",
        done: format!(
            "the cluster on a 96 MB tmpfs, filled while the server ran; {} jobs stored, then {accepted_while_full} more accepted before the first refusal",
            20
        ),
        figures: format!(
            "{} refusals, {clear} of them 503 \"{message}\"; the list answered {list_status} while full; new jobs accepted {:.1} s after space returned",
            refusals.len(),
            took.as_secs_f64()
        ),
        lost: format!("{lost} acknowledged jobs missing; {readable} rows readable; {indexes}"),
        passed: clear == refusals.len()
            && !refusals.is_empty()
            && recovered.is_ok()
            && lost == 0
            && checked.is_ok(),
    })
}
