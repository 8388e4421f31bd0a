//! The first run: with no account yet, each start makes a one-time link (valid a day, and
//! only until an account exists) that creates the first admin. The server prints it; the link
//! is kept only as its SHA-256, in the database, so every instance on it accepts the same one.

use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

use super::secrets::{random_hex, sha256};
use app::db::users;

/// How long a setup link works.
pub const VALID_FOR: Duration = Duration::hours(24);

/// A new setup link for `public_url`, or `None` when an account exists already.
pub async fn link(pool: &PgPool, public_url: &str) -> Result<Option<String>, sqlx::Error> {
    if users::any_user(pool).await? {
        return Ok(None);
    }
    let token = random_hex();
    users::store_setup_link(pool, &sha256(&token), OffsetDateTime::now_utc() + VALID_FOR).await?;
    Ok(Some(format!("{public_url}/setup?token={token}")))
}
