//! On Supabase: a local Postgres prepared the way Supabase prepares one (its roles, the
//! `extensions` schema, the `supabase_realtime` publication, default grants to the API roles,
//! Reeltime connecting as a database owner that is not a superuser), and the transaction-mode
//! pooler refused at start with a message naming the ports (Debian's PgBouncer).

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::helpers::{admin_database_url, run, spawn_app_on};
use crate::proxy::{find_program, free_port, scratch};

/// The roles Supabase makes (cluster-wide: made once, by whichever test gets there first).
const ROLES: &[&str] = &[
    "create role anon nologin noinherit",
    "create role authenticated nologin noinherit",
    "create role service_role nologin noinherit bypassrls",
    "create role supabase_admin login superuser",
    // Supabase's `postgres`: owns the database, may create roles, is no superuser.
    "create role reeltime_supabase_owner login createrole",
];

async fn superuser(db: &str) -> PgConnection {
    let mut url = url::Url::parse(&admin_database_url()).unwrap();
    url.set_path(db);
    PgConnection::connect(url.as_str()).await.unwrap()
}

#[tokio::test]
async fn migrations_apply_on_a_supabase_like_database_and_the_app_works_with_rls_on() {
    let db = format!("reeltime_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = superuser("postgres").await;
    for role in ROLES {
        // Another test run may have made it already.
        run(
            &mut admin,
            &format!("do $$ begin {role}; exception when duplicate_object then null; end $$"),
        )
        .await;
    }
    run(
        &mut admin,
        &format!(r#"create database "{db}" owner reeltime_supabase_owner"#),
    )
    .await;
    let mut su = superuser(&db).await;
    for sql in [
        "create schema extensions",
        "grant usage on schema extensions to anon, authenticated, service_role",
        "create publication supabase_realtime",
        "alter publication supabase_realtime owner to reeltime_supabase_owner",
        "grant usage on schema public to anon, authenticated, service_role",
        // Supabase grants the API roles every new table; RLS decides what they see.
        "alter default privileges for role reeltime_supabase_owner in schema public \
         grant all on tables to anon, authenticated, service_role",
        "alter schema public owner to reeltime_supabase_owner",
    ] {
        run(&mut su, sql).await;
    }

    let mut url = url::Url::parse(&admin_database_url()).unwrap();
    url.set_path(&db);
    url.set_username("reeltime_supabase_owner").unwrap();
    let app = spawn_app_on(&db, &[("DATABASE_URL", url.as_str())]).await;

    // Realtime carries jobs.
    let published: bool = sqlx::query_scalar(
        "select exists (select 1 from pg_publication_tables
         where pubname = 'supabase_realtime' and tablename = 'jobs')",
    )
    .fetch_one(&mut su)
    .await
    .unwrap();
    assert!(
        published,
        "jobs is not in the supabase_realtime publication"
    );

    // The owner turns RLS on, with no policy: the API roles see nothing, Reeltime everything.
    run(&mut su, "set role reeltime_supabase_owner").await;
    run(&mut su, "alter table jobs enable row level security").await;
    run(&mut su, "reset role").await;
    let mut events = app.client.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let job = app
        .create_job(json!({ "input_url": "https://example.com/rls.mp4" }))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let listed = app.get_json(app.url("/api/jobs")).await;
    assert_eq!(listed["jobs"][0]["id"], id.as_str());
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.contains(&id) {
            let chunk = events.chunk().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the insert came through the live feed");

    run(&mut su, "set role anon").await;
    let visible: i64 = sqlx::query_scalar("select count(*) from jobs")
        .fetch_one(&mut su)
        .await
        .unwrap();
    assert_eq!(
        visible, 0,
        "RLS without a policy should hide jobs from anon"
    );
    run(&mut su, "reset role").await;

    // Migrating again (a restart, a second instance) changes nothing and fails nothing.
    let again =
        crate::helpers::spawn_second_instance_with(&app, &[("DATABASE_URL", url.as_str())]).await;
    assert_eq!(again.job_count().await, 1);
    drop(su);
}

#[tokio::test]
async fn a_transaction_mode_pooler_is_refused_at_start_naming_the_ports() {
    let Some(pgbouncer) = find_program("pgbouncer") else {
        eprintln!("SKIPPED: pgbouncer is not installed (scripts/test.sh installs it: apt-get install pgbouncer)");
        return;
    };
    let dir = scratch("reeltime-pgbouncer");
    // PgBouncer will not run as root; as root it is told to become postgres, who must read this.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let admin = url::Url::parse(&admin_database_url()).unwrap();
    let port = free_port();
    let root = unsafe { libc::geteuid() } == 0;
    let ini = format!(
        "[databases]\n* = host={} port={} user={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
         listen_port = {port}\nunix_socket_dir =\nauth_type = any\npool_mode = transaction\n\
         default_pool_size = 2\n\
         ignore_startup_parameters = extra_float_digits\n{}",
        admin.host_str().unwrap(),
        admin.port().unwrap_or(5432),
        admin.username(),
        if root { "user = postgres\n" } else { "" },
    );
    let ini_path = dir.join("pgbouncer.ini");
    std::fs::write(&ini_path, ini).unwrap();
    std::fs::set_permissions(&ini_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _bouncer = tokio::process::Command::new(pgbouncer)
        .arg(&ini_path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let db = format!("reeltime_test_{}", uuid::Uuid::new_v4().simple());
    let mut su = superuser("postgres").await;
    run(&mut su, &format!(r#"create database "{db}""#)).await;
    let url = format!("postgres://{}@127.0.0.1:{port}/{db}", admin.username());
    // Wait until PgBouncer answers.
    crate::helpers::eventually(Duration::from_secs(10), || async {
        PgConnection::connect(&url)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;

    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_reeltime"))
            .env("DATABASE_URL", &url)
            .env("REELTIME_PORT", "0")
            .env("REELTIME_PROCESSOR", "off")
            .env("REELTIME_DATA_DIR", dir.join("data"))
            .env("RUST_LOG", "warn")
            .output(),
    )
    .await
    .expect("reeltime gave up within 30 s")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it started: {stderr}");
    assert!(
        stderr.contains("transaction-mode") && stderr.contains("5432") && stderr.contains("6543"),
        "{stderr}"
    );
    // Nothing was written through the pooler.
    let mut direct = superuser(&db).await;
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.tables where table_schema = 'public'",
    )
    .fetch_one(&mut direct)
    .await
    .unwrap();
    assert_eq!(tables, 0);
    drop(direct);
    run(&mut su, &format!(r#"drop database "{db}" with (force)"#)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
