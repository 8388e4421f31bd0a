//! Building the application: database, migrations, routes, listener. Tests build it the same
//! way on port 0 with a database of their own.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use app::{shell, App};
use axum::body::Body;
use axum::extract::FromRef;
use axum::http::{HeaderName, Request};
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::compression::predicate::{NotForContentType, Predicate};
use tower_http::compression::{CompressionLayer, DefaultPredicate};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::changes::ChangeFeed;
use crate::config::Settings;
use crate::dispatch::{self, DispatchSettings};
use crate::embedded_pg::{EmbeddedPgError, EmbeddedPostgres};
use crate::ittybit::{IttybitClient, IttybitConfig};
use crate::processor::{sample, Processor, StartError, MOUNT};
use crate::routes;
use crate::routes::ittybit::CALLBACK_PATH;
use app::api::SampleClip;

/// Largest request body accepted anywhere (webhooks are the largest).
pub const MAX_BODY_BYTES: usize = crate::routes::ittybit::MAX_CALLBACK_BYTES;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub feed: ChangeFeed,
    /// Verifies Ittybit's webhooks; without it every webhook is refused.
    pub webhook_secret: Option<secrecy::SecretString>,
    pub leptos_options: LeptosOptions,
    /// The built-in processor, when it runs in this process (mounted at [`MOUNT`]).
    pub processor: Option<Processor>,
    /// The sample clip the empty dashboard offers.
    pub sample: Option<SampleClip>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("embedded Postgres: {0}")]
    EmbeddedPostgres(#[from] EmbeddedPgError),
    #[error("DATABASE_URL: {0}")]
    DatabaseUrl(sqlx::Error),
    #[error("could not connect to the database: {0}")]
    Connect(sqlx::Error),
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
    stop: tokio::sync::watch::Sender<bool>,
    router: Router,
    pool: PgPool,
    embedded: Option<EmbeddedPostgres>,
    processor: Option<Processor>,
}

impl Application {
    /// Connect (starting the embedded Postgres when no `DATABASE_URL` is set), migrate, bind.
    pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
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
        let pool = PgPoolOptions::new()
            .max_connections(settings.db_max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(
                connect.log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(1)),
            )
            .await
            .map_err(StartupError::Connect)?;
        MIGRATOR.run(&pool).await?;

        let addr = SocketAddr::new(settings.host, settings.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        let leptos_options = LeptosOptions::builder()
            .output_name("reeltime")
            .site_root(settings.site_root.to_string_lossy().into_owned())
            .site_pkg_dir("pkg")
            .site_addr(local)
            .build();
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let feed = ChangeFeed::start(
            pool.clone(),
            settings.events_buffer,
            settings.change_retention,
            stopping,
        );
        let public_url = settings.public_url_or(local.port());
        // Where this process reaches itself: the listening address, loopback if it listens on
        // every interface.
        let loopback = match local.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let self_url = format!("http://{}", SocketAddr::new(loopback, local.port()));
        let mut webhook_secret = settings.ittybit.webhook_secret.clone();
        let mut processor = None;
        let mut sample = None;
        let ittybit = match &settings.ittybit.api_key {
            Some(api_key) => Some(IttybitConfig {
                service: "Ittybit",
                base_url: settings.ittybit.api_url.clone(),
                api_key: api_key.clone(),
                api_version: settings.ittybit.api_version.clone(),
                timeout: settings.ittybit.timeout,
            }),
            None if settings.processor.enabled => {
                let local = crate::processor::start_local(
                    pool.clone(),
                    settings,
                    &public_url,
                    &self_url,
                    stop.subscribe(),
                )
                .await?;
                webhook_secret = Some(local.webhook_secret);
                processor = Some(local.processor);
                sample = local.sample;
                Some(local.client)
            }
            None => {
                tracing::warn!(
                    "ITTYBIT_API_KEY is not set and REELTIME_PROCESSOR is off: jobs stay pending"
                );
                None
            }
        };
        if let Some(config) = ittybit {
            let client = IttybitClient::new(config).map_err(StartupError::HttpClient)?;
            dispatch::start(
                pool.clone(),
                client,
                DispatchSettings {
                    webhook_url: format!("{public_url}{CALLBACK_PATH}"),
                    max_attempts: settings.ittybit.max_attempts,
                    backoff: settings.ittybit.backoff,
                    lease: settings.ittybit.lease,
                    reconcile_after: settings.ittybit.reconcile_after,
                    concurrency: 8,
                },
                &feed,
                stop.subscribe(),
            );
        }
        let router = router(AppState {
            pool: pool.clone(),
            feed,
            webhook_secret,
            leptos_options,
            processor: processor.clone(),
            sample,
        });
        Ok(Application {
            listener,
            stop,
            router,
            pool,
            embedded,
            processor,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The built-in processor, when it runs here.
    pub fn processor(&self) -> Option<&Processor> {
        self.processor.as_ref()
    }

    /// Serve until `shutdown` completes, let requests in flight finish, then close the pool
    /// and stop the embedded Postgres.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Application {
            listener,
            stop,
            router,
            pool,
            mut embedded,
            processor: _,
        } = self;
        // On shutdown, end the event streams too: graceful shutdown waits for every
        // response to finish, and a live stream never would.
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await;
        pool.close().await;
        if let Some(pg) = embedded.as_mut() {
            pg.stop();
        }
        served
    }
}

pub fn router(state: AppState) -> Router {
    let leptos_options = state.leptos_options.clone();
    let pool = state.pool.clone();
    let sample = state.sample.clone();
    let context = move || {
        provide_context(pool.clone());
        if let Some(sample) = &sample {
            provide_context(sample.clone());
        }
    };
    let app_shell = {
        let options = leptos_options.clone();
        move || shell(options.clone())
    };

    // Unknown paths that are not files render the app's "not found" page (status 404).
    let not_found = {
        let handler =
            leptos_axum::render_app_to_stream_with_context(context.clone(), app_shell.clone());
        tower::service_fn(move |req: Request<Body>| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(req).await) }
        })
    };
    // The browser bundle and public files; cargo-leptos writes .br and .gz beside each file.
    let static_files = ServeDir::new(&*leptos_options.site_root)
        .precompressed_br()
        .precompressed_gzip()
        .fallback(not_found);

    let request_id = HeaderName::from_static("x-request-id");
    let middleware = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                // The path only: query strings can carry things that don't belong in logs.
                tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
            })
            .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(request_id))
        // Media is compressed already, and compressing it would break range requests.
        .layer(CompressionLayer::new().compress_when(
            DefaultPredicate::new()
                .and(NotForContentType::const_new("video/"))
                .and(NotForContentType::const_new("audio/")),
        ))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES));

    let mut routes = Router::new();
    if let Some(processor) = state.processor.clone() {
        routes = routes.nest(MOUNT, crate::processor::api::router(processor));
    }
    if let Some(sample) = &state.sample {
        routes = routes.nest_service(sample::PATH, ServeDir::new(&sample.dir));
    }
    routes
        .merge(routes::health::router())
        .merge(routes::jobs::router())
        .merge(routes::events::router())
        .merge(routes::ittybit::router())
        .leptos_routes_with_context(&state, generate_route_list(App), context, app_shell)
        .fallback_service(static_files)
        .layer(middleware)
        .with_state(state)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
