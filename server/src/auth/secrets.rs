//! Random secrets and what is kept of them: personal API tokens and setup links are 256 random
//! bits shown once; only their SHA-256 is stored (a fast hash is enough for high-entropy
//! secrets). Output links can be signed: an HMAC-SHA256 over the path and an expiry time.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// What personal API tokens start with, so a leaked one is easy to recognise.
pub const TOKEN_PREFIX: &str = "rt_";

/// 256 random bits from the OS, as hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator works");
    hex::encode(bytes)
}

/// A new personal API token.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_hex())
}

/// The first characters of a token, shown to tell tokens apart.
pub fn token_prefix(token: &str) -> String {
    token.chars().take(TOKEN_PREFIX.len() + 6).collect()
}

pub fn sha256(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Signs `path` until `expires` with `key`: the query string to append (`exp=…&sig=…`).
pub fn sign_path(key: &[u8], path: &str, expires: OffsetDateTime) -> String {
    let exp = expires.unix_timestamp();
    format!("exp={exp}&sig={}", signature(key, path, exp))
}

/// Whether `query` carries a valid, unexpired signature of `path`.
pub fn verify_path(key: &[u8], path: &str, query: &str, now: OffsetDateTime) -> bool {
    let (mut exp, mut sig) = (None, None);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("exp", value)) => exp = value.parse::<i64>().ok(),
            Some(("sig", value)) => sig = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(exp), Some(sig)) = (exp, sig) else {
        return false;
    };
    if exp < now.unix_timestamp() {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{exp}:{path}").as_bytes());
    mac.verify_slice(&sig).is_ok()
}

fn signature(key: &[u8], path: &str, exp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{exp}:{path}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn tokens_are_random_prefixed_and_stored_as_hashes() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with("rt_") && a.len() == 67, "{a}");
        assert_eq!(token_prefix(&a).len(), 9);
        assert_eq!(sha256(&a).len(), 32);
        assert_ne!(sha256(&a), sha256(&b));
    }

    #[test]
    fn a_signed_path_verifies_until_it_expires_and_only_for_its_path() {
        let key = b"key";
        let now = OffsetDateTime::now_utc();
        let query = sign_path(key, "/files/a.mp4", now + Duration::minutes(5));
        assert!(verify_path(key, "/files/a.mp4", &query, now));
        assert!(!verify_path(key, "/files/b.mp4", &query, now));
        assert!(!verify_path(b"other", "/files/a.mp4", &query, now));
        assert!(!verify_path(
            key,
            "/files/a.mp4",
            &query,
            now + Duration::minutes(6)
        ));
        assert!(!verify_path(
            key,
            "/files/a.mp4",
            "exp=99999999999&sig=00",
            now
        ));
        assert!(!verify_path(key, "/files/a.mp4", "", now));
    }
}
