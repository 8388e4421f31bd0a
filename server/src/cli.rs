//! `reeltime user …`: accounts from the command line, for operators without a browser (or
//! who lost the last admin's password). It uses the same database as the server: `DATABASE_URL`,
//! or the embedded one in `REELTIME_DATA_DIR` (reached through the running server's socket,
//! or started for the command).

use std::io::{BufRead, IsTerminal};

use reeltime::access::{check_new_password, normalize_email};
use reeltime::Role;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::auth::password;
use crate::config::Settings;
use crate::embedded_pg::EmbeddedPostgres;
use app::db::users::{self, CreateUserError};

pub const USAGE: &str = "\\
Usage: reeltime user add <email> [--role admin|operator|viewer]
       reeltime user list
       reeltime user disable <email>
       reeltime user enable <email>
       reeltime user reset-password <email>

add and reset-password ask for the password (twice on a terminal; one line on standard input
otherwise). The role defaults to operator.
";

/// Runs `reeltime user <args>`; the text to print, or why it failed.
pub async fn user(settings: &Settings, args: &[String]) -> Result<String, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let (pool, _embedded) = connect(settings).await?;
    sqlx::migrate!("../migrations")
        .run(&pool)
        .await
        .map_err(|err| format!("could not migrate the database: {err}"))?;
    let fail = |err: sqlx::Error| format!("database error: {err}");
    match words.as_slice() {
        ["list"] => {
            let mut out = String::new();
            for user in users::list_users(&pool).await.map_err(fail)? {
                let state = if user.disabled_at.is_some() {
                    " (disabled)"
                } else {
                    ""
                };
                out.push_str(&format!("{}  {}{state}\n", user.email, user.role));
            }
            if out.is_empty() {
                out.push_str("No accounts yet.\n");
            }
            Ok(out)
        }
        ["add", email, rest @ ..] => {
            let email = normalize_email(email).map_err(str::to_owned)?;
            let role = match rest {
                [] => Role::Operator,
                ["--role", role] => role
                    .parse::<Role>()
                    .map_err(|_| format!("{role:?} is not a role: admin, operator or viewer"))?,
                _ => return Err(USAGE.to_owned()),
            };
            let hash = password::hash(read_new_password()?).await?;
            match users::create_user(&pool, &email, &hash, role).await {
                Ok(_) => Ok(format!("Added {email} as {role}.\n")),
                Err(CreateUserError::EmailTaken(_)) => {
                    Err(format!("There is already an account for {email}."))
                }
                Err(CreateUserError::Database(err)) => Err(fail(err)),
            }
        }
        [action @ ("disable" | "enable" | "reset-password"), email] => {
            let user = users::user_by_email(&pool, email)
                .await
                .map_err(fail)?
                .ok_or_else(|| format!("There is no account for {email}."))?;
            match *action {
                "disable" => {
                    users::set_disabled(&pool, user.id, true)
                        .await
                        .map_err(fail)?;
                    Ok(format!(
                        "Disabled {}: signed out everywhere, tokens stopped.\n",
                        user.email
                    ))
                }
                "enable" => {
                    users::set_disabled(&pool, user.id, false)
                        .await
                        .map_err(fail)?;
                    Ok(format!("Enabled {}.\n", user.email))
                }
                _ => {
                    let hash = password::hash(read_new_password()?).await?;
                    users::set_password(&pool, user.id, &hash)
                        .await
                        .map_err(fail)?;
                    Ok(format!(
                        "Set a new password for {}; their sessions have ended.\n",
                        user.email
                    ))
                }
            }
        }
        _ => Err(USAGE.to_owned()),
    }
}

/// The server's database: `DATABASE_URL`, the running embedded cluster, or one started here.
async fn connect(settings: &Settings) -> Result<(PgPool, Option<EmbeddedPostgres>), String> {
    let pool = |options: PgConnectOptions| async move {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options.disable_statement_logging())
            .await
    };
    if let Some(url) = &settings.database_url {
        let options: PgConnectOptions = url
            .expose_secret()
            .parse()
            .map_err(|err| format!("DATABASE_URL: {err}"))?;
        let pool = pool(options)
            .await
            .map_err(|err| format!("could not connect: {err}"))?;
        return Ok((pool, None));
    }
    if let Ok(pool) = pool(EmbeddedPostgres::running_options(&settings.data_dir)).await {
        return Ok((pool, None));
    }
    let embedded = EmbeddedPostgres::start(&settings.data_dir)
        .await
        .map_err(|err| format!("embedded Postgres: {err}"))?;
    let pool = pool(embedded.connect_options())
        .await
        .map_err(|err| format!("could not connect: {err}"))?;
    Ok((pool, Some(embedded)))
}

fn read_new_password() -> Result<String, String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|err| err.to_string())?;
        let again = rpassword::prompt_password("The same password again: ")
            .map_err(|err| err.to_string())?;
        if first != again {
            return Err("The two passwords differ.".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|err| err.to_string())?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    check_new_password(&password)?;
    Ok(password)
}
