//! Operators' actions (issue 12): cancel, retry and delete through the JSON API and forms,
//! their refusals, bulk actions on a filter or ids, filtered lists held to the core's
//! predicate, and each job's story.

use reeltime::{Job, JobFilter, JobStatus, Role, TokenScope};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

impl TestApp {
    /// `method path` with `body` as the signed-in admin; the status and the JSON answer.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method.parse().unwrap(), self.url(path))
            .header("x-csrf-token", &self.csrf);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Insert `n` jobs in `status` whose input mentions `tag`, by SQL (as other writers do).
    async fn insert_jobs(&self, n: i32, status: &str, tag: &str) {
        sqlx::query!(
            "insert into jobs (input_url, status, error)
             select format('https://media.example.com/%s/%s.mp4', $3::text, i), $2,
                    case when $2 = 'failed' then 'the input URL was not found (HTTP 404)' end
             from generate_series(1, $1) i",
            n,
            status,
            tag,
        )
        .execute(&self.pool)
        .await
        .unwrap();
    }

    async fn status_of(&self, id: &str) -> Option<String> {
        let (status, job) = self.call("GET", &format!("/api/jobs/{id}"), None).await;
        (status == 200).then(|| job["status"].as_str().unwrap().to_owned())
    }
}

fn id_of(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn cancel_retry_and_delete_follow_the_rules_and_say_why_not() {
    let app = spawn_app().await;
    // No processor: a submitted job stays pending.
    let job = app
        .create_job(json!({"input_url": "https://example.com/a.mp4"}))
        .await;
    let id = id_of(&job);

    let (status, body) = app
        .call("POST", &format!("/api/jobs/{id}/retry"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["message"],
        "The job is pending and has not finished: only a failed or cancelled job can be retried."
    );
    let (status, body) = app.call("DELETE", &format!("/api/jobs/{id}"), None).await;
    assert_eq!(status, 409, "{body}");

    let (status, body) = app
        .call("POST", &format!("/api/jobs/{id}/cancel"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["job"]["status"], "cancelled");
    assert_eq!(
        body["note"],
        Value::Null,
        "a pending job never reached a service"
    );
    let (status, body) = app
        .call("POST", &format!("/api/jobs/{id}/cancel"), None)
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            409,
            Some("The job has already been cancelled: there is nothing to cancel.")
        )
    );

    let (status, body) = app
        .call("POST", &format!("/api/jobs/{id}/retry"), None)
        .await;
    assert_eq!(status, 201, "{body}");
    let retry = id_of(&body["job"]);
    assert_ne!(retry, id);
    assert_eq!(body["job"]["retry_of"], id.as_str());
    assert_eq!(body["job"]["status"], "pending");
    assert_eq!(body["job"]["input_url"], "https://example.com/a.mp4");

    let (status, _) = app.call("DELETE", &format!("/api/jobs/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(app.status_of(&id).await, None, "gone");
    let (status, retried) = app.call("GET", &format!("/api/jobs/{retry}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        retried["retry_of"],
        Value::Null,
        "the link goes with the original"
    );

    let unknown = uuid::Uuid::new_v4();
    for (method, path) in [
        ("POST", format!("/api/jobs/{unknown}/cancel")),
        ("POST", format!("/api/jobs/{unknown}/retry")),
        ("DELETE", format!("/api/jobs/{unknown}")),
        ("POST", "/api/jobs/not-a-uuid/cancel".to_owned()),
    ] {
        let (status, _) = app.call(method, &path, None).await;
        assert_eq!(status, 404, "{method} {path}");
    }

    // A delete reaches every tab as a `delete` change.
    let deleted: i64 = sqlx::query_scalar!(
        r#"select count(*) as "n!" from job_changes where op = 'delete' and job_id = $1"#,
        id.parse::<uuid::Uuid>().unwrap()
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(deleted, 1);
}

#[tokio::test]
async fn a_jobs_story_names_who_did_what() {
    let app = spawn_app().await;
    let job = app
        .create_job(json!({"input_url": "https://example.com/b.mp4"}))
        .await;
    let id: reeltime::JobId = id_of(&job).parse().unwrap();
    app.call("POST", &format!("/api/jobs/{id}/cancel"), None)
        .await;
    let (_, retry) = app
        .call("POST", &format!("/api/jobs/{id}/retry"), None)
        .await;
    let events = app::db::operate::events(&app.pool, id).await.unwrap();
    let story: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.kind.clone(), e.actor.clone()))
        .collect();
    let admin = crate::helpers::ADMIN.to_owned();
    assert_eq!(
        story,
        [
            ("created".to_owned(), admin.clone()),
            ("status".to_owned(), admin.clone()),
            ("action".to_owned(), admin.clone()),
        ]
    );
    assert_eq!(events[1].detail["to"], "cancelled");
    assert_eq!(events[2].detail["retried_as"], retry["job"]["id"]);
    // A write from outside Reeltime is named as such.
    sqlx::query!(
        "update jobs set status = 'queued' where id = $1",
        retry["job"]["id"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .unwrap()
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let new_id: reeltime::JobId = id_of(&retry["job"]).parse().unwrap();
    let events = app::db::operate::events(&app.pool, new_id).await.unwrap();
    assert_eq!(events[0].detail["retry_of"], id.to_string());
    assert_eq!(events.last().unwrap().actor, "a direct database write");
}

#[tokio::test]
async fn viewers_and_read_tokens_cannot_act() {
    let app = spawn_app().await;
    let job = app
        .create_job(json!({"input_url": "https://example.com/c.mp4"}))
        .await;
    let id = id_of(&job);
    app.create_user("viewer@example.com", Role::Viewer).await;
    let (viewer, csrf) = app.signed_in("viewer@example.com").await;
    let response = viewer
        .post(app.url(&format!("/api/jobs/{id}/cancel")))
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let read = app.token(crate::helpers::ADMIN, TokenScope::Read).await;
    let response = reqwest::Client::new()
        .post(app.url(&format!("/api/jobs/{id}/cancel")))
        .bearer_auth(read)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(app.status_of(&id).await.as_deref(), Some("pending"));
}

#[tokio::test]
async fn a_bulk_action_changes_every_matching_job_in_one_go() {
    let app = spawn_app().await;
    app.insert_jobs(1_000, "pending", "bulk").await;
    app.insert_jobs(5, "pending", "other").await;
    app.insert_jobs(3, "succeeded", "bulk").await;

    let (status, body) = app
        .call(
            "POST",
            "/api/jobs/bulk",
            Some(json!({"action": "cancel", "filter": {"q": "/bulk/"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], 1_000, "the succeeded ones are left alone");
    let (_, counts) = app.call("GET", "/api/jobs/counts?q=/bulk/", None).await;
    assert_eq!(counts["cancelled"], 1_000);
    assert_eq!(counts["succeeded"], 3);
    assert_eq!(counts["pending"], 0);
    let (_, all) = app.call("GET", "/api/jobs/counts", None).await;
    assert_eq!(all["pending"], 5);

    let (_, page) = app
        .call("GET", "/api/jobs?status=cancelled&limit=3", None)
        .await;
    let ids: Vec<Value> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].clone())
        .collect();
    let (status, body) = app
        .call(
            "POST",
            "/api/jobs/bulk",
            Some(json!({"action": "retry", "ids": ids})),
        )
        .await;
    assert_eq!((status, body["changed"].as_u64()), (200, Some(3)), "{body}");
    let (_, counts) = app.call("GET", "/api/jobs/counts?q=/bulk/", None).await;
    assert_eq!(counts["pending"], 3, "three retries");

    let (status, body) = app
        .call(
            "POST",
            "/api/jobs/bulk",
            Some(json!({"action": "delete", "filter": {"status": "cancelled"}})),
        )
        .await;
    assert_eq!(
        (status, body["changed"].as_u64()),
        (200, Some(1_000)),
        "{body}"
    );
    assert_eq!(app.job_count().await, 5 + 3 + 3);

    for bad in [
        json!({"action": "cancel"}),
        json!({"action": "cancel", "ids": [], "filter": {}}),
        json!({"action": "cancel", "ids": ["nope"]}),
        json!({"action": "cancel", "filter": {"status": "done"}}),
        json!({"action": "explode", "ids": []}),
    ] {
        let (status, body) = app.call("POST", "/api/jobs/bulk", Some(bad.clone())).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let (status, body) = app.call("GET", "/api/jobs?status=done", None).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().starts_with("status:"),
        "{body}"
    );
}

/// Every page of `GET /api/jobs?<query>`.
async fn all_pages(app: &TestApp, query: &str) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut before = String::new();
    loop {
        let (status, page) = app
            .call(
                "GET",
                &format!("/api/jobs?limit=100&{query}&before={before}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{query}: {page}");
        let page: reeltime::JobPage = serde_json::from_value(page).unwrap();
        jobs.extend(page.jobs);
        match page.next_before {
            Some(next) => before = next,
            None => return jobs,
        }
    }
}

#[tokio::test]
async fn the_sql_filter_lets_through_exactly_what_the_core_predicate_does() {
    let app = spawn_app().await;
    // A varied table: statuses, kinds, inputs, errors and creation times spread over days;
    // inputs with `%` and `_` where a search taken as a pattern would match more.
    sqlx::query!(
        "insert into jobs (input_url, kind, options, status, error, created_at)
         select format('https://%s.example.com/%s%s%s.mp4',
                       (array['cdn', 'media', 'Uploads'])[1 + i % 3], i,
                       (array['_', '-'])[1 + i % 2], (array['a', 'b%', 'bc'])[1 + i % 3]),
                (array['video', 'audio', 'image'])[1 + i % 3],
                case when i % 3 = 0 then $1::jsonb else '{}'::jsonb end,
                (array['pending', 'queued', 'processing', 'succeeded', 'failed', 'cancelled'])[1 + i % 6],
                case when i % 6 = 4 then (array['DNS lookup failed', 'HTTP 404'])[1 + i % 2] end,
                timestamptz '2026-11-20 00:00Z' + i * interval '97 minutes'
         from generate_series(1, 360) i",
        reeltime::Preset::DEFAULT.options(),
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let everything = all_pages(&app, "").await;
    assert_eq!(everything.len(), 360);
    let queries = [
        "status=failed",
        "kind=audio",
        "preset=video_1280_mp4_high",
        "q=uploads",
        "q=b%",
        "q=dns",
        "q=_b",
        "from=2026-11-22&to=2026-11-23",
        "status=succeeded&kind=video&from=2026-11-21",
        "status=cancelled&q=UPLOADS&to=2026-11-25T12:00:00Z",
    ];
    for query in queries {
        let filter =
            JobFilter::from_pairs(query.split('&').filter_map(|p| p.split_once('='))).unwrap();
        let mut expected: Vec<_> = everything
            .iter()
            .filter(|j| filter.matches(j))
            .map(|j| j.id)
            .collect();
        let mut got: Vec<_> = all_pages(&app, &query.replace('%', "%25"))
            .await
            .iter()
            .map(|j| j.id)
            .collect();
        expected.sort();
        got.sort();
        assert!(!expected.is_empty(), "{query} matches something");
        assert_eq!(got, expected, "{query}");
        let (_, counts) = app
            .call(
                "GET",
                &format!("/api/jobs/counts?{}", query.replace('%', "%25")),
                None,
            )
            .await;
        let unstatused = filter.with_status(None);
        for status in JobStatus::ALL {
            let n = everything
                .iter()
                .filter(|j| unstatused.matches(j) && j.status == *status)
                .count();
            assert_eq!(counts[status.as_str()], n, "{query}: {status}");
        }
    }
}

#[tokio::test]
async fn forms_act_without_javascript_and_come_back_with_a_message() {
    let app = spawn_app().await;
    let job = app
        .create_job(json!({"input_url": "https://example.com/d.mp4"}))
        .await;
    let id = id_of(&job);
    let response = app
        .client
        .post(app.url(&format!("/jobs/{id}/cancel")))
        .form(&[("csrf", app.csrf.as_str()), ("back", "/?status=pending")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/?status=pending");
    assert_eq!(app.status_of(&id).await.as_deref(), Some("cancelled"));
    // The refusal comes back as the page's message.
    let response = app
        .client
        .post(app.url(&format!("/jobs/{id}/cancel")))
        .form(&[("csrf", app.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], format!("/jobs/{id}"));
}

#[tokio::test]
async fn the_bulk_bar_works_without_javascript() {
    let app = spawn_app().await;
    app.insert_jobs(4, "pending", "form").await;
    let (_, page) = app.call("GET", "/api/jobs?limit=2", None).await;
    let ids: Vec<String> = page["jobs"].as_array().unwrap().iter().map(id_of).collect();
    let post = |fields: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let mut fields = fields;
            fields.push(("csrf", app.csrf.clone()));
            let response = app
                .client
                .post(app.url("/jobs/bulk"))
                .header("accept", "text/html")
                .form(&fields)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 303);
            response.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    let to = post(vec![
        ("action", "cancel".into()),
        ("scope", "selected".into()),
        ("ids", ids[0].clone()),
        ("ids", ids[1].clone()),
        ("back", "/?status=pending".into()),
    ])
    .await;
    assert_eq!(to, "/?status=pending");
    let (_, counts) = app.call("GET", "/api/jobs/counts", None).await;
    assert_eq!(
        (counts["cancelled"].as_i64(), counts["pending"].as_i64()),
        (Some(2), Some(2))
    );
    post(vec![
        ("action", "cancel".into()),
        ("scope", "all".into()),
        ("status", "pending".into()),
    ])
    .await;
    let (_, counts) = app.call("GET", "/api/jobs/counts", None).await;
    assert_eq!(counts["cancelled"], 4, "every job the filter let through");
}
