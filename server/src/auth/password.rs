//! Passwords: Argon2id (the `argon2` crate's defaults, OWASP's recommended parameters), in the
//! PHC string format, hashed and checked off the async threads (each takes tens of
//! milliseconds on purpose).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// A hash for a new password.
pub async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|err| format!("hashing the password failed: {err}"))
    })
    .await
    .map_err(|err| format!("hashing the password failed: {err}"))?
}

/// Whether `password` matches `hash`. With no account to check against, pass `None`: a dummy
/// hash is checked instead, so an unknown address takes as long as a wrong password.
pub async fn verify(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY.to_owned());
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        known && matches
    })
    .await
    .unwrap_or(false)
}

/// The Argon2id hash of a random password nobody knows, with the default parameters.
const DUMMY: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$xEUKybJtgBEwJZT76bQ/0kE7s6OSDSGxkMefJ8Ne6M8";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify("correct horse battery".into(), Some(hash.clone())).await);
        assert!(!verify("correct horse battery!".into(), Some(hash)).await);
        assert!(!verify("anything".into(), None).await);
    }

    #[test]
    fn the_dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY).is_ok());
    }
}
