//! An S3-compatible server for the tests: the moto server (PyPI `moto[server]`, installed by
//! `scripts/lib.sh`'s `ensure_moto` into `.tools/moto`), one per test, so each test has its own
//! buckets as it has its own database. It speaks the real S3 protocol over HTTP, multipart
//! uploads and signed requests included.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use server::storage::{S3Settings, Storage, StorageSettings};

/// A running moto server, stopped when dropped.
pub struct S3Server {
    pub endpoint: String,
    _child: tokio::process::Child,
}

/// The test credentials (moto accepts any; the code must still sign with them).
pub const KEY_ID: &str = "reeltime-test-key";
pub const SECRET: &str = "reeltime-test-secret";

fn moto_server() -> PathBuf {
    if let Ok(path) = std::env::var("REELTIME_TEST_MOTO_SERVER") {
        return path.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/moto/bin/moto_server")
}

impl S3Server {
    pub async fn start() -> S3Server {
        let program = moto_server();
        assert!(
            program.exists(),
            "the S3 test server is not installed at {}: run `source scripts/lib.sh && \
             ensure_moto` (bash scripts/test.sh does)",
            program.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", program.display()));
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client.get(&endpoint).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the S3 test server did not answer at {endpoint} within a minute"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        S3Server {
            endpoint,
            _child: child,
        }
    }

    /// Create `bucket` (buckets are the operator's to make; Reeltime never creates one).
    pub async fn bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "create bucket {bucket}");
    }

    /// The keys in `bucket` under `prefix`, read with a plain ListObjectsV2.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let body = reqwest::Client::new()
            .get(format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                self.endpoint
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect()
    }

    /// The store at `s3://<bucket>/<prefix>` here, as the app opens it (objects are private:
    /// reads are signed).
    pub fn storage(&self, bucket: &str, prefix: &str) -> Storage {
        Storage::connect(self.store(bucket, prefix, SECRET)).unwrap()
    }

    /// Settings for `s3://<bucket>/<prefix>` here, signing with `secret`.
    pub fn store(&self, bucket: &str, prefix: &str, secret: &str) -> StorageSettings {
        StorageSettings::S3(S3Settings {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(KEY_ID.into()),
            secret_access_key: Some(secret.to_owned().into()),
        })
    }

    /// The settings that point an app at `s3://<bucket>/<prefix>` here.
    pub fn settings<'a>(&'a self, url: &'a str) -> [(&'a str, &'a str); 5] {
        [
            ("REELTIME_STORAGE_URL", url),
            ("REELTIME_STORAGE_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_REGION", "us-east-1"),
        ]
    }
}
