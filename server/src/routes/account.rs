//! The account forms: signing in and out, the first admin, one's password and tokens, and the
//! admin's page. Each answers with a redirect (303) to the page it came from, leaving a message
//! for it in the session, so the forms work without JavaScript. The gate has checked the role
//! and, for forms posted on a session, the origin and the CSRF token.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Extension, Form, Router};
use reeltime::access::{check_new_password, normalize_email};
use reeltime::{Role, TokenScope};
use serde::Deserialize;
use tower_sessions::Session;
use uuid::Uuid;

use app::db::users::{self, CreateUserError};

use super::AppState;
use crate::auth::secrets::{new_token, random_hex, sha256, token_prefix};
use crate::auth::{password, CurrentUser, Flash, CSRF, FLASH, NEW_TOKEN, USER_ID};
use crate::proxy::ClientAddr;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/setup", post(setup))
        .route("/account/password", post(change_password))
        .route("/account/tokens", post(create_token))
        .route("/account/tokens/{id}/revoke", post(revoke_token))
        .route("/admin/users", post(add_user))
        .route("/admin/users/{id}", post(change_user))
}

/// What went wrong on our side; the detail is logged, the person is told plainly.
pub(super) struct Failed(String);

impl<E: std::fmt::Display> From<E> for Failed {
    fn from(err: E) -> Failed {
        Failed(err.to_string())
    }
}

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "a form failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong on our side. Please try again in a moment.\n",
        )
            .into_response()
    }
}

pub(super) type Answer = Result<Response, Failed>;

/// Back to `to`, with a message.
pub(super) async fn back(session: &Session, to: &str, ok: bool, text: impl Into<String>) -> Answer {
    let flash = Flash {
        ok,
        text: text.into(),
    };
    session.insert(FLASH, flash).await?;
    Ok(Redirect::to(to).into_response())
}

/// A path on this server to go to after signing in (never another site).
pub(super) fn local(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next
    } else {
        "/"
    }
}

/// Start a signed-in session: a new session id (so a fixed one cannot be planted), the
/// person, and a fresh CSRF token.
async fn sign_in(session: &Session, user: Uuid) -> Result<(), Failed> {
    session.cycle_id().await?;
    session.insert(USER_ID, user).await?;
    session.insert(CSRF, random_hex()).await?;
    Ok(())
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    next: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    client: Option<Extension<ClientAddr>>,
    session: Session,
    Form(form): Form<LoginForm>,
) -> Answer {
    let email = form.email.trim().to_owned();
    // Behind a trusted proxy, the client it reports; else the peer.
    let address = client.map_or(peer.ip(), |Extension(ClientAddr(ip))| ip);
    if let Err(wait) = state.auth.limits.sign_in(address, &email) {
        tracing::warn!(address = %address, "sign-in attempts over the limit");
        return Ok(too_many_sign_ins(&state.site, wait.seconds()));
    }
    let found = users::credentials(&state.pool, &email).await?;
    let hash = found
        .as_ref()
        .filter(|c| c.user.disabled_at.is_none())
        .map(|c| c.password_hash.clone());
    if !password::verify(form.password, hash).await {
        tracing::info!("a sign-in failed");
        let to = format!(
            "/login?next={}",
            url::form_urlencoded::byte_serialize(local(&form.next).as_bytes()).collect::<String>()
        );
        return back(
            &session,
            &to,
            false,
            "That email and password do not match an enabled account.",
        )
        .await;
    }
    let user = found.expect("verified against an account").user;
    sign_in(&session, user.id).await?;
    tracing::info!(user_id = %user.id, "signed in");
    Ok(Redirect::to(local(&form.next)).into_response())
}

fn too_many_sign_ins(site: &crate::site::Site, seconds: u64) -> Response {
    let stylesheet = site.stylesheet();
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Reeltime</title>\
         <link rel=\"stylesheet\" href=\"{stylesheet}\"></head><body><main class=\"narrow\">\
         <h1>Too many sign-in attempts</h1><p>Wait {seconds} seconds, then \
         <a href=\"/login\">try again</a>.</p></main></body></html>"
    );
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Html(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

async fn logout(session: Session) -> Answer {
    session.flush().await?;
    Ok(Redirect::to("/login").into_response())
}

#[derive(Deserialize)]
struct SetupForm {
    token: String,
    email: String,
    password: String,
    confirm: String,
}

async fn setup(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<SetupForm>,
) -> Answer {
    let again = format!(
        "/setup?token={}",
        url::form_urlencoded::byte_serialize(form.token.as_bytes()).collect::<String>()
    );
    let email = match normalize_email(&form.email) {
        Ok(email) => email,
        Err(problem) => return back(&session, &again, false, problem).await,
    };
    if let Err(problem) = new_password(&form.password, &form.confirm) {
        return back(&session, &again, false, problem).await;
    }
    let hash = password::hash(form.password).await?;
    match users::create_first_admin(&state.pool, &sha256(&form.token), &email, &hash).await {
        Ok(Some(user)) => {
            tracing::info!(user_id = %user.id, "the first admin was created");
            sign_in(&session, user.id).await?;
            back(&session, "/", true, format!("Welcome. You are the admin, {email}.")).await
        }
        Ok(None) => {
            back(
                &session,
                &again,
                false,
                "That setup link has been used or has expired. Sign in, or restart the server for a new link while no account exists.",
            )
            .await
        }
        Err(CreateUserError::EmailTaken(_)) => back(&session, &again, false, "That email is taken.").await,
        Err(CreateUserError::Database(err)) => Err(err.into()),
    }
}

fn new_password(password: &str, confirm: &str) -> Result<(), String> {
    check_new_password(password)?;
    if password != confirm {
        return Err("The two passwords differ.".into());
    }
    Ok(())
}

#[derive(Deserialize)]
struct PasswordForm {
    current: String,
    password: String,
    confirm: String,
}

async fn change_password(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    session: Session,
    Form(form): Form<PasswordForm>,
) -> Answer {
    let hash = users::password_hash(&state.pool, user.id).await?;
    if !password::verify(form.current, hash).await {
        return back(
            &session,
            "/account",
            false,
            "The current password is not right.",
        )
        .await;
    }
    if let Err(problem) = new_password(&form.password, &form.confirm) {
        return back(&session, "/account", false, problem).await;
    }
    let hash = password::hash(form.password).await?;
    // Every session of the account ends; this one starts again.
    users::set_password(&state.pool, user.id, &hash).await?;
    sign_in(&session, user.id).await?;
    tracing::info!(user_id = %user.id, "password changed");
    back(
        &session,
        "/account",
        true,
        "Your password is changed; your other sessions have ended.",
    )
    .await
}

#[derive(Deserialize)]
struct TokenForm {
    name: String,
    scope: String,
}

async fn create_token(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    session: Session,
    Form(form): Form<TokenForm>,
) -> Answer {
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return back(
            &session,
            "/account",
            false,
            "Give the token a name of 1 to 100 characters.",
        )
        .await;
    }
    let Ok(scope) = form.scope.parse::<TokenScope>() else {
        return back(&session, "/account", false, "The scope is read or write.").await;
    };
    let token = new_token();
    let stored = users::create_token(
        &state.pool,
        user.id,
        name,
        scope,
        &sha256(&token),
        &token_prefix(&token),
    )
    .await?;
    tracing::info!(user_id = %user.id, token_id = %stored.id, %scope, "token created");
    session.insert(NEW_TOKEN, token).await?;
    back(
        &session,
        "/account",
        true,
        format!("The token {name:?} is made."),
    )
    .await
}

async fn revoke_token(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<Uuid>,
    session: Session,
) -> Answer {
    if users::revoke_token(&state.pool, user.id, id).await? {
        tracing::info!(user_id = %user.id, token_id = %id, "token revoked");
        back(&session, "/account", true, "The token is revoked.").await
    } else {
        back(
            &session,
            "/account",
            false,
            "There is no such token of yours to revoke.",
        )
        .await
    }
}

#[derive(Deserialize)]
struct AddUserForm {
    email: String,
    role: String,
    password: String,
}

async fn add_user(
    State(state): State<AppState>,
    Extension(admin): Extension<CurrentUser>,
    session: Session,
    Form(form): Form<AddUserForm>,
) -> Answer {
    let email = match normalize_email(&form.email) {
        Ok(email) => email,
        Err(problem) => return back(&session, "/admin/users", false, problem).await,
    };
    let Ok(role) = form.role.parse::<Role>() else {
        return back(&session, "/admin/users", false, "Pick a role.").await;
    };
    if let Err(problem) = check_new_password(&form.password) {
        return back(&session, "/admin/users", false, problem).await;
    }
    let hash = password::hash(form.password).await?;
    match users::create_user(&state.pool, &email, &hash, role).await {
        Ok(user) => {
            tracing::info!(by = %admin.id, user_id = %user.id, %role, "account added");
            back(
                &session,
                "/admin/users",
                true,
                format!("{email} can sign in now, as {role}."),
            )
            .await
        }
        Err(CreateUserError::EmailTaken(_)) => {
            back(
                &session,
                "/admin/users",
                false,
                format!("There is already an account for {email}."),
            )
            .await
        }
        Err(CreateUserError::Database(err)) => Err(err.into()),
    }
}

#[derive(Deserialize)]
struct ChangeUserForm {
    action: String,
    #[serde(default)]
    role: String,
}

async fn change_user(
    State(state): State<AppState>,
    Extension(admin): Extension<CurrentUser>,
    Path(id): Path<Uuid>,
    session: Session,
    Form(form): Form<ChangeUserForm>,
) -> Answer {
    let pool = &state.pool;
    let Some(target) = users::user(pool, id).await? else {
        return back(&session, "/admin/users", false, "There is no such account.").await;
    };
    let last_admin = target.role == Role::Admin
        && target.disabled_at.is_none()
        && users::active_admins(pool).await? <= 1;
    let done = match form.action.as_str() {
        "role" => {
            let Ok(role) = form.role.parse::<Role>() else {
                return back(&session, "/admin/users", false, "Pick a role.").await;
            };
            if last_admin && role != Role::Admin {
                return back(
                    &session,
                    "/admin/users",
                    false,
                    "That is the last admin; make someone else admin first.",
                )
                .await;
            }
            users::set_role(pool, id, role).await?;
            format!("{} is now {role}.", target.email)
        }
        "disable" => {
            if last_admin {
                return back(
                    &session,
                    "/admin/users",
                    false,
                    "That is the last admin; it cannot be disabled.",
                )
                .await;
            }
            users::set_disabled(pool, id, true).await?;
            format!(
                "{} is disabled: signed out everywhere, tokens stopped.",
                target.email
            )
        }
        "enable" => {
            users::set_disabled(pool, id, false).await?;
            format!("{} can sign in again.", target.email)
        }
        _ => return back(&session, "/admin/users", false, "Unknown action.").await,
    };
    tracing::info!(by = %admin.id, user_id = %id, action = %form.action, "account changed");
    back(&session, "/admin/users", true, done).await
}
