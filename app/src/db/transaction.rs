//! Starting a transaction so that a cancelled request cannot leave its connection inside it.
//!
//! sqlx 0.9's `Pool::begin`/`begin_with` sends `BEGIN`, waits for the server's answer, and only
//! then records that the connection is in a transaction. If the caller's future is dropped in
//! between (a browser closes the page, a client hangs up on a server function, a stream ends),
//! nothing rolls back: the connection goes back to the pool still inside the transaction, and
//! every later user of it runs in that transaction. With `read only` the next writer fails
//! ("cannot execute UPDATE in a read-only transaction"); with a plain `BEGIN` its writes are
//! never committed. Seen in the access tests as sign-ins answering 500.
//!
//! So `BEGIN` runs in its own task, which finishes whatever happens to the caller; if the
//! caller is gone by then, the finished `Transaction` is dropped, and its drop (with the depth
//! now recorded) rolls back before the connection is reused.

use sqlx::{PgPool, Postgres, Transaction};

/// `BEGIN` on a pooled connection, immune to cancellation (see the module's comment).
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let pool = pool.clone();
    finish(tokio::spawn(async move { pool.begin().await })).await
}

/// [`begin`] with a custom statement, e.g. `begin isolation level repeatable read, read only`.
pub async fn begin_with(
    pool: &PgPool,
    statement: &'static str,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let pool = pool.clone();
    finish(tokio::spawn(
        async move { pool.begin_with(statement).await },
    ))
    .await
}

async fn finish(
    task: tokio::task::JoinHandle<Result<Transaction<'static, Postgres>, sqlx::Error>>,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    task.await
        .unwrap_or_else(|e| Err(sqlx::Error::Io(std::io::Error::other(e))))
}

/// Custom plans for the rest of the transaction: statements whose conditions may be unset
/// (`reeltime_filtered_jobs`) then have those folded away and keep their indexes, where a
/// cached generic plan would scan.
pub(crate) async fn custom_plans(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!(
        r#"select set_config('plan_cache_mode', 'force_custom_plan', true) as "set!""#
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}
