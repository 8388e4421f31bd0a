//! One way of waiting before trying again, for everything that retries: dispatching a job,
//! a final webhook, the change feed's LISTEN connection, an input download. Each doubles from
//! its first delay up to its cap, with jitter (up to one more delay, at random) so that many
//! retries started together spread out; `backon` does the arithmetic.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// An exponential backoff: `first`, then twice that, and so on up to `cap`, each with jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff { first, cap }
    }

    /// For `backon`'s `Retryable`: at most `retries` further attempts.
    pub fn builder(self, retries: usize) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.first)
            .with_max_delay(self.cap)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(retries)
    }

    /// The waits, one per failure, without end.
    pub fn delays(self) -> ExponentialBackoff {
        self.builder(usize::MAX).without_max_times().build()
    }

    /// The wait after failure number `failures` (1 is the first), for retries whose count is
    /// kept elsewhere (the dispatcher keeps it in the database).
    pub fn delay(self, failures: u32) -> Duration {
        let failures = failures.clamp(1, 64) as usize;
        self.delays().nth(failures - 1).unwrap_or(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_at_most_one_delay_of_jitter() {
        let backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(600));
        for failures in 1..=4u32 {
            let base = 2.0 * f64::from(1u32 << (failures - 1));
            let got = backoff.delay(failures).as_secs_f64();
            assert!((base..base * 2.0).contains(&got), "{failures}: {got}");
        }
        for failures in [12, 30, 1000] {
            let got = backoff.delay(failures).as_secs_f64();
            assert!((600.0..1200.0).contains(&got), "{failures}: {got}");
        }
    }

    #[test]
    fn the_builder_stops_after_its_retries() {
        let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(4));
        assert_eq!(backoff.builder(3).build().count(), 3);
    }
}
