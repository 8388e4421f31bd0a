//! The change feed's horizon (decision 004): only transactions that change jobs hold back live
//! events. A long transaction on any other table delays nothing; one that changes a job holds
//! back what was written after it until it ends, and nothing is lost when a transaction that
//! began long ago changes a job late.

use std::time::Duration;

use futures::StreamExt;
use sqlx::{Connection, PgConnection};

use crate::helpers::{run, spawn_app, test_database_url, TestApp};
use crate::sse::{insert, job, next, position, subscribe, until_sentinel, Events};

/// The gate readers take exclusively and writers take shared while they take a key, and the
/// class of the key locks: as in the migration that made them.
const GATE: i32 = 1_381_258_567;
const KEYS: i32 = 1_381_258_571;

async fn connect(app: &TestApp) -> PgConnection {
    PgConnection::connect(&test_database_url(app))
        .await
        .unwrap()
}

/// The next event, or `None` when none comes within `wait`.
async fn within(events: &mut Events, wait: Duration) -> Option<eventsource_stream::Event> {
    tokio::time::timeout(wait, events.next())
        .await
        .ok()
        .map(|event| event.expect("the stream is still open"))
}

fn url_of(event: &eventsource_stream::Event) -> String {
    job(event)["input_url"].as_str().unwrap().to_owned()
}

/// Insert a job and take its event, which must come within 5 s while `T` (an open
/// transaction elsewhere) still runs.
async fn delivered_while_t_runs(
    app: &TestApp,
    events: &mut Events,
    url: &str,
) -> eventsource_stream::Event {
    insert(app, url).await;
    let event = within(events, Duration::from_secs(5))
        .await
        .expect("delivered while T runs");
    assert_eq!(url_of(&event), url);
    event
}

/// The input URLs of the jobs of every event before a sentinel written now.
async fn urls_until_sentinel(app: &TestApp, events: &mut Events) -> Vec<String> {
    until_sentinel(app, events)
        .await
        .iter()
        .map(url_of)
        .collect()
}

#[tokio::test]
async fn a_long_write_transaction_on_another_table_delays_no_event() {
    let app = spawn_app().await;
    let mut events = subscribe(&app, Some(&position(&app).await), None).await;

    // An import on another table: it has a transaction id, older than every job written next.
    let mut import = connect(&app).await;
    run(&mut import, "create table imports (n int)").await;
    let mut open = import.begin().await.unwrap();
    run(&mut open, "insert into imports values (1)").await;

    let id = insert(&app, "https://example.com/during-the-import.mp4").await;
    // Before the horizon was narrowed, this waited for the import to end (the test would
    // hold it 30 s); now it comes as soon as it is written.
    let event = within(&mut events, Duration::from_secs(5))
        .await
        .expect("the change arrives while the import still runs");
    assert_eq!(event.event, "insert");
    assert_eq!(job(&event)["id"], id.as_str());
    open.rollback().await.unwrap();
}

#[tokio::test]
async fn a_transaction_that_changes_a_job_holds_back_later_changes_until_it_ends() {
    let app = spawn_app().await;
    let mut events = subscribe(&app, Some(&position(&app).await), None).await;

    let mut writer = connect(&app).await;
    let mut open = writer.begin().await.unwrap();
    run(
        &mut open,
        "insert into jobs (input_url) values ('https://example.com/held.mp4')",
    )
    .await;
    insert(&app, "https://example.com/after.mp4").await;
    // Committed, but after a transaction that may still add entries before it: it waits.
    assert!(
        within(&mut events, Duration::from_secs(2)).await.is_none(),
        "nothing is delivered past a running writer of jobs"
    );
    open.commit().await.unwrap();
    let urls = urls_until_sentinel(&app, &mut events).await;
    assert_eq!(
        urls,
        [
            "https://example.com/held.mp4",
            "https://example.com/after.mp4"
        ]
    );
}

#[tokio::test]
async fn a_transaction_older_than_delivered_changes_that_changes_a_job_late_is_not_lost() {
    let app = spawn_app().await;
    let start = position(&app).await;
    let mut events = subscribe(&app, Some(&start), None).await;

    // T gets its transaction id first (another table), then changes a job much later.
    let mut late = connect(&app).await;
    run(&mut late, "create table notes (n int)").await;
    let mut t = late.begin().await.unwrap();
    run(&mut t, "insert into notes values (1)").await;

    let early = delivered_while_t_runs(&app, &mut events, "https://example.com/early.mp4").await;

    run(
        &mut t,
        "insert into jobs (input_url) values ('https://example.com/late.mp4')",
    )
    .await;
    t.commit().await.unwrap();
    let late_event = next(&mut events).await;
    assert_eq!(url_of(&late_event), "https://example.com/late.mp4");
    assert!(
        early.id.parse::<reeltime::ChangePosition>().unwrap()
            < late_event.id.parse::<reeltime::ChangePosition>().unwrap(),
        "the late change sorts after everything delivered before it ({} then {})",
        early.id,
        late_event.id
    );

    // A client that saw only the early change resumes with the late one: nothing slipped
    // behind a position already handed out.
    let mut resumed = subscribe(&app, None, Some(&early.id)).await;
    let urls = urls_until_sentinel(&app, &mut resumed).await;
    assert_eq!(urls, ["https://example.com/late.mp4"]);
    // And one from the start gets both, in the order delivered.
    let mut replayed = subscribe(&app, Some(&start), None).await;
    let mut urls = urls_until_sentinel(&app, &mut replayed).await;
    urls.retain(|url| !url.contains("sentinel"));
    assert_eq!(
        urls,
        [
            "https://example.com/early.mp4",
            "https://example.com/late.mp4"
        ]
    );
}

#[tokio::test]
async fn a_rolled_back_savepoint_gives_its_key_up() {
    let app = spawn_app().await;
    let mut events = subscribe(&app, Some(&position(&app).await), None).await;

    let mut writer = connect(&app).await;
    let mut t = writer.begin().await.unwrap();
    let mut savepoint = t.begin().await.unwrap();
    run(
        &mut savepoint,
        "insert into jobs (input_url) values ('https://example.com/undone.mp4')",
    )
    .await;
    savepoint.rollback().await.unwrap();

    // T still runs but holds no change: it holds nothing back.
    delivered_while_t_runs(&app, &mut events, "https://example.com/meanwhile.mp4").await;

    run(
        &mut t,
        "insert into jobs (input_url) values ('https://example.com/kept.mp4')",
    )
    .await;
    t.commit().await.unwrap();
    let urls = urls_until_sentinel(&app, &mut events).await;
    assert_eq!(urls, ["https://example.com/kept.mp4"]);
}

#[tokio::test]
async fn a_writer_stopped_while_taking_its_key_leaves_the_gate_open() {
    let app = spawn_app().await;

    // Someone holds the lock of the next key, so a writer taking it waits inside the gate,
    // and its statement timeout stops it there.
    let next_key: i64 =
        sqlx::query_scalar("select coalesce(pg_sequence_last_value('job_change_keys'), 0) + 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let mut holder = connect(&app).await;
    sqlx::query("select pg_advisory_lock($1, ($2 % 2147483648)::int)")
        .bind(KEYS)
        .bind(next_key)
        .execute(&mut holder)
        .await
        .unwrap();
    let mut writer = connect(&app).await;
    run(&mut writer, "set statement_timeout = '300ms'").await;
    let err =
        sqlx::query("insert into jobs (input_url) values ('https://example.com/stopped.mp4')")
            .execute(&mut writer)
            .await
            .expect_err("stopped by its statement timeout");
    assert!(err.to_string().contains("statement timeout"), "{err}");

    // The writer's session lives on, and it holds no share of the gate: readers go on.
    let held: i64 = sqlx::query_scalar(
        "select count(*) from pg_locks where locktype = 'advisory' and classid = $1::int::oid
         and objsubid = 2 and pid <> pg_backend_pid()",
    )
    .bind(GATE)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(held, 0, "the gate is not held by anyone");
    let read_horizon = || async {
        tokio::time::timeout(Duration::from_secs(5), app::db::changes::horizon(&app.pool))
            .await
            .expect("the horizon is read without waiting")
            .unwrap() as i64
    };
    // The holder's lock looks like a key in use; once it lets go, nothing holds the key
    // the stopped writer was handed.
    assert_eq!(read_horizon().await, next_key);
    run(&mut holder, "select pg_advisory_unlock_all()").await;
    assert!(read_horizon().await > next_key);

    // And the same session writes normally afterwards.
    run(&mut writer, "reset statement_timeout").await;
    run(
        &mut writer,
        "insert into jobs (input_url) values ('https://example.com/then.mp4')",
    )
    .await;
}
