//! Accounts (`users`), their personal API tokens (`api_tokens`), their sessions (`sessions`)
//! and the first-run setup link (`setup_links`). Secrets never come here in the clear: a
//! password arrives as its Argon2id hash, a token or a setup link as its SHA-256.

use reeltime::{Role, TokenScope};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

/// An account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub created_at: OffsetDateTime,
    pub disabled_at: Option<OffsetDateTime>,
}

/// An account with its password hash, for signing in.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
}

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("There is already an account for {0}.")]
    EmailTaken(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

fn taken(err: sqlx::Error, email: &str) -> CreateUserError {
    match &err {
        sqlx::Error::Database(db) if db.constraint() == Some("users_email_key") => {
            CreateUserError::EmailTaken(email.to_owned())
        }
        _ => CreateUserError::Database(err),
    }
}

pub async fn create_user(
    pool: &PgPool,
    email: &str,
    password_hash: &str,
    role: Role,
) -> Result<User, CreateUserError> {
    sqlx::query_as!(
        User,
        "insert into users (email, password_hash, role) values ($1, $2, $3)
         returning id, email, role, created_at, disabled_at",
        email,
        password_hash,
        role.as_str(),
    )
    .fetch_one(pool)
    .await
    .map_err(|err| taken(err, email))
}

/// The first admin, created through the setup link: only while there is no account at all,
/// and only with the link's token, which is used up in the same statement.
pub async fn create_first_admin(
    pool: &PgPool,
    token_hash: &[u8],
    email: &str,
    password_hash: &str,
) -> Result<Option<User>, CreateUserError> {
    sqlx::query_as!(
        User,
        "with link as (
             delete from setup_links
             where token_hash = $1 and expires_at > now()
               and not exists (select 1 from users)
             returning 1)
         insert into users (email, password_hash, role)
         select $2, $3, 'admin' from link
         returning id, email, role, created_at, disabled_at",
        token_hash,
        email,
        password_hash,
    )
    .fetch_optional(pool)
    .await
    .map_err(|err| taken(err, email))
}

pub async fn credentials(pool: &PgPool, email: &str) -> Result<Option<Credentials>, sqlx::Error> {
    let row = sqlx::query!(
        "select id, email, role, created_at, disabled_at, password_hash
         from users where lower(email) = lower($1)",
        email,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| Credentials {
        user: User {
            id: row.id,
            email: row.email,
            role: row.role,
            created_at: row.created_at,
            disabled_at: row.disabled_at,
        },
        password_hash: row.password_hash,
    }))
}

pub async fn password_hash(pool: &PgPool, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!("select password_hash from users where id = $1", id)
        .fetch_optional(pool)
        .await
}

/// An enabled account by id (a disabled one is `None`).
pub async fn active_user(pool: &PgPool, id: Uuid) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        "select id, email, role, created_at, disabled_at from users
         where id = $1 and disabled_at is null",
        id,
    )
    .fetch_optional(pool)
    .await
}

pub async fn user(pool: &PgPool, id: Uuid) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        "select id, email, role, created_at, disabled_at from users where id = $1",
        id,
    )
    .fetch_optional(pool)
    .await
}

pub async fn user_by_email(pool: &PgPool, email: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        "select id, email, role, created_at, disabled_at from users
         where lower(email) = lower($1)",
        email,
    )
    .fetch_optional(pool)
    .await
}

pub async fn list_users(pool: &PgPool) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        "select id, email, role, created_at, disabled_at from users order by lower(email)"
    )
    .fetch_all(pool)
    .await
}

pub async fn any_user(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"select exists (select 1 from users) as "any!""#)
        .fetch_one(pool)
        .await
}

/// Set a new password; every session of the account ends (they are signed in again where
/// the change was made).
pub async fn set_password(
    pool: &PgPool,
    id: Uuid,
    password_hash: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = super::begin(pool).await?;
    let done = sqlx::query!(
        "update users set password_hash = $2, password_changed_at = now() where id = $1",
        id,
        password_hash,
    )
    .execute(&mut *tx)
    .await?;
    end_sessions(&mut tx, id).await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_role(pool: &PgPool, id: Uuid, role: Role) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "update users set role = $2 where id = $1",
        id,
        role.as_str()
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Disable (or enable again) an account. Disabling ends its sessions; its tokens stop working
/// while it is disabled.
pub async fn set_disabled(pool: &PgPool, id: Uuid, disabled: bool) -> Result<bool, sqlx::Error> {
    let mut tx = super::begin(pool).await?;
    let done = sqlx::query!(
        "update users set disabled_at = case when $2 then coalesce(disabled_at, now()) end
         where id = $1",
        id,
        disabled,
    )
    .execute(&mut *tx)
    .await?;
    if disabled {
        end_sessions(&mut tx, id).await?;
    }
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// How many enabled admins there are (the last one cannot be demoted or disabled).
pub async fn active_admins(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select count(*) as "count!" from users where role = 'admin' and disabled_at is null"#
    )
    .fetch_one(pool)
    .await
}

async fn end_sessions(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "delete from sessions where data->>'user_id' = $1",
        user_id.to_string()
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A personal API token as its owner sees it (never the token itself, which is shown once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub id: Uuid,
    pub name: String,
    pub scope: TokenScope,
    pub prefix: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

pub async fn create_token(
    pool: &PgPool,
    user_id: Uuid,
    name: &str,
    scope: TokenScope,
    token_hash: &[u8],
    prefix: &str,
) -> Result<Token, sqlx::Error> {
    sqlx::query_as!(
        Token,
        "insert into api_tokens (user_id, name, scope, token_hash, prefix)
         values ($1, $2, $3, $4, $5)
         returning id, name, scope, prefix, created_at, last_used_at, revoked_at",
        user_id,
        name,
        scope.as_str(),
        token_hash,
        prefix,
    )
    .fetch_one(pool)
    .await
}

pub async fn list_tokens(pool: &PgPool, user_id: Uuid) -> Result<Vec<Token>, sqlx::Error> {
    sqlx::query_as!(
        Token,
        "select id, name, scope, prefix, created_at, last_used_at, revoked_at
         from api_tokens where user_id = $1 order by created_at desc",
        user_id,
    )
    .fetch_all(pool)
    .await
}

/// Revoke one of `user_id`'s tokens; `false` if there is no such live token of theirs.
pub async fn revoke_token(pool: &PgPool, user_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "update api_tokens set revoked_at = now()
         where id = $1 and user_id = $2 and revoked_at is null",
        id,
        user_id,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Who a token acts for.
#[derive(Clone, Debug)]
pub struct TokenOwner {
    pub token_id: Uuid,
    pub scope: TokenScope,
    pub user: User,
}

/// The live token with this hash and its enabled owner, in one round trip; its last use is
/// noted (at most once a minute, so reading does not become a write per request).
pub async fn token_owner(
    pool: &PgPool,
    token_hash: &[u8],
) -> Result<Option<TokenOwner>, sqlx::Error> {
    let row = sqlx::query!(
        r#"with found as (
             select t.id as token_id, t.scope, u.id, u.email, u.role, u.created_at, u.disabled_at
             from api_tokens t join users u on u.id = t.user_id
             where t.token_hash = $1 and t.revoked_at is null and u.disabled_at is null),
         touched as (
             update api_tokens set last_used_at = now()
             where id = (select token_id from found)
               and (last_used_at is null or last_used_at < now() - interval '1 minute'))
         select token_id as "token_id!", scope as "scope!: TokenScope", id as "id!",
                email as "email!", role as "role!: Role", created_at as "created_at!",
                disabled_at
         from found"#,
        token_hash,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| TokenOwner {
        token_id: row.token_id,
        scope: row.scope,
        user: User {
            id: row.id,
            email: row.email,
            role: row.role,
            created_at: row.created_at,
            disabled_at: row.disabled_at,
        },
    }))
}

/// Replace the setup link (there is at most one).
pub async fn store_setup_link(
    pool: &PgPool,
    token_hash: &[u8],
    expires_at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into setup_links (token_hash, expires_at) values ($1, $2)
         on conflict (id) do update set token_hash = excluded.token_hash,
             expires_at = excluded.expires_at",
        token_hash,
        expires_at,
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn setup_link_valid(pool: &PgPool, token_hash: &[u8]) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select exists (select 1 from setup_links
             where token_hash = $1 and expires_at > now()
               and not exists (select 1 from users)) as "valid!""#,
        token_hash,
    )
    .fetch_one(pool)
    .await
}
