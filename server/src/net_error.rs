//! A network failure told two ways: what it means in plain words, for the person who
//! submitted the job, and the technical chain of messages (reqwest's, hyper's, the resolver's,
//! the OS's), for the job's page and the operator.
//!
//! The first decides the sentence on the dashboard ("the host could not be found"); the second
//! is kept beside it (`job_details.failure` for the built-in processor, the dispatch event's
//! `technical` for a call to Ittybit) because a plain sentence alone does not let anyone tell a
//! typo from a firewall. Neither ever contains the URL: URLs can carry signed tokens, so the
//! error is taken [`without_url`](reqwest::Error::without_url) before it is written down.

use std::error::Error as StdError;

/// What went wrong on the way to the other server, as far as its messages tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The host name did not resolve.
    Dns,
    /// Nothing listens at that address and port.
    Refused,
    /// The TLS handshake failed: an invalid or untrusted certificate, or no common protocol.
    Tls,
    /// The other side closed the connection before the answer was complete.
    Closed,
    /// No route to the host from here.
    Unreachable,
    /// Connecting or reading took too long.
    Timeout,
    /// Anything else.
    Other,
}

/// One failed request: its [`Cause`] and the technical detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkFailure {
    pub cause: Cause,
    /// The error and its sources, joined with `": "`, without the URL.
    pub detail: String,
}

impl NetworkFailure {
    /// Reads a reqwest error, dropping its URL first.
    pub fn of(err: reqwest::Error) -> NetworkFailure {
        let timeout = err.is_timeout();
        let detail = error_chain(&err.without_url());
        let cause = if timeout {
            Cause::Timeout
        } else {
            cause_of(&detail)
        };
        NetworkFailure { cause, detail }
    }
}

/// The cause named in a chain of error messages.
pub fn cause_of(detail: &str) -> Cause {
    let detail = detail.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|needle| detail.contains(needle));
    if has(&[
        "dns error",
        "failed to lookup address",
        "name or service not known",
        "no address associated",
        "temporary failure in name resolution",
    ]) {
        Cause::Dns
    } else if has(&["connection refused"]) {
        Cause::Refused
    } else if has(&["certificate", "tls", "ssl", "handshake"]) {
        Cause::Tls
    } else if has(&["network is unreachable", "no route to host"]) {
        Cause::Unreachable
    } else if has(&["timed out", "timeout"]) {
        Cause::Timeout
    } else if has(&[
        "connection reset",
        "connection closed",
        "unexpected eof",
        "incomplete",
        "broken pipe",
    ]) {
        Cause::Closed
    } else {
        Cause::Other
    }
}

/// An error and its sources, joined with `": "`, leaving out a source whose text the previous
/// messages already contain (hyper and reqwest sometimes repeat their cause).
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(current) = source {
        let message = current.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = current.source();
    }
    text
}

/// A loopback port nothing listens on (bound, noted, closed), for tests of refused
/// connections.
#[cfg(test)]
pub(crate) fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_causes_are_read_from_the_messages_people_meet() {
        let cases = [
            ("error sending request: client error (Connect): dns error: failed to lookup address information: Name or service not known", Cause::Dns),
            ("error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)", Cause::Refused),
            ("client error (Connect): invalid peer certificate: UnknownIssuer", Cause::Tls),
            ("error decoding response body: connection reset by peer", Cause::Closed),
            ("tcp connect error: Network is unreachable (os error 101)", Cause::Unreachable),
            ("operation timed out", Cause::Timeout),
            ("builder error", Cause::Other),
        ];
        for (detail, cause) in cases {
            assert_eq!(cause_of(detail), cause, "{detail}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_read_as_refused_and_its_detail_keeps_no_url() {
        let port = closed_port();
        let err = reqwest::get(format!("http://127.0.0.1:{port}/clip.mp4?token=s3cr3t"))
            .await
            .unwrap_err();
        let failure = NetworkFailure::of(err);
        assert_eq!(failure.cause, Cause::Refused, "{}", failure.detail);
        assert!(
            failure
                .detail
                .to_ascii_lowercase()
                .contains("connection refused"),
            "{}",
            failure.detail
        );
        assert!(!failure.detail.contains("s3cr3t"), "{}", failure.detail);
        assert!(!failure.detail.contains("clip.mp4"), "{}", failure.detail);
    }
}
