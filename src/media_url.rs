//! The media URL a person submits, validated.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

/// The longest URL accepted, in characters.
pub const MAX_MEDIA_URL_LEN: usize = 2048;

/// An `http(s)` URL with a host, at most [`MAX_MEDIA_URL_LEN`] characters, without credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MediaUrl(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MediaUrlError {
    #[error("Enter the URL of a video, image or audio file.")]
    Empty,
    #[error("That URL is {len} characters long; the limit is 2,048.")]
    TooLong { len: usize },
    #[error("That isn't a URL ({reason}). It should look like https://example.com/video.mp4")]
    Invalid { reason: String },
    #[error("Only http:// and https:// URLs can be processed, not {scheme}://")]
    Scheme { scheme: String },
    #[error("That URL has no host name.")]
    NoHost,
    #[error("Remove the username and password from the URL: everyone who sees the dashboard would see them.")]
    Credentials,
}

impl MediaUrl {
    pub fn parse(input: &str) -> Result<MediaUrl, MediaUrlError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(MediaUrlError::Empty);
        }
        let len = input.chars().count();
        if len > MAX_MEDIA_URL_LEN {
            return Err(MediaUrlError::TooLong { len });
        }
        let url = Url::parse(input).map_err(|err| MediaUrlError::Invalid {
            reason: err.to_string(),
        })?;
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(MediaUrlError::Scheme {
                    scheme: other.to_owned(),
                })
            }
        }
        match url.host_str() {
            Some(host) if !host.is_empty() => {}
            _ => return Err(MediaUrlError::NoHost),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(MediaUrlError::Credentials);
        }
        let normalized = String::from(url);
        // Normalising percent-encodes, which can lengthen the URL past the limit.
        let len = normalized.chars().count();
        if len > MAX_MEDIA_URL_LEN {
            return Err(MediaUrlError::TooLong { len });
        }
        Ok(MediaUrl(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for MediaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MediaUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        MediaUrl::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https() {
        for ok in [
            "https://example.com/video.mp4",
            "http://media.example.org:8080/a/b.mov?sig=abc#t=10",
            "  https://example.com/with-spaces-around.mp4  ",
            "https://[::1]/ipv6.mp4",
        ] {
            let url = MediaUrl::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(url.as_str(), ok.trim());
        }
    }

    #[test]
    fn normalises_what_it_keeps() {
        assert_eq!(
            MediaUrl::parse("HTTPS://Example.COM").unwrap().as_str(),
            "https://example.com/"
        );
    }

    #[test]
    fn refuses_empty_input() {
        assert_eq!(MediaUrl::parse(""), Err(MediaUrlError::Empty));
        assert_eq!(MediaUrl::parse("   "), Err(MediaUrlError::Empty));
    }

    #[test]
    fn refuses_other_schemes() {
        for (input, scheme) in [
            ("ftp://example.com/a.mp4", "ftp"),
            ("s3://bucket/key.mp4", "s3"),
            ("file:///etc/passwd", "file"),
            ("javascript:alert(1)", "javascript"),
        ] {
            assert_eq!(
                MediaUrl::parse(input),
                Err(MediaUrlError::Scheme {
                    scheme: scheme.into()
                })
            );
        }
    }

    #[test]
    fn refuses_non_urls_with_a_reason() {
        let err = MediaUrl::parse("not a url").unwrap_err();
        assert!(matches!(err, MediaUrlError::Invalid { .. }), "{err:?}");
        assert!(
            err.to_string().contains("relative URL without a base"),
            "{err}"
        );
        assert!(matches!(
            MediaUrl::parse("https://"),
            Err(MediaUrlError::Invalid { .. })
        ));
    }

    #[test]
    fn refuses_credentials() {
        assert_eq!(
            MediaUrl::parse("https://user:secret@example.com/a.mp4"),
            Err(MediaUrlError::Credentials)
        );
    }

    #[test]
    fn enforces_the_length_limit() {
        let base = "https://example.com/";
        let at_limit = format!("{base}{}", "a".repeat(MAX_MEDIA_URL_LEN - base.len()));
        assert!(MediaUrl::parse(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(
            MediaUrl::parse(&over),
            Err(MediaUrlError::TooLong {
                len: MAX_MEDIA_URL_LEN + 1
            })
        );
        // Within the limit as typed, over it once spaces are percent-encoded.
        let grows = format!("{base}{}", " x".repeat(1000));
        assert!(matches!(
            MediaUrl::parse(&grows),
            Err(MediaUrlError::TooLong { .. })
        ));
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<MediaUrl>("\"https://example.com/a\"").is_ok());
        assert!(serde_json::from_str::<MediaUrl>("\"ftp://example.com/a\"").is_err());
    }
}
