//! Serving connections: hyper's HTTP/1 connection builder driven directly, in place of
//! `axum::serve` (issue 16, the memory an idle event stream costs).
//!
//! `axum::serve` reads the first bytes of every connection to tell HTTP/2 from HTTP/1 and
//! keeps a rewinding wrapper around the socket for the connection's life, readies each
//! connection for upgrades, and exposes none of hyper's settings. Reeltime speaks HTTP/1.1
//! only (axum's `http2` feature was never on, and nothing upgrades a connection), so here each
//! connection is a plain `hyper::server::conn::http1` connection: a thousand dashboards
//! holding `/api/events` open hold that and their streams' own state, nothing more. What a
//! connection costs is measured by `cargo run --release -p bench -- sse` (docs/benchmarks.md).
//!
//! What it keeps from `axum::serve`, and adds:
//! - every request carries the peer's `ConnectInfo<SocketAddr>`, as
//!   `into_make_service_with_connect_info` gave it (the proxy layer and the sign-in throttle
//!   read it);
//! - a failed accept (no file descriptor left, say) is logged and retried after a second, so
//!   a crowd of clients slows the server down but never stops it; an accept that failed only
//!   for that connection (reset, aborted) is skipped at once;
//! - shutdown stops accepting, asks every connection to close once its response in flight
//!   has ended (hyper's graceful shutdown), and waits for them all; event streams end because
//!   the caller cancels them as shutdown begins;
//! - `TCP_NODELAY` on every socket: an event is written when it is ready rather than held
//!   back until the previous one is acknowledged.

use std::future::Future;
use std::io::ErrorKind;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Serve `router` on `listener` until `shutdown` completes, then close every connection
/// gracefully and return once they have all closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let http = hyper::server::conn::http1::Builder::new();
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a connection failed; trying again in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(err) = socket.set_nodelay(true) {
            tracing::debug!(error = %err, "setting TCP_NODELAY failed");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = http.serve_connection(TokioIo::new(socket), service);
        let closing = closing.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                served = connection.as_mut() => log_end(served),
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    log_end(connection.await);
                }
            }
        });
    }
    drop(listener);
    closing.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

fn log_end(served: hyper::Result<()>) {
    if let Err(err) = served {
        tracing::trace!(error = %err, "a connection ended with an error");
    }
}

/// Errors of one connection only, not of the listener.
fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
