//! Resuming the change feed: replay from the log counts the rows it read, a position this
//! database never had gets a reset, recent positions resume from the feed's memory, and
//! keep-alives keep idle streams open.

use std::time::{Duration, Instant};

use reeltime::ChangePosition;
use serde_json::Value;

use crate::helpers::{eventually, spawn_app, spawn_second_instance};
use crate::sse::{insert, job, next, position, subscribe, until_insert_of, until_sentinel};

/// An entry no reader can turn into a job (written by hand, or by a newer version).
async fn insert_unreadable_change(pool: &sqlx::PgPool) -> ChangePosition {
    let row = sqlx::query!(
        r#"insert into job_changes (op, job_id, row_data)
         values ('update', gen_random_uuid(), '{"not": "a job"}')
         returning tx_key, seq"#
    )
    .fetch_one(pool)
    .await
    .unwrap();
    ChangePosition {
        tx: row.tx_key as u64,
        seq: row.seq,
    }
}

async fn insert_many(pool: &sqlx::PgPool, prefix: &str, n: i32) -> Vec<String> {
    sqlx::query_scalar!(
        "insert into jobs (input_url)
         select 'https://example.com/' || $1 || '-' || g || '.mp4' from generate_series(1, $2) g
         order by g returning id::text",
        prefix,
        n,
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(Option::unwrap)
    .collect()
}

#[tokio::test]
async fn a_row_that_cannot_be_read_does_not_end_the_replay_early() {
    let app = spawn_app().await;
    let start = position(&app).await;
    // 1,251 entries, more than the feed keeps in memory (1,024), so resuming from the start
    // reads the log; its first read of 500 holds the unreadable one.
    let mut ids = insert_many(&app.pool, "before", 250).await;
    insert_unreadable_change(&app.pool).await;
    ids.extend(insert_many(&app.pool, "after", 1000).await);
    // Once the feed's memory no longer reaches back to the start, resuming reads the log.
    let from: ChangePosition = start.parse().unwrap();
    eventually(Duration::from_secs(30), || async {
        match app.feed.resume(from).expect("the feed is open").missed {
            None => Ok(()),
            Some(missed) => Err(format!("the feed still holds {} changes", missed.len())),
        }
    })
    .await;

    let mut events = subscribe(&app, Some(&start), None).await;
    let arrived: Vec<String> = until_sentinel(&app, &mut events)
        .await
        .iter()
        .map(|event| {
            assert_eq!(event.event, "insert");
            job(event)["input_url"].as_str().unwrap().to_owned()
        })
        .collect();
    let inserted: Vec<String> = (1..=250)
        .map(|n| format!("https://example.com/before-{n}.mp4"))
        .chain((1..=1000).map(|n| format!("https://example.com/after-{n}.mp4")))
        .collect();
    assert_eq!(arrived.len(), inserted.len(), "every readable change, once");
    assert_eq!(arrived, inserted, "in order");
    assert_eq!(ids.len(), 1250);
}

#[tokio::test]
async fn a_read_counts_the_rows_it_could_not_decode_and_moves_past_them() {
    let app = spawn_app().await;
    let start: ChangePosition = position(&app).await.parse().unwrap();
    insert(&app, "https://example.com/one.mp4").await;
    let unreadable = insert_unreadable_change(&app.pool).await;

    // Both are final once no older transaction (in any database of the cluster) still runs.
    let batch = eventually(Duration::from_secs(10), || async {
        let batch = app::db::changes::read_changes(&app.pool, start, 10)
            .await
            .unwrap();
        match batch.pending {
            false => Ok(batch),
            true => Err(format!("still behind the horizon: {batch:?}")),
        }
    })
    .await;
    assert_eq!(batch.changes.len(), 1);
    assert_eq!(batch.read, 2, "rows read, readable or not");
    assert_eq!(batch.undecodable, 1);
    assert_eq!(
        batch.last,
        Some(unreadable),
        "the next read starts after it"
    );
    assert!(!batch.pending);
    let rest = app::db::changes::read_changes(&app.pool, unreadable, 10)
        .await
        .unwrap();
    assert_eq!((rest.read, rest.changes.len()), (0, 0));
}

#[tokio::test]
async fn a_position_beyond_the_head_gets_a_reset() {
    let app = spawn_app().await;
    let id = insert(&app, "https://example.com/here.mp4").await;
    let head = position(&app).await;

    // A position from another database (this one was re-created, say), by URL and by header.
    for (after, header) in [
        (Some("999999999.0"), None),
        (None, Some("999999999.5")),
        (Some(head.as_str()), Some("999999999.5")),
    ] {
        let mut events = subscribe(&app, after, header).await;
        let reset = next(&mut events).await;
        assert_eq!(reset.event, "reset", "{after:?} {header:?}");
        let page: Value = serde_json::from_str(&reset.data).unwrap();
        let ids: Vec<&str> = page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&id.as_str()), "{ids:?}");
        assert_eq!(reset.id, page["position"].as_str().unwrap());
        assert!(until_sentinel(&app, &mut events).await.is_empty());
    }

    // The newest position is a position like any other: it resumes, no reset.
    let mut live = subscribe(&app, Some(&head), None).await;
    let newest = insert(&app, "https://example.com/newest.mp4").await;
    let newest_event = until_insert_of_event(&mut live, &newest).await;
    let mut events = subscribe(&app, Some(&newest_event.id), None).await;
    assert!(until_sentinel(&app, &mut events).await.is_empty());
}

/// The insert event of job `id`, whatever comes before it.
async fn until_insert_of_event(
    events: &mut crate::sse::Events,
    id: &str,
) -> eventsource_stream::Event {
    loop {
        let event = next(events).await;
        if event.event == "insert" && job(&event)["id"] == id {
            return event;
        }
    }
}

#[tokio::test]
async fn recent_positions_resume_from_memory_without_the_database() {
    let app = spawn_app().await;
    let start = position(&app).await;
    let mut reader = subscribe(&app, Some(&start), None).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(insert(&app, &format!("https://example.com/recent-{n}.mp4")).await);
    }
    // Once a live reader has them, the feed has them.
    let mut positions = Vec::new();
    for id in &ids {
        let event = next(&mut reader).await;
        assert_eq!(&job(&event)["id"], id.as_str());
        positions.push(event.id);
    }

    // The log is out of reach: a resume that needed it would fail.
    sqlx::query!("alter table job_changes rename to job_changes_away")
        .execute(&app.pool)
        .await
        .unwrap();
    let mut from_start = subscribe(&app, Some(&start), None).await;
    for id in &ids {
        let event = next(&mut from_start).await;
        assert_eq!(event.event, "insert");
        assert_eq!(&job(&event)["id"], id.as_str());
    }
    let mut from_first = subscribe(&app, Some("0.0"), Some(&positions[0])).await;
    for id in &ids[1..] {
        assert_eq!(&job(&next(&mut from_first).await)["id"], id.as_str());
    }
    sqlx::query!("alter table job_changes_away rename to job_changes")
        .execute(&app.pool)
        .await
        .unwrap();

    // And live after the memory, exactly once.
    let sentinel = insert(&app, "https://example.com/sentinel.mp4").await;
    for stream in [&mut from_start, &mut from_first, &mut reader] {
        assert!(until_insert_of(stream, &sentinel).await.is_empty());
    }
}

#[tokio::test]
async fn a_restarted_instance_resumes_recent_positions_from_the_log_tail_it_loaded() {
    let first = spawn_app().await;
    let start = position(&first).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            insert(
                &first,
                &format!("https://example.com/before-restart-{n}.mp4"),
            )
            .await,
        );
    }
    // A new instance, as after a restart: its feed starts with the end of the log in memory.
    let second = spawn_second_instance(&first).await;
    let mut probe = subscribe(&second, Some(&position(&second).await), None).await;
    until_sentinel(&second, &mut probe).await;
    // The probe may have read the sentinel from the log before the new feed had loaded its
    // end: wait until the feed's memory holds everything after the start, sentinel included,
    // or resuming below would read the log (and fail, on purpose).
    let from: ChangePosition = start.parse().unwrap();
    eventually(Duration::from_secs(30), || async {
        let held: Vec<String> = match second.feed.resume(from).expect("the feed is open").missed {
            Some(frames) => frames
                .iter()
                .map(|frame| String::from_utf8_lossy(&frame.bytes).into_owned())
                .collect(),
            None => return Err("the new feed does not hold the start yet".to_owned()),
        };
        let holds = |text: &str| held.iter().any(|frame| frame.contains(text));
        match ids.iter().find(|id| !holds(id.as_str())) {
            Some(id) => Err(format!("the new feed does not hold job {id} yet")),
            None if !holds("sentinel.mp4") => Err("the new feed lacks the sentinel".to_owned()),
            None => Ok(()),
        }
    })
    .await;

    sqlx::query!("alter table job_changes rename to job_changes_away")
        .execute(&first.pool)
        .await
        .unwrap();
    let mut events = subscribe(&second, Some(&start), None).await;
    for id in &ids {
        assert_eq!(&job(&next(&mut events).await)["id"], id.as_str());
    }
    let sentinel = next(&mut events).await;
    assert_eq!(
        job(&sentinel)["input_url"],
        "https://example.com/sentinel.mp4"
    );
    sqlx::query!("alter table job_changes_away rename to job_changes")
        .execute(&first.pool)
        .await
        .unwrap();
    assert!(until_sentinel(&second, &mut events).await.is_empty());
}

#[tokio::test]
async fn idle_streams_get_a_keep_alive_comment_within_15_seconds() {
    let app = spawn_app().await;
    let mut response = app
        .client
        .get(app.url(&format!("/api/events?after={}", position(&app).await)))
        .send()
        .await
        .unwrap();
    let connected = Instant::now();
    let mut seen = Vec::new();
    let keep_alive = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let chunk = response
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            seen.extend_from_slice(&chunk);
            if seen.ends_with(b"\n\n:\n\n") {
                return;
            }
        }
    })
    .await;
    assert!(keep_alive.is_ok(), "no keep-alive in 20 s: {seen:?}");
    // One ticker for every client: the first comes within a period of connecting.
    assert!(
        connected.elapsed() <= Duration::from_secs(16),
        "{:?}",
        connected.elapsed()
    );
    assert_eq!(seen, b"retry: 1000\n\n:\n\n", "nothing else was sent");
}
