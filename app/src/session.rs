//! Who is signed in, as the pages see it. The server's gate puts a [`CurrentUser`] on every
//! request it lets through; pages read what they show (the email, the role, the CSRF token for
//! their forms, a message left by the last form) through [`whoami`].

use leptos::prelude::*;
use reeltime::Viewer;
use serde::{Deserialize, Serialize};

/// A message a form handler left for the next page (shown once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

/// What every page knows about the person looking at it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// `None`: nobody is signed in.
    pub viewer: Option<Viewer>,
    /// Goes into every form a page posts without JavaScript.
    pub csrf: String,
    pub flash: Option<Flash>,
    /// Whether this server takes uploads (it runs the built-in processor).
    pub uploads: bool,
}

/// Provided as context by a server that takes uploads.
#[cfg(feature = "ssr")]
#[derive(Clone, Copy, Debug)]
pub struct UploadsOffered;

impl SessionInfo {
    /// Whether the person may submit and act on jobs.
    pub fn can_write(&self) -> bool {
        self.viewer.as_ref().is_some_and(|v| v.role.can_write())
    }

    pub fn is_admin(&self) -> bool {
        self.viewer
            .as_ref()
            .is_some_and(|v| v.role == reeltime::Role::Admin)
    }
}

/// Who sent a request the gate let through (a request extension, server only).
#[cfg(feature = "ssr")]
#[derive(Clone, Debug)]
pub struct CurrentUser {
    pub id: uuid::Uuid,
    pub email: String,
    /// The role this request acts with (a token's scope may lower its owner's).
    pub role: reeltime::Role,
    /// The session's CSRF token; `None` for requests made with a token.
    pub csrf: Option<String>,
}

/// Session keys shared by the gate, the form handlers and the pages.
pub mod keys {
    pub const USER_ID: &str = "user_id";
    pub const CSRF: &str = "csrf";
    /// A [`super::Flash`] for the next page.
    pub const FLASH: &str = "flash";
    /// A token just created, shown once on the account page.
    pub const NEW_TOKEN: &str = "new_token";
}

/// The person behind the request being rendered or served.
#[cfg(feature = "ssr")]
pub fn current_user() -> Option<CurrentUser> {
    use_context::<http::request::Parts>()?
        .extensions
        .get::<CurrentUser>()
        .cloned()
}

/// The request's session.
#[cfg(feature = "ssr")]
pub fn session() -> Option<tower_sessions::Session> {
    use_context::<http::request::Parts>()?
        .extensions
        .get::<tower_sessions::Session>()
        .cloned()
}

/// Who is looking, and the message the last form left for them (taken, so it shows once).
#[server(prefix = "/api/fn", endpoint = "whoami")]
pub async fn whoami() -> Result<SessionInfo, ServerFnError> {
    let user = current_user();
    let flash = match session() {
        Some(session) => session
            .remove::<Flash>(keys::FLASH)
            .await
            .unwrap_or_default(),
        None => None,
    };
    Ok(SessionInfo {
        viewer: user.as_ref().map(|u| Viewer {
            email: u.email.clone(),
            role: u.role,
        }),
        csrf: user.and_then(|u| u.csrf).unwrap_or_default(),
        flash,
        uploads: use_context::<UploadsOffered>().is_some(),
    })
}

/// The page's [`SessionInfo`], read once per page load (provided by the app's root).
pub type SessionResource = Resource<Result<SessionInfo, ServerFnError>>;

pub fn use_session() -> SessionResource {
    expect_context::<SessionResource>()
}
