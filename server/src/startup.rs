//! Building the application: database, migrations, the backend jobs go to, the listener; then
//! serving it until shutdown. Tests build it the same way on port 0 with a database of their
//! own. The state and the router live in `routes`.
//!
//! Every background task (the change listener, the dispatcher, the processor's workers, its
//! webhook deliveries, the embedded Postgres' supervisor) is spawned on the application's [`TaskTracker`] and stops at its
//! [`CancellationToken`]; shutdown cancels, waits for the tasks (workers put their jobs back
//! in the queue), and only then closes the pool.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use leptos::config::LeptosOptions;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::limits::{LimitSettings, Limits};
use crate::auth::rules::Rules;
use crate::auth::secrets::random_hex;
use crate::auth::{setup, Auth, Origins};
use crate::backend::Backend;
use crate::changes::ChangeFeed;
use crate::config::Settings;
use crate::dispatch::{DispatchSettings, Dispatcher};
use crate::embedded_pg::{EmbeddedPgError, EmbeddedPostgres};
use crate::ittybit::{IttybitClient, IttybitConfig};
use crate::processor::{self, Processor, StartError};
use crate::retention::Cleanup;
use crate::routes::ittybit::CALLBACK_PATH;
use crate::routes::{router, AppState};
use crate::site::Site;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How long shutdown waits for background tasks before closing the pool anyway.
const TASKS_GRACE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("embedded Postgres: {0}")]
    EmbeddedPostgres(#[from] EmbeddedPgError),
    #[error("DATABASE_URL: {0}")]
    DatabaseUrl(sqlx::Error),
    #[error("could not connect to the database: {0}")]
    Connect(sqlx::Error),
    #[error(
        "DATABASE_URL points at a transaction-mode connection pooler (two connections were \
         given the same database session, as PgBouncer in transaction mode and Supabase's \
         pooler on port 6543 do). Reeltime holds a LISTEN connection for the live feed, which \
         such a pooler cannot carry. Connect directly or through a session-mode pooler: on \
         Supabase, port 5432 (db.<project>.supabase.co:5432, or the pooler's session mode on \
         5432), not 6543."
    )]
    TransactionPooler,
    #[error("could not migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("could not set up the HTTP client: {0}")]
    HttpClient(reqwest::Error),
    #[error("the built-in processor: {0}")]
    Processor(#[from] StartError),
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    pool: PgPool,
    embedded: Option<EmbeddedPostgres>,
    processor: Option<Processor>,
    feed: ChangeFeed,
    tasks: TaskTracker,
    cancel: CancellationToken,
    setup_link: Option<String>,
}

impl Application {
    /// Connect (starting the embedded Postgres when no `DATABASE_URL` is set), migrate, bind,
    /// and start the background tasks.
    pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
        let (pool, embedded) = connect(settings).await?;
        MIGRATOR.run(&pool).await?;

        let addr = SocketAddr::new(settings.host, settings.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        let public_url = settings.public_url_or(local.port());

        let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
        if let Some(pg) = &embedded {
            // Started again if it dies; the watch ends at `cancel`, before shutdown stops it.
            pg.supervise(&tasks, &cancel);
        }
        let feed = ChangeFeed::start(
            pool.clone(),
            settings.events_buffer,
            settings.change_retention,
            &tasks,
            &cancel,
        );
        let access = &settings.access;
        let auth = Auth {
            pool: pool.clone(),
            rules: Arc::new(Rules::new()),
            limits: Limits::new(LimitSettings {
                sign_ins_per_minute: access.sign_ins_per_minute,
                submissions_per_minute: access.submissions_per_minute,
                streams_per_user: access.streams_per_user,
            }),
            origins: Arc::new(Origins::new(&public_url, &self_authority(local))),
            link_key: random_hex().into_bytes().into(),
            processor_key: None,
            metrics_token: settings.metrics_token.clone(),
            https: public_url.starts_with("https://"),
        };
        let site = Site::load(&settings.site_root);
        if site.hash_file().is_some() {
            tracing::info!("the browser bundle has hashed names: browsers keep it for a year");
        }
        let mut state = AppState {
            pool: pool.clone(),
            feed: feed.clone(),
            webhook_secret: None,
            service: "Ittybit",
            leptos_options: leptos_options(settings, &site, local),
            site,
            processor: None,
            sample: None,
            auth,
            session_idle: time::Duration::try_from(access.session_idle)
                .unwrap_or(time::Duration::WEEK),
            trusted_proxies: settings.trusted_proxies.clone(),
            remote: None,
            stalled_after: settings.ittybit.reconcile_after,
            uploads: None,
        };
        let client = match Backend::choose(settings) {
            Backend::Ittybit {
                client,
                webhook_secret,
            } => {
                state.webhook_secret = webhook_secret;
                Some(client)
            }
            Backend::Local(local_settings) => {
                let self_url = format!("http://{}", self_authority(local));
                let local = processor::start_local(
                    pool.clone(),
                    *local_settings,
                    &public_url,
                    &self_url,
                    &tasks,
                    &cancel,
                )
                .await?;
                state.webhook_secret = Some(local.webhook_secret);
                state.auth.processor_key = Some(local.api_key.clone());
                state.service = processor::SERVICE;
                state.uploads = Some(crate::uploads::Uploads {
                    storage: local.processor.storage().clone(),
                    max_bytes: local.processor.max_input_bytes(),
                    public_url: public_url.clone(),
                });
                state.processor = Some(local.processor);
                state.sample = local.sample;
                Some(IttybitConfig {
                    service: processor::SERVICE,
                    base_url: local.base_url,
                    api_key: local.api_key,
                    api_version: None,
                    timeout: settings.ittybit.timeout,
                })
            }
            Backend::Off => {
                tracing::warn!(
                    "ITTYBIT_API_KEY is not set and REELTIME_PROCESSOR is off: jobs stay pending"
                );
                None
            }
        };
        crate::metrics::handle();
        crate::metrics::watch_jobs(
            &feed,
            crate::metrics::service_label(state.service, client.is_some()),
            &tasks,
            &cancel,
        );
        if let Some(config) = client {
            let client = IttybitClient::new(config).map_err(StartupError::HttpClient)?;
            state.remote = Some(crate::routes::Remote {
                client: client.clone(),
                built_in: state.processor.is_some(),
            });
            let ittybit = &settings.ittybit;
            let dispatch = DispatchSettings {
                webhook_url: format!("{public_url}{CALLBACK_PATH}"),
                max_attempts: ittybit.max_attempts,
                backoff: ittybit.backoff,
                lease: ittybit.lease,
                reconcile_after: ittybit.reconcile_after,
                concurrency: ittybit.dispatch_concurrency,
            };
            Dispatcher::new(pool.clone(), client, dispatch).start(&feed, &tasks, &cancel);
        }
        Cleanup {
            pool: pool.clone(),
            retention: settings.retention.clone(),
            processor: state.processor.clone(),
            limits: Some(state.auth.limits.clone()),
        }
        .start(&tasks, &cancel);
        let setup_link = setup::link(&pool, &public_url)
            .await
            .map_err(StartupError::Connect)?;
        let processor = state.processor.clone();
        Ok(Application {
            listener,
            router: router(state),
            pool,
            embedded,
            processor,
            feed,
            tasks,
            cancel,
            setup_link,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// While no account exists: the one-time link that creates the first admin (print it).
    pub fn setup_link(&self) -> Option<&str> {
        self.setup_link.as_deref()
    }

    /// The built-in processor, when it runs here.
    pub fn processor(&self) -> Option<&Processor> {
        self.processor.as_ref()
    }

    /// The change feed every event stream reads.
    pub fn feed(&self) -> &ChangeFeed {
        &self.feed
    }

    /// Serve until `shutdown` completes; then end the event streams and stop the background
    /// tasks, let requests in flight finish, wait for the tasks, close the pool and stop the
    /// embedded Postgres.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Application {
            listener,
            router,
            pool,
            mut embedded,
            processor: _,
            feed: _,
            tasks,
            cancel,
            setup_link: _,
        } = self;
        // Graceful shutdown waits for every response to finish, and a live stream never
        // would: cancelling ends them too.
        let stopping = cancel.clone();
        let served = crate::serve::serve(listener, router, async move {
            shutdown.await;
            stopping.cancel();
        })
        .await;
        stop_tasks(&tasks, &cancel).await;
        pool.close().await;
        if let Some(pg) = embedded.as_mut() {
            pg.stop();
        }
        served
    }
}

/// Cancel the background tasks and wait for them, at most [`TASKS_GRACE`].
pub(crate) async fn stop_tasks(tasks: &TaskTracker, cancel: &CancellationToken) {
    cancel.cancel();
    tasks.close();
    if tokio::time::timeout(TASKS_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = tasks.len(),
            "background tasks did not stop in time; closing anyway"
        );
    }
}

/// The pool, on `DATABASE_URL` or on an embedded Postgres started here.
pub(crate) async fn connect(
    settings: &Settings,
) -> Result<(PgPool, Option<EmbeddedPostgres>), StartupError> {
    let (connect, embedded) = match &settings.database_url {
        Some(url) => {
            let options: PgConnectOptions = url
                .expose_secret()
                .parse()
                .map_err(StartupError::DatabaseUrl)?;
            (options, None)
        }
        None => {
            let pg = EmbeddedPostgres::start(&settings.data_dir).await?;
            (pg.connect_options(), Some(pg))
        }
    };
    if let Some(url) = &settings.database_url {
        refuse_transaction_pooler(&connect, url.expose_secret()).await?;
    }
    let pool = PgPoolOptions::new()
        .max_connections(settings.db_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(connect.log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(1)))
        .await
        .map_err(StartupError::Connect)?;
    Ok((pool, embedded))
}

/// Refuse a transaction-mode pooler before anything else talks to it (its first symptom would
/// otherwise be a puzzling "prepared statement does not exist" from the migrations, and later
/// a live feed that silently hears nothing): two connections opened one after the other must
/// be two database sessions. Through a transaction-mode pooler, the second is handed the
/// session the first just released. Simple queries only (no prepared statements), which such
/// a pooler does carry.
#[tracing::instrument(skip_all)]
async fn refuse_transaction_pooler(
    options: &PgConnectOptions,
    url: &str,
) -> Result<(), StartupError> {
    use sqlx::{Connection, Row};
    let backend = |options: PgConnectOptions| async move {
        let mut conn = sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(StartupError::Connect)?;
        let row = sqlx::raw_sql("select pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .map_err(StartupError::Connect)?;
        let pid: i32 = row.try_get(0).map_err(StartupError::Connect)?;
        Ok::<_, StartupError>((conn, pid))
    };
    let (first, first_pid) = backend(options.clone()).await?;
    let (second, second_pid) = backend(options.clone()).await?;
    let _ = (first.close().await, second.close().await);
    if first_pid == second_pid {
        return Err(StartupError::TransactionPooler);
    }
    if url::Url::parse(url).ok().and_then(|u| u.port()) == Some(6543) {
        tracing::warn!("DATABASE_URL uses port 6543, Supabase's transaction-mode pooler port; the live feed needs a session (port 5432)");
    }
    Ok(())
}

fn leptos_options(settings: &Settings, site: &Site, local: SocketAddr) -> LeptosOptions {
    let mut options = LeptosOptions::builder()
        .output_name(crate::site::OUTPUT_NAME)
        .site_root(settings.site_root.to_string_lossy().into_owned())
        .site_pkg_dir(crate::site::PKG)
        .site_addr(local)
        .build();
    if let Some(hash_file) = site.hash_file() {
        options.hash_files = true;
        options.hash_file = hash_file.to_string_lossy().into_owned().into();
    }
    options
}

/// Where this process reaches itself (`host:port`): the listening address, loopback if it
/// listens on every interface.
fn self_authority(local: SocketAddr) -> String {
    let loopback = match local.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(loopback, local.port()).to_string()
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: call it before announcing the server, so a signal that comes
/// right after the announcement shuts down gracefully instead of killing the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut interrupt =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        let terminate = async {
            match terminate.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let interrupt = async {
            match interrupt.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = terminate => {},
            _ = interrupt => {},
        }
        tracing::info!("shutting down");
    }
}
