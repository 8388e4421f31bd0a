//! The status tabs' counts (issue 16): with no other condition they come from the ledger the
//! triggers on `jobs` keep (migration `job_status_counts`), not from counting the table, and
//! they must equal counting the table after every kind of write.

use std::collections::BTreeMap;

use reeltime::{JobFilter, JobKind, JobStatus};
use serde_json::json;

use crate::helpers::{spawn_app, TestApp};

/// Jobs per status, counted.
async fn counted(app: &TestApp, kind: Option<&str>) -> BTreeMap<String, i64> {
    sqlx::query!(
        r#"select status as "status!", count(*) as "count!" from jobs
         where $1::text is null or kind = $1 group by status"#,
        kind
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|row| (row.status, row.count))
    .collect()
}

/// Jobs per status, as the status tabs get them.
async fn shown(app: &TestApp, filter: &JobFilter) -> BTreeMap<String, i64> {
    app::db::status_counts(&app.pool, filter)
        .await
        .unwrap()
        .into_iter()
        .map(|(status, count)| (status.as_str().to_owned(), count))
        .collect()
}

async fn ledger_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar!(r#"select count(*) as "count!" from job_status_counts"#)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn execute(app: &TestApp, sql: &'static str) {
    sqlx::raw_sql(sql).execute(&app.pool).await.unwrap();
}

#[tokio::test]
async fn the_status_counts_follow_every_write_and_fold_to_one_row_per_status() {
    let app = spawn_app().await;
    let all = JobFilter::default();
    let same = |step: &'static str| {
        let app = &app;
        let all = &all;
        async move {
            assert_eq!(
                shown(app, all).await,
                counted(app, None).await,
                "after {step}"
            );
        }
    };
    same("nothing").await;
    assert!(shown(&app, &all).await.is_empty());

    sqlx::query!(
        "insert into jobs (input_url, kind, status)
         select format('https://example.com/%s.mp4', i),
                (array['video', 'audio'])[1 + i % 2],
                (array['pending', 'queued', 'processing', 'succeeded', 'failed', 'cancelled'])[1 + i % 6]
         from generate_series(1, 600) i"
    )
    .execute(&app.pool)
    .await
    .unwrap();
    same("a bulk insert").await;
    assert_eq!(shown(&app, &all).await["failed"], 100);

    app.create_job(json!({"input_url": "https://example.com/one.mp4"}))
        .await;
    same("a submission").await;

    execute(
        &app,
        "update jobs set status = 'processing' where status = 'queued'",
    )
    .await;
    same("a bulk status change").await;

    let before = ledger_rows(&app).await;
    execute(
        &app,
        "update jobs set progress = 40 where status = 'processing'",
    )
    .await;
    assert_eq!(
        ledger_rows(&app).await,
        before,
        "an update that moves no status adds nothing"
    );

    execute(&app, "delete from jobs where status = 'failed'").await;
    same("a delete").await;
    assert!(!shown(&app, &all).await.contains_key("failed"));

    // A change rolled back leaves no trace in the counts.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query!("update jobs set status = 'cancelled' where status = 'pending'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    same("a rollback").await;

    // A filter with other conditions counts the matching jobs themselves.
    let audio = JobFilter {
        kind: Some(JobKind::Audio),
        status: Some(JobStatus::Succeeded),
        ..JobFilter::default()
    };
    assert_eq!(
        shown(&app, &audio).await,
        counted(&app, Some("audio")).await
    );

    let grown = ledger_rows(&app).await;
    assert!(grown > 6, "one row per statement and status: {grown}");
    app::db::jobs::compact_status_counts(&app.pool)
        .await
        .unwrap();
    same("a fold").await;
    assert!(
        ledger_rows(&app).await <= 6,
        "one row per status after a fold"
    );

    execute(&app, "truncate jobs cascade").await;
    same("a truncate").await;
    assert_eq!(ledger_rows(&app).await, 0);
}
