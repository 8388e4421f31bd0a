//! A Postgres of Reeltime's own, for when no `DATABASE_URL` is given.
//!
//! The cluster lives in `<data dir>/postgres`, is created with `initdb` on first use, and runs
//! as a child process that listens only on a Unix socket inside that directory (no TCP port to
//! clash with, and a 0700 directory so only its owner can connect). When Reeltime runs as root
//! the cluster belongs to the `postgres` user, since Postgres refuses to run as root. It is
//! stopped with a fast shutdown when Reeltime stops, and also when Reeltime dies (the child is
//! asked to stop when its parent goes away). A cluster left running by a crashed Reeltime is
//! stopped and restarted; a stale `postmaster.pid` is cleaned up by Postgres itself when its
//! process is gone, and by Reeltime when its pid now belongs to another process (which is
//! never signalled).

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

const SOCKET_PORT: u16 = 5432;
const DATABASE: &str = "reeltime";
const SUPERUSER: &str = "postgres";
/// Unix socket paths are limited to 107 bytes on Linux.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    #[error(
        "no PostgreSQL server binaries (initdb, postgres) were found in `pg_config --bindir`, \
         PATH or /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: \
         `apt-get install postgresql`; Fedora: `dnf install postgresql-server`; macOS: \
         `brew install postgresql`), or set DATABASE_URL to use a Postgres you already have"
    )]
    NoBinaries,
    #[error(
        "Postgres refuses to run as root, and there is no `postgres` user to run it as. \
         Create one (`useradd --system postgres`), run Reeltime as another user, or set \
         DATABASE_URL"
    )]
    NoUnprivilegedUser,
    #[error(
        "the data directory path {0} is too long for a Unix socket; set REELTIME_DATA_DIR to a \
         shorter path"
    )]
    PathTooLong(PathBuf),
    #[error(
        "another Reeltime (pid {pid}) is already using the embedded database in {dir}; stop it, \
         or give this one its own REELTIME_DATA_DIR"
    )]
    InUse { pid: i32, dir: PathBuf },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} failed. Its log ({log}) ends with:\n{tail}")]
    Failed {
        what: String,
        log: PathBuf,
        tail: String,
    },
    #[error("could not prepare the embedded database: {0}")]
    Database(#[from] sqlx::Error),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> EmbeddedPgError {
    let what = what.into();
    move |source| EmbeddedPgError::Io { what, source }
}

/// The user the cluster runs as, when Reeltime itself runs as root.
#[derive(Clone, Copy, Debug)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// A running embedded cluster. Dropping it stops Postgres.
pub struct EmbeddedPostgres {
    child: Option<Child>,
    cluster_dir: PathBuf,
    log_path: PathBuf,
}

impl EmbeddedPostgres {
    /// Start (creating on first use) the cluster under `data_dir`, and make sure the
    /// `reeltime` database exists. Blocks until Postgres accepts connections.
    ///
    /// Call it from a thread that lives as long as the server (the main thread): the child is
    /// told to stop when the thread that started it goes away.
    pub async fn start(data_dir: &Path) -> Result<EmbeddedPostgres, EmbeddedPgError> {
        fs::create_dir_all(data_dir).map_err(io_err(format!("creating {}", data_dir.display())))?;
        let data_dir = fs::canonicalize(data_dir)
            .map_err(io_err(format!("resolving {}", data_dir.display())))?;
        let cluster_dir = data_dir.join("postgres");
        let socket = cluster_dir.join(format!(".s.PGSQL.{SOCKET_PORT}"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(EmbeddedPgError::PathTooLong(cluster_dir));
        }
        let bindir = find_bindir()?;
        let run_as = run_as()?;
        let log_path = data_dir.join("postgres.log");

        if !cluster_dir.join("PG_VERSION").exists() {
            init_cluster(&bindir, &cluster_dir, &log_path, run_as)?;
        }
        stop_orphan(&cluster_dir)?;

        let log = open_log(&log_path)?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut command = Command::new(bindir.join("postgres"));
        command
            .arg("-D")
            .arg(&cluster_dir)
            .arg("-k")
            .arg(&cluster_dir)
            .args(["-p", &SOCKET_PORT.to_string()])
            .args(["-c", "listen_addresses="])
            .args(["-c", "unix_socket_permissions=0700"])
            .current_dir(&cluster_dir)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(io_err("opening the Postgres log"))?,
            )
            .stderr(log);
        if let Some(user) = run_as {
            command.uid(user.uid).gid(user.gid);
        }
        // SAFETY: prctl is async-signal-safe; it only marks this child to receive SIGINT (a
        // fast, clean shutdown) if Reeltime dies without stopping it.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(io_err("starting the embedded Postgres"))?;
        let mut pg = EmbeddedPostgres {
            child: Some(child),
            cluster_dir,
            log_path,
        };
        tracing::info!(dir = %pg.cluster_dir.display(), "starting the embedded Postgres");
        pg.wait_until_ready(log_start).await?;
        pg.ensure_database().await?;
        Ok(pg)
    }

    /// How to reach the `reeltime` database of a cluster another process runs under
    /// `data_dir` (the command line uses it while the server is up).
    pub fn running_options(data_dir: &Path) -> PgConnectOptions {
        let cluster_dir = fs::canonicalize(data_dir)
            .unwrap_or_else(|_| data_dir.to_owned())
            .join("postgres");
        PgConnectOptions::new()
            .socket(&cluster_dir)
            .port(SOCKET_PORT)
            .username(SUPERUSER)
            .database(DATABASE)
            .disable_statement_logging()
    }

    /// How to reach the `reeltime` database.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options_for(DATABASE)
    }

    fn options_for(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.cluster_dir)
            .port(SOCKET_PORT)
            .username(SUPERUSER)
            .database(database)
            .disable_statement_logging()
    }

    /// The postmaster's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    async fn wait_until_ready(&mut self, log_start: u64) -> Result<(), EmbeddedPgError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let options = self.options_for("postgres");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(EmbeddedPgError::Failed {
                        what: format!("starting the embedded Postgres ({status})"),
                        log: self.log_path.clone(),
                        tail: log_tail(&self.log_path, log_start),
                    });
                }
            }
            match options.connect().await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Err(err) if Instant::now() > deadline => {
                    return Err(EmbeddedPgError::Failed {
                        what: format!(
                            "waiting for the embedded Postgres to accept connections ({err})"
                        ),
                        log: self.log_path.clone(),
                        tail: log_tail(&self.log_path, log_start),
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn ensure_database(&self) -> Result<(), EmbeddedPgError> {
        let mut conn = self.options_for("postgres").connect().await?;
        let exists: bool = sqlx::query_scalar!(
            r#"select exists (select 1 from pg_database where datname = $1) as "exists!""#,
            DATABASE
        )
        .fetch_one(&mut conn)
        .await?;
        if !exists {
            // Unchecked: CREATE DATABASE is not a statement Postgres can describe.
            sqlx::raw_sql("create database reeltime")
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        Ok(())
    }

    /// Stop Postgres with a fast shutdown (open transactions roll back, nothing committed is
    /// lost) and wait for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        tracing::info!(pid, "stopping the embedded Postgres");
        // Our own child, not yet reaped: reaping it is how we see it go.
        if !shut_down(pid, || !matches!(child.try_wait(), Ok(None))) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Ask a postmaster to stop: SIGINT (a fast shutdown: open transactions roll back, nothing
/// committed is lost), then SIGQUIT if it is still there after 30 s. True once `gone` says so.
fn shut_down(pid: libc::pid_t, mut gone: impl FnMut() -> bool) -> bool {
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

fn open_log(path: &Path) -> Result<fs::File, EmbeddedPgError> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(format!("opening {}", path.display())))
}

/// The last lines the log gained since `from`.
fn log_tail(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        let _ = file.seek(SeekFrom::Start(from));
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn init_cluster(
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
fn stop_orphan(cluster_dir: &Path) -> Result<(), EmbeddedPgError> {
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

fn run_as() -> Result<Option<RunAs>, EmbeddedPgError> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new(SUPERUSER).expect("no NUL in a constant");
    // SAFETY: getpwnam returns a pointer into static storage or NULL; we copy the two fields
    // we need before anything else can call it (start-up runs before other threads use it).
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(EmbeddedPgError::NoUnprivilegedUser);
    }
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some(RunAs { uid, gid }))
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
