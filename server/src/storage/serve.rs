//! Serving a stored file over HTTP, the same way for every store: one byte range (so video
//! seeks; a request for several ranges gets the whole file, as RFC 9110 allows),
//! `If-None-Match` / `If-Modified-Since` (304), `If-Range`, and HEAD.
//!
//! The file's size and validators come from a HEAD of the object first; the body is then
//! streamed from the store as it arrives, never held whole. Callers decide who may read the
//! file (the access rules run before this) and which key a request names.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::{GetOptions, GetRange, ObjectMeta};

use super::{Key, Storage};

/// What a served file's response says about caching (outputs never change under a name).
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

impl Storage {
    /// Answer `method` with `headers` for the file at `key`, as `content_type`.
    #[tracing::instrument(skip(self, headers), fields(key = key.as_str()))]
    pub async fn serve(
        &self,
        key: &Key,
        method: &Method,
        headers: &HeaderMap,
        content_type: &str,
    ) -> Response {
        let meta = match self.store().head(&key.0).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return not_found(),
            Err(err) => return unavailable(&err),
        };
        let file = File {
            size: meta.size,
            validators: Validators::of(&meta),
            content_type,
        };
        file.respond(method, headers, |range| async move {
            let options = GetOptions {
                range: range.map(|(start, end)| GetRange::Bounded(start..end + 1)),
                ..GetOptions::default()
            };
            match self.store().get_opts(&key.0, options).await {
                Ok(got) => Ok(Body::from_stream(got.into_stream().map_err(broken))),
                Err(object_store::Error::NotFound { .. }) => Err(not_found()),
                Err(err) => Err(unavailable(&err)),
            }
        })
        .await
    }

    /// Answer for a file stored as consecutive `parts` (their keys and sizes, in order), with
    /// the ETag `etag` and modification time `modified`: an upload, served without ever being
    /// put together in one object.
    pub async fn serve_parts(
        &self,
        parts: Vec<(Key, u64)>,
        etag: String,
        modified: std::time::SystemTime,
        method: &Method,
        headers: &HeaderMap,
        content_type: &str,
    ) -> Response {
        let file = File {
            size: parts.iter().map(|(_, size)| size).sum(),
            validators: Validators {
                etag: Some(format!("\"{etag}\"")),
                modified,
            },
            content_type,
        };
        let size = file.size;
        file.respond(method, headers, |range| async move {
            let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
            // Each part's slice of bytes start..=end, in the part's own offsets.
            let mut slices = Vec::new();
            let mut offset = 0;
            for (key, part_size) in parts {
                let (from, to) = (offset, offset + part_size);
                offset = to;
                if to <= start || from > end {
                    continue;
                }
                let first = start.max(from) - from;
                let last = end.min(to - 1) - from;
                slices.push((key, first..last + 1));
            }
            let store = self.clone();
            let stream = futures::stream::iter(slices)
                .then(move |(key, range)| {
                    let store = store.clone();
                    async move {
                        let options = GetOptions {
                            range: Some(GetRange::Bounded(range)),
                            ..GetOptions::default()
                        };
                        store
                            .store()
                            .get_opts(&key.0, options)
                            .await
                            .map(|got| got.into_stream().map_err(broken))
                            .map_err(broken)
                    }
                })
                .try_flatten();
            Ok(Body::from_stream(stream))
        })
        .await
    }
}

/// A stored file failed mid-response: the connection is cut (the length promised cannot be
/// kept), and the log says why.
fn broken(err: object_store::Error) -> std::io::Error {
    tracing::warn!(error = %err, "reading a stored file failed mid-way");
    std::io::Error::other(err)
}

/// What a response needs to know about the file it serves.
struct File<'a> {
    size: u64,
    validators: Validators,
    content_type: &'a str,
}

impl File<'_> {
    /// The response to `method` with `headers`: 304, 416, or 200/206 with the body `body`
    /// makes for the range (`None`: the whole file), which it is asked for only for a GET of
    /// at least one byte.
    async fn respond<F, Fut>(self, method: &Method, headers: &HeaderMap, body: F) -> Response
    where
        F: FnOnce(Option<(u64, u64)>) -> Fut,
        Fut: std::future::Future<Output = Result<Body, Response>>,
    {
        let File {
            size,
            validators,
            content_type,
        } = self;
        if validators.not_modified(headers) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            validators.apply(response.headers_mut());
            return response;
        }
        let range = match wanted_range(headers, &validators, size) {
            Wanted::Whole => None,
            Wanted::Part(start, end) => Some((start, end)),
            Wanted::Unsatisfiable => {
                let mut response = (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "the requested range is outside the file",
                )
                    .into_response();
                insert(
                    response.headers_mut(),
                    header::CONTENT_RANGE,
                    &format!("bytes */{size}"),
                );
                return response;
            }
        };
        let (status, length) = match range {
            Some((start, end)) => (StatusCode::PARTIAL_CONTENT, end - start + 1),
            None => (StatusCode::OK, size),
        };
        let body = if method == Method::HEAD || length == 0 {
            Body::empty()
        } else {
            match body(range).await {
                Ok(body) => body,
                Err(response) => return response,
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let out = response.headers_mut();
        insert(out, header::CONTENT_TYPE, content_type);
        insert(out, header::CONTENT_LENGTH, &length.to_string());
        insert(out, header::ACCEPT_RANGES, "bytes");
        insert(out, header::CACHE_CONTROL, IMMUTABLE);
        if let Some((start, end)) = range {
            insert(
                out,
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{size}"),
            );
        }
        validators.apply(out);
        response
    }
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "there is no such file").into_response()
}

/// The store failed: a 503 in plain words; the store's own message (which may name the
/// bucket and endpoint) goes to the log only.
fn unavailable(err: &object_store::Error) -> Response {
    tracing::error!(error = %err, "the file store did not answer");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the file store is not answering; try again shortly",
    )
        .into_response()
}

/// The validators a response carries: the store's ETag and the file's modification time.
struct Validators {
    etag: Option<String>,
    modified: std::time::SystemTime,
}

impl Validators {
    fn of(meta: &ObjectMeta) -> Validators {
        let etag = meta.e_tag.as_ref().map(|tag| {
            let tag = tag.trim_start_matches("W/");
            if tag.starts_with('"') {
                tag.to_owned()
            } else {
                format!("\"{tag}\"")
            }
        });
        Validators {
            etag,
            modified: meta.last_modified.into(),
        }
    }

    fn apply(&self, headers: &mut HeaderMap) {
        if let Some(etag) = &self.etag {
            insert(headers, header::ETAG, etag);
        }
        insert(
            headers,
            header::LAST_MODIFIED,
            &httpdate::fmt_http_date(self.modified),
        );
    }

    /// Whether a conditional GET may be answered 304: `If-None-Match` when sent (it wins),
    /// else `If-Modified-Since`.
    fn not_modified(&self, headers: &HeaderMap) -> bool {
        if let Some(tags) = text(headers, header::IF_NONE_MATCH) {
            return tags.split(',').map(str::trim).any(|tag| {
                tag == "*" || self.etag.as_deref() == Some(tag.trim_start_matches("W/"))
            });
        }
        text(headers, header::IF_MODIFIED_SINCE)
            .and_then(|since| httpdate::parse_http_date(since).ok())
            .is_some_and(|since| self.whole_seconds() <= since)
    }

    /// `If-Range` holds: absent, the current ETag, or the current modification date.
    fn range_applies(&self, headers: &HeaderMap) -> bool {
        match text(headers, header::IF_RANGE) {
            None => true,
            Some(value) if value.starts_with('"') => self.etag.as_deref() == Some(value),
            Some(value) => {
                httpdate::parse_http_date(value).is_ok_and(|date| date == self.whole_seconds())
            }
        }
    }

    /// HTTP dates have whole seconds.
    fn whole_seconds(&self) -> std::time::SystemTime {
        let since_epoch = self
            .modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(since_epoch.as_secs())
    }
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[derive(Debug, PartialEq)]
enum Wanted {
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    Unsatisfiable,
}

/// The part of a `size`-byte file a request asks for.
fn wanted_range(headers: &HeaderMap, validators: &Validators, size: u64) -> Wanted {
    let Some(value) = text(headers, header::RANGE) else {
        return Wanted::Whole;
    };
    if !validators.range_applies(headers) {
        return Wanted::Whole;
    }
    if size == 0 {
        return Wanted::Unsatisfiable;
    }
    match http_range_header::parse_range_header(value).and_then(|parsed| parsed.validate(size)) {
        Ok(ranges) if ranges.len() == 1 => Wanted::Part(*ranges[0].start(), *ranges[0].end()),
        // Several ranges: the whole file (a multipart/byteranges body is not worth it).
        Ok(_) => Wanted::Whole,
        Err(_) => Wanted::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageSettings;

    fn validators() -> Validators {
        Validators {
            etag: Some("\"abc\"".into()),
            modified: std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_500),
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let v = validators();
        let want = |value: &str, size| wanted_range(&headers(&[(header::RANGE, value)]), &v, size);
        assert_eq!(want("bytes=0-99", 1000), Wanted::Part(0, 99));
        assert_eq!(want("bytes=900-", 1000), Wanted::Part(900, 999));
        assert_eq!(want("bytes=-100", 1000), Wanted::Part(900, 999));
        assert_eq!(want("bytes=990-2000", 1000), Wanted::Part(990, 999));
        assert_eq!(want("bytes=1000-", 1000), Wanted::Unsatisfiable);
        assert_eq!(want("bytes=5-1", 1000), Wanted::Unsatisfiable);
        assert_eq!(want("lines=1-2", 1000), Wanted::Unsatisfiable);
        assert_eq!(want("bytes=0-", 0), Wanted::Unsatisfiable);
        assert_eq!(want("bytes=0-1,5-6", 1000), Wanted::Whole);
        assert_eq!(wanted_range(&HeaderMap::new(), &v, 10), Wanted::Whole);
    }

    #[test]
    fn if_range_keeps_a_range_only_for_the_same_file() {
        let v = validators();
        let date = httpdate::fmt_http_date(v.whole_seconds());
        let with = |if_range: &str| {
            wanted_range(
                &headers(&[(header::RANGE, "bytes=0-9"), (header::IF_RANGE, if_range)]),
                &v,
                100,
            )
        };
        assert_eq!(with("\"abc\""), Wanted::Part(0, 9));
        assert_eq!(with(&date), Wanted::Part(0, 9));
        assert_eq!(with("\"other\""), Wanted::Whole);
        assert_eq!(with("Mon, 01 Jan 2001 00:00:00 GMT"), Wanted::Whole);
    }

    #[test]
    fn conditional_requests_match_the_etag_first_then_the_date() {
        let v = validators();
        let date = httpdate::fmt_http_date(v.whole_seconds());
        assert!(v.not_modified(&headers(&[(header::IF_NONE_MATCH, "\"x\", \"abc\"")])));
        assert!(v.not_modified(&headers(&[(header::IF_NONE_MATCH, "W/\"abc\"")])));
        assert!(v.not_modified(&headers(&[(header::IF_NONE_MATCH, "*")])));
        assert!(!v.not_modified(&headers(&[(header::IF_NONE_MATCH, "\"x\"")])));
        assert!(v.not_modified(&headers(&[(header::IF_MODIFIED_SINCE, &date)])));
        assert!(!v.not_modified(&headers(&[(
            header::IF_MODIFIED_SINCE,
            "Mon, 01 Jan 2001 00:00:00 GMT"
        )])));
        // A non-matching ETag wins over a matching date.
        assert!(!v.not_modified(&headers(&[
            (header::IF_NONE_MATCH, "\"x\""),
            (header::IF_MODIFIED_SINCE, &date)
        ])));
        assert!(!v.not_modified(&HeaderMap::new()));
    }

    async fn body_of(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn a_stored_file_is_served_whole_in_part_and_conditionally() {
        let dir =
            std::env::temp_dir().join(format!("reeltime-serve-{}", uuid::Uuid::new_v4().simple()));
        let storage = Storage::open(StorageSettings::Local(dir.clone()))
            .await
            .unwrap();
        let source = dir.join("source");
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
        std::fs::write(&source, &bytes).unwrap();
        let key = Key::output("job_s.mp4");
        storage.put_file(&key, &source).await.unwrap();

        let get = |pairs: &[(header::HeaderName, &str)]| {
            let headers = headers(pairs);
            let storage = storage.clone();
            let key = key.clone();
            async move {
                storage
                    .serve(&key, &Method::GET, &headers, "video/mp4")
                    .await
            }
        };
        let whole = get(&[]).await;
        assert_eq!(whole.status(), StatusCode::OK);
        assert_eq!(whole.headers()[header::CONTENT_TYPE], "video/mp4");
        assert_eq!(whole.headers()[header::CONTENT_LENGTH], "1000");
        assert_eq!(whole.headers()[header::CACHE_CONTROL], IMMUTABLE);
        let etag = whole.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(body_of(whole).await, bytes);

        let part = get(&[(header::RANGE, "bytes=100-199")]).await;
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(part.headers()[header::CONTENT_RANGE], "bytes 100-199/1000");
        assert_eq!(body_of(part).await, &bytes[100..200]);

        let outside = get(&[(header::RANGE, "bytes=1000-")]).await;
        assert_eq!(outside.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(outside.headers()[header::CONTENT_RANGE], "bytes */1000");

        let cached = get(&[(header::IF_NONE_MATCH, &etag)]).await;
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert!(body_of(cached).await.is_empty());

        let head = storage
            .serve(&key, &Method::HEAD, &HeaderMap::new(), "video/mp4")
            .await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(head.headers()[header::CONTENT_LENGTH], "1000");
        assert!(body_of(head).await.is_empty());

        let missing = storage
            .serve(
                &Key::output("job_none.mp4"),
                &Method::GET,
                &HeaderMap::new(),
                "video/mp4",
            )
            .await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
