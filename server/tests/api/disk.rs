//! The free-space floor: under `REELTIME_MIN_FREE_DISK_MB` the built-in processor fails new
//! jobs saying it is the server's problem, and `/readyz` warns while staying ready.

use serde_json::{json, Value};

use crate::helpers::spawn_app_with;
use crate::processor::media_server;

#[tokio::test]
async fn under_the_disk_floor_jobs_fail_saying_so_and_readyz_warns() {
    // A floor no disk meets: a petabyte.
    let app = spawn_app_with(&[
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
        ("REELTIME_MIN_FREE_DISK_MB", "1000000000"),
    ])
    .await;

    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200, "a warning, not unavailable");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    let warning = body["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("the server's disk is nearly full (")
            && warning.contains("MB free, the floor is 1000000000 MB)")
            && warning.contains("REELTIME_MIN_FREE_DISK_MB"),
        "{body}"
    );

    let media = media_server().await;
    let job = app
        .create_job(json!({"input_url": format!("{}/clip.mp4", media.uri())}))
        .await;
    let job = app.dashboard_wait(job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("the server's disk is nearly full (")
            && error.contains(
                "the floor is 1000000000 MB); this is a problem on the server, not with the input"
            ),
        "{error}"
    );
    assert!(
        media.received_requests().await.unwrap().is_empty(),
        "nothing was downloaded"
    );
}

#[tokio::test]
async fn with_room_on_the_disk_readyz_has_no_warning() {
    let app = spawn_app_with(&[("REELTIME_PROCESSOR", "on")]).await;
    let body: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["warnings"], json!([]), "{body}");
}
