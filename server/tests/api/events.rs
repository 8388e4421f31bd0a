//! `/api/events`: the change feed as an SSE client sees it, with SQL written on the side.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use sqlx::Connection;

use eventsource_stream::Eventsource;

use crate::helpers::{spawn_app, spawn_app_with, spawn_second_instance};
use crate::sse::{insert, job, next, position, subscribe, until_insert_of, until_sentinel};

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

    // Then live, with no gap and no repeat between the replay and the live stream.
    let live = insert(&app, "https://example.com/live.mp4").await;
    assert_eq!(job(&next(&mut events).await)["id"], live.as_str());
    assert!(until_sentinel(&app, &mut events).await.is_empty());

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
    // B is committed, but A still runs: B must wait, or A would be skipped forever. Give the
    // listener (woken by B's commit) time to look while A runs; the order below is the check.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx_a.commit().await.unwrap();

    // Delivered in transaction order, A first, each once.
    let urls: Vec<String> = until_sentinel(&app, &mut events)
        .await
        .iter()
        .map(|event| job(event)["input_url"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        urls,
        ["https://example.com/a.mp4", "https://example.com/b.mp4"]
    );
}

#[tokio::test]
async fn a_position_older_than_the_history_gets_a_reset() {
    // The feed keeps one change in memory: the start is soon out of its reach.
    let app = spawn_app_with(&[("REELTIME_EVENTS_BUFFER", "1")]).await;
    let start = position(&app).await;
    let id = insert(&app, "https://example.com/old.mp4").await;
    insert(&app, "https://example.com/newer.mp4").await;
    let from: reeltime::ChangePosition = start.parse().unwrap();
    crate::helpers::eventually(Duration::from_secs(10), || async {
        match app.feed.resume(from).expect("the feed is open").missed {
            None => Ok(()),
            Some(_) => Err("the feed still holds the start".to_owned()),
        }
    })
    .await;
    app::db::changes::prune(&app.pool, Duration::ZERO)
        .await
        .unwrap();

    let mut events = subscribe(&app, Some(&start), None).await;
    let reset = next(&mut events).await;
    assert_eq!(reset.event, "reset");
    let snapshot: Value = serde_json::from_str(&reset.data).unwrap();
    let jobs = snapshot["jobs"].as_array().unwrap();
    assert!(jobs.iter().any(|j| j["id"] == id.as_str()), "{snapshot}");
    assert_eq!(snapshot["position"].as_str().unwrap(), reset.id);

    // And live from there, exactly once.
    let live = insert(&app, "https://example.com/after-reset.mp4").await;
    assert_eq!(job(&next(&mut events).await)["id"], live.as_str());
    assert!(until_sentinel(&app, &mut events).await.is_empty());
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
    assert!(until_sentinel(&app, &mut events).await.is_empty());

    let bad = app
        .client
        .get(app.url("/api/events?after=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_client_that_falls_behind_gets_a_reset_then_every_later_change_once() {
    // Clients may fall 16 changes behind; the feed remembers as many.
    let app = spawn_app_with(&[("REELTIME_EVENTS_BUFFER", "16")]).await;
    let start = position(&app).await;
    // Once the feed holds the start, a stream from it goes live at once (no replay first).
    let from: reeltime::ChangePosition = start.parse().unwrap();
    crate::helpers::eventually(Duration::from_secs(10), || async {
        match app.feed.resume(from).expect("the feed is open").missed {
            Some(_) => Ok(()),
            None => Err("the feed has not loaded the log yet".to_owned()),
        }
    })
    .await;
    // The stalled client: the server's own stream of events, which the test stops polling
    // after the first bytes (no socket buffer stands between it and the server).
    let mut stalled = Box::pin(server::routes::events::stream(
        app.feed.clone(),
        Some(start.parse().unwrap()),
    ));
    assert_eq!(stalled.next().await.unwrap(), "retry: 1000\n\n");
    let mut stalled = stalled
        .map(Ok::<_, std::convert::Infallible>)
        .eventsource()
        .map(|event| event.expect("a well-formed event"))
        .boxed();
    let mut reader = subscribe(&app, Some(&start), None).await;

    // 40 changes, each read by the reader before the next is written: the reader keeps up
    // and sees exactly these, in order.
    let mut ids = Vec::new();
    for n in 0..40 {
        let id = insert(&app, &format!("https://example.com/stalled-{n}.mp4")).await;
        let event = next(&mut reader).await;
        assert_eq!(
            (event.event.as_str(), &job(&event)["id"]),
            ("insert", &Value::from(id.as_str()))
        );
        ids.push(id);
    }

    // The stalled client is 40 behind, more than the 16 it may be: it gets a reset, which
    // shows every change it missed.
    let reset = next(&mut stalled).await;
    assert_eq!(reset.event, "reset");
    let page: Value = serde_json::from_str(&reset.data).unwrap();
    let mut seen: Vec<String> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected, "the stalled client has every change");

    // After the reset, each later change exactly once, for both clients.
    let mut later = Vec::new();
    for (n, id) in ids.iter().take(5).enumerate() {
        sqlx::query!(
            "update jobs set status = 'processing' where id = $1::text::uuid",
            id
        )
        .execute(&app.pool)
        .await
        .unwrap();
        later.push(("update".to_owned(), id.clone()));
        let added = insert(&app, &format!("https://example.com/later-{n}.mp4")).await;
        later.push(("insert".to_owned(), added));
    }
    let sentinel = insert(&app, "https://example.com/sentinel.mp4").await;
    for events in [&mut reader, &mut stalled] {
        let arrived: Vec<(String, String)> = until_insert_of(events, &sentinel)
            .await
            .iter()
            .map(|e| (e.event.clone(), job(e)["id"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(arrived, later);
    }
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
