//! The built-in processor's API key and webhook secret, shared by every instance on the
//! database.
//!
//! The processor's queue (`processor_jobs`) is shared: a job instance A accepted may be run by
//! instance B, which signs its webhooks, and B's worker may fetch A's output files with its
//! key. So the key and the secret cannot be made up per process: the first instance to start
//! makes them up and stores them in `instance_secrets`, and every instance reads them back.
//! The write is `insert … on conflict do nothing` followed by a read, so instances that start
//! at the same moment still end up with the same values (the loser's insert waits for the
//! winner's row and leaves it alone).
//!
//! `ITTYBIT_WEBHOOK_SECRET`, when set, wins over the stored secret (the stored one is then
//! left unused, not overwritten: instances configured differently are the operator's call).
//! The values never reach the log.

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use super::random_secret;

/// The processor's API key.
const API_KEY: &str = "processor_api_key";
/// What its webhooks are signed with, unless `ITTYBIT_WEBHOOK_SECRET` is set.
const WEBHOOK_SECRET: &str = "processor_webhook_secret";

/// The key and the secret the processor of every instance on this database uses.
pub struct SharedSecrets {
    pub api_key: SecretString,
    pub webhook_secret: SecretString,
}

/// The stored key and secret, made up and stored first if this is the first start; `from_env`
/// (`ITTYBIT_WEBHOOK_SECRET`) wins over the stored secret.
pub async fn load(
    pool: &PgPool,
    from_env: Option<SecretString>,
) -> Result<SharedSecrets, sqlx::Error> {
    let api_key = stored(pool, API_KEY).await?;
    let webhook_secret = match from_env {
        Some(secret) => secret,
        None => stored(pool, WEBHOOK_SECRET).await?,
    };
    Ok(SharedSecrets {
        api_key,
        webhook_secret,
    })
}

/// The secret stored under `name`, storing a new random one first when there is none.
async fn stored(pool: &PgPool, name: &str) -> Result<SecretString, sqlx::Error> {
    let candidate = random_secret();
    sqlx::query!(
        "insert into instance_secrets (name, value) values ($1, $2)
         on conflict (name) do nothing",
        name,
        candidate.expose_secret()
    )
    .execute(pool)
    .await?;
    let value = sqlx::query_scalar!("select value from instance_secrets where name = $1", name)
        .fetch_one(pool)
        .await?;
    Ok(SecretString::from(value))
}
