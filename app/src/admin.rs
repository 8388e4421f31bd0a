//! The admin's page: everyone's account, adding people, changing roles, disabling accounts.
//! The forms post to `server/src/routes/account.rs`.

use leptos::prelude::*;
use reeltime::Role;
use serde::{Deserialize, Serialize};
use strum::VariantArray;

use crate::layout::{FlashMessage, SiteHeader};
use crate::session::use_session;

/// An account as the admin page lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
}

#[server(prefix = "/api/fn", endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserView>, ServerFnError> {
    let pool = use_context::<sqlx::PgPool>().ok_or_else(|| ServerFnError::new("unavailable"))?;
    let users = crate::db::users::list_users(&pool).await.map_err(|err| {
        tracing::error!(error = %err, "listing users failed");
        ServerFnError::new("The accounts could not be read right now.")
    })?;
    Ok(users
        .into_iter()
        .map(|u| UserView {
            id: u.id.to_string(),
            email: u.email,
            role: u.role,
            disabled: u.disabled_at.is_some(),
        })
        .collect())
}

fn role_options(selected: Role) -> impl IntoView {
    Role::VARIANTS
        .iter()
        .rev()
        .map(|&role| {
            view! { <option value=role.as_str() selected=role == selected>{role.as_str()}</option> }
        })
        .collect_view()
}

#[component]
pub fn UsersPage() -> impl IntoView {
    let session = use_session();
    let users = Resource::new(|| (), |_| list_users());
    view! {
        <SiteHeader/>
        <main class="narrow wide">
            <h1>"Accounts"</h1>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let info = session.await.unwrap_or_default();
                    let csrf = info.csrf.clone();
                    let list = match users.await {
                        Ok(users) => view! { <UserTable users csrf=csrf.clone()/> }.into_any(),
                        Err(err) => view! { <p class="alert" role="alert">{err.to_string()}</p> }.into_any(),
                    };
                    view! {
                        <FlashMessage flash=info.flash/>
                        {list}
                        <AddUser csrf/>
                        <ul class="muted roles">
                            {Role::VARIANTS.iter().rev().map(|role| view! {
                                <li><strong>{role.as_str()}</strong>": "{role.describe()}</li>
                            }).collect_view()}
                        </ul>
                    }
                })}
            </Suspense>
        </main>
    }
}

#[component]
fn UserTable(users: Vec<UserView>, csrf: String) -> impl IntoView {
    let rows = users
        .into_iter()
        .map(|user| {
            let action = format!("/admin/users/{}", user.id);
            let (toggle, label) = if user.disabled {
                ("enable", "Enable")
            } else {
                ("disable", "Disable")
            };
            view! {
                <tr data-email=user.email.clone() data-disabled=user.disabled.to_string()>
                    <td>{user.email.clone()}{user.disabled.then(|| view! { <span class="muted">" (disabled)"</span> })}</td>
                    <td>
                        <form method="post" action=action.clone() class="inline-form">
                            <input type="hidden" name="csrf" value=csrf.clone()/>
                            <input type="hidden" name="action" value="role"/>
                            <label class="visually-hidden" for=format!("role-{}", user.id)>"Role"</label>
                            <select id=format!("role-{}", user.id) name="role">{role_options(user.role)}</select>
                            <button type="submit" class="secondary">"Save"</button>
                        </form>
                    </td>
                    <td>
                        <form method="post" action=action class="inline-form">
                            <input type="hidden" name="csrf" value=csrf.clone()/>
                            <input type="hidden" name="action" value=toggle/>
                            <button type="submit" class="secondary">{label}</button>
                        </form>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="plain-table">
            <thead><tr><th>"Email"</th><th>"Role"</th><th></th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

#[component]
fn AddUser(csrf: String) -> impl IntoView {
    view! {
        <section aria-labelledby="add-heading">
            <h2 id="add-heading">"Add someone"</h2>
            <p class="muted">"Give them the password over a channel you trust; they can change it on their account page."</p>
            <form method="post" action="/admin/users" class="row-form">
                <input type="hidden" name="csrf" value=csrf/>
                <div class="field">
                    <label for="new-email">"Email"</label>
                    <input id="new-email" name="email" type="email" required/>
                </div>
                <div class="field">
                    <label for="new-role">"Role"</label>
                    <select id="new-role" name="role">{role_options(Role::Operator)}</select>
                </div>
                <div class="field">
                    <label for="new-password">"Password"</label>
                    <input id="new-password" name="password" type="password" autocomplete="new-password"
                        minlength=reeltime::access::MIN_PASSWORD_CHARS.to_string() required/>
                </div>
                <button type="submit">"Add the account"</button>
            </form>
        </section>
    }
}
