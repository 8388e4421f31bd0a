//! The API's one error type. Client mistakes say what is wrong; server faults are logged and
//! answered with an opaque 500.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use reeltime::FieldErrors;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Well-formed input that breaks a rule; the fields say which.
    #[error("validation failed: {0}")]
    Validation(FieldErrors),
    /// A body that parses but has the wrong shape (a missing or mistyped field).
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The job's state does not allow it (yet).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The database cannot take work now (out of disk space, restarting, unreachable); the
    /// message says which, and that it is temporary.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> ApiError {
        ApiError::Internal(Box::new(err))
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::Unprocessable(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match self {
            ApiError::Validation(fields) => json!({
                "error": "validation_failed",
                "message": "Some fields are not valid.",
                "fields": fields,
            }),
            ApiError::Unprocessable(message) => {
                json!({ "error": "invalid_body", "message": message })
            }
            ApiError::BadRequest(message) => json!({ "error": "bad_request", "message": message }),
            ApiError::NotFound(message) => json!({ "error": "not_found", "message": message }),
            ApiError::Conflict(message) => json!({ "error": "conflict", "message": message }),
            ApiError::PayloadTooLarge => json!({
                "error": "payload_too_large",
                "message": "The request body is too large.",
            }),
            ApiError::UnsupportedMediaType(message) => {
                json!({ "error": "unsupported_media_type", "message": message })
            }
            ApiError::Unavailable(message) => {
                json!({ "error": "unavailable", "message": message })
            }
            ApiError::Internal(err) => {
                tracing::error!(error = %err, "request failed");
                json!({ "error": "internal", "message": "Something went wrong on our side." })
            }
        };
        (status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonSyntaxError(err) => {
                ApiError::BadRequest(format!("The body is not valid JSON: {}", err.body_text()))
            }
            JsonRejection::JsonDataError(err) => ApiError::Unprocessable(err.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "Send the body as JSON, with `Content-Type: application/json`.".into(),
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<sqlx::Error> for ApiError {
    /// A database that is full or away is a 503 that says so (logged as a warning); any other
    /// database error is an opaque 500.
    fn from(err: sqlx::Error) -> Self {
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        let unavailable = match (code.as_deref(), &err) {
            // disk_full, and Postgres' other "insufficient resources".
            (Some("53100"), _) => Some(
                "The database is out of disk space: nothing new can be stored until space is \
                 freed. What is stored is unaffected.",
            ),
            (Some(code), _) if code.starts_with("53") || code.starts_with("57P") => {
                Some("The database cannot take work right now; try again shortly.")
            }
            (_, sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed) => {
                Some("The database is unreachable right now; try again shortly.")
            }
            _ => None,
        };
        match unavailable {
            Some(message) => {
                tracing::warn!(error = %err, "the database cannot take work");
                ApiError::Unavailable(message.to_owned())
            }
            None => ApiError::internal(err),
        }
    }
}

/// `axum::Json`, answering with [`ApiError`] when the body is not right.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query`, answering with [`ApiError`].
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path`, answering with [`ApiError`].
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Every error the API answers with: a machine-readable `error`, a `message` for people, and
/// for invalid submissions the `fields` at fault.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the JSON that `ApiError` writes
pub struct ErrorBody {
    /// `bad_request`, `not_found`, `validation_failed`, `invalid_body`, `payload_too_large`,
    /// `unsupported_media_type`, `unauthorized`, `internal`.
    error: String,
    message: String,
    /// Field name to message, on `validation_failed`.
    fields: Option<std::collections::BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_out_of_reach_is_a_503_that_says_so_and_other_faults_stay_opaque() {
        let away = ApiError::from(sqlx::Error::PoolTimedOut).into_response();
        assert_eq!(away.status(), StatusCode::SERVICE_UNAVAILABLE);
        let other = ApiError::from(sqlx::Error::RowNotFound).into_response();
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
