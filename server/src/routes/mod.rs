//! The HTTP layer: what every handler can reach ([`AppState`]), and the router that puts the
//! resources (one module each), the dashboard's pages, the static files and the middleware
//! together. `startup` builds the state and serves this router; nothing here starts anything.

pub mod account;
pub mod events;
pub mod health;
pub mod ittybit;
pub mod job_actions;
pub mod jobs;
pub mod openapi;
pub mod uploads;

use std::convert::Infallible;
use std::sync::OnceLock;

use app::api::SampleOffer;
use app::{shell, App};
use axum::body::Body;
use axum::extract::FromRef;
use axum::http::{HeaderName, Request};
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::nonce::Nonce;
use leptos::prelude::{provide_context, use_context};
use leptos_axum::ResponseOptions;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use sqlx::PgPool;
use tower::ServiceBuilder;
use tower_http::compression::predicate::{NotForContentType, Predicate};
use tower_http::compression::{CompressionLayer, DefaultPredicate};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use tracing::Instrument;

use crate::auth::headers::{page_policy, security_headers};
use crate::auth::store::PgSessionStore;
use crate::auth::{gate::gate, Auth, COOKIE};
use crate::changes::ChangeFeed;
use crate::processor::sample::{self, SampleClip};
use crate::processor::{Processor, MOUNT};

/// Largest request body accepted anywhere (webhooks are the largest).
pub const MAX_BODY_BYTES: usize = ittybit::MAX_CALLBACK_BYTES;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub feed: ChangeFeed,
    /// Verifies the processor's webhooks; without it every webhook is refused.
    pub webhook_secret: Option<secrecy::SecretString>,
    /// How messages name the service jobs go to (`Ittybit`, `The built-in processor`).
    pub service: &'static str,
    pub leptos_options: LeptosOptions,
    /// The built site's file names and how long browsers keep them.
    pub site: crate::site::Site,
    /// The built-in processor, when it runs in this process (mounted at [`MOUNT`]).
    pub processor: Option<Processor>,
    /// The sample clip the empty dashboard offers.
    pub sample: Option<SampleClip>,
    /// Who may do what, and the limits on how often.
    pub auth: Auth,
    /// How long a session lasts without use.
    pub session_idle: time::Duration,
    /// Whose `X-Forwarded-For` is believed (the client address in logs and limits).
    pub trusted_proxies: crate::proxy::TrustedProxies,
    /// The service jobs go to, for what an operator's actions must tell it (cancels and
    /// deletes); `None` when jobs go nowhere.
    pub remote: Option<Remote>,
    /// A processing job with no news for this long is shown as stalled (the reconciler's
    /// quiet period, after which it reads the job back).
    pub stalled_after: std::time::Duration,
    /// Uploads, offered with the built-in processor.
    pub uploads: Option<crate::uploads::Uploads>,
}

/// The service jobs go to, as operators' actions reach it.
#[derive(Clone)]
pub struct Remote {
    pub client: crate::ittybit::IttybitClient,
    /// The built-in processor (which can cancel and delete), not Ittybit (which cannot).
    pub built_in: bool,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// The dashboard's page routes, listed once per process.
///
/// Listing them (`generate_route_list`) renders the app with a process-wide flag set that
/// parks every Leptos resource first polled meanwhile, in any render of any instance in the
/// process, for good (leptos_server's `SuppressResourceLoad`; leptos issue 4773): a page being
/// rendered then never finishes. One server builds its router once, before it serves, but a
/// process holding several instances (the tests, a second instance beside the first) built
/// one while another rendered, and a page request hung forever (CI, 2026-12-03). The list is
/// the same for every instance, so it is made by the first router built and shared after;
/// no listing happens once any instance serves.
pub fn page_routes() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// The largest request body: a whole part for an upload's part, [`MAX_BODY_BYTES`] for
/// everything else. A declared length over it is refused at once; an undeclared one is cut off
/// where it passes it (the extractors answer 413).
async fn limit_body(
    request: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let limit = if uploads::is_part_path(request.uri().path()) {
        reeltime::upload::PART_BYTES as usize
    } else {
        MAX_BODY_BYTES
    };
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return crate::error::ApiError::PayloadTooLarge.into_response();
    }
    next.run(request.map(|body| Body::new(http_body_util::Limited::new(body, limit))))
        .await
}

pub fn router(state: AppState) -> Router {
    let leptos_options = state.leptos_options.clone();
    let pool = state.pool.clone();
    let offer = state.sample.as_ref().map(|clip| SampleOffer {
        url: clip.url.clone(),
        ready: clip.ready.clone(),
    });
    // What the server functions and the pages take from context; and each page's nonce, which
    // the hydration scripts carry and the page's Content-Security-Policy names.
    let stalled_after = app::api::StalledAfter(state.stalled_after);
    let uploads = state.uploads.is_some();
    let context = move || {
        provide_context(pool.clone());
        provide_context(stalled_after);
        if uploads {
            provide_context(app::session::UploadsOffered);
        }
        if let Some(offer) = &offer {
            provide_context(offer.clone());
        }
        let nonce = Nonce::new();
        if let Some(response) = use_context::<ResponseOptions>() {
            if let Ok(policy) = axum::http::HeaderValue::from_str(&page_policy(&nonce)) {
                response.insert_header(axum::http::header::CONTENT_SECURITY_POLICY, policy);
            }
        }
        provide_context(nonce);
    };
    let app_shell = {
        let options = leptos_options.clone();
        let stylesheet = state.site.stylesheet();
        move || shell(options.clone(), stylesheet.clone())
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
    // The browser bundle and public files; the release build (`cargo xtask
    // build`, or cargo-leptos with `--precompress`) writes .br and .gz beside each file.
    // Each says how long a browser may keep it (crate::site).
    let static_files = ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(
            state.site.clone(),
            crate::site::cache_headers,
        ))
        .service(
            ServeDir::new(&*leptos_options.site_root)
                .precompressed_br()
                .precompressed_gzip()
                .fallback(not_found),
        );

    let sessions = SessionManagerLayer::new(PgSessionStore::new(state.pool.clone()))
        .with_name(COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.auth.https)
        .with_expiry(Expiry::OnInactivity(state.session_idle));
    let request_id = HeaderName::from_static("x-request-id");
    // The layers every route has, outermost first, with `$trace` making the request's span and
    // log line. The event stream gets a lean `$trace` of its own ([`trace_stream`]).
    macro_rules! middleware {
        ($trace:expr) => {
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                // Before the span is made: the span names the client.
                .layer(axum::middleware::from_fn_with_state(
                    state.trusted_proxies.clone(),
                    crate::proxy::client_address,
                ))
                .layer($trace)
                .layer(PropagateRequestIdLayer::new(request_id.clone()))
                .layer(axum::middleware::from_fn_with_state(
                    state.auth.https,
                    security_headers,
                ))
                .layer(sessions.clone())
                .layer(axum::middleware::from_fn_with_state(
                    state.auth.clone(),
                    gate,
                ))
        };
    }

    let mut routes = Router::new();
    if let Some(processor) = state.processor.clone() {
        routes = routes.nest(MOUNT, crate::processor::api::router(processor));
    }
    if let Some(sample) = &state.sample {
        routes = routes.nest_service(sample::PATH, ServeDir::new(&sample.dir));
    }
    let routes = routes
        .merge(health::router())
        .merge(account::router())
        .merge(jobs::router())
        .merge(job_actions::router())
        .merge(ittybit::router())
        .merge(openapi::router())
        .merge(uploads::router())
        .merge(crate::metrics::router())
        .leptos_routes_with_context(&state, page_routes(), context, app_shell)
        .fallback_service(static_files)
        // Inside the router's routes, where the matched pattern is known.
        .layer(axum::middleware::from_fn(crate::metrics::track_http))
        .layer(axum::middleware::from_fn(limit_body))
        // Media is compressed already, and compressing it would break range requests.
        .layer(
            CompressionLayer::new().compress_when(
                DefaultPredicate::new()
                    .and(NotForContentType::const_new("video/"))
                    .and(NotForContentType::const_new("audio/")),
            ),
        )
        .layer(middleware!(TraceLayer::new_for_http()
            .make_span_with(request_span)
            .on_response(
                DefaultOnResponse::new().level(tracing::Level::INFO)
            )));
    // The event stream: the same layers but two that wrap the response body, which every
    // frame to every client would pass through. Compression never applies to event streams
    // (the default predicate), and the trace layer's body reads the clock and enters the span
    // for each frame (about 5 % of the server's CPU in fan-out; docs/benchmarks.md).
    let events = events::router()
        .layer(axum::middleware::from_fn(crate::metrics::track_http))
        .layer(axum::middleware::from_fn(limit_body))
        .layer(middleware!(axum::middleware::from_fn(trace_stream)));
    routes.merge(events).with_state(state)
}

/// Each request's span: its id, the client, the method and the path. The path only: query
/// strings can carry things that don't belong in logs.
fn request_span(request: &Request<Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let client = request
        .extensions()
        .get::<crate::proxy::ClientAddr>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "-".to_owned());
    tracing::info_span!("request", request_id = %id, client = %client, method = %request.method(), path = %request.uri().path())
}

/// The span and log line [`TraceLayer`] gives other requests, for the event stream, without
/// wrapping its body: the line is written when the stream's head is sent.
async fn trace_stream(
    request: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let span = request_span(&request);
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            latency_ms = started.elapsed().as_millis() as u64,
            status = response.status().as_u16(),
            "finished processing request"
        );
    });
    response
}
