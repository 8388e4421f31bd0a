use std::future::Future;
use std::sync::Once;
use std::time::{Duration, Instant};

use app::db::users;
use reeltime::{Role, TokenScope};
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

/// Run SQL (one or more statements) that must succeed, as a writer on the side would; a
/// failure names the SQL.
pub async fn run(conn: &mut PgConnection, sql: &str) {
    conn.execute(sqlx::AssertSqlSafe(sql.to_owned()))
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
}

/// The URL of an app's own database.
pub fn test_database_url(app: &TestApp) -> String {
    let mut url = url::Url::parse(&admin_database_url()).unwrap();
    url.set_path(&app.db_name);
    url.to_string()
}

/// Every test account's password.
pub const PASSWORD: &str = "correct horse battery staple";
/// The admin every test app is signed in as.
pub const ADMIN: &str = "admin@example.com";

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    /// The app's change feed (tests read its streams without a socket).
    pub feed: server::changes::ChangeFeed,
    /// Signed in as [`ADMIN`] (a session cookie), sending this server's `Origin` like a page.
    pub client: Client,
    /// The admin session's CSRF token, for forms posted as a browser without JavaScript.
    pub csrf: String,
    /// The first-admin link this instance printed (before the test signed in).
    pub setup_link: Option<String>,
    pub db_name: String,
    /// The built-in processor's API key, when it runs.
    pub processor_key: Option<String>,
    /// This instance's REELTIME_DATA_DIR, removed when the app is dropped.
    pub data_dir: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Only the first app on a database drops it.
    owns_database: bool,
}

static TRACING: Once = Once::new();

/// Poll `check` every 25 ms until it answers `Ok`, and return that; after `within`, fail the
/// test with the last `Err` it gave (what it saw instead). For the few tests of the real
/// background loops; the others step the dispatcher and the processor themselves.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("not so after {within:?}: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// Build the app as `main` does, on port 0, with a fresh database, and serve it in the
/// background.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// An app with some settings of its own (`("REELTIME_EVENTS_BUFFER", "16")`, say).
pub async fn spawn_app_with(settings: &[(&str, &str)]) -> TestApp {
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
    let mut app = start(&db_name, settings).await;
    app.owns_database = true;
    app
}

/// An app on a database prepared by the test (`db_name` on the test Postgres), which it owns
/// (drops when done); `settings` may point `DATABASE_URL` elsewhere (another role, a pooler).
pub async fn spawn_app_on(db_name: &str, settings: &[(&str, &str)]) -> TestApp {
    let mut app = start(db_name, settings).await;
    app.owns_database = true;
    app
}

/// A second app on the same database as `other`, as a second server instance would be.
pub async fn spawn_second_instance(other: &TestApp) -> TestApp {
    start(&other.db_name, &[]).await
}

/// [`spawn_second_instance`] with settings of its own.
pub async fn spawn_second_instance_with(other: &TestApp, settings: &[(&str, &str)]) -> TestApp {
    start(&other.db_name, settings).await
}

async fn start(db_name: &str, overrides: &[(&str, &str)]) -> TestApp {
    TRACING.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            server::telemetry::init(&filter);
        }
    });
    let mut url = url::Url::parse(&admin_database_url()).unwrap();
    url.set_path(db_name);
    let data_dir = std::env::temp_dir().join(format!("reeltime-test-{}", Uuid::new_v4().simple()));
    let data_dir_text = data_dir.to_string_lossy().into_owned();
    let settings = Settings::from_lookup(|name| {
        if let Some((_, value)) = overrides.iter().find(|(k, _)| *k == name) {
            return Some(value.to_string());
        }
        match name {
            "REELTIME_PORT" => Some("0".into()),
            "DATABASE_URL" => Some(url.to_string()),
            "REELTIME_DB_MAX_CONNECTIONS" => Some("6".into()),
            "REELTIME_DATA_DIR" => Some(data_dir_text.clone()),
            // Tests that want the built-in processor (or the sample clip) turn it on.
            "REELTIME_PROCESSOR" => Some("off".into()),
            "REELTIME_SAMPLE_CLIP" => Some("off".into()),
            _ => None,
        }
    })
    .unwrap();
    let app = Application::build(&settings).await.expect("build the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = app.pool().clone();
    let feed = app.feed().clone();
    let processor_key = app
        .processor()
        .map(|processor| secrecy::ExposeSecret::expose_secret(processor.api_key()).to_owned());
    let setup_link = app.setup_link().map(str::to_owned);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    let mut test_app = TestApp {
        client: browser(&address),
        address,
        pool,
        feed,
        csrf: String::new(),
        setup_link,
        db_name: db_name.to_owned(),
        processor_key,
        data_dir,
        stop: Some(stop),
        owns_database: false,
    };
    if users::user_by_email(&test_app.pool, ADMIN)
        .await
        .unwrap()
        .is_none()
    {
        test_app.create_user(ADMIN, Role::Admin).await;
    }
    let (client, csrf) = test_app.signed_in(ADMIN).await;
    test_app.client = client;
    test_app.csrf = csrf;
    test_app
}

/// A client as a browser on the app's pages: a cookie jar, no redirects followed, and the
/// app's own `Origin` on every request. A response that goes quiet for a minute fails its test
/// (an event stream says something every 15 s) rather than holding the whole run.
pub fn browser(address: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("origin", address.parse().unwrap());
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .default_headers(headers)
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

impl TestApp {
    /// An account with [`PASSWORD`].
    pub async fn create_user(&self, email: &str, role: Role) -> uuid::Uuid {
        let hash = server::auth::password::hash(PASSWORD.into()).await.unwrap();
        users::create_user(&self.pool, email, &hash, role)
            .await
            .unwrap()
            .id
    }

    /// A browser signed in as `email` through the sign-in form, and its CSRF token.
    pub async fn signed_in(&self, email: &str) -> (Client, String) {
        let client = browser(&self.address);
        let response = client
            .post(self.url("/login"))
            .form(&[
                ("email", email),
                ("password", PASSWORD),
                ("next", "/account"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "signing in as {email}");
        assert_eq!(response.headers()["location"], "/account");
        let html = client
            .get(self.url("/account"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = csrf_in(&html).expect("the account page carries the CSRF token");
        (client, csrf)
    }

    /// A personal API token of `email`'s, with `scope`.
    pub async fn token(&self, email: &str, scope: TokenScope) -> String {
        let user = users::user_by_email(&self.pool, email)
            .await
            .unwrap()
            .unwrap();
        let token = server::auth::secrets::new_token();
        users::create_token(
            &self.pool,
            user.id,
            "test",
            scope,
            &server::auth::secrets::sha256(&token),
            &server::auth::secrets::token_prefix(&token),
        )
        .await
        .unwrap();
        token
    }

    /// Begin a graceful shutdown, as SIGTERM would.
    pub fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

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

    /// `POST /api/jobs`, expecting the created job back.
    pub async fn create_job(&self, body: serde_json::Value) -> serde_json::Value {
        self.post_job(body).await.json().await.unwrap()
    }

    /// `GET` a path as the signed-in admin and read the body as text (a page, `/metrics`),
    /// without Leptos' empty hydration markers (`<!>`): they are not content, and where they
    /// fall depends on how the views are compiled (erased components place more of them).
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .replace("<!>", "")
    }

    /// `GET` a URL and read its JSON body.
    pub async fn get_json(&self, url: String) -> serde_json::Value {
        self.client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn job_count(&self) -> i64 {
        sqlx::query_scalar!(r#"select count(*) as "count!" from jobs"#)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    /// Drop the test database, so test runs leave nothing behind.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if !self.owns_database {
            return;
        }
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

/// The CSRF token in a page's forms.
pub fn csrf_in(html: &str) -> Option<String> {
    let at = html.find(r#"name="csrf" value=""#)? + r#"name="csrf" value=""#.len();
    let rest = &html[at..];
    Some(rest[..rest.find('"')?].to_owned())
}
