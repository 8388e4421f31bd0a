use std::sync::Once;

use reqwest::Client;
use server::config::Settings;
use server::startup::Application;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

/// The Postgres tests create their databases on (`DATABASE_URL`, else the local one).
pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub client: Client,
    db_name: String,
}

static TRACING: Once = Once::new();

/// Build the app as `main` does, on port 0, with a fresh database, and serve it in the
/// background.
pub async fn spawn_app() -> TestApp {
    TRACING.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            server::telemetry::init(&filter);
        }
    });
    let db_name = format!("reeltime_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_database_url())
        .await
        .expect("Postgres for tests: set DATABASE_URL or run one on 127.0.0.1:5432");
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            r#"create database "{db_name}""#
        )))
        .await
        .expect("create the test database");
    let mut url = url::Url::parse(&admin_database_url()).unwrap();
    url.set_path(&db_name);

    let settings = Settings::from_lookup(|name| match name {
        "REELTIME_PORT" => Some("0".into()),
        "DATABASE_URL" => Some(url.to_string()),
        "REELTIME_DB_MAX_CONNECTIONS" => Some("4".into()),
        _ => None,
    })
    .unwrap();
    let app = Application::build(&settings).await.expect("build the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = app.pool().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    TestApp {
        address,
        pool,
        client: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        db_name,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_job(&self, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/jobs"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn job_count(&self) -> i64 {
        sqlx::query_scalar("select count(*) from jobs")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    /// Drop the test database, so test runs leave nothing behind.
    fn drop(&mut self) {
        let db_name = self.db_name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_database_url()).await {
                    let _ = admin
                        .execute(sqlx::AssertSqlSafe(format!(
                            r#"drop database if exists "{db_name}" with (force)"#
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}
