//! The embedded Postgres, through the real binary: no DATABASE_URL, a data directory of its own.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Running {
    child: Child,
    address: String,
    /// The first-admin link, printed while no account exists.
    setup_link: Option<String>,
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "reeltime-embedded-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    // The cluster may belong to the postgres user (when tests run as root): let it in.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

async fn start(data_dir: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reeltime"))
        .env_remove("DATABASE_URL")
        .env("REELTIME_DATA_DIR", data_dir)
        .env("REELTIME_PORT", "0")
        .env("RUST_LOG", "warn")
        // The processor starts as it does out of the box; the sample clip would only cost CPU.
        .env("REELTIME_SAMPLE_CLIP", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (address, setup_link) = tokio::time::timeout(Duration::from_secs(90), async {
        let mut setup_link = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("/setup?token=") {
                setup_link = Some(line.trim().to_owned());
            }
            if let Some(url) = line.strip_prefix("Reeltime is running at ") {
                return (url.to_owned(), setup_link);
            }
        }
        panic!("reeltime exited before it was ready");
    })
    .await
    .expect("reeltime started within 90 s");
    Running {
        child,
        address,
        setup_link,
    }
}

/// Create the first admin through the printed link; the client is signed in after.
async fn set_up(client: &reqwest::Client, link: &str) {
    let token = link.split("token=").nth(1).unwrap();
    let origin = link.split("/setup").next().unwrap();
    let response = client
        .post(format!("{origin}/setup"))
        .header("origin", origin)
        .form(&[
            ("token", token),
            ("email", "first@example.com"),
            ("password", crate::helpers::PASSWORD),
            ("confirm", crate::helpers::PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/");
}

impl Running {
    async fn stop(mut self, signal: libc::c_int) -> Option<i32> {
        let pid = self.child.id().unwrap() as libc::pid_t;
        unsafe { libc::kill(pid, signal) };
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("reeltime stopped within 60 s")
            .unwrap();
        status.code()
    }
}

fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(data_dir.join("postgres/postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); look at its state too.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = state
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    let exists = unsafe { libc::kill(pid, 0) == 0 };
    exists && !zombie
}

async fn wait_gone(pid: i32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn starts_from_nothing_keeps_data_across_restarts_and_leaves_nothing_running() {
    let data_dir = scratch_dir();
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // First start: creates the cluster, migrates, serves, and offers the setup link.
    let app = start(&data_dir).await;
    set_up(
        &client,
        app.setup_link
            .as_deref()
            .expect("a first start offers the setup link"),
    )
    .await;
    assert!(data_dir.join("postgres/PG_VERSION").exists());
    let created: Value = client
        .post(format!("{}/api/jobs", app.address))
        .header("origin", &app.address)
        .json(&json!({ "input_url": "https://example.com/kept.mp4" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let postgres = postmaster_pid(&data_dir).expect("postgres is running");
    assert!(alive(postgres));

    // SIGTERM: a clean exit that takes Postgres with it.
    assert_eq!(app.stop(libc::SIGTERM).await, Some(0));
    assert!(
        wait_gone(postgres).await,
        "postgres {postgres} still runs after shutdown"
    );
    assert!(
        postmaster_pid(&data_dir).is_none(),
        "postmaster.pid left behind"
    );

    // Second start: same data, the same account (and session), no new setup link.
    let app = start(&data_dir).await;
    assert!(app.setup_link.is_none());
    let response = client
        .get(format!("{}/api/jobs/{id}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let postgres = postmaster_pid(&data_dir).unwrap();

    // A crash (SIGKILL, no clean-up code runs): Postgres still goes away.
    app.stop(libc::SIGKILL).await;
    assert!(
        wait_gone(postgres).await,
        "postgres {postgres} outlived a crashed reeltime"
    );

    // ... and the next start recovers.
    let app = start(&data_dir).await;
    let response = client
        .get(format!("{}/api/jobs/{id}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let postgres = postmaster_pid(&data_dir).unwrap();
    assert_eq!(app.stop(libc::SIGINT).await, Some(0));
    assert!(wait_gone(postgres).await);

    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn an_orphaned_postgres_is_taken_over() {
    let data_dir = scratch_dir();
    let app = start(&data_dir).await;
    app.stop(libc::SIGTERM).await;

    // Start the cluster by hand, as if a crashed Reeltime had left it running.
    let bindir = server::embedded_pg::find_bindir().unwrap();
    let cluster = data_dir.join("postgres");
    let mut orphan = std::process::Command::new(bindir.join("postgres"));
    orphan
        .arg("-D")
        .arg(&cluster)
        .arg("-k")
        .arg(&cluster)
        .args(["-c", "listen_addresses="])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if unsafe { libc::geteuid() } == 0 {
        let meta = std::fs::metadata(&cluster).unwrap();
        use std::os::unix::fs::MetadataExt;
        orphan.uid(meta.uid()).gid(meta.gid());
    }
    let mut orphan = orphan.spawn().unwrap();
    let mut waited = 0;
    while postmaster_pid(&data_dir).is_none() && waited < 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    let stale = postmaster_pid(&data_dir).expect("hand-started postgres is up");

    let app = start(&data_dir).await;
    let _ = orphan.wait();
    assert!(!alive(stale), "the orphan was stopped");
    let response = reqwest::get(format!("{}/readyz", app.address))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.stop(libc::SIGTERM).await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn bad_configuration_stops_start_up_naming_the_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_reeltime"))
        .env("REELTIME_PORT", "not-a-port")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("REELTIME_PORT"), "{stderr}");
}

#[tokio::test]
async fn help_lists_the_configuration() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_reeltime"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for name in [
        "REELTIME_PORT",
        "DATABASE_URL",
        "REELTIME_DATA_DIR",
        "REELTIME_PUBLIC_URL",
        "RUST_LOG",
    ] {
        assert!(stdout.contains(name), "{name} missing from --help");
    }
}

/// The lock file of a running cluster, with its first line (the pid) replaced.
fn lock_file_naming(data_dir: &Path, running_lock: &str, pid: u32) {
    let rest = running_lock.split_once('\n').map_or("", |(_, rest)| rest);
    std::fs::write(
        data_dir.join("postgres/postmaster.pid"),
        format!("{pid}\n{rest}"),
    )
    .unwrap();
}

/// The cluster's owner, so a process can look like one of its own (Postgres takes a lock
/// file naming a live process of its own user for a running postmaster).
fn as_cluster_owner(command: &mut std::process::Command, data_dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    if unsafe { libc::geteuid() } == 0 {
        let meta = std::fs::metadata(data_dir.join("postgres")).unwrap();
        command.uid(meta.uid()).gid(meta.gid());
    }
}

/// Starts once to create the cluster, and returns its lock file as it was while it ran.
async fn a_cluster_that_ran(data_dir: &Path) -> String {
    let app = start(data_dir).await;
    let lock = std::fs::read_to_string(data_dir.join("postgres/postmaster.pid")).unwrap();
    assert_eq!(app.stop(libc::SIGTERM).await, Some(0));
    assert!(!data_dir.join("postgres/postmaster.pid").exists());
    lock
}

#[tokio::test]
async fn a_lock_file_left_by_a_dead_postmaster_does_not_stop_start_up() {
    let data_dir = scratch_dir();
    let lock = a_cluster_that_ran(&data_dir).await;
    // As a machine crash leaves it: the file names a process that no longer exists.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    lock_file_naming(&data_dir, &lock, dead);

    let app = start(&data_dir).await;
    let ready = reqwest::get(format!("{}/readyz", app.address))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_ne!(postmaster_pid(&data_dir), Some(dead as i32));
    app.stop(libc::SIGTERM).await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn a_lock_file_naming_someone_elses_live_process_is_cleared_and_the_process_left_alone() {
    let data_dir = scratch_dir();
    let lock = a_cluster_that_ran(&data_dir).await;
    // The pid was reused by an unrelated process of the cluster owner's, which even calls
    // itself "postgres": it is not a postmaster of this cluster and must not be signalled.
    let mut foreign = std::process::Command::new("sleep");
    foreign.arg0("postgres").arg("600").stdout(Stdio::null());
    as_cluster_owner(&mut foreign, &data_dir);
    let mut foreign = foreign.spawn().unwrap();
    lock_file_naming(&data_dir, &lock, foreign.id());

    let app = start(&data_dir).await;
    let ready = reqwest::get(format!("{}/readyz", app.address))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(
        alive(foreign.id() as i32),
        "the foreign process was left alone"
    );
    assert_ne!(postmaster_pid(&data_dir), Some(foreign.id() as i32));
    app.stop(libc::SIGTERM).await;
    foreign.kill().unwrap();
    foreign.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn a_postgres_that_dies_is_started_again_and_not_after_shutdown() {
    let data_dir = scratch_dir();
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let app = start(&data_dir).await;
    set_up(&client, app.setup_link.as_deref().unwrap()).await;
    let dead = postmaster_pid(&data_dir).expect("postgres is running");

    // Killed outright, as the OOM killer would.
    unsafe { libc::kill(dead, libc::SIGKILL) };
    assert!(wait_gone(dead).await, "postgres {dead} survived SIGKILL");
    let readyz = format!("{}/readyz", app.address);
    let restarted = crate::helpers::eventually(Duration::from_secs(120), || async {
        let pid = postmaster_pid(&data_dir)
            .filter(|pid| *pid != dead && alive(*pid))
            .ok_or_else(|| "no new postmaster yet".to_owned())?;
        let status = reqwest::get(&readyz)
            .await
            .map_err(|err| err.to_string())?
            .status();
        match status {
            StatusCode::OK => Ok(pid),
            other => Err(format!("/readyz answers {other}")),
        }
    })
    .await;

    // The server works again, on the same data and the same session.
    let created = crate::helpers::eventually(Duration::from_secs(30), || async {
        let response = client
            .post(format!("{}/api/jobs", app.address))
            .header("origin", &app.address)
            .json(&json!({ "input_url": "https://example.com/after-the-crash.mp4" }))
            .send()
            .await
            .map_err(|err| err.to_string())?;
        match response.status() {
            status if status.is_success() => {
                Ok(response.json::<Value>().await.map_err(|e| e.to_string())?)
            }
            other => Err(format!("submitting answered {other}")),
        }
    })
    .await;
    let listed: Value = client
        .get(format!("{}/api/jobs", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed.to_string().contains(created["id"].as_str().unwrap()),
        "{listed}"
    );

    // A shutdown stops it for good: the supervisor does not start it again.
    assert_eq!(app.stop(libc::SIGTERM).await, Some(0));
    assert!(
        wait_gone(restarted).await,
        "postgres {restarted} still runs after shutdown"
    );
    assert!(
        postmaster_pid(&data_dir).is_none(),
        "nothing started it again"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}
