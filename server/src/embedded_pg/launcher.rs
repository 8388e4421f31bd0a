//! The thread that starts the postmaster, the first time and every time the supervisor
//! restarts it.
//!
//! The child is started with `PR_SET_PDEATHSIG`, which Linux ties to the *thread* that forked
//! it, not the process: a postmaster forked from a tokio worker, or from a blocking-pool thread
//! that exits once idle, would be told to stop when that thread goes. So every start is made on
//! this one thread, which lives as long as the [`super::EmbeddedPostgres`]: it ends when the
//! launcher is dropped, after Postgres has been stopped. If Reeltime dies, the thread dies with
//! it and the postmaster gets its SIGINT, as before.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::setup::{open_log, stop_child, stop_orphan};
use super::{io_err, EmbeddedPgError, RunAs, SOCKET_PORT};

/// What starting the postmaster takes.
pub(super) struct Launch {
    pub bindir: PathBuf,
    pub cluster_dir: PathBuf,
    pub log_path: PathBuf,
    pub run_as: Option<RunAs>,
}

/// A postmaster just started, and where its lines begin in the log.
pub(super) struct Started {
    pub child: Child,
    pub log_start: u64,
}

type Reply = oneshot::Sender<Result<Started, EmbeddedPgError>>;

pub(super) struct Launcher {
    requests: Mutex<mpsc::Sender<Reply>>,
}

impl Launcher {
    /// Start the launcher's thread.
    pub fn new(launch: Launch) -> Result<Launcher, EmbeddedPgError> {
        let (requests, incoming) = mpsc::channel::<Reply>();
        std::thread::Builder::new()
            .name("embedded-postgres".into())
            .spawn(move || {
                for reply in incoming {
                    if let Err(Ok(mut started)) = reply.send(launch.start()) {
                        // Nobody waits for it any more (the server is stopping): stop it again.
                        stop_child(&mut started.child);
                    }
                }
            })
            .map_err(io_err("starting the embedded Postgres' launcher thread"))?;
        Ok(Launcher {
            requests: Mutex::new(requests),
        })
    }

    /// Start a postmaster on the launcher's thread.
    pub async fn start(&self) -> Result<Started, EmbeddedPgError> {
        let gone = || EmbeddedPgError::Io {
            what: "starting the embedded Postgres".into(),
            source: io::Error::other("its launcher thread is gone"),
        };
        let (reply, started) = oneshot::channel();
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(reply)
            .map_err(|_| gone())?;
        started.await.map_err(|_| gone())?
    }
}

impl Launch {
    /// Stop an orphan (or clear a stale lock file), then start the postmaster. Runs on the
    /// launcher's thread.
    fn start(&self) -> Result<Started, EmbeddedPgError> {
        stop_orphan(&self.cluster_dir)?;
        let log = open_log(&self.log_path)?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut command = Command::new(self.bindir.join("postgres"));
        command
            .arg("-D")
            .arg(&self.cluster_dir)
            .arg("-k")
            .arg(&self.cluster_dir)
            .args(["-p", &SOCKET_PORT.to_string()])
            .args(["-c", "listen_addresses="])
            .args(["-c", "unix_socket_permissions=0700"])
            .current_dir(&self.cluster_dir)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(io_err("opening the Postgres log"))?,
            )
            .stderr(log);
        if let Some(user) = self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        // SAFETY: prctl is async-signal-safe; it only marks this child to receive SIGINT (a
        // fast, clean shutdown) if this thread, and so Reeltime, dies without stopping it.
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
        Ok(Started { child, log_start })
    }
}
