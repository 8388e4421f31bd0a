//! `/api/uploads`: files sent in parts, resumable, that become jobs' inputs (issue 13;
//! decision 014 says why parts rather than tus or presigned S3 parts), and `/uploads/{id}/{name}`
//! where a finished upload is served.
//!
//! 1. `POST /api/uploads` `{"name", "size", "content_type"}`: checked before a byte is sent
//!    (the kind of file, the size limit); answers the upload with its `part_bytes` and `parts`.
//! 2. `PUT /api/uploads/{id}/parts/{n}` with the bytes of part `n` (any order, any instance,
//!    again after a dropped connection).
//! 3. `GET /api/uploads/{id}`: which parts have arrived (to resume).
//! 4. `POST /api/uploads/{id}/complete`: once every part is there, its `input_url` is what a
//!    job takes as its input.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use reeltime::upload::{self, NewUpload};

use super::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::uploads::{self as db, list_parts, Upload, UploadStatus, Uploads};

/// Largest announcement accepted.
const MAX_ANNOUNCEMENT_BYTES: usize = 16 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/uploads",
            post(create).layer(axum::extract::DefaultBodyLimit::max(MAX_ANNOUNCEMENT_BYTES)),
        )
        .route("/api/uploads/{id}", get(status))
        .route(
            "/api/uploads/{id}/parts/{n}",
            put(part).layer(axum::extract::DefaultBodyLimit::max(
                upload::PART_BYTES as usize,
            )),
        )
        .route("/api/uploads/{id}/complete", post(complete))
        .route("/uploads/{id}/{name}", get(file))
}

/// Whether `path` is a part upload's (its body may be a whole part, over the usual limit).
pub fn is_part_path(path: &str) -> bool {
    path.strip_prefix("/api/uploads/")
        .is_some_and(|rest| rest.contains("/parts/"))
}

fn offered(state: &AppState) -> Result<&Uploads, ApiError> {
    state.uploads.as_ref().ok_or_else(|| {
        ApiError::NotFound(
            "Uploads need the built-in processor: this server sends jobs to Ittybit, which \
             fetches inputs from their URLs."
                .into(),
        )
    })
}

fn upload_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::NotFound(format!("There is no upload {id:?}.")))
}

/// The caller's own upload `id` (another person's is "not found", like a missing one).
async fn own(state: &AppState, user: &CurrentUser, id: &str) -> Result<Upload, ApiError> {
    let id = upload_id(id)?;
    db::get(&state.pool, id)
        .await?
        .filter(|upload| upload.created_by == Some(user.id))
        .ok_or_else(|| ApiError::NotFound(format!("There is no upload {id}.")))
}

/// `POST /api/uploads`.
#[utoipa::path(post, path = "/api/uploads", tag = "uploads", request_body = NewUpload,
    responses(
        (status = 201, description = "Send its parts next; `Location` is its URL.", body = UploadStatus),
        (status = 400, description = "Not JSON.", body = ErrorBody),
        (status = 404, description = "Uploads are off (jobs go to Ittybit).", body = ErrorBody),
        (status = 413, description = "Over 16 KiB.", body = ErrorBody),
        (status = 415, description = "Not declared as JSON.", body = ErrorBody),
        (status = 422, description = "Not a media file, empty, or over the size limit: `fields` says which.", body = ErrorBody),
        (status = 503, description = "The database cannot take work now.", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    ApiJson(announced): ApiJson<NewUpload>,
) -> Result<Response, ApiError> {
    let uploads = offered(&state)?;
    let file = announced
        .validate(uploads.max_bytes)
        .map_err(ApiError::Validation)?;
    let created = db::create(&state.pool, user.id, &file).await?;
    tracing::info!(upload = %created.id, size = file.size, "upload started");
    Ok((
        StatusCode::CREATED,
        [(
            axum::http::header::LOCATION,
            format!("/api/uploads/{}", created.id),
        )],
        Json(created.status(&uploads.public_url)),
    )
        .into_response())
}

/// `GET /api/uploads/{id}`.
#[utoipa::path(get, path = "/api/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "The upload's id.")),
    responses(
        (status = 200, description = "The upload: which parts have arrived.", body = UploadStatus),
        (status = 404, description = "No such upload of yours.", body = ErrorBody)))]
async fn status(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UploadStatus>, ApiError> {
    let uploads = offered(&state)?;
    let upload = own(&state, &user, &id).await?;
    Ok(Json(upload.status(&uploads.public_url)))
}

/// `PUT /api/uploads/{id}/parts/{n}`.
#[utoipa::path(put, path = "/api/uploads/{id}/parts/{n}", tag = "uploads",
    params(("id" = String, Path, description = "The upload's id."),
           ("n" = u32, Path, description = "The part's number, from 0.")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
                 description = "The part's bytes: `part_bytes` of them, fewer for the last part."),
    responses(
        (status = 200, description = "Stored; the upload's progress.", body = UploadStatus),
        (status = 404, description = "No such upload of yours.", body = ErrorBody),
        (status = 409, description = "The upload is complete.", body = ErrorBody),
        (status = 413, description = "Longer than a part.", body = ErrorBody),
        (status = 422, description = "No such part, or not the part's length.", body = ErrorBody),
        (status = 503, description = "The file store or the database is not answering.", body = ErrorBody)))]
async fn part(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    ApiPath((id, n)): ApiPath<(String, String)>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<UploadStatus>, ApiError> {
    let uploads = offered(&state)?;
    let mut upload = own(&state, &user, &id).await?;
    if upload.completed_at.is_some() {
        return Err(ApiError::Conflict(
            "The upload is complete: it takes no more parts.".into(),
        ));
    }
    let parts = upload.parts();
    let number = n
        .parse::<u32>()
        .ok()
        .filter(|n| *n < parts)
        .ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "There is no part {n:?}: this upload has parts 0 to {}.",
                parts - 1
            ))
        })?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })?;
    let expected = upload::part_len(upload.size(), number).unwrap_or(0);
    if body.len() as u64 != expected {
        return Err(ApiError::Unprocessable(format!(
            "Part {number} must be {expected} bytes long; this one is {}.",
            body.len()
        )));
    }
    uploads
        .storage
        .put_bytes(&crate::storage::Key::upload_part(upload.id, number), body)
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "could not store an upload's part");
            ApiError::Unavailable(
                "The file store is not answering; send this part again shortly.".into(),
            )
        })?;
    db::record_part(&state.pool, upload.id, number).await?;
    if !upload.received.contains(&(number as i32)) {
        upload.received.push(number as i32);
        upload.received.sort_unstable();
    }
    Ok(Json(upload.status(&uploads.public_url)))
}

/// `POST /api/uploads/{id}/complete`.
#[utoipa::path(post, path = "/api/uploads/{id}/complete", tag = "uploads",
    params(("id" = String, Path, description = "The upload's id.")),
    responses(
        (status = 200, description = "Complete: `input_url` is the file for a job.", body = UploadStatus),
        (status = 404, description = "No such upload of yours.", body = ErrorBody),
        (status = 409, description = "Parts are missing: the message names them.", body = ErrorBody)))]
async fn complete(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UploadStatus>, ApiError> {
    let uploads = offered(&state)?;
    let mut upload = own(&state, &user, &id).await?;
    let Some(completed_at) = db::complete(&state.pool, upload.id, upload.parts()).await? else {
        // Read again: parts may have arrived since the first read.
        let missing = own(&state, &user, &id).await?.missing();
        return Err(ApiError::Conflict(format!(
            "{} not arrived yet: send {} and complete again.",
            match missing.len() {
                1 => format!("Part {} has", list_parts(&missing)),
                _ => format!("Parts {} have", list_parts(&missing)),
            },
            if missing.len() == 1 { "it" } else { "them" },
        )));
    };
    upload.completed_at = Some(completed_at);
    upload.received = (0..upload.parts() as i32).collect();
    tracing::info!(upload = %upload.id, "upload complete");
    Ok(Json(upload.status(&uploads.public_url)))
}

/// `GET /uploads/{id}/{name}`: a finished upload, its parts in order, with ranges.
async fn file(
    State(state): State<AppState>,
    ApiPath((id, name)): ApiPath<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let uploads = offered(&state)?;
    let missing = || ApiError::NotFound("There is no such file.".into());
    let upload = db::get(&state.pool, upload_id(&id)?)
        .await?
        .filter(|upload| upload.completed_at.is_some() && upload.name == name)
        .ok_or_else(missing)?;
    let modified = upload.completed_at.unwrap_or(upload.created_at);
    let response = uploads
        .storage
        .serve_parts(
            upload.part_keys(),
            upload.id.simple().to_string(),
            std::time::SystemTime::from(modified),
            &method,
            &headers,
            &upload.content_type,
        )
        .await;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_part_paths_get_the_larger_body_limit() {
        assert!(is_part_path("/api/uploads/abc/parts/0"));
        assert!(!is_part_path("/api/uploads"));
        assert!(!is_part_path("/api/uploads/abc/complete"));
        assert!(!is_part_path("/api/jobs/parts/1"));
    }
}
