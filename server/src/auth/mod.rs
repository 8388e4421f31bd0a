//! Accounts and access: nobody submits, sees or downloads anything without being let in.
//!
//! - People sign in with an email and a password (Argon2id, [`password`]); their session is a
//!   `tower-sessions` cookie (HttpOnly, SameSite=Lax, Secure behind https) backed by Postgres
//!   ([`store`]), given a new id at sign-in and ended by sign-out, a password change or the
//!   account being disabled.
//! - Scripts send `Authorization: Bearer rt_…`, a personal API token ([`secrets`]), scoped
//!   `read` or `write` and never allowed more than its owner's role.
//! - Every request passes the [`gate`]: its `Host` must be one this server answers to (so a
//!   DNS-rebinding page cannot read a local install), its method and path must have a rule in
//!   [`rules`], and whoever sent it must satisfy that rule. Unsafe requests that ride on the
//!   session cookie must come from this server's own origin, and a form posted without
//!   JavaScript must also carry the session's CSRF token.
//! - [`limits`] slows sign-in guessing, submissions, and event streams per person.

pub mod gate;
pub mod headers;
pub mod limits;
pub mod password;
pub mod rules;
pub mod secrets;
pub mod setup;
pub mod store;

use std::sync::Arc;

use secrecy::SecretString;
use sqlx::PgPool;

use limits::Limits;
use rules::Rules;

pub use app::session::keys::{CSRF, FLASH, NEW_TOKEN, USER_ID};
pub use app::session::{CurrentUser, Flash};

/// The session cookie's name.
pub const COOKIE: &str = "reeltime_session";

/// The hosts and origins this server answers to.
#[derive(Clone, Debug)]
pub struct Origins {
    /// `host[:port]` values accepted in `Host`.
    pub hosts: Vec<String>,
    /// `scheme://host[:port]` values accepted in `Origin`.
    pub origins: Vec<String>,
}

impl Origins {
    /// What a server at `public_url` answers to: its own authority, and the loopback names of
    /// its listening port (the built-in processor calls itself there). With no public URL
    /// set, every loopback name of the port.
    pub fn new(public_url: &str, self_authority: &str) -> Origins {
        let public = url::Url::parse(public_url).expect("the public URL was checked at start");
        let authority = |u: &url::Url| match u.port() {
            Some(port) => format!("{}:{port}", u.host_str().unwrap_or_default()),
            None => u.host_str().unwrap_or_default().to_owned(),
        };
        let mut hosts = vec![authority(&public), self_authority.to_owned()];
        let mut origins = vec![public.origin().ascii_serialization()];
        let loopback = public.host().is_some_and(|host| match host {
            url::Host::Domain(name) => name == "localhost",
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        });
        if loopback {
            let port = public.port_or_known_default().unwrap_or(80);
            for name in ["127.0.0.1", "localhost", "[::1]"] {
                hosts.push(format!("{name}:{port}"));
                origins.push(format!("{}://{name}:{port}", public.scheme()));
            }
        }
        hosts.sort();
        hosts.dedup();
        origins.sort();
        origins.dedup();
        Origins { hosts, origins }
    }

    pub fn allows_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// What the gate and the account routes share.
#[derive(Clone)]
pub struct Auth {
    pub pool: PgPool,
    pub rules: Arc<Rules>,
    pub limits: Arc<Limits>,
    pub origins: Arc<Origins>,
    /// Signs links to output files (made up at each start: links outlive no restart).
    pub link_key: Arc<[u8]>,
    /// The built-in processor's key, accepted for its own files and samples.
    pub processor_key: Option<SecretString>,
    /// `REELTIME_METRICS_TOKEN`: enough for `GET /metrics`, for nothing else.
    pub metrics_token: Option<SecretString>,
    /// The public URL is https: cookies are Secure and HSTS is sent.
    pub https: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_install_answers_to_its_loopback_names_only() {
        let origins = Origins::new("http://127.0.0.1:3000", "127.0.0.1:3000");
        assert!(origins.allows_host("127.0.0.1:3000"));
        assert!(origins.allows_host("LOCALHOST:3000"));
        assert!(origins.allows_host("[::1]:3000"));
        assert!(!origins.allows_host("evil.example:3000"));
        assert!(!origins.allows_host("127.0.0.1:3001"));
        assert!(origins.allows_origin("http://localhost:3000"));
        assert!(!origins.allows_origin("http://evil.example"));
    }

    #[test]
    fn a_public_install_answers_to_its_name_and_its_own_loopback_port() {
        let origins = Origins::new("https://reeltime.example.com", "127.0.0.1:3000");
        assert!(origins.allows_host("reeltime.example.com"));
        assert!(origins.allows_host("127.0.0.1:3000"));
        assert!(!origins.allows_host("localhost:3000"));
        assert!(origins.allows_origin("https://reeltime.example.com"));
        assert!(!origins.allows_origin("http://reeltime.example.com"));
    }
}
