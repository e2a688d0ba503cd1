//! Kaleyra's rate limit, simulated: at most N `/v2` requests per second for the company
//! (a burst of N, refilled evenly), `429` with `Retry-After` beyond. Off by default; set at
//! start ([`crate::SimOptions::rate_limit`], the binary's `--rate-limit`) or later
//! ([`crate::Simulator::set_rate_limit`], `PUT /_sim/rate-limit`). A request refused by an
//! injected fault uses no allowance.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// The company's allowance of requests, on clock `C` (a fake one in tests).
pub(crate) struct CompanyRateLimit<C: Clock = DefaultClock> {
    per_second: NonZeroU32,
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl CompanyRateLimit {
    pub(crate) fn new(per_second: NonZeroU32) -> Self {
        Self::with_clock(per_second, DefaultClock::default())
    }
}

impl<C: Clock + Clone> CompanyRateLimit<C> {
    fn with_clock(per_second: NonZeroU32, clock: C) -> Self {
        Self {
            per_second,
            limiter: RateLimiter::direct_with_clock(Quota::per_second(per_second), clock.clone()),
            clock,
        }
    }

    pub(crate) fn per_second(&self) -> NonZeroU32 {
        self.per_second
    }

    /// `None` when a request may go now (it uses one of the allowance); else how long until
    /// it could.
    pub(crate) fn refusal(&self) -> Option<Duration> {
        self.limiter
            .check()
            .err()
            .map(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1 (HTTP has no smaller unit).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn a_burst_of_the_allowance_passes_then_one_each_fraction_of_a_second() {
        let clock = governor::clock::FakeRelativeClock::default();
        let limit = CompanyRateLimit::with_clock(NonZeroU32::new(5).unwrap(), clock.clone());
        for _ in 0..5 {
            assert_eq!(limit.refusal(), None);
        }
        assert_eq!(limit.refusal(), Some(Duration::from_millis(200)));
        clock.advance(Duration::from_millis(150));
        assert_eq!(limit.refusal(), Some(Duration::from_millis(50)));
        clock.advance(Duration::from_millis(50));
        assert_eq!(limit.refusal(), None);
        assert!(limit.refusal().is_some());
    }
}
