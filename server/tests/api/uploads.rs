//! Uploads (issue 13): a file sent in parts, in any order, resumed after a missing part,
//! completed, served with ranges across parts, and processed as a job's input; and the checks
//! made before a byte is sent, and who may touch an upload.

use std::process::Command;

use reeltime::upload::PART_BYTES;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};
use crate::s3::S3Server;

/// A WAV tone just over one part long: two parts, the second short.
fn tone() -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("reeltime-tone-{}.wav", uuid::Uuid::new_v4()));
    // 48 kHz stereo 16-bit: 192,000 bytes a second.
    let seconds = (PART_BYTES / 192_000 + 2).to_string();
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-y", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={seconds}"
        ))
        .args(["-ac", "2", "-c:a", "pcm_s16le"])
        .arg(&path)
        .status()
        .expect("ffmpeg is installed");
    assert!(status.success());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(bytes.len() as u64 > PART_BYTES && (bytes.len() as u64) < 2 * PART_BYTES);
    bytes
}

impl TestApp {
    fn upload_call(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    async fn put_part(&self, id: &str, n: u32, bytes: Vec<u8>) -> (StatusCode, Value) {
        let response = self
            .upload_call(
                reqwest::Method::PUT,
                &format!("/api/uploads/{id}/parts/{n}"),
            )
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn upload_post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.upload_call(reqwest::Method::POST, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }
}

#[tokio::test]
async fn a_file_sent_in_parts_resumes_completes_and_becomes_a_job_input() {
    let s3 = S3Server::start().await;
    s3.bucket("reeltime-uploads").await;
    let mut settings = s3.settings("s3://reeltime-uploads/team").to_vec();
    settings.extend([
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
    ]);
    let app = spawn_app_with(&settings).await;
    let file = tone();
    let part = PART_BYTES as usize;

    let (status, upload) = app
        .upload_post(
            "/api/uploads",
            Some(json!({ "name": "tone.wav", "size": file.len(), "content_type": "audio/wav" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{upload}");
    assert_eq!(upload["parts"], 2);
    assert_eq!(upload["part_bytes"], PART_BYTES);
    assert_eq!(upload["complete"], false);
    let id = upload["id"].as_str().unwrap().to_owned();

    // The last part first; then part 0 cut short, which is refused.
    let (status, progress) = app.put_part(&id, 1, file[part..].to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{progress}");
    assert_eq!(progress["received"], json!([1]));
    let (status, refused) = app.put_part(&id, 0, file[..100].to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused["message"],
        format!("Part 0 must be {PART_BYTES} bytes long; this one is 100.")
    );
    let (status, early) = app
        .upload_post(&format!("/api/uploads/{id}/complete"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        early["message"],
        "Part 0 has not arrived yet: send it and complete again."
    );

    // Resuming: ask what arrived, send the rest (twice, as a retry would).
    let progress = app.get_json(app.url(&format!("/api/uploads/{id}"))).await;
    assert_eq!(progress["received"], json!([1]));
    for _ in 0..2 {
        let (status, progress) = app.put_part(&id, 0, file[..part].to_vec()).await;
        assert_eq!(status, StatusCode::OK, "{progress}");
        assert_eq!(progress["received"], json!([0, 1]));
    }
    let (status, done) = app
        .upload_post(&format!("/api/uploads/{id}/complete"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["complete"], true);
    let input_url = done["input_url"].as_str().unwrap().to_owned();
    assert_eq!(input_url, app.url(&format!("/uploads/{id}/tone.wav")));
    let (status, _) = app.put_part(&id, 0, file[..part].to_vec()).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a complete upload takes no parts"
    );

    // Served whole and in ranges, across the parts' seam.
    let (from, to) = (part - 50, part + 49);
    let response = app
        .client
        .get(&input_url)
        .header("range", format!("bytes={from}-{to}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()["content-type"], "audio/wav");
    assert_eq!(response.bytes().await.unwrap(), &file[from..=to]);
    let whole = app.client.get(&input_url).send().await.unwrap();
    assert_eq!(
        whole.headers()["content-length"],
        file.len().to_string().as_str()
    );
    assert!(whole.bytes().await.unwrap() == file, "the file, whole");

    // A job takes it as its input (the processor fetches it with its own key).
    let job = app
        .create_job(json!({ "input_url": input_url, "preset": "audio_mp3_192" }))
        .await;
    let job = app.dashboard_wait(job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let seconds = job["output_duration_ms"].as_u64().unwrap() / 1000;
    assert!((42..=46).contains(&seconds), "{seconds} s");
    let simple = id.replace('-', "");
    let keys = s3.keys("reeltime-uploads", "team/uploads/").await;
    assert_eq!(
        keys,
        [
            format!("team/uploads/{simple}/000000"),
            format!("team/uploads/{simple}/000001")
        ]
    );
}

#[tokio::test]
async fn an_upload_is_checked_before_a_byte_is_sent_and_only_its_sender_may_send_to_it() {
    let app = spawn_app_with(&[
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_PROCESSOR_MAX_INPUT_MB", "20"),
    ])
    .await;
    let (status, refused) = app
        .upload_post(
            "/api/uploads",
            Some(json!({ "name": "notes.txt", "size": 10, "content_type": "text/plain" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused["fields"]["content_type"],
        "notes.txt is not a video, audio or image file (its type is text/plain)."
    );
    let (status, refused) = app
        .upload_post(
            "/api/uploads",
            Some(json!({ "name": "big.mp4", "size": 30_000_000u64, "content_type": "video/mp4" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused["fields"]["size"],
        "The file is 30.0 MB, over the 21.0 MB limit."
    );

    let (status, upload) = app
        .upload_post(
            "/api/uploads",
            Some(json!({ "name": "clip.mp4", "size": 1000, "content_type": "video/mp4" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = upload["id"].as_str().unwrap().to_owned();
    let (status, refused) = app.put_part(&id, 1, vec![0; 10]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused["message"],
        "There is no part \"1\": this upload has parts 0 to 0."
    );
    let (status, _) = app.put_part(&id, 0, vec![0; PART_BYTES as usize + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Not served before it is complete.
    let response = app
        .client
        .get(app.url(&format!("/uploads/{id}/clip.mp4")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Another operator finds no such upload.
    app.create_user("other@example.com", reeltime::Role::Operator)
        .await;
    let (other, _) = app.signed_in("other@example.com").await;
    for (method, path) in [
        (reqwest::Method::GET, format!("/api/uploads/{id}")),
        (reqwest::Method::PUT, format!("/api/uploads/{id}/parts/0")),
        (reqwest::Method::POST, format!("/api/uploads/{id}/complete")),
    ] {
        let response = other
            .request(method.clone(), app.url(&path))
            .body(vec![0u8; 1000])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
}

#[tokio::test]
async fn old_and_abandoned_uploads_are_deleted_with_their_parts() {
    let app = spawn_app_with(&[("REELTIME_PROCESSOR", "on")]).await;
    let mut ids = Vec::new();
    for name in ["kept.mp4", "old.mp4", "abandoned.mp4"] {
        let (status, upload) = app
            .upload_post(
                "/api/uploads",
                Some(json!({ "name": name, "size": 10, "content_type": "video/mp4" })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let id = upload["id"].as_str().unwrap().to_owned();
        let (status, _) = app.put_part(&id, 0, vec![7; 10]).await;
        assert_eq!(status, StatusCode::OK);
        ids.push(id);
    }
    for id in &ids[..2] {
        let (status, _) = app
            .upload_post(&format!("/api/uploads/{id}/complete"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    sqlx::query!(
        "update uploads set completed_at = now() - interval '31 days' where id = $1",
        ids[1].parse::<uuid::Uuid>().unwrap()
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query!(
        "update uploads set created_at = now() - interval '25 hours' where id = $1",
        ids[2].parse::<uuid::Uuid>().unwrap()
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let storage = server::storage::Storage::connect(server::storage::StorageSettings::Local(
        app.data_dir.join("processor"),
    ))
    .unwrap();
    let gone = server::uploads::delete_old(
        &app.pool,
        &storage,
        std::time::Duration::from_secs(30 * 86_400),
        100,
    )
    .await
    .unwrap();
    assert_eq!(gone, 2);
    for (id, kept) in ids.iter().zip([true, false, false]) {
        let key = server::storage::Key::upload_part(id.parse().unwrap(), 0);
        assert_eq!(storage.exists(&key).await.unwrap(), kept, "{id}");
    }
    let left = sqlx::query_scalar!(r#"select count(*) as "n!" from uploads"#)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
}

#[tokio::test]
async fn the_drop_zone_is_offered_only_where_uploads_are_taken() {
    let with = spawn_app_with(&[("REELTIME_PROCESSOR", "on")]).await;
    assert!(with.get_text("/").await.contains("class=\"drop-zone"));
    let without = crate::helpers::spawn_app().await;
    assert!(!without.get_text("/").await.contains("drop-zone"));
    let (status, answer) = without
        .upload_post(
            "/api/uploads",
            Some(json!({ "name": "a.mp4", "size": 10, "content_type": "video/mp4" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("Uploads need the built-in processor"),
        "{answer}"
    );
}
