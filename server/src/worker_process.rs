//! `reeltime worker`: a process that runs only the built-in processor's workers, with no web
//! server (issue 13). It joins the web instances through their database (`DATABASE_URL`: the
//! queue is `processor_jobs`, claimed with leases) and their file store
//! (`REELTIME_STORAGE_URL`), and reports through the same signed webhooks, to the URL each job
//! names. So workers can run on as many machines as the transcoding needs, and the web
//! instances can run none (`REELTIME_PROCESSOR_WORKERS=0`).
//!
//! A worker announces itself in `processor_workers` (the Stats page lists it) and stops
//! cleanly on SIGTERM or Ctrl-C: its running jobs go back to the queue for another worker.
//! Killed outright, its jobs are taken by another worker once their leases run out.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::local_settings;
use crate::config::Settings;
use crate::processor;
use crate::startup::{connect, stop_tasks, StartupError, MIGRATOR};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "ITTYBIT_API_KEY is set, so jobs go to Ittybit and there is nothing for a worker to \
         run; unset it for workers of the built-in processor"
    )]
    Ittybit,
    #[error(
        "set DATABASE_URL to the web instances' database: a worker joins them through it \
         (it never starts a Postgres of its own)"
    )]
    NoDatabase,
    #[error(
        "set REELTIME_PUBLIC_URL to the web instances' address: outputs are served and \
         webhooks answered there"
    )]
    NoPublicUrl,
    #[error("REELTIME_PROCESSOR_WORKERS is 0: a worker process runs at least one")]
    NoSlots,
    #[error("{0}")]
    Startup(#[from] StartupError),
}

/// Run workers until `shutdown`, then stop them and wait for them (within a grace period).
pub async fn run(
    settings: &Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    if settings.ittybit.api_key.is_some() {
        return Err(WorkerError::Ittybit);
    }
    if settings.database_url.is_none() {
        return Err(WorkerError::NoDatabase);
    }
    let public_url = settings
        .public_url
        .clone()
        .ok_or(WorkerError::NoPublicUrl)?;
    if settings.processor.workers == 0 {
        return Err(WorkerError::NoSlots);
    }
    let (pool, _none) = connect(settings).await?;
    MIGRATOR.run(&pool).await.map_err(StartupError::from)?;
    if matches!(settings.storage, crate::storage::StorageSettings::Local(_)) {
        tracing::warn!(
            "REELTIME_STORAGE_URL is unset: this worker keeps outputs on its own disk, where \
             only a web instance sharing its data directory can serve them"
        );
    }

    let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
    let mut local = local_settings(settings);
    // The sample clip is the web instances' to offer.
    local.sample_clip = false;
    let workers = local.workers;
    let started = processor::start_local(
        pool.clone(),
        local,
        &public_url,
        &public_url,
        &tasks,
        &cancel,
    )
    .await
    .map_err(StartupError::from)?;
    let storage = settings.storage.describe();
    tracing::info!(workers, %storage, "the worker is running");
    println!("Reeltime worker running: {workers} at once, outputs in {storage}");

    shutdown.await;
    tracing::info!("stopping: running jobs go back to the queue");
    stop_tasks(&tasks, &cancel).await;
    drop(started);
    pool.close().await;
    Ok(())
}
