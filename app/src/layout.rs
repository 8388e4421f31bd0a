//! What every page shares: the site header (who is signed in, where they can go, signing
//! out) and the message a form left for this page.

use leptos::prelude::*;

use crate::live::LiveState;
use crate::session::{use_session, Flash, SessionInfo};

/// The header; `children` go on its right (the dashboard puts its live indicator there).
#[component]
pub fn SiteHeader(#[prop(optional)] children: Option<Children>) -> impl IntoView {
    let session = use_session();
    view! {
        <header class="site-header">
            <a class="brand" href="/">"Reeltime"</a>
            <p class="tagline">"Live media processing"</p>
            {children.map(|children| children())}
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    session.await.ok().map(|info| view! { <UserMenu info/> })
                })}
            </Suspense>
        </header>
    }
}

#[component]
fn UserMenu(info: SessionInfo) -> impl IntoView {
    let Some(viewer) = info.viewer.clone() else {
        return view! { <nav class="user-menu"><a href="/login">"Sign in"</a></nav> }.into_any();
    };
    let admin = info
        .is_admin()
        .then(|| view! { <a href="/admin/users">"Users"</a> });
    view! {
        <nav class="user-menu" aria-label="Account">
            <a href="/">"Jobs"</a>
            <a href="/stats">"Stats"</a>
            {admin}
            <a href="/account" class="signed-in-as" title="Your account">
                {viewer.email.clone()}
                <span class="role">{viewer.role.as_str()}</span>
            </a>
            <form method="post" action="/logout" class="inline-form">
                <input type="hidden" name="csrf" value=info.csrf.clone()/>
                <button type="submit" class="link-button">"Sign out"</button>
            </form>
        </nav>
    }
    .into_any()
}

/// Whether the page's live feed is connected: Live, Reconnecting… or Offline.
#[component]
pub fn LiveIndicator(live: RwSignal<LiveState>) -> impl IntoView {
    view! {
        <p class="live-indicator" data-state=move || live.get().as_str() role="status">
            {move || match live.get() {
                LiveState::Connecting => "",
                LiveState::Live => "Live",
                LiveState::Reconnecting => "Reconnecting…",
                LiveState::Offline => "Offline",
            }}
        </p>
    }
}

/// The message the last form left, if any.
#[component]
pub fn FlashMessage(flash: Option<Flash>) -> impl IntoView {
    flash.map(|flash| {
        let class = if flash.ok {
            "flash flash-ok"
        } else {
            "flash flash-error"
        };
        let role = if flash.ok { "status" } else { "alert" };
        view! { <p class=class role=role>{flash.text}</p> }
    })
}
