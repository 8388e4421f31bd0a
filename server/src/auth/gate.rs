//! The gate every request passes before the router: the host, the rule, who is asking, and
//! whether an unsafe request really comes from this server's own pages.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use reeltime::Role;
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tower_sessions::Session;
use uuid::Uuid;

use super::rules::{Rule, SUBMISSIONS};
use super::secrets::{sha256, verify_path, TOKEN_PREFIX};
use super::{Auth, CurrentUser, CSRF, USER_ID};
use app::db::users;

/// Largest form body the gate reads to find its CSRF token.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Who sent a request, before the rule is applied.
enum Who {
    Nobody,
    /// A bearer token that is not (or no longer) valid.
    BadToken,
    Person(CurrentUser),
}

pub async fn gate(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    if !host.as_deref().is_some_and(|h| auth.origins.allows_host(h)) {
        tracing::info!(host = ?host, "refused a request for a host this server is not");
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "This server does not answer to that name. Use its address, as REELTIME_PUBLIC_URL sets it.\n",
        )
            .into_response();
    }
    let path = request.uri().path().to_owned();
    let Some(rule) = auth.rules.find(request.method(), &path) else {
        return not_found(&path);
    };
    match rule {
        Rule::Signed | Rule::ProcessorKey => return next.run(request).await,
        Rule::Files if files_key_or_link(&auth, &request) => return next.run(request).await,
        Rule::Metrics if bearer_is(auth.metrics_token.as_ref(), &request) => {
            return next.run(request).await
        }
        _ => {}
    }
    let session = request.extensions().get::<Session>().cloned();
    let who = identify(&auth, rule, request.headers(), session.as_ref()).await;
    let who = match who {
        Ok(who) => who,
        // Health checks and the sign-in page must answer even when the database does not.
        Err(err) if rule == Rule::Public => {
            tracing::warn!(error = %err, "identifying a request failed; serving it as anonymous");
            Who::Nobody
        }
        Err(err) => {
            tracing::error!(error = %err, "identifying a request failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side.\n",
            )
                .into_response();
        }
    };
    let user = match (rule, who) {
        (Rule::Public, Who::Person(user)) => Some(user),
        (Rule::Public, _) => None,
        (_, Who::BadToken) => {
            return unauthorized(
                "That API token is not valid (revoked, or its account is disabled).",
            )
        }
        (rule, Who::Nobody) => return anonymous(rule, &request),
        (rule, Who::Person(user)) => {
            let needed = rule.role().unwrap_or(Role::Admin);
            if user.role < needed {
                return forbidden(rule, user.role, needed);
            }
            Some(user)
        }
    };
    let unsafe_method = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let by_cookie = user.as_ref().is_none_or(|u| u.csrf.is_some());
    let request = if unsafe_method && by_cookie {
        match same_origin(&auth, request, user.as_ref()).await {
            Ok(request) => request,
            Err(refused) => return refused,
        }
    } else {
        request
    };
    let mut request = request;
    if let Some(user) = user {
        if request.method() == Method::POST && SUBMISSIONS.contains(&path.as_str()) {
            if let Err(wait) = auth.limits.submission(user.id) {
                return too_many(
                    wait.seconds(),
                    "You are submitting jobs faster than this server allows; wait a moment.",
                );
            }
        }
        request.extensions_mut().insert(user);
    }
    next.run(request).await
}

/// 429 with `Retry-After`.
pub fn too_many(seconds: u64, message: &str) -> Response {
    let body = json!({ "error": "too_many_requests", "message": message, "retry_after": seconds });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Who sent the request: a bearer token where the rule accepts one, else the session.
async fn identify(
    auth: &Auth,
    rule: Rule,
    headers: &HeaderMap,
    session: Option<&Session>,
) -> Result<Who, Box<dyn std::error::Error + Send + Sync>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if let Some(token) = bearer.filter(|_| rule.accepts_tokens()) {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(Who::BadToken);
        }
        return Ok(
            match users::token_owner(&auth.pool, &sha256(token)).await? {
                Some(owner) => Who::Person(CurrentUser {
                    id: owner.user.id,
                    email: owner.user.email,
                    // Metrics are read-only: the account's role, whatever the token's scope.
                    role: if rule == Rule::Metrics {
                        owner.user.role
                    } else {
                        owner.scope.limit(owner.user.role)
                    },
                    csrf: None,
                }),
                None => Who::BadToken,
            },
        );
    }
    let Some(session) = session else {
        return Ok(Who::Nobody);
    };
    let Some(id) = session.get::<Uuid>(USER_ID).await? else {
        return Ok(Who::Nobody);
    };
    let Some(user) = users::active_user(&auth.pool, id).await? else {
        // Disabled or deleted since: the session is over.
        session.flush().await?;
        return Ok(Who::Nobody);
    };
    let csrf = session.get::<String>(CSRF).await?.unwrap_or_default();
    Ok(Who::Person(CurrentUser {
        id: user.id,
        email: user.email,
        role: user.role,
        csrf: Some(csrf),
    }))
}

/// Whether the request's bearer token is `expected` (compared in constant time).
fn bearer_is(expected: Option<&secrecy::SecretString>, request: &Request) -> bool {
    let Some(expected) = expected else {
        return false;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes()))
}

/// The built-in processor's key, or a valid signed link: enough for a media file.
fn files_key_or_link(auth: &Auth, request: &Request) -> bool {
    if let Some(key) = &auth.processor_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bool::from(given.as_bytes().ct_eq(key.expose_secret().as_bytes())) {
            return true;
        }
    }
    let query = request.uri().query().unwrap_or_default();
    query.contains("sig=")
        && verify_path(
            &auth.link_key,
            request.uri().path(),
            query,
            OffsetDateTime::now_utc(),
        )
}

/// An unsafe request on the session cookie must come from one of this server's origins; a
/// form posted by a page without JavaScript must also carry the session's CSRF token.
async fn same_origin(
    auth: &Auth,
    request: Request,
    user: Option<&CurrentUser>,
) -> Result<Request, Response> {
    let headers = request.headers();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let referer = headers.get(header::REFERER).and_then(|v| v.to_str().ok());
    let from_here = match (origin, referer) {
        (Some(origin), _) => auth.origins.allows_origin(origin),
        (None, Some(referer)) => url::Url::parse(referer).is_ok_and(|url| {
            auth.origins
                .allows_origin(&url.origin().ascii_serialization())
        }),
        (None, None) => false,
    };
    if !from_here {
        tracing::info!(?origin, "refused a cross-site request");
        return Err(cross_site(
            "This request did not come from this server's own pages.",
        ));
    }
    let Some(expected) = user.and_then(|u| u.csrf.as_deref()) else {
        return Ok(request);
    };
    if !is_form_navigation(request.headers()) {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.\n").into_response())?;
    let token = url::form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == CSRF)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if expected.is_empty() || !bool::from(token.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(cross_site(
            "This form has expired or was not sent from this server's pages. Reload the page and try again.",
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// A form the browser posts itself (no JavaScript): it asks for a page back.
fn is_form_navigation(headers: &HeaderMap) -> bool {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    form && html
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

fn not_found(path: &str) -> Response {
    if is_api(path) {
        let body = json!({ "error": "not_found", "message": "There is nothing here." });
        (StatusCode::NOT_FOUND, Json(body)).into_response()
    } else {
        (StatusCode::NOT_FOUND, "Not found.\n").into_response()
    }
}

fn unauthorized(message: &str) -> Response {
    let body = json!({ "error": "unauthorized", "message": message });
    let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"reeltime\""),
    );
    response
}

/// Nobody is signed in: pages and forms go to the sign-in page, the API answers 401.
fn anonymous(rule: Rule, request: &Request) -> Response {
    match rule {
        Rule::Page(_) | Rule::Form(_) => {
            let next = match rule {
                Rule::Page(_) => request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/"),
                _ => "/",
            };
            let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
            Redirect::to(&format!("/login?next={next}")).into_response()
        }
        _ => unauthorized("Sign in, or send a personal API token: Authorization: Bearer rt_…"),
    }
}

fn forbidden(rule: Rule, have: Role, needed: Role) -> Response {
    let message = format!("This needs the {needed} role; you act as {have}.");
    match rule {
        Rule::Api(_) | Rule::Files => {
            let body = json!({ "error": "forbidden", "message": message });
            (StatusCode::FORBIDDEN, Json(body)).into_response()
        }
        _ => (StatusCode::FORBIDDEN, format!("{message}\n")).into_response(),
    }
}

fn cross_site(message: &str) -> Response {
    let body = json!({ "error": "cross_site", "message": message });
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}
