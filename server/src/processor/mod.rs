//! The built-in, Ittybit-compatible processor: what the dashboard talks to when no
//! `ITTYBIT_API_KEY` is set.
//!
//! It is a separate service that happens to live in the same binary: it is mounted under
//! [`MOUNT`] on the same listener, the dashboard's Ittybit client reaches it over HTTP with a
//! key generated at start, and it reports back with webhooks signed as Ittybit signs them. So
//! the dispatcher, the client and the callback route run exactly as they do against Ittybit.
//!
//! - [`api`]: `POST /jobs`, `GET /jobs/{id}`, `GET /jobs` and the output files.
//! - [`store`]: its jobs, in `processor_jobs`.
//! - [`worker`]: the pool that fetches, probes and runs ffmpeg; [`run`] runs ffmpeg within
//!   its limits, [`lease`] keeps a claimed job its worker's, [`workdir`] gives each attempt a
//!   directory of its own, [`confine`] starts the tools confined.
//! - [`fetch`]: downloads inputs without becoming a way into private networks.
//! - [`webhook`]: signed reports with retries.
//! - [`media`], [`probe`]: options to ffmpeg arguments, progress and ffprobe parsing.
//! - [`sample`]: the sample clip the empty dashboard offers.
//! - [`shared_secrets`]: its key and webhook secret, the same for every instance on the
//!   database (the queue is shared, so whoever runs a job must sign as whoever accepted it).

pub mod api;
pub mod confine;
mod disk_check;
pub mod error;
pub mod fetch;
mod given;
pub mod lease;
pub mod media;
pub mod presence;
pub mod probe;
pub mod retention;
pub mod run;
pub mod sample;
pub mod shared_secrets;
pub mod store;
pub mod webhook;
pub mod workdir;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::storage::{Storage, StorageSettings};
use confine::Confinement;
use fetch::{FetchSettings, Fetcher};
use lease::Lease;
use run::Limits;
use sample::SampleClip;
use webhook::{RetryPolicy, WebhookSender};

/// Where the processor's API is mounted on the app's listener.
pub const MOUNT: &str = "/ittybit-local";
/// How messages name this service.
pub const SERVICE: &str = "The built-in processor";

/// How the processor is set up.
#[derive(Clone, Debug)]
pub struct ProcessorSettings {
    /// Jobs processed at once.
    pub workers: usize,
    /// Its work files live in `<dir>/work` (one directory per attempt while processing).
    pub dir: PathBuf,
    /// Where its outputs are kept (`outputs/<name>`); unset, the folder `<dir>` on this
    /// machine, so outputs are in `<dir>/outputs`.
    pub storage: Option<Storage>,
    /// The public URL output files are served at, without a trailing slash.
    pub files_url: String,
    /// How long a claimed job stays its worker's without renewal.
    pub lease: Lease,
    /// The longest input, the time a run may take, the stall watchdog.
    pub limits: Limits,
    /// How ffmpeg and ffprobe are confined.
    pub confine: Confinement,
    pub allow_private: bool,
    pub max_input_bytes: u64,
    pub fetch_timeout: Duration,
    /// URL prefixes fetched without the private-address check: the app's own samples and
    /// outputs.
    pub trusted_prefixes: Vec<String>,
    pub webhook_retry: RetryPolicy,
    pub ffmpeg: String,
    pub ffprobe: String,
    /// Free space, in bytes, below which no new job is started on `dir` (0: no floor).
    pub min_free_disk: u64,
}

struct Dirs {
    work: PathBuf,
}

struct Inner {
    pool: PgPool,
    settings: ProcessorSettings,
    dirs: Dirs,
    storage: Storage,
    fetcher: Fetcher,
    webhooks: WebhookSender,
    /// The key its API accepts.
    api_key: SecretString,
    /// Wakes an idle worker when a job is queued.
    wake: Notify,
    /// The tools that did not answer at start (ffmpeg, ffprobe), as `/readyz` reports them.
    missing_tools: Vec<&'static str>,
    /// The jobs its workers run now (for its `processor_workers` row).
    running: presence::Running,
}

/// A handle to the running processor.
#[derive(Clone)]
pub struct Processor {
    inner: Arc<Inner>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("could not create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "ffmpeg runs as another user (REELTIME_PROCESSOR_USER), who cannot reach {path}: \
         make it and every folder above it searchable by others (chmod o+x), or put \
         REELTIME_DATA_DIR somewhere they are"
    )]
    Unreachable { path: PathBuf },
    #[error("could not set up an HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("could not read or store its key and webhook secret: {0}")]
    Secrets(#[from] sqlx::Error),
    #[error("its file store: {0}")]
    Storage(#[from] crate::storage::OpenError),
}

/// What a server that runs the processor in Ittybit's place tells it.
#[derive(Clone, Debug)]
pub struct LocalSettings {
    pub workers: usize,
    /// The server's data directory: the processor keeps its files in `<dir>/processor` and the
    /// sample clip in `<dir>/samples`.
    pub data_dir: PathBuf,
    /// Where outputs are kept (checked writable at start).
    pub storage: StorageSettings,
    pub allow_private: bool,
    pub max_input_bytes: u64,
    pub max_duration: Duration,
    /// A fixed wall-clock limit per ffmpeg run; unset, it follows the input.
    pub time_limit: Option<Duration>,
    /// No progress from ffmpeg for this long stops it as stalled.
    pub stall: Duration,
    /// How long a claimed job stays its worker's without renewal.
    pub lease: Duration,
    pub confine: Confinement,
    /// Write and offer the sample clip.
    pub sample_clip: bool,
    /// The programs run for each job.
    pub ffmpeg: String,
    pub ffprobe: String,
    /// Free space, in bytes, below which no new job is started (0: no floor).
    pub min_free_disk: u64,
    /// What webhooks are signed with; when unset, the one stored for every instance on the
    /// database (made up by the first).
    pub webhook_secret: Option<SecretString>,
}

/// The built-in processor as a server runs it in Ittybit's place.
pub struct Local {
    pub processor: Processor,
    /// Where the server's Ittybit client reaches its API.
    pub base_url: String,
    /// The key its API accepts, the same for every instance on the database.
    pub api_key: SecretString,
    /// What its webhooks are signed with.
    pub webhook_secret: SecretString,
    /// The sample clip, unless turned off.
    pub sample: Option<SampleClip>,
}

/// Start the built-in processor for a server that people reach at `public_url` and that
/// reaches itself at `self_url`. Its key, and its webhook secret unless one is given, are the
/// ones stored for every instance on the database ([`shared_secrets`]). Its workers are tasks
/// of `tasks` and stop at `cancel`.
pub async fn start_local(
    pool: PgPool,
    settings: LocalSettings,
    public_url: &str,
    self_url: &str,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> Result<Local, StartError> {
    let shared_secrets::SharedSecrets {
        api_key,
        webhook_secret,
    } = shared_secrets::load(&pool, settings.webhook_secret).await?;
    // The app's own files: the sample clip and earlier outputs.
    let trusted_prefixes = [public_url, self_url]
        .into_iter()
        .flat_map(|base| {
            [
                format!("{base}{}/", sample::PATH),
                format!("{base}{MOUNT}/files/"),
                format!("{base}{}/", crate::uploads::FILES_PATH),
            ]
        })
        .collect();
    let processor = Processor::start(
        pool,
        ProcessorSettings {
            workers: settings.workers,
            dir: settings.data_dir.join("processor"),
            storage: Some(Storage::open(settings.storage).await?),
            files_url: format!("{public_url}{MOUNT}/files"),
            lease: Lease::of(settings.lease),
            limits: Limits {
                max_duration: settings.max_duration,
                time_limit: settings.time_limit,
                stall: settings.stall,
                kill_grace: Duration::from_secs(10),
            },
            confine: settings.confine,
            allow_private: settings.allow_private,
            max_input_bytes: settings.max_input_bytes,
            fetch_timeout: Duration::from_secs(600),
            trusted_prefixes,
            webhook_retry: RetryPolicy {
                first_delay: Duration::from_secs(1),
                max_attempts: 10,
            },
            ffmpeg: settings.ffmpeg,
            ffprobe: settings.ffprobe,
            min_free_disk: settings.min_free_disk,
        },
        api_key.clone(),
        webhook_secret.clone(),
        tasks,
        cancel,
    )
    .await?;
    let sample = settings.sample_clip.then(|| {
        sample::offer(
            settings.data_dir.join("samples"),
            public_url,
            processor.inner.settings.ffmpeg.clone(),
            tasks,
        )
    });
    tracing::info!(
        "ITTYBIT_API_KEY is not set: jobs go to the built-in processor at {self_url}{MOUNT}"
    );
    Ok(Local {
        processor,
        base_url: format!("{self_url}{MOUNT}"),
        api_key,
        webhook_secret,
        sample,
    })
}

/// The tools among ffmpeg and ffprobe that cannot be run with `-version`.
async fn missing_tools(settings: &ProcessorSettings) -> Vec<&'static str> {
    let mut missing = Vec::new();
    for (name, program) in [("ffmpeg", &settings.ffmpeg), ("ffprobe", &settings.ffprobe)] {
        let ran = tokio::process::Command::new(program)
            .arg("-version")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await;
        if !ran.is_ok_and(|status| status.success()) {
            missing.push(name);
        }
    }
    missing
}

/// Check that the tools' user can reach `work` (each attempt's directory, inside it, is
/// handed to that user); `work` itself lets others through but not list it.
async fn reachable_by_tools(
    confine: &Confinement,
    work: &std::path::Path,
) -> Result<(), StartError> {
    use std::os::unix::fs::PermissionsExt as _;
    let unreachable = || StartError::Unreachable {
        path: work.to_owned(),
    };
    tokio::fs::set_permissions(work, std::fs::Permissions::from_mode(0o711))
        .await
        .map_err(|_| unreachable())?;
    let searchable = confine
        .command("test")
        .arg("-x")
        .arg(work)
        .status()
        .await
        .is_ok_and(|status| status.success());
    if searchable {
        Ok(())
    } else {
        Err(unreachable())
    }
}

/// A random secret: 256 bits from the OS, as hex.
pub fn random_secret() -> SecretString {
    SecretString::from(format!(
        "{}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    ))
}

impl Processor {
    /// Start the workers. The processor accepts `api_key` and signs webhooks with
    /// `webhook_secret`.
    pub async fn start(
        pool: PgPool,
        settings: ProcessorSettings,
        api_key: SecretString,
        webhook_secret: SecretString,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Result<Processor, StartError> {
        let storage = match &settings.storage {
            Some(storage) => storage.clone(),
            None => Storage::connect(StorageSettings::Local(settings.dir.clone()))?,
        };
        let dirs = Dirs {
            work: settings.dir.join("work"),
        };
        // Outputs on this machine: their folder, swept of partial files below.
        let outputs = storage.local_dir().map(|dir| dir.join("outputs"));
        for path in std::iter::once(&dirs.work).chain(&outputs) {
            tokio::fs::create_dir_all(path)
                .await
                .map_err(|source| StartError::Dir {
                    path: path.clone(),
                    source,
                })?;
        }
        if settings.confine.run_as.is_some() {
            reachable_by_tools(&settings.confine, &dirs.work).await?;
        }
        // What a process that died left: its jobs are fetched again once their leases run out.
        match store::live_leases(&pool).await {
            Ok(live) => {
                workdir::sweep(&dirs.work, outputs.as_deref(), &live).await;
            }
            Err(err) => tracing::warn!(error = %err, "could not read the processor's leases"),
        }
        let fetcher = Fetcher::new(FetchSettings {
            own_key: Some(api_key.clone()),
            allow_private: settings.allow_private,
            max_bytes: settings.max_input_bytes,
            timeout: settings.fetch_timeout,
            trusted_prefixes: settings.trusted_prefixes.clone(),
        })?;
        let webhooks = WebhookSender::new(webhook_secret, settings.webhook_retry, tasks, cancel)?;
        // No workers: a web instance that leaves jobs to `reeltime worker` processes
        // (REELTIME_PROCESSOR_WORKERS=0), and tests that step the queue with `run_one`.
        let workers = settings.workers;
        let missing_tools = missing_tools(&settings).await;
        for tool in &missing_tools {
            tracing::error!(
                "{tool} is not installed (or does not run): the built-in processor fails every \
                 job until it is; install ffmpeg, or set ITTYBIT_API_KEY to use Ittybit"
            );
        }
        let processor = Processor {
            inner: Arc::new(Inner {
                pool,
                settings,
                dirs,
                storage,
                fetcher,
                webhooks,
                api_key,
                wake: Notify::new(),
                missing_tools,
                running: presence::Running::default(),
            }),
        };
        for _ in 0..workers {
            tasks.spawn(worker::run(processor.clone(), cancel.clone()));
        }
        if workers > 0 {
            presence::announce(
                processor.pool().clone(),
                workers,
                processor.inner.running.clone(),
                tasks,
                cancel,
            );
        }
        tracing::info!(workers, "the built-in processor is running");
        Ok(processor)
    }

    /// Take the oldest queued job and process it to the end (tests step the queue with it);
    /// `false` when nothing was waiting.
    pub async fn run_one(&self) -> Result<bool, sqlx::Error> {
        let cancel = CancellationToken::new();
        match self.claim().await? {
            Some((job, owner)) => {
                self.run_job(job, owner, &cancel).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The tools (ffmpeg, ffprobe) that did not run when the processor started.
    pub fn missing_tools(&self) -> &[&'static str] {
        &self.inner.missing_tools
    }

    /// Where its outputs are kept.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// The largest input it downloads, in bytes.
    pub fn max_input_bytes(&self) -> u64 {
        self.inner.settings.max_input_bytes
    }

    /// The key its API accepts (the dashboard's client is given it at start).
    pub fn api_key(&self) -> &SecretString {
        &self.inner.api_key
    }

    fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Wake a worker: a job was queued.
    fn wake(&self) {
        self.inner.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reeltime::Preset;

    #[test]
    fn every_dashboard_preset_is_something_the_processor_does() {
        for preset in Preset::ALL {
            let options = media::MediaOptions::parse(preset.kind(), &preset.options());
            assert!(options.is_ok(), "{}: {:?}", preset.id(), options.err());
        }
    }

    #[test]
    fn secrets_are_random_and_long() {
        use secrecy::ExposeSecret;
        let (a, b) = (random_secret(), random_secret());
        assert_eq!(a.expose_secret().len(), 64);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
