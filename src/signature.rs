//! Webhook signatures: `Ittybit-Signature` is the lowercase hex of HMAC-SHA256 over the raw
//! request body, keyed with the webhook secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes in a SHA-256 digest.
const DIGEST_LEN: usize = 32;

/// The request header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Ittybit-Signature";

/// Why a webhook signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No webhook secret is configured, so nothing can be verified.
    #[error("no webhook secret is configured")]
    NoSecret,
    /// The request carried no (or a blank) signature header.
    #[error("the signature header is missing")]
    Missing,
    /// The header is not a hex-encoded SHA-256 digest.
    #[error("the signature header is not a hex SHA-256 digest")]
    Malformed,
    /// The signature does not match the body.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// A MAC keyed with `secret` over `body`.
fn mac(secret: &[u8], body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac
}

/// The signature of `body`: lowercase hex of HMAC-SHA256(body, key = `secret`).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    hex::encode(mac(secret, body).finalize().into_bytes())
}

/// Checks the signature `header` against the raw `body`, in constant time.
///
/// Surrounding whitespace, upper-case hex and a `sha256=` prefix are tolerated. An empty
/// `secret` verifies nothing.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = header.map(str::trim).filter(|h| !h.is_empty());
    let header = header.ok_or(SignatureError::Missing)?;
    let digest = match header.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256=") => &header[7..],
        _ => header,
    };
    let expected = hex::decode(digest.trim()).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != DIGEST_LEN {
        return Err(SignatureError::Malformed);
    }
    mac(secret, body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `hmac.new(b"secret", b"body", hashlib.sha256).hexdigest()` in Python.
    const KNOWN: &str = "dc46983557fea127b43af721467eb9b3fde2338fe3e14f51952aa8478c13d355";

    #[test]
    fn signs_a_known_vector() {
        assert_eq!(sign(b"secret", b"body"), KNOWN);
    }

    #[test]
    fn signs_a_known_webhook_body() {
        // Python: hmac.new(b"whsec_test", body, hashlib.sha256).hexdigest()
        let body = br#"{"id":"job_abc123","status":"succeeded"}"#;
        assert_eq!(
            sign(b"whsec_test", body),
            "208bfea8637b2c70107edb76373633de8e0fe5aa4dc51f5e93e3a47bf08cf503"
        );
    }

    #[test]
    fn verifies_its_own_signature() {
        assert_eq!(verify(b"secret", b"body", Some(KNOWN)), Ok(()));
        let body = b"{\"status\":\"queued\"}";
        assert_eq!(verify(b"k", body, Some(&sign(b"k", body))), Ok(()));
    }

    #[test]
    fn refuses_a_tampered_body() {
        assert_eq!(
            verify(b"secret", b"body!", Some(KNOWN)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn refuses_the_wrong_secret() {
        assert_eq!(
            verify(b"other", b"body", Some(KNOWN)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn refuses_a_missing_or_blank_header() {
        assert_eq!(
            verify(b"secret", b"body", None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(b"secret", b"body", Some("  ")),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn refuses_malformed_hex() {
        for header in ["not hex", "sha256=zz", &KNOWN[..62], "sha256=", "abc"] {
            assert_eq!(
                verify(b"secret", b"body", Some(header)),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
    }

    #[test]
    fn tolerates_prefix_case_and_whitespace() {
        let upper = KNOWN.to_ascii_uppercase();
        for header in [
            format!("sha256={KNOWN}"),
            format!("SHA256={upper}"),
            format!("  {upper}\n"),
            format!(" sha256={KNOWN} "),
        ] {
            assert_eq!(
                verify(b"secret", b"body", Some(&header)),
                Ok(()),
                "{header:?}"
            );
        }
    }

    #[test]
    fn an_empty_secret_verifies_nothing() {
        let forged = sign(b"", b"body");
        assert_eq!(
            verify(b"", b"body", Some(&forged)),
            Err(SignatureError::NoSecret)
        );
        assert_eq!(verify(b"", b"body", None), Err(SignatureError::NoSecret));
    }
}
