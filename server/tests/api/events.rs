//! `/api/events`: the change feed as an SSE client sees it, with SQL written on the side.

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::Value;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{spawn_app, spawn_app_with, spawn_second_instance, TestApp};

type Events = BoxStream<'static, Event>;

async fn subscribe(app: &TestApp, after: Option<&str>, last_event_id: Option<&str>) -> Events {
    let mut url = app.url("/api/events");
    if let Some(after) = after {
        url.push_str(&format!("?after={after}"));
    }
    let mut request = app.client.get(url);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response
        .bytes_stream()
        .eventsource()
        .map(|event| event.expect("a well-formed event"))
        .boxed()
}

async fn next(events: &mut Events) -> Event {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream is still open")
}

/// Nothing more arrives for a while.
async fn quiet(events: &mut Events) {
    if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(500), events.next()).await {
        panic!("unexpected event {} {}", event.event, event.data);
    }
}

async fn position(app: &TestApp) -> String {
    let page: Value = app.get_json(app.url("/api/jobs?limit=1")).await;
    page["position"].as_str().unwrap().to_owned()
}

async fn insert(app: &TestApp, url: &str) -> String {
    sqlx::query_scalar!("insert into jobs (input_url) values ($1) returning id", url)
        .fetch_one(&app.pool)
        .await
        .unwrap()
        .to_string()
}

fn job(event: &Event) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

#[tokio::test]
async fn inserts_updates_and_deletes_by_any_writer_arrive() {
    let app = spawn_app().await;
    let mut events = subscribe(&app, Some(&position(&app).await), None).await;

    let id = insert(&app, "https://example.com/psql.mp4").await;
    sqlx::query!(
        "update jobs set status = 'processing' where id = $1::text::uuid",
        id
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query!("delete from jobs where id = $1::text::uuid", id)
        .execute(&app.pool)
        .await
        .unwrap();

    let inserted = next(&mut events).await;
    assert_eq!(inserted.event, "insert");
    assert_eq!(job(&inserted)["id"], id.as_str());
    assert_eq!(job(&inserted)["status"], "pending");
    let updated = next(&mut events).await;
    assert_eq!(updated.event, "update");
    assert_eq!(job(&updated)["status"], "processing");
    assert!(job(&updated)["version"].as_i64() > job(&inserted)["version"].as_i64());
    let deleted = next(&mut events).await;
    assert_eq!(deleted.event, "delete");
    assert_eq!(job(&deleted)["id"], id.as_str());

    // Positions are the ids, in delivery order.
    let ids: Vec<reeltime::ChangePosition> = [&inserted, &updated, &deleted]
        .iter()
        .map(|e| e.id.parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // A job submitted through the API arrives the same way.
    let created: Value = app
        .create_job(serde_json::json!({ "input_url": "https://example.com/api.mp4" }))
        .await;
    let event = next(&mut events).await;
    assert_eq!(event.event, "insert");
    assert_eq!(job(&event), created);
}

#[tokio::test]
async fn resuming_delivers_exactly_the_missed_changes_once() {
    let app = spawn_app().await;
    let mut events = subscribe(&app, Some(&position(&app).await), None).await;
    insert(&app, "https://example.com/seen.mp4").await;
    let seen = next(&mut events).await;
    drop(events);

    let mut missed = Vec::new();
    for n in 0..3 {
        missed.push(insert(&app, &format!("https://example.com/missed-{n}.mp4")).await);
    }

    // As a browser reconnects: the header carries the last id it saw.
    let mut events = subscribe(&app, Some("0.0"), Some(&seen.id)).await;
    for id in &missed {
        let event = next(&mut events).await;
        assert_eq!(event.event, "insert");
        assert_eq!(&job(&event)["id"], id.as_str());
    }
    quiet(&mut events).await;

    // Then live, with no gap between the replay and the live stream.
    let live = insert(&app, "https://example.com/live.mp4").await;
    assert_eq!(job(&next(&mut events).await)["id"], live.as_str());
    quiet(&mut events).await;

    // `?after=` works the same way.
    let mut events = subscribe(&app, Some(&seen.id), None).await;
    for id in missed.iter().chain([&live]) {
        assert_eq!(&job(&next(&mut events).await)["id"], id.as_str());
    }
}

#[tokio::test]
async fn transactions_committing_out_of_order_are_both_delivered() {
    let app = spawn_app().await;
    let mut events = subscribe(&app, Some(&position(&app).await), None).await;
    let url = crate::helpers::test_database_url(&app);

    // A takes the lower sequence number but commits last.
    let mut a = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut b = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut tx_a = a.begin().await.unwrap();
    sqlx::query!("insert into jobs (input_url) values ('https://example.com/a.mp4')")
        .execute(&mut *tx_a)
        .await
        .unwrap();
    let mut tx_b = b.begin().await.unwrap();
    sqlx::query!("insert into jobs (input_url) values ('https://example.com/b.mp4')")
        .execute(&mut *tx_b)
        .await
        .unwrap();
    let (seq_a, seq_b) = (
        sqlx::query_scalar!(r#"select max(seq) as "seq!" from job_changes"#)
            .fetch_one(&mut *tx_a)
            .await
            .unwrap(),
        sqlx::query_scalar!(r#"select max(seq) as "seq!" from job_changes"#)
            .fetch_one(&mut *tx_b)
            .await
            .unwrap(),
    );
    assert!(seq_a < seq_b);
    tx_b.commit().await.unwrap();
    // B is committed, but A still runs: B must wait, or A would be skipped forever.
    quiet(&mut events).await;
    tx_a.commit().await.unwrap();

    let mut urls = vec![
        job(&next(&mut events).await)["input_url"]
            .as_str()
            .unwrap()
            .to_owned(),
        job(&next(&mut events).await)["input_url"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    urls.sort();
    assert_eq!(
        urls,
        ["https://example.com/a.mp4", "https://example.com/b.mp4"]
    );
    quiet(&mut events).await;
}

#[tokio::test]
async fn a_position_older_than_the_history_gets_a_reset() {
    let app = spawn_app().await;
    let start = position(&app).await;
    let id = insert(&app, "https://example.com/old.mp4").await;
    app::db::changes::prune(&app.pool, Duration::ZERO)
        .await
        .unwrap();

    let mut events = subscribe(&app, Some(&start), None).await;
    let reset = next(&mut events).await;
    assert_eq!(reset.event, "reset");
    let snapshot: Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(snapshot["jobs"][0]["id"], id.as_str());
    assert_eq!(snapshot["position"].as_str().unwrap(), reset.id);

    // And live from there.
    let live = insert(&app, "https://example.com/after-reset.mp4").await;
    assert_eq!(job(&next(&mut events).await)["id"], live.as_str());
}

#[tokio::test]
async fn without_a_position_a_client_starts_with_a_snapshot() {
    let app = spawn_app().await;
    let id = insert(&app, "https://example.com/there.mp4").await;
    let mut events = subscribe(&app, None, None).await;
    let reset = next(&mut events).await;
    assert_eq!(reset.event, "reset");
    assert_eq!(
        serde_json::from_str::<Value>(&reset.data).unwrap()["jobs"][0]["id"],
        id.as_str()
    );
    quiet(&mut events).await;

    let bad = app
        .client
        .get(app.url("/api/events?after=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_a_reset_and_others_get_everything() {
    let app = spawn_app_with(&[("REELTIME_EVENTS_BUFFER", "8192")]).await;
    let start = position(&app).await;

    // The stalled client: a raw connection that sends its request and then reads nothing.
    let address = app.address.trim_start_matches("http://").to_owned();
    let token = app
        .token(crate::helpers::ADMIN, reeltime::TokenScope::Read)
        .await;
    let mut stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
    stalled
        .write_all(
            format!(
                "GET /api/events?after={start} HTTP/1.1\r\nHost: {address}\r\n\
                 Authorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut reader = subscribe(&app, Some(&start), None).await;

    // Enough changes to fill the stalled client's socket buffers many times over.
    let rows = 40_000;
    let counting = tokio::spawn(async move {
        let mut count = 0;
        while count < rows {
            let event = next(&mut reader).await;
            assert_ne!(event.event, "reset", "the reading client must not be reset");
            count += 1;
        }
        count
    });
    for _ in 0..(rows / 500) {
        sqlx::query!(
            "insert into jobs (input_url)
             select 'https://example.com/bulk-' || n || '.mp4' from generate_series(1, 500) n"
        )
        .execute(&app.pool)
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(counting.await.unwrap(), rows);

    // Now the stalled client reads: somewhere in what it gets is a reset.
    let mut seen = Vec::new();
    let mut buffer = vec![0u8; 1 << 16];
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n = stalled.read(&mut buffer).await.unwrap();
            assert!(n > 0, "stream ended before a reset");
            seen.extend_from_slice(&buffer[..n]);
            if seen.windows(13).any(|w| w == b"event: reset\n") {
                return;
            }
            if seen.len() > 4096 {
                seen.drain(..seen.len() - 4096);
            }
        }
    })
    .await;
    assert!(found.is_ok(), "the stalled client was never sent a reset");
}

#[tokio::test]
async fn a_killed_listener_connection_catches_up_without_loss() {
    let app = spawn_app().await;
    let mut events = subscribe(&app, Some(&position(&app).await), None).await;

    // The listener connects in the background at start-up: wait for it, then kill it.
    let mut killed = 0;
    for _ in 0..100 {
        killed = sqlx::query_scalar!(
            r#"select count(pg_terminate_backend(pid)) as "killed!" from pg_stat_activity
             where datname = current_database() and query ilike 'listen%'"#
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if killed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(killed, 1, "one LISTEN connection per app");

    // Written while the listener is down: no notification reaches anyone.
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(insert(&app, &format!("https://example.com/while-down-{n}.mp4")).await);
    }
    for id in &ids {
        assert_eq!(&job(&next(&mut events).await)["id"], id.as_str());
    }
    // And it listens again.
    let after = insert(&app, "https://example.com/after.mp4").await;
    assert_eq!(job(&next(&mut events).await)["id"], after.as_str());
}

#[tokio::test]
async fn a_change_through_one_instance_reaches_the_clients_of_another() {
    let first = spawn_app().await;
    let second = spawn_second_instance(&first).await;
    let mut on_first = subscribe(&first, Some(&position(&first).await), None).await;
    let mut on_second = subscribe(&second, Some(&position(&second).await), None).await;

    let created: Value = first
        .create_job(serde_json::json!({ "input_url": "https://example.com/shared.mp4" }))
        .await;
    let a = next(&mut on_first).await;
    let b = next(&mut on_second).await;
    assert_eq!(job(&a), created);
    assert_eq!(job(&b), created);
    assert_eq!(a.id, b.id, "positions are the same on every instance");
}

#[tokio::test]
async fn streams_end_on_graceful_shutdown() {
    let mut app = spawn_app().await;
    let mut events = subscribe(&app, Some(&position(&app).await), None).await;
    app.shut_down();
    let ended = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
    assert!(matches!(ended, Ok(None)), "the stream ended");
}
