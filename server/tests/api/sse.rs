//! Reading `/api/events` in tests: subscribe, take the next event, and the writes tests make
//! on the side. Shared by the event-stream tests.

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::Value;

use crate::helpers::TestApp;

pub type Events = BoxStream<'static, Event>;

/// `GET /api/events`, from `?after=` and/or a `Last-Event-ID` header.
pub async fn subscribe(app: &TestApp, after: Option<&str>, last_event_id: Option<&str>) -> Events {
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

/// The next event; fails the test if none comes within 30 s or the stream ends. (Generous:
/// the tests share two cores with many apps, and delivery waits for every earlier writer of
/// `jobs` in the test's database.)
pub async fn next(events: &mut Events) -> Event {
    tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("an event within 30 s")
        .expect("the stream is still open")
}

/// The change log's position as `GET /api/jobs` reports it.
pub async fn position(app: &TestApp) -> String {
    let page: Value = app.get_json(app.url("/api/jobs?limit=1")).await;
    page["position"].as_str().unwrap().to_owned()
}

/// A job inserted with plain SQL, as any writer might; its id.
pub async fn insert(app: &TestApp, url: &str) -> String {
    sqlx::query_scalar!("insert into jobs (input_url) values ($1) returning id", url)
        .fetch_one(&app.pool)
        .await
        .unwrap()
        .to_string()
}

/// The job an insert, update or delete event carries.
pub fn job(event: &Event) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

/// Write one more job and read events until it arrives: everything before it is returned, so
/// a test asserts exactly what came (a duplicate or a stray event cannot hide in a silence).
pub async fn until_sentinel(app: &TestApp, events: &mut Events) -> Vec<Event> {
    let sentinel = insert(app, "https://example.com/sentinel.mp4").await;
    until_insert_of(events, &sentinel).await
}

/// The events before the insert of job `id`.
pub async fn until_insert_of(events: &mut Events, id: &str) -> Vec<Event> {
    let mut before = Vec::new();
    loop {
        let event = next(events).await;
        if event.event == "insert" && job(&event)["id"] == id {
            return before;
        }
        before.push(event);
    }
}
