//! Uploaded files (issue 13): their rows, and the rules between them and their parts.
//!
//! Invariants:
//! - A part is recorded in `upload_parts` only after it is whole in the store, so a recorded
//!   part can always be read. A part sent twice (a retry after a dropped connection) is stored
//!   again under the same key with the same bytes, and recorded once.
//! - An upload is complete (`completed_at`) only when every part `0..parts` is recorded; the
//!   check and the mark are one statement. A completed upload takes no more parts.
//! - Only the person who started an upload may send to it or read its progress; others get the
//!   "no such upload" answer, so ids reveal nothing. The finished file is served like an
//!   output: to anyone who may read jobs, and to the built-in processor with its key.

use reeltime::upload::{self, ValidUpload};
use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::storage::{Key, Storage};

/// Uploads as an instance offers them: where parts go and how large a file may be.
#[derive(Clone, Debug)]
pub struct Uploads {
    pub storage: Storage,
    pub max_bytes: u64,
    /// The base of the URLs jobs fetch uploads from, without a trailing slash.
    pub public_url: String,
}

/// Where finished uploads are served.
pub const FILES_PATH: &str = "/uploads";

/// An upload's row and the parts that have arrived.
#[derive(Clone, Debug)]
pub struct Upload {
    pub id: Uuid,
    pub created_by: Option<Uuid>,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub part_bytes: i32,
    pub created_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    pub received: Vec<i32>,
}

/// An upload as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadStatus {
    pub id: Uuid,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    /// Every part but the last is this long.
    pub part_bytes: u64,
    /// Parts `0..parts` make the file.
    pub parts: u32,
    /// The parts that have arrived, in order.
    pub received: Vec<u32>,
    pub complete: bool,
    /// Once complete: the URL to give a job as its `input_url`.
    pub input_url: Option<String>,
}

impl Upload {
    pub fn size(&self) -> u64 {
        u64::try_from(self.size).unwrap_or(0)
    }

    pub fn parts(&self) -> u32 {
        upload::part_count(self.size())
    }

    /// The parts not yet arrived.
    pub fn missing(&self) -> Vec<u32> {
        (0..self.parts())
            .filter(|n| !self.received.contains(&(*n as i32)))
            .collect()
    }

    /// Its parts' keys and lengths, in order.
    pub fn part_keys(&self) -> Vec<(Key, u64)> {
        (0..self.parts())
            .filter_map(|n| {
                Some((
                    Key::upload_part(self.id, n),
                    upload::part_len(self.size(), n)?,
                ))
            })
            .collect()
    }

    /// Where the finished file is served, under `public_url`.
    pub fn url(&self, public_url: &str) -> String {
        let mut url = url::Url::parse(public_url).expect("the public URL is a URL");
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(["uploads", &self.id.to_string(), &self.name]);
        }
        url.to_string()
    }

    pub fn status(&self, public_url: &str) -> UploadStatus {
        UploadStatus {
            id: self.id,
            name: self.name.clone(),
            size: self.size(),
            content_type: self.content_type.clone(),
            part_bytes: u64::try_from(self.part_bytes).unwrap_or(0),
            parts: self.parts(),
            received: self
                .received
                .iter()
                .filter_map(|n| u32::try_from(*n).ok())
                .collect(),
            complete: self.completed_at.is_some(),
            input_url: self.completed_at.map(|_| self.url(public_url)),
        }
    }
}

/// Record a new upload by `user`.
#[tracing::instrument(skip(pool, file))]
pub async fn create(pool: &PgPool, user: Uuid, file: &ValidUpload) -> Result<Upload, sqlx::Error> {
    let id = Uuid::new_v4();
    let row = sqlx::query!(
        "insert into uploads (id, created_by, name, content_type, size, part_bytes)
         values ($1, $2, $3, $4, $5, $6)
         returning created_at",
        id,
        user,
        file.name,
        file.content_type,
        i64::try_from(file.size).unwrap_or(i64::MAX),
        i32::try_from(upload::PART_BYTES).unwrap_or(i32::MAX),
    )
    .fetch_one(pool)
    .await?;
    Ok(Upload {
        id,
        created_by: Some(user),
        name: file.name.clone(),
        content_type: file.content_type.clone(),
        size: i64::try_from(file.size).unwrap_or(i64::MAX),
        part_bytes: i32::try_from(upload::PART_BYTES).unwrap_or(i32::MAX),
        created_at: row.created_at,
        completed_at: None,
        received: Vec::new(),
    })
}

/// The upload `id`, with its received parts.
#[tracing::instrument(skip(pool))]
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Upload>, sqlx::Error> {
    let row = sqlx::query!(
        r#"select u.id, u.created_by, u.name, u.content_type, u.size, u.part_bytes,
                  u.created_at, u.completed_at,
                  coalesce(array_agg(p.n order by p.n) filter (where p.n is not null), '{}')
                      as "received!"
           from uploads u left join upload_parts p on p.upload_id = u.id
           where u.id = $1
           group by u.id"#,
        id
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| Upload {
        id: r.id,
        created_by: r.created_by,
        name: r.name,
        content_type: r.content_type,
        size: r.size,
        part_bytes: r.part_bytes,
        created_at: r.created_at,
        completed_at: r.completed_at,
        received: r.received,
    }))
}

/// Record part `n` of `id` as stored.
#[tracing::instrument(skip(pool))]
pub async fn record_part(pool: &PgPool, id: Uuid, n: u32) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into upload_parts (upload_id, n) values ($1, $2) on conflict do nothing",
        id,
        i32::try_from(n).unwrap_or(i32::MAX),
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Mark `id` complete if every part has arrived: when it was completed, or `None` while parts
/// are missing.
#[tracing::instrument(skip(pool))]
pub async fn complete(
    pool: &PgPool,
    id: Uuid,
    parts: u32,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"update uploads set completed_at = coalesce(completed_at, now())
           where id = $1
             and (select count(*) from upload_parts where upload_id = $1) = $2
           returning completed_at as "completed_at!""#,
        id,
        i64::from(parts),
    )
    .fetch_optional(pool)
    .await
}

/// An upload not completed this long after it started is abandoned, and deleted.
pub const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Delete up to `batch` uploads completed more than `keep` ago or abandoned, with their parts;
/// how many went.
#[tracing::instrument(skip(pool, storage))]
pub async fn delete_old(
    pool: &PgPool,
    storage: &Storage,
    keep: std::time::Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let gone = sqlx::query!(
        "delete from uploads where id in (
             select id from uploads
             where completed_at < now() - make_interval(secs => $1)
                or (completed_at is null and created_at < now() - make_interval(secs => $2))
             limit $3)
         returning id, size",
        keep.as_secs_f64(),
        ABANDONED_AFTER.as_secs_f64(),
        batch,
    )
    .fetch_all(pool)
    .await?;
    for row in &gone {
        for n in 0..upload::part_count(u64::try_from(row.size).unwrap_or(0)) {
            if let Err(err) = storage.delete(&Key::upload_part(row.id, n)).await {
                tracing::warn!(error = %err, upload = %row.id, "could not delete an upload's part");
            }
        }
    }
    Ok(gone.len() as u64)
}

/// `1, 2 and 5`.
pub fn list_parts(parts: &[u32]) -> String {
    let words: Vec<String> = parts.iter().map(u32::to_string).collect();
    match words.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parts_read_as_a_list() {
        assert_eq!(list_parts(&[3]), "3");
        assert_eq!(list_parts(&[1, 2, 5]), "1, 2 and 5");
    }

    #[test]
    fn the_url_names_the_file_safely() {
        let upload = Upload {
            id: Uuid::nil(),
            created_by: None,
            name: "my clip #1?.mp4".into(),
            content_type: "video/mp4".into(),
            size: (upload::PART_BYTES * 2 + 1) as i64,
            part_bytes: upload::PART_BYTES as i32,
            created_at: OffsetDateTime::UNIX_EPOCH,
            completed_at: None,
            received: vec![0, 2],
        };
        assert_eq!(
            upload.url("https://reeltime.example.com"),
            "https://reeltime.example.com/uploads/00000000-0000-0000-0000-000000000000/my%20clip%20%231%3F.mp4"
        );
        assert_eq!(upload.parts(), 3);
        assert_eq!(upload.missing(), [1]);
        assert_eq!(upload.part_keys()[2].1, 1);
    }
}
