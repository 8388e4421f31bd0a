//! Making, finding and signalling the cluster's processes: `initdb`, the server binaries, the
//! user the cluster runs as when Reeltime is root, the orphan a crashed Reeltime left behind,
//! and the fast shutdown. Nothing but our own cluster's postmaster is ever signalled.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{io_err, EmbeddedPgError, RunAs, SUPERUSER};

/// Ask a postmaster to stop: SIGINT (a fast shutdown: open transactions roll back, nothing
/// committed is lost), then SIGQUIT if it is still there after 30 s. True once `gone` says so.
pub(super) fn shut_down(pid: libc::pid_t, mut gone: impl FnMut() -> bool) -> bool {
    let wait = |limit: Duration, gone: &mut dyn FnMut() -> bool| {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if gone() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };
    // SAFETY: kill only sends a signal to the given process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    if wait(Duration::from_secs(30), &mut gone) {
        return true;
    }
    tracing::warn!(
        pid,
        "Postgres did not stop in 30 s; stopping it immediately"
    );
    unsafe { libc::kill(pid, libc::SIGQUIT) };
    wait(Duration::from_secs(10), &mut gone)
}

pub(super) fn open_log(path: &Path) -> Result<fs::File, EmbeddedPgError> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(format!("opening {}", path.display())))
}

/// The last lines the log gained since `from`.
pub(super) fn log_tail(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        let _ = file.seek(SeekFrom::Start(from));
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

pub(super) fn init_cluster(
    bindir: &Path,
    cluster_dir: &Path,
    log_path: &Path,
    run_as: Option<RunAs>,
) -> Result<(), EmbeddedPgError> {
    tracing::info!(dir = %cluster_dir.display(), "creating the embedded Postgres cluster");
    // A half-made cluster from an interrupted first run has no PG_VERSION: start again.
    if cluster_dir.exists() {
        fs::remove_dir_all(cluster_dir)
            .map_err(io_err(format!("clearing {}", cluster_dir.display())))?;
    }
    fs::create_dir_all(cluster_dir)
        .map_err(io_err(format!("creating {}", cluster_dir.display())))?;
    fs::set_permissions(cluster_dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("restricting {}", cluster_dir.display())))?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(cluster_dir, Some(user.uid), Some(user.gid)).map_err(io_err(
            format!("handing {} to the postgres user", cluster_dir.display()),
        ))?;
    }
    let log = open_log(log_path)?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut command = Command::new(bindir.join("initdb"));
    command
        .arg("-D")
        .arg(cluster_dir)
        .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
        .current_dir(cluster_dir)
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(io_err("opening the Postgres log"))?,
        )
        .stderr(log);
    if let Some(user) = run_as {
        command.uid(user.uid).gid(user.gid);
    }
    let status = command.status().map_err(io_err("running initdb"))?;
    if !status.success() {
        let tail = log_tail(log_path, log_start);
        let hint = if run_as.is_some() && tail.contains("Permission denied") {
            "\n(Reeltime runs as root, so the cluster belongs to the postgres user, which must be \
             able to reach the data directory: set REELTIME_DATA_DIR to a path it can reach, \
             such as /var/lib/reeltime)"
        } else {
            ""
        };
        let _ = fs::remove_dir_all(cluster_dir);
        return Err(EmbeddedPgError::Failed {
            what: format!("initdb ({status})"),
            log: log_path.to_owned(),
            tail: format!("{tail}{hint}"),
        });
    }
    Ok(())
}

/// A postmaster still running on our cluster after Reeltime crashed is stopped; one that
/// belongs to a live Reeltime is left alone and reported. A lock file naming a process that
/// is gone is left for Postgres, which removes it itself; one naming a live process that is not
/// a postmaster of this cluster (its pid was reused after a crash) is removed here, because
/// Postgres would take that process for a running postmaster and refuse to start. Nothing but
/// our own cluster's postmaster is ever signalled.
pub(super) fn stop_orphan(cluster_dir: &Path) -> Result<(), EmbeddedPgError> {
    let lock_file = cluster_dir.join("postmaster.pid");
    let Ok(pidfile) = fs::read_to_string(&lock_file) else {
        return Ok(());
    };
    let Some(pid) = pidfile
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 0)
    else {
        return Ok(());
    };
    let alive = |pid: i32| unsafe { libc::kill(pid, 0) } == 0;
    if !alive(pid) {
        return Ok(()); // stale: Postgres removes the lock file itself
    }
    if !is_postmaster_of(pid, cluster_dir) {
        tracing::warn!(
            pid,
            "the embedded Postgres' lock file names a process that is not its postmaster; removing the stale lock file"
        );
        return fs::remove_file(&lock_file).map_err(io_err(format!(
            "removing the stale {}",
            lock_file.display()
        )));
    }
    let parent = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Field 4, after the parenthesised command name.
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().nth(1)?.parse::<i32>().ok()
        })
        .unwrap_or(1);
    let parent_comm = fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
    if parent != 1 && parent_comm.trim() == "reeltime" {
        return Err(EmbeddedPgError::InUse {
            pid: parent,
            dir: cluster_dir.to_owned(),
        });
    }
    tracing::warn!(
        pid,
        "stopping a Postgres left running by an earlier Reeltime"
    );
    shut_down(pid, || !alive(pid));
    Ok(())
}

/// Whether `pid` is a Postgres postmaster working on `cluster_dir` (a postmaster's working
/// directory is its data directory). A process we may not inspect is not ours: our postmaster
/// runs as us, or as the cluster's owner when we are root.
fn is_postmaster_of(pid: i32, cluster_dir: &Path) -> bool {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let cwd = fs::read_link(format!("/proc/{pid}/cwd"));
    let cluster = fs::canonicalize(cluster_dir).unwrap_or_else(|_| cluster_dir.to_owned());
    comm.trim() == "postgres" && cwd.is_ok_and(|cwd| cwd == cluster)
}

pub(super) fn run_as() -> Result<Option<RunAs>, EmbeddedPgError> {
    if !crate::unix_user::is_root() {
        return Ok(None);
    }
    RunAs::named(SUPERUSER)
        .map(Some)
        .ok_or(EmbeddedPgError::NoUnprivilegedUser)
}

/// Where `initdb` and `postgres` are: `pg_config --bindir`, then PATH, then the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian and Ubuntu keep them there, off PATH).
pub fn find_bindir() -> Result<PathBuf, EmbeddedPgError> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|dir| has_server(dir)) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, dir)| dir)
        .ok_or(EmbeddedPgError::NoBinaries)
}

/// Stop our own child postmaster and reap it: a fast shutdown, then SIGKILL if that fails.
pub(super) fn stop_child(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    tracing::info!(pid, "stopping the embedded Postgres");
    // Our own child, not yet reaped: reaping it is how we see it go.
    if !shut_down(pid, || !matches!(child.try_wait(), Ok(None))) {
        let _ = child.kill();
        let _ = child.wait();
    }
}
