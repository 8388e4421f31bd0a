//! Outputs in object storage (issue 13): a real S3 protocol server (moto, [`S3Server`]) holds
//! the built-in processor's outputs, so any instance on the database serves any output, with
//! ranges, behind the same access rules; large files go up in parts; a store that cannot be
//! written stops start-up with a message that says what to check.

use serde_json::json;
use server::storage::{Key, Storage};

use crate::helpers::{browser, spawn_app_with, spawn_second_instance_with, TestApp};
use crate::processor::media_server;
use crate::s3::{S3Server, SECRET};

fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// `path` of an output URL, on `app`.
fn on(app: &TestApp, url: &str) -> String {
    let path = url.split_once("/ittybit-local/").unwrap().1;
    app.url(&format!("/ittybit-local/{path}"))
}

#[tokio::test]
async fn an_output_made_on_one_instance_is_kept_in_s3_and_served_by_every_instance() {
    let s3 = S3Server::start().await;
    s3.bucket("reeltime-media").await;
    let mut settings = s3.settings("s3://reeltime-media/team-a").to_vec();
    settings.extend([
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
    ]);
    let a = spawn_app_with(&settings).await;
    let b = spawn_second_instance_with(&a, &settings).await;
    let media = media_server().await;

    let job = a
        .create_job(json!({
            "input_url": format!("{}/clip.mp4", media.uri()),
            "preset": "audio_mp3_192",
        }))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let done = a.dashboard_wait(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let task = done["task_id"].as_str().unwrap();
    let key = format!("team-a/outputs/{task}.mp3");
    // In the bucket under the prefix, and on neither instance's disk.
    assert_eq!(s3.keys("reeltime-media", "team-a/").await, [key]);
    for app in [&a, &b] {
        let outputs = app.data_dir.join("processor").join("outputs");
        assert!(files_in(&outputs).is_empty(), "{:?}", files_in(&outputs));
    }
    let stored = s3
        .storage("reeltime-media", "team-a")
        .read(&Key::output(&format!("{task}.mp3")))
        .await
        .unwrap();
    assert_eq!(stored.len() as u64, done["output_size"].as_u64().unwrap());

    let url = done["output_url"].as_str().unwrap();
    for app in [&a, &b] {
        let response = app
            .client
            .get(on(app, url))
            .header("range", "bytes=100-199")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 206, "{}", app.address);
        assert_eq!(response.headers()["content-type"], "audio/mpeg");
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes 100-199/{}", stored.len()).as_str()
        );
        assert_eq!(response.bytes().await.unwrap(), &stored[100..200]);

        let whole = app.client.get(on(app, url)).send().await.unwrap();
        assert_eq!(whole.status(), 200);
        let etag = whole.headers()["etag"].clone();
        assert_eq!(whole.bytes().await.unwrap(), &stored[..]);
        let again = app
            .client
            .get(on(app, url))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304);

        // The same access rule as every output: no session, no file.
        let anonymous = browser(&app.address)
            .get(on(app, url))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401);
    }

    // Deleting the job through the other instance deletes the object.
    let response = b
        .client
        .delete(b.url(&format!("/api/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(s3.keys("reeltime-media", "team-a/").await.is_empty());
    let gone = b.client.get(on(&b, url)).send().await.unwrap();
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn a_large_file_goes_up_in_parts_and_is_served_across_them() {
    let s3 = S3Server::start().await;
    s3.bucket("reeltime-big").await;
    let storage = Storage::open(s3.store("reeltime-big", "big", SECRET))
        .await
        .unwrap();
    // 11 MiB and a bit in 5 MiB parts (S3's smallest): a three-part upload.
    let part = 5 << 20;
    let bytes: Vec<u8> = (0..(11u32 << 20) + 12_345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let source = std::env::temp_dir().join(format!("reeltime-big-{}", uuid::Uuid::new_v4()));
    std::fs::write(&source, &bytes).unwrap();
    let key = Key::output("job_big.mp4");
    let size = storage
        .put_file_in_parts(&key, &source, part)
        .await
        .unwrap();
    std::fs::remove_file(&source).unwrap();
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(
        s3.keys("reeltime-big", "").await,
        ["big/outputs/job_big.mp4"],
        "one object, no probe or part left over"
    );
    let stored = s3.storage("reeltime-big", "big").read(&key).await.unwrap();
    assert!(stored == bytes, "the stored object is the file");

    // A range across the first part boundary.
    let mut headers = axum::http::HeaderMap::new();
    let (start, end) = (part as u64 - 10, part as u64 + 9);
    headers.insert("range", format!("bytes={start}-{end}").parse().unwrap());
    let response = storage
        .serve(&key, &axum::http::Method::GET, &headers, "video/mp4")
        .await;
    assert_eq!(response.status(), 206);
    // S3 gives a multipart object the ETag `"<hash>-<parts>"`.
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.ends_with("-3\""), "{etag}");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(body, &bytes[start as usize..=end as usize]);
}

#[tokio::test]
async fn a_store_that_cannot_be_written_stops_start_up_and_says_what_to_check() {
    let s3 = S3Server::start().await;
    let secret = "do-not-print-this-secret";
    let err = Storage::open(s3.store("no-such-bucket", "big", secret))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("could not write to s3://no-such-bucket/big at http://127.0.0.1:"),
        "{message}"
    );
    assert!(
        message.contains("Check that the bucket exists"),
        "{message}"
    );
    assert!(!message.contains(secret), "{message}");
}
