//! Rate limits (the `governor` crate's GCRA, keyed, in memory per process): sign-in attempts
//! per client address and per account, job submissions per person, unsigned callbacks
//! recorded; and a cap on the event streams one person holds open.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

/// How many of each, per minute (bursts up to the same number).
#[derive(Clone, Copy, Debug)]
pub struct LimitSettings {
    pub sign_ins_per_minute: u32,
    pub submissions_per_minute: u32,
    pub streams_per_user: usize,
}

pub struct Limits {
    settings: LimitSettings,
    sign_in_by_address: DefaultKeyedRateLimiter<IpAddr>,
    sign_in_by_account: DefaultKeyedRateLimiter<String>,
    submissions: DefaultKeyedRateLimiter<Uuid>,
    unsigned_callbacks: DefaultDirectRateLimiter,
    streams: Mutex<HashMap<Uuid, usize>>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least 1"))
}

/// Refused until the wait is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooMany {
    pub retry_after: Duration,
}

impl TooMany {
    /// Whole seconds, rounded up, for `Retry-After`.
    pub fn seconds(self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

fn check<K: Clone + std::hash::Hash + Eq>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), TooMany> {
    limiter.check_key(key).map_err(|not_until| TooMany {
        retry_after: not_until.wait_time_from(DefaultClock::default().now()),
    })
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Arc<Limits> {
        Arc::new(Limits {
            settings,
            sign_in_by_address: RateLimiter::keyed(per_minute(settings.sign_ins_per_minute * 3)),
            sign_in_by_account: RateLimiter::keyed(per_minute(settings.sign_ins_per_minute)),
            submissions: RateLimiter::keyed(per_minute(settings.submissions_per_minute)),
            unsigned_callbacks: RateLimiter::direct(per_minute(60)),
            streams: Mutex::new(HashMap::new()),
        })
    }

    /// A sign-in attempt from `address` for `email`. Every attempt counts, right or wrong,
    /// so guessing is slow whichever account it aims at; a person who types their password
    /// right the first few times never notices.
    pub fn sign_in(&self, address: IpAddr, email: &str) -> Result<(), TooMany> {
        check(&self.sign_in_by_address, &address)?;
        check(&self.sign_in_by_account, &email.to_lowercase())
    }

    pub fn submission(&self, user: Uuid) -> Result<(), TooMany> {
        check(&self.submissions, &user)
    }

    /// Whether an unverified callback should still be recorded (at most 60 a minute).
    pub fn record_unsigned_callback(&self) -> bool {
        self.unsigned_callbacks.check().is_ok()
    }

    /// Take one of `user`'s event streams; `None` when they have the most allowed open.
    pub fn open_stream(self: &Arc<Self>, user: Uuid) -> Option<StreamSlot> {
        let mut streams = self.streams.lock().expect("not poisoned");
        let open = streams.entry(user).or_default();
        if *open >= self.settings.streams_per_user {
            return None;
        }
        *open += 1;
        Some(StreamSlot {
            limits: self.clone(),
            user,
        })
    }

    pub fn streams_per_user(&self) -> usize {
        self.settings.streams_per_user
    }

    /// Forget keys that have been quiet long enough to be back to a full burst (the keyed
    /// stores would otherwise grow with every address ever seen).
    pub fn forget_quiet(&self) {
        self.sign_in_by_address.retain_recent();
        self.sign_in_by_account.retain_recent();
        self.submissions.retain_recent();
    }
}

/// One open event stream; dropping it frees the slot.
pub struct StreamSlot {
    limits: Arc<Limits>,
    user: Uuid,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.limits.streams.lock().expect("not poisoned");
        if let Some(open) = streams.get_mut(&self.user) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Arc<Limits> {
        Limits::new(LimitSettings {
            sign_ins_per_minute: 5,
            submissions_per_minute: 2,
            streams_per_user: 2,
        })
    }

    #[test]
    fn sign_ins_are_limited_per_account_with_a_wait() {
        let limits = limits();
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            assert!(limits.sign_in(address, "Ada@example.com").is_ok());
        }
        let refused = limits.sign_in(address, "ada@example.com").unwrap_err();
        assert!(
            refused.seconds() >= 1 && refused.seconds() <= 12,
            "{refused:?}"
        );
        assert!(
            limits.sign_in(address, "bob@example.com").is_ok(),
            "per account"
        );
    }

    #[test]
    fn streams_are_counted_per_person_and_freed_on_drop() {
        let limits = limits();
        let user = Uuid::nil();
        let a = limits.open_stream(user).unwrap();
        let _b = limits.open_stream(user).unwrap();
        assert!(limits.open_stream(user).is_none());
        drop(a);
        assert!(limits.open_stream(user).is_some());
    }
}
