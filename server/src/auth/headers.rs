//! Security headers on every response. Pages rendered by Leptos carry their own
//! `Content-Security-Policy` with a per-response nonce for the hydration scripts (set where
//! the page is rendered, see `routes::page_context`); everything else gets a policy that
//! allows nothing to run.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The policy of a page: its own scripts with the nonce, WASM compiled from its own files,
/// its own styles, media from here or https (Ittybit's outputs), no frames, no plugins.
pub fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data: https:; media-src 'self' https:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

const NOTHING_RUNS: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                            media-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers; `https` adds HSTS.
pub async fn security_headers(State(https): State<bool>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(NOTHING_RUNS));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}
