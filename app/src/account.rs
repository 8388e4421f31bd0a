//! Signing in, setting up the first account, and one's own account: password and personal API
//! tokens. The forms post to the server's own handlers (`server/src/routes/account.rs`), which
//! answer with a redirect back here and leave a message; so every form works without
//! JavaScript.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use reeltime::TokenScope;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::layout::{FlashMessage, SiteHeader};
use crate::session::{use_session, SessionInfo};

/// The sign-in page.
#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let next = move || {
        query
            .read()
            .get("next")
            .filter(|n| n.starts_with('/') && !n.starts_with("//"))
            .unwrap_or_else(|| "/".to_owned())
    };
    let session = use_session();
    view! {
        <SiteHeader/>
        <main class="narrow">
            <h1>"Sign in"</h1>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let info = session.await.unwrap_or_default();
                    let signed_in = info.viewer.clone().map(|viewer| view! {
                        <p class="muted">"You are signed in as " {viewer.email} ". "
                            <a href="/">"Go to the jobs"</a></p>
                    });
                    view! {
                        <FlashMessage flash=info.flash/>
                        {signed_in}
                        <form method="post" action="/login" class="stacked-form">
                            <input type="hidden" name="next" value=next/>
                            <div class="field">
                                <label for="email">"Email"</label>
                                <input id="email" name="email" type="email" autocomplete="username" required/>
                            </div>
                            <div class="field">
                                <label for="password">"Password"</label>
                                <input id="password" name="password" type="password" autocomplete="current-password" required/>
                            </div>
                            <button type="submit">"Sign in"</button>
                        </form>
                        <p class="muted">"Forgot your password? An admin can set a new one, or run "
                            <code>"reeltime user reset-password <email>"</code> " on the server."</p>
                    }
                })}
            </Suspense>
        </main>
    }
}

/// The first-run page: the link the server printed creates the first admin.
#[component]
pub fn SetupPage() -> impl IntoView {
    let query = use_query_map();
    let token = move || query.read().get("token").unwrap_or_default();
    let session = use_session();
    view! {
        <SiteHeader/>
        <main class="narrow">
            <h1>"Create the first account"</h1>
            <p class="muted">"This account is the admin: it can add the others. The link that brought you here works once."</p>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let info = session.await.unwrap_or_default();
                    view! { <FlashMessage flash=info.flash/> }
                })}
            </Suspense>
            <form method="post" action="/setup" class="stacked-form">
                <input type="hidden" name="token" value=token/>
                <div class="field">
                    <label for="email">"Email"</label>
                    <input id="email" name="email" type="email" autocomplete="username" required/>
                </div>
                <NewPassword/>
                <button type="submit">"Create the account"</button>
            </form>
        </main>
    }
}

/// A new password, typed twice.
#[component]
fn NewPassword() -> impl IntoView {
    view! {
        <div class="field">
            <label for="password">"Password"</label>
            <input id="password" name="password" type="password" autocomplete="new-password"
                minlength=reeltime::access::MIN_PASSWORD_CHARS.to_string() required/>
            <p class="hint muted">{format!("At least {} characters.", reeltime::access::MIN_PASSWORD_CHARS)}</p>
        </div>
        <div class="field">
            <label for="confirm">"The same password again"</label>
            <input id="confirm" name="confirm" type="password" autocomplete="new-password" required/>
        </div>
    }
}

/// A personal API token as its owner sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub scope: TokenScope,
    pub prefix: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked: bool,
}

/// One's tokens, and the one just created (shown this once).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub tokens: Vec<TokenView>,
    pub new_token: Option<String>,
}

#[server(prefix = "/api/fn", endpoint = "list_tokens")]
pub async fn list_tokens() -> Result<Tokens, ServerFnError> {
    use crate::session::{current_user, keys, session};
    let user = current_user().ok_or_else(|| ServerFnError::new("Sign in first."))?;
    let pool = use_context::<sqlx::PgPool>().ok_or_else(|| ServerFnError::new("unavailable"))?;
    let tokens = crate::db::users::list_tokens(&pool, user.id)
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "listing tokens failed");
            ServerFnError::new("Your tokens could not be read right now.")
        })?;
    let new_token = match session() {
        Some(session) => session
            .remove::<String>(keys::NEW_TOKEN)
            .await
            .unwrap_or_default(),
        None => None,
    };
    Ok(Tokens {
        tokens: tokens
            .into_iter()
            .map(|t| TokenView {
                id: t.id.to_string(),
                name: t.name,
                scope: t.scope,
                prefix: t.prefix,
                created_at: t.created_at,
                last_used_at: t.last_used_at,
                revoked: t.revoked_at.is_some(),
            })
            .collect(),
        new_token,
    })
}

/// One's own account: the password and the personal API tokens.
#[component]
pub fn AccountPage() -> impl IntoView {
    let session = use_session();
    let tokens = Resource::new(|| (), |_| list_tokens());
    view! {
        <SiteHeader/>
        <main class="narrow">
            <h1>"Your account"</h1>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let info = session.await.unwrap_or_default();
                    let tokens = tokens.await;
                    view! {
                        <FlashMessage flash=info.flash.clone()/>
                        <AccountDetails info=info.clone()/>
                        {match tokens {
                            Ok(tokens) => view! { <TokenSection tokens csrf=info.csrf/> }.into_any(),
                            Err(err) => view! { <p class="alert" role="alert">{err.to_string()}</p> }.into_any(),
                        }}
                    }
                })}
            </Suspense>
        </main>
    }
}

#[component]
fn AccountDetails(info: SessionInfo) -> impl IntoView {
    let (email, role) = info
        .viewer
        .map(|v| (v.email, v.role.as_str()))
        .unwrap_or_default();
    view! {
        <p>"Signed in as " <strong>{email}</strong> " (" {role} ")."</p>
        <section aria-labelledby="password-heading">
            <h2 id="password-heading">"Change your password"</h2>
            <form method="post" action="/account/password" class="stacked-form">
                <input type="hidden" name="csrf" value=info.csrf/>
                <div class="field">
                    <label for="current">"Current password"</label>
                    <input id="current" name="current" type="password" autocomplete="current-password" required/>
                </div>
                <NewPassword/>
                <button type="submit">"Change the password"</button>
            </form>
        </section>
    }
}

#[component]
fn TokenSection(tokens: Tokens, csrf: String) -> impl IntoView {
    let new_token = tokens.new_token.map(|token| {
        view! {
            <div class="new-token" role="status">
                <p>"Your new token. Copy it now: it is not shown again."</p>
                <code class="token-value">{token}</code>
            </div>
        }
    });
    let rows = tokens
        .tokens
        .into_iter()
        .map(|t| {
            let revoke = (!t.revoked).then(|| {
                view! {
                    <form method="post" action=format!("/account/tokens/{}/revoke", t.id) class="inline-form">
                        <input type="hidden" name="csrf" value=csrf.clone()/>
                        <button type="submit" class="secondary">"Revoke"</button>
                    </form>
                }
            });
            let last_used = t
                .last_used_at
                .map(|at| reeltime::relative_time(at, OffsetDateTime::now_utc()))
                .unwrap_or_else(|| "never".to_owned());
            let prefix = t.prefix.clone();
            view! {
                <tr data-token=prefix>
                    <td>{t.name}</td>
                    <td><code>{t.prefix}"…"</code></td>
                    <td>{t.scope.as_str()}</td>
                    <td>{last_used}</td>
                    <td>{if t.revoked { view! { <span class="muted">"revoked"</span> }.into_any() } else { revoke.into_any() }}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section aria-labelledby="tokens-heading">
            <h2 id="tokens-heading">"Personal API tokens"</h2>
            <p class="muted">"Scripts send a token as " <code>"Authorization: Bearer rt_…"</code>
                ". A read token can list jobs and follow the live feed; a write token can also submit and act on jobs, as far as your role allows."</p>
            {new_token}
            <table class="plain-table">
                <thead><tr><th>"Name"</th><th>"Token"</th><th>"Scope"</th><th>"Last used"</th><th></th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
            <form method="post" action="/account/tokens" class="row-form">
                <input type="hidden" name="csrf" value=csrf/>
                <div class="field">
                    <label for="token-name">"Name"</label>
                    <input id="token-name" name="name" required maxlength="100" placeholder="nightly import"/>
                </div>
                <div class="field">
                    <label for="token-scope">"Scope"</label>
                    <select id="token-scope" name="scope">
                        <option value="read">"read"</option>
                        <option value="write">"write"</option>
                    </select>
                </div>
                <button type="submit">"Create a token"</button>
            </form>
        </section>
    }
}
