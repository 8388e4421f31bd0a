//! Where files are kept: the local disk under the data directory, or any S3-compatible object
//! store (AWS S3, Cloudflare R2, Supabase Storage, MinIO…), behind one interface on the Apache
//! Arrow `object_store` crate (decision 014).
//!
//! Invariants:
//! - **Every instance on the database reaches the same files** when the store is S3: an
//!   output made by one instance's worker is served by any instance. With the local store
//!   (the default, nothing to set up) only the instance that made a file has it, as before.
//! - **Files are streamed**, never held whole in memory: a file goes up in parts of
//!   [`PART_BYTES`], at most [`PARTS_IN_FLIGHT`] at once, so an upload holds at most about
//!   `PART_BYTES × (PARTS_IN_FLIGHT + 1)` whatever its size. A failed upload is aborted, so no
//!   half-written object is ever visible under its name (S3 shows an object only when its
//!   multipart upload completes; the local store writes a staging file and renames it).
//! - **Keys are ours**: callers name files with [`Key`]s the code makes (`outputs/job_….mp4`),
//!   never with text from a request, so no request can reach outside its folder.
//! - **Credentials stay out of logs**: [`Storage`]'s `Debug` and [`Storage::describe`] name
//!   the bucket and endpoint only.
//!
//! [`serve`] answers HTTP requests for a file: ranges (so video seeks), conditional requests,
//! HEAD. Both stores are served the same way, through the app (decision 014 says why not
//! presigned URLs).

pub mod serve;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutPayload};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::AsyncWriteExt;

/// The size of each part of a multipart upload (S3's smallest part is 5 MiB).
pub const PART_BYTES: usize = 8 << 20;
/// Parts of one upload sent at once.
pub const PARTS_IN_FLIGHT: usize = 2;

/// Where files are kept, as the settings say (`REELTIME_STORAGE_URL` and friends).
#[derive(Clone)]
pub enum StorageSettings {
    /// A folder on this machine.
    Local(PathBuf),
    /// An S3-compatible bucket.
    S3(S3Settings),
}

/// An S3-compatible bucket and how to reach it. Unset values come from the process
/// environment as the AWS tools read it (`AWS_*`, instance and container credentials).
#[derive(Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Keys start with this (no leading or trailing slash); may be empty.
    pub prefix: String,
    /// An S3-compatible service's URL (MinIO, R2, Supabase); unset: AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
}

impl fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl StorageSettings {
    /// Where the files are, in words for a log line: no credentials.
    pub fn describe(&self) -> String {
        match self {
            StorageSettings::Local(dir) => format!("the folder {}", dir.display()),
            StorageSettings::S3(s3) => {
                let prefix = if s3.prefix.is_empty() {
                    String::new()
                } else {
                    format!("/{}", s3.prefix)
                };
                match &s3.endpoint {
                    Some(endpoint) => format!("s3://{}{prefix} at {endpoint}", s3.bucket),
                    None => format!("s3://{}{prefix}", s3.bucket),
                }
            }
        }
    }
}

/// A file's name in the store: a folder of ours and a name the code made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key(object_store::path::Path);

impl Key {
    /// The built-in processor's output `name` (already checked to be one of its names).
    pub fn output(name: &str) -> Key {
        Key(object_store::path::Path::from_iter(["outputs", name]))
    }

    /// Part `n` of upload `id`.
    pub fn upload_part(id: uuid::Uuid, n: u32) -> Key {
        Key(object_store::path::Path::from_iter([
            "uploads".to_owned(),
            id.simple().to_string(),
            format!("{n:06}"),
        ]))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }
}

/// The store could not be reached, or refused.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the file does not exist")]
    NotFound,
    #[error("{0}")]
    Store(#[from] object_store::Error),
    #[error("reading the local file failed: {0}")]
    Io(#[from] std::io::Error),
}

impl From<StorageError> for std::io::Error {
    fn from(err: StorageError) -> std::io::Error {
        match err {
            StorageError::Io(err) => err,
            other => std::io::Error::other(other),
        }
    }
}

fn store_error(err: object_store::Error) -> StorageError {
    match err {
        object_store::Error::NotFound { .. } => StorageError::NotFound,
        other => StorageError::Store(other),
    }
}

/// The store files are kept in. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    settings: Arc<StorageSettings>,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Storage")
            .field(&self.settings.describe())
            .finish()
    }
}

/// Opening the store failed; the message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("could not create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the storage settings are not usable: {0}")]
    Settings(object_store::Error),
    #[error(
        "could not write to {place} (REELTIME_STORAGE_URL): {source}. Check that the bucket \
         exists, that the endpoint (REELTIME_STORAGE_ENDPOINT) is right, and that the \
         credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) may write to it"
    )]
    Unwritable {
        place: String,
        source: object_store::Error,
    },
}

impl Storage {
    /// Open the store `settings` name and check that a file can be written to it and deleted
    /// again, so a wrong bucket or key stops start-up instead of the first job.
    pub async fn open(settings: StorageSettings) -> Result<Storage, OpenError> {
        let storage = Storage::connect(settings)?;
        let probe = Key(object_store::path::Path::from_iter([
            "probes",
            &format!("{}.txt", uuid::Uuid::new_v4().simple()),
        ]));
        let checked = async {
            storage
                .store
                .put(&probe.0, PutPayload::from_static(b"reeltime"))
                .await?;
            storage.store.delete(&probe.0).await
        };
        checked.await.map_err(|source| OpenError::Unwritable {
            place: storage.describe(),
            source,
        })?;
        tracing::info!(storage = %storage.describe(), "the file store answers");
        Ok(storage)
    }

    /// The store `settings` name, unchecked.
    pub fn connect(settings: StorageSettings) -> Result<Storage, OpenError> {
        let store: Arc<dyn ObjectStore> = match &settings {
            StorageSettings::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| OpenError::Dir {
                    path: dir.clone(),
                    source,
                })?;
                Arc::new(LocalFileSystem::new_with_prefix(dir).map_err(OpenError::Settings)?)
            }
            StorageSettings::S3(s3) => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(&s3.bucket);
                if let Some(endpoint) = &s3.endpoint {
                    // An endpoint the operator wrote with http:// is meant (a MinIO on the
                    // private network, a test server).
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(id) = &s3.access_key_id {
                    builder = builder.with_access_key_id(id);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret.expose_secret());
                }
                let bucket = builder.build().map_err(OpenError::Settings)?;
                if s3.prefix.is_empty() {
                    Arc::new(bucket)
                } else {
                    Arc::new(PrefixStore::new(bucket, s3.prefix.as_str()))
                }
            }
        };
        Ok(Storage {
            store,
            settings: Arc::new(settings),
        })
    }

    /// Where the files are, for log lines and messages: no credentials.
    pub fn describe(&self) -> String {
        self.settings.describe()
    }

    /// The folder files are kept in, when the store is this machine's disk.
    pub fn local_dir(&self) -> Option<&Path> {
        match self.settings.as_ref() {
            StorageSettings::Local(dir) => Some(dir),
            StorageSettings::S3(_) => None,
        }
    }

    /// Copy the local file at `from` to `key`, streamed in parts; the file's size in bytes.
    /// On failure nothing is left under `key` (the upload is aborted).
    #[tracing::instrument(skip(self, from), fields(key = key.as_str()))]
    pub async fn put_file(&self, key: &Key, from: &Path) -> Result<u64, StorageError> {
        self.put_file_in_parts(key, from, PART_BYTES).await
    }

    /// [`Storage::put_file`] with parts of `part_bytes` (tests use small parts).
    pub async fn put_file_in_parts(
        &self,
        key: &Key,
        from: &Path,
        part_bytes: usize,
    ) -> Result<u64, StorageError> {
        let mut file = tokio::fs::File::open(from).await?;
        let mut writer = BufWriter::with_capacity(self.store.clone(), key.0.clone(), part_bytes)
            .with_max_concurrency(PARTS_IN_FLIGHT);
        let copied = async {
            let size = tokio::io::copy(&mut file, &mut writer).await?;
            writer.shutdown().await?;
            Ok::<u64, std::io::Error>(size)
        }
        .await;
        match copied {
            Ok(size) => Ok(size),
            Err(err) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "could not abort a failed upload");
                }
                Err(StorageError::Io(err))
            }
        }
    }

    /// Store `bytes` (one small object, such as an upload's part) at `key`.
    #[tracing::instrument(skip(self, bytes), fields(key = key.as_str(), len = bytes.len()))]
    pub async fn put_bytes(&self, key: &Key, bytes: bytes::Bytes) -> Result<(), StorageError> {
        self.store
            .put(&key.0, PutPayload::from_bytes(bytes))
            .await
            .map(drop)
            .map_err(StorageError::Store)
    }

    /// Delete `key`; a file that is not there is already deleted.
    #[tracing::instrument(skip(self), fields(key = key.as_str()))]
    pub async fn delete(&self, key: &Key) -> Result<(), StorageError> {
        match self.store.delete(&key.0).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(StorageError::Store(err)),
        }
    }

    /// The whole file at `key` (tests and small files only: it is held in memory).
    pub async fn read(&self, key: &Key) -> Result<bytes::Bytes, StorageError> {
        let got = self.store.get(&key.0).await.map_err(store_error)?;
        got.bytes().await.map_err(store_error)
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &Key) -> Result<bool, StorageError> {
        match self.store.head(&key.0).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(StorageError::Store(err)),
        }
    }

    fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "reeltime-storage-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_file_goes_up_in_parts_and_comes_back_whole() {
        let dir = temp_dir();
        let storage = Storage::open(StorageSettings::Local(dir.join("store")))
            .await
            .unwrap();
        let source = dir.join("source.bin");
        let bytes: Vec<u8> = (0..(3 << 20) + 17).map(|i: u32| (i % 251) as u8).collect();
        std::fs::write(&source, &bytes).unwrap();
        let key = Key::output("job_abc.mp4");
        let size = storage
            .put_file_in_parts(&key, &source, 1 << 20)
            .await
            .unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(storage.read(&key).await.unwrap().as_ref(), &bytes[..]);
        // The local store keeps outputs where earlier versions did.
        assert!(dir.join("store/outputs/job_abc.mp4").is_file());
        // Nothing but the file is left in its folder (no staging files, no probe).
        let names: Vec<_> = std::fs::read_dir(dir.join("store/outputs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["job_abc.mp4"]);
        storage.delete(&key).await.unwrap();
        assert!(!storage.exists(&key).await.unwrap());
        // Deleting what is gone is not an error.
        storage.delete(&key).await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_missing_source_file_leaves_nothing_behind() {
        let dir = temp_dir();
        let storage = Storage::open(StorageSettings::Local(dir.join("store")))
            .await
            .unwrap();
        let key = Key::output("job_gone.mp4");
        let err = storage
            .put_file(&key, &dir.join("no-such-file"))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err:?}");
        assert!(!storage.exists(&key).await.unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn descriptions_name_the_place_and_never_the_secret() {
        let settings = StorageSettings::S3(S3Settings {
            bucket: "media".into(),
            prefix: "reeltime/prod".into(),
            endpoint: Some("http://10.0.0.5:9000".into()),
            region: None,
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some(SecretString::from("wJalrXUtnFEMI")),
        });
        let text = format!("{settings:?}");
        assert_eq!(text, "s3://media/reeltime/prod at http://10.0.0.5:9000");
        let storage = Storage::connect(settings).unwrap();
        let text = format!("{storage:?}");
        assert!(!text.contains("wJalrXUtnFEMI") && !text.contains("AKIDEXAMPLE"));
    }
}
