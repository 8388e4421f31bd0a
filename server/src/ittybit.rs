//! The Ittybit API client (see `shared/ittybit-api.md`): create and read jobs, with every
//! failure classed as worth retrying or not.

use std::time::Duration;

use reeltime::{CreateJobRequest, IttybitError, IttybitJob};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};

use crate::net_error::{Cause, NetworkFailure};

/// How a call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// Worth trying again: a timeout, a connection failure, a 5xx, or a 429. `reason` is in
    /// plain words (a job's error and its page show it); `detail` is the technical chain of
    /// messages behind it, without the URL, for the job's page ([`crate::net_error`]).
    #[error("{reason}")]
    Transient {
        reason: String,
        detail: Option<String>,
        /// What a 429 (or 503) asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The service refused the request; trying again would not help.
    #[error("{service} refused the job: {message} ({kind}, HTTP {status})")]
    Permanent {
        /// Who refused: `Ittybit` or `The built-in processor`.
        service: &'static str,
        status: u16,
        kind: String,
        message: String,
    },
}

impl CallError {
    /// The technical detail behind a transient failure's plain reason, if there is one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            CallError::Transient { detail, .. } => detail.as_deref(),
            CallError::Permanent { .. } => None,
        }
    }
}

/// Connection settings for [`IttybitClient`].
#[derive(Clone)]
pub struct IttybitConfig {
    /// How messages name the service: `Ittybit`, or `The built-in processor`.
    pub service: &'static str,
    pub base_url: String,
    pub api_key: SecretString,
    /// `Accept-Version`; the account default when unset.
    pub api_version: Option<String>,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct IttybitClient {
    service: &'static str,
    http: reqwest::Client,
    base_url: String,
    api_key: SecretString,
    api_version: Option<String>,
}

impl IttybitClient {
    pub fn new(config: IttybitConfig) -> Result<IttybitClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .timeout(config.timeout)
            .user_agent(concat!("reeltime/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(IttybitClient {
            service: config.service,
            http,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            api_key: config.api_key,
            api_version: config.api_version,
        })
    }

    /// How messages name the service: `Ittybit`, or `The built-in processor`.
    pub fn service(&self) -> &'static str {
        self.service
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.api_key.expose_secret()))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        if let Some(version) = self
            .api_version
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert("Accept-Version", version);
        }
        headers
    }

    /// `POST /jobs`. The idempotency key (our job's id) makes a retry return the job the first
    /// call created instead of making a second one.
    pub async fn create_job(
        &self,
        request: &CreateJobRequest,
        idempotency_key: &str,
    ) -> Result<IttybitJob, CallError> {
        let response = self
            .http
            .post(format!("{}/jobs", self.base_url))
            .headers(self.headers())
            .header("Idempotency-Key", idempotency_key)
            .json(request)
            .send()
            .await;
        read_job(self.service, response).await
    }

    /// `GET /jobs/{id}`, and the answer as it came (a job's page shows the last one).
    pub async fn get_job_answer(
        &self,
        id: &str,
    ) -> Result<(IttybitJob, serde_json::Value), CallError> {
        let response = self
            .http
            .get(format!("{}/jobs/{id}", self.base_url))
            .headers(self.headers())
            .send()
            .await;
        let (job, body) = read_job_body(self.service, response).await?;
        let answer = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Ok((job, answer))
    }

    /// `POST /jobs/{id}/cancel`: the built-in processor's extension (Ittybit documents no
    /// cancel call; `shared/ittybit-api.md`).
    pub async fn cancel_job(&self, id: &str) -> Result<IttybitJob, CallError> {
        let response = self
            .http
            .post(format!("{}/jobs/{id}/cancel", self.base_url))
            .headers(self.headers())
            .send()
            .await;
        read_job(self.service, response).await
    }

    /// `DELETE /jobs/{id}`: the built-in processor's extension, which forgets a finished job
    /// and deletes its output file. `Ok(false)` when it no longer knows the job.
    pub async fn delete_job(&self, id: &str) -> Result<bool, CallError> {
        let response = self
            .http
            .delete(format!("{}/jobs/{id}", self.base_url))
            .headers(self.headers())
            .send()
            .await
            .map_err(|err| unreachable(self.service, err))?;
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(CallError::Transient {
                reason: format!("{} answered HTTP {}", self.service, status.as_u16()),
                detail: None,
                retry_after: None,
            }),
        }
    }
}

async fn read_job(
    service: &'static str,
    response: Result<Response, reqwest::Error>,
) -> Result<IttybitJob, CallError> {
    Ok(read_job_body(service, response).await?.0)
}

/// [`read_job`], and the body it was read from.
async fn read_job_body(
    service: &'static str,
    response: Result<Response, reqwest::Error>,
) -> Result<(IttybitJob, Vec<u8>), CallError> {
    let response = response.map_err(|err| unreachable(service, err))?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.map_err(|err| {
        let failure = NetworkFailure::of(err);
        CallError::Transient {
            reason: format!("{service}'s answer broke off before it was complete"),
            detail: Some(failure.detail),
            retry_after: None,
        }
    })?;
    if status.is_success() {
        let job =
            serde_json::from_slice::<IttybitJob>(&body).map_err(|err| CallError::Transient {
                reason: format!("{service} answered with something other than a job"),
                detail: Some(format!("{err}; the answer began: {}", excerpt(&body))),
                retry_after: None,
            })?;
        return Ok((job, body.to_vec()));
    }
    let error = serde_json::from_slice::<IttybitError>(&body).unwrap_or_default();
    let message = if error.message.is_empty() {
        excerpt(&body)
    } else {
        error.message
    };
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Err(CallError::Transient {
            reason: format!("{service} answered HTTP {}: {message}", status.as_u16()),
            detail: None,
            retry_after,
        })
    } else {
        Err(CallError::Permanent {
            service,
            status: status.as_u16(),
            kind: if error.kind.is_empty() {
                "unknown".to_owned()
            } else {
                error.kind
            },
            message,
        })
    }
}

/// A request that got no answer, in plain words ("Ittybit could not be reached: the
/// connection was refused"), with the network's own messages as its detail.
fn unreachable(service: &'static str, err: reqwest::Error) -> CallError {
    let failure = NetworkFailure::of(err);
    let why = match failure.cause {
        Cause::Timeout => None,
        Cause::Dns => Some("its host name could not be found"),
        Cause::Refused => Some("the connection was refused"),
        Cause::Tls => Some("its HTTPS certificate was not accepted"),
        Cause::Closed => Some("the connection was closed before it answered"),
        Cause::Unreachable => Some("there is no route to it from this server"),
        Cause::Other => Some("a network error"),
    };
    CallError::Transient {
        reason: match why {
            Some(why) => format!("{service} could not be reached: {why}"),
            None => format!("{service} did not answer in time"),
        },
        detail: Some(failure.detail),
        retry_after: None,
    }
}

/// The start of a body, as text, for a message: at most 300 characters.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(300).collect()
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs and ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
