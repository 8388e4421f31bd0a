//! Reeltime's user interface: Leptos components and the server functions they call.
//!
//! Compiled twice: with `ssr` into the server (rendering, server functions, database access)
//! and with `hydrate` into the browser bundle.

pub mod account;
mod actions;
pub mod admin;
pub mod api;
pub(crate) mod dashboard;
#[cfg(feature = "ssr")]
pub mod db;
mod filters;
mod job_page;
mod layout;
mod live;
pub mod session;
pub mod stats;
mod store;
mod uploader;

use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{ParamSegment, SsrMode, StaticSegment};

pub use dashboard::Dashboard;

/// The HTML document around the app; rendered on the server only. `stylesheet` is the
/// stylesheet's address (its name carries a content hash in a release build).
pub fn shell(options: LeptosOptions, stylesheet: String) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <title>"Reeltime"</title>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <link rel="stylesheet" href=stylesheet/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    // Who is looking: read once per page load, rendered into the first HTML and reused by the
    // browser without asking again.
    let session: session::SessionResource = Resource::new(|| (), |_| session::whoami());
    provide_context(session);
    view! {
        <Router>
            <Routes fallback=NotFound>
                // Async: the first HTML already holds the job list, so there is no loading flash.
                <Route path=StaticSegment("") view=Dashboard ssr=SsrMode::Async/>
                <Route path=StaticSegment("login") view=account::LoginPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("setup") view=account::SetupPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("stats") view=stats::StatsPage ssr=SsrMode::Async/>
                <Route path=(StaticSegment("jobs"), ParamSegment("id")) view=job_page::JobPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("account") view=account::AccountPage ssr=SsrMode::Async/>
                <Route path=(StaticSegment("admin"), StaticSegment("users")) view=admin::UsersPage ssr=SsrMode::Async/>
            </Routes>
        </Router>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <main class="not-found">
            <h1>"Not found"</h1>
            <p><a href="/">"Back to the dashboard"</a></p>
        </main>
    }
}
