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
//!
//! While the server runs, a supervisor ([`supervisor`]) watches the postmaster and starts it
//! again, with backoff, if it dies (a full disk, the OOM killer, an operator's `kill`): nothing
//! else would, and without it the server answers every request with a database error until
//! someone restarts it. It stops watching at shutdown, before Postgres is stopped on purpose.
//! Every start is made on one thread of its own ([`launcher`]), the only kind of parent that
//! `PR_SET_PDEATHSIG` can rely on.
//!
//! - [`setup`]: `initdb`, finding the binaries, the orphan and the stale lock file, stopping.

mod launcher;
mod setup;
mod supervisor;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::unix_user::RunAs;
use launcher::{Launch, Launcher};
pub use setup::find_bindir;
use setup::{init_cluster, log_tail, run_as, stop_child};

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

/// A running embedded cluster. Dropping it stops Postgres.
pub struct EmbeddedPostgres {
    postmaster: Arc<Postmaster>,
}

/// The postmaster, shared with the supervisor: the running child, and how to start another.
struct Postmaster {
    /// `None` once stopped (or seen dead, until started again).
    child: Mutex<Option<Child>>,
    launcher: Launcher,
    cluster_dir: PathBuf,
    log_path: PathBuf,
}

impl EmbeddedPostgres {
    /// Start (creating on first use) the cluster under `data_dir`, and make sure the
    /// `reeltime` database exists. Blocks until Postgres accepts connections.
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
        let launcher = Launcher::new(Launch {
            bindir,
            cluster_dir: cluster_dir.clone(),
            log_path: log_path.clone(),
            run_as,
        })?;
        let pg = EmbeddedPostgres {
            postmaster: Arc::new(Postmaster {
                child: Mutex::new(None),
                launcher,
                cluster_dir,
                log_path,
            }),
        };
        tracing::info!(dir = %pg.postmaster.cluster_dir.display(), "starting the embedded Postgres");
        pg.postmaster.launch().await?;
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
        self.postmaster.options_for(database)
    }

    /// The postmaster's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.postmaster.child().as_ref().map(Child::id)
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
    /// lost) and wait for it to exit. Call it after the supervisor has stopped (the
    /// application's cancellation token), or it would start Postgres again.
    pub fn stop(&mut self) {
        let child = self.postmaster.child().take();
        if let Some(mut child) = child {
            stop_child(&mut child);
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Postmaster {
    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn options_for(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.cluster_dir)
            .port(SOCKET_PORT)
            .username(SUPERUSER)
            .database(database)
            .disable_statement_logging()
    }

    /// How the postmaster ended, if it has (it is then reaped and forgotten).
    fn exited(&self) -> Option<ExitStatus> {
        let mut child = self.child();
        let status = child.as_mut()?.try_wait().ok().flatten()?;
        *child = None;
        Some(status)
    }

    /// Start the postmaster and wait until it accepts connections.
    async fn launch(&self) -> Result<(), EmbeddedPgError> {
        let started = self.launcher.start().await?;
        let pid = started.child.id();
        *self.child() = Some(started.child);
        tracing::debug!(pid, "the embedded Postgres was started");
        self.wait_until_ready(started.log_start).await
    }

    async fn wait_until_ready(&self, log_start: u64) -> Result<(), EmbeddedPgError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let options = self.options_for("postgres");
        loop {
            if let Some(status) = self.exited() {
                return Err(EmbeddedPgError::Failed {
                    what: format!("starting the embedded Postgres ({status})"),
                    log: self.log_path.clone(),
                    tail: log_tail(&self.log_path, log_start),
                });
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
}
