//! The periodic clean-up: what is past its retention period goes, the rest stays.

use std::time::Duration;

use server::config::Retention;
use server::retention::Cleanup;

use crate::helpers::spawn_app;

#[tokio::test]
async fn old_finished_jobs_and_deliveries_go_and_the_rest_stays() {
    let app = spawn_app().await;
    for (url, status, days_ago) in [
        ("https://e.com/old-done.mp4", "succeeded", 31),
        ("https://e.com/old-running.mp4", "processing", 31),
        ("https://e.com/new-done.mp4", "failed", 0),
    ] {
        sqlx::query!(
            "insert into jobs (input_url, status, created_at, updated_at)
             values ($1, $2, now() - make_interval(days => $3), now() - make_interval(days => $3))",
            url,
            status,
            days_ago
        )
        .execute(&app.pool)
        .await
        .unwrap();
    }
    sqlx::query!(
        "insert into webhook_deliveries (signature_ok, outcome, raw_body, received_at)
         values (true, 'applied', '\\x00', now() - interval '31 days'), (true, 'applied', '\\x00', now())"
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let month = Duration::from_secs(30 * 86_400);
    let cleanup = Cleanup {
        pool: app.pool.clone(),
        retention: Retention {
            jobs: month,
            outputs: month,
            deliveries: month,
        },
        processor: None,
        limits: None,
    };
    let (jobs, _, deliveries, _) = cleanup.run_once().await.unwrap();
    assert_eq!((jobs, deliveries), (1, 1));
    let left = sqlx::query_scalar!("select input_url from jobs order by input_url")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        left,
        [
            "https://e.com/new-done.mp4",
            "https://e.com/old-running.mp4"
        ],
        "unfinished jobs stay"
    );
    let (again, _, _, _) = cleanup.run_once().await.unwrap();
    assert_eq!(again, 0);
}
