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
//! - [`worker`]: the pool that fetches, probes and runs ffmpeg.
//! - [`fetch`]: downloads inputs without becoming a way into private networks.
//! - [`webhook`]: signed reports with retries.
//! - [`ffmpeg`], [`probe`]: options to ffmpeg arguments, progress and ffprobe parsing.
//! - [`sample`]: the sample clip the empty dashboard offers.

pub mod api;
pub mod fetch;
pub mod ffmpeg;
pub mod probe;
pub mod sample;
pub mod store;
pub mod webhook;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

pub use ffmpeg::{
    content_type, ffmpeg_args, output_extension, MediaOptions, OptionsError, Output, ProgressParser,
};
pub use probe::{failure_reason, ffprobe_args, parse_probe, Probe, ProbeError};

use fetch::{FetchSettings, Fetcher};
use webhook::{RetryPolicy, WebhookSender};

/// Where the processor's API is mounted on the app's listener.
pub const MOUNT: &str = "/ittybit-local";

/// How the processor is set up.
#[derive(Clone, Debug)]
pub struct ProcessorSettings {
    /// Jobs processed at once.
    pub workers: usize,
    /// Its files live in `<dir>/outputs` (kept) and `<dir>/work` (inputs while processing).
    pub dir: PathBuf,
    /// The public URL output files are served at, without a trailing slash.
    pub files_url: String,
    pub max_duration: Duration,
    pub allow_private: bool,
    pub max_input_bytes: u64,
    pub fetch_timeout: Duration,
    /// URL prefixes fetched without the private-address check: the app's own samples and
    /// outputs.
    pub trusted_prefixes: Vec<String>,
    pub webhook_retry: RetryPolicy,
    pub ffmpeg: String,
    pub ffprobe: String,
}

struct Dirs {
    outputs: PathBuf,
    work: PathBuf,
}

struct Inner {
    pool: PgPool,
    settings: ProcessorSettings,
    dirs: Dirs,
    fetcher: Fetcher,
    webhooks: WebhookSender,
    /// The key its API accepts.
    api_key: SecretString,
    /// Wakes an idle worker when a job is queued.
    wake: Notify,
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
    #[error("could not set up an HTTP client: {0}")]
    Http(#[from] reqwest::Error),
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
        stopping: watch::Receiver<bool>,
    ) -> Result<Processor, StartError> {
        let dirs = Dirs {
            outputs: settings.dir.join("outputs"),
            work: settings.dir.join("work"),
        };
        for path in [&dirs.outputs, &dirs.work] {
            tokio::fs::create_dir_all(path)
                .await
                .map_err(|source| StartError::Dir {
                    path: path.clone(),
                    source,
                })?;
        }
        // Inputs left by a process that died; their jobs are fetched again.
        if let Ok(mut entries) = tokio::fs::read_dir(&dirs.work).await {
            while let Ok(Some(entry)) = entries.next_entry().await {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
        let fetcher = Fetcher::new(FetchSettings {
            allow_private: settings.allow_private,
            max_bytes: settings.max_input_bytes,
            timeout: settings.fetch_timeout,
            trusted_prefixes: settings.trusted_prefixes.clone(),
        })?;
        let webhooks = WebhookSender::new(webhook_secret, settings.webhook_retry)?;
        let workers = settings.workers.max(1);
        let processor = Processor {
            inner: Arc::new(Inner {
                pool,
                settings,
                dirs,
                fetcher,
                webhooks,
                api_key,
                wake: Notify::new(),
            }),
        };
        for _ in 0..workers {
            tokio::spawn(worker::run(processor.clone(), stopping.clone()));
        }
        tracing::info!(workers, "the built-in processor is running");
        Ok(processor)
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
            let options = MediaOptions::parse(preset.kind(), &preset.options());
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
