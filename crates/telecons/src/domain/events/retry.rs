//! When a failed delivery is tried again (`EVENTS_RETRY_SCHEDULE`, spec §9): a schedule of N
//! waits gives N + 1 attempts; after the last the event is given up.
//!
//! Each wait is shortened by up to 20% at random (never below 80% of it, as the spec asks), so
//! that the events held back by one outage do not all come back at the same instant.
//!
//! Choices where the spec is silent:
//! - A schedule has at least one wait: a blank variable means the default (as for every
//!   variable), and an event is always tried twice at least.
//! - Waits are whole numbers with a unit, `ms`, `s`, `m` or `h`, from 1 ms to 24 h (a longer
//!   one is more likely a slip than a wish); spaces around them are allowed.

use std::fmt;
use std::time::Duration;

/// The spec's default: eight attempts over about 33 hours.
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

/// The longest wait a schedule may have.
pub const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);

/// The waits between the delivery attempts of one event, in order; at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

/// What to do after `attempts_made` attempts of an event, none delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextAttempt {
    /// Try again after this wait.
    In(Duration),
    /// The schedule is spent: the event is given up.
    GiveUp,
}

/// The units a wait may have, in milliseconds, the largest first (see [`RetrySchedule`]'s
/// `Display`).
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)];

impl RetrySchedule {
    /// `5s,5m,30m,…`; `None` unless every wait is a whole number above 0 with a unit, at
    /// most [`LONGEST_WAIT`].
    pub fn parse(text: &str) -> Option<RetrySchedule> {
        text.split(',')
            .map(|wait| parse_wait(wait.trim()))
            .collect::<Option<_>>()
            .map(RetrySchedule)
    }

    /// The waits, in order.
    pub fn waits(&self) -> &[Duration] {
        &self.0
    }

    /// How many attempts an event gets: one more than the waits.
    pub fn attempts(&self) -> usize {
        self.0.len() + 1
    }

    /// After `attempts_made` undelivered attempts: the wait before the next one, or give up.
    /// `random` is a uniform sample from [0, 1] (outside it is clamped, NaN counts as 0): the
    /// wait is then between 80% (at 0) and 100% (at 1) of the schedule's. No attempt made
    /// yet: the first is due at once.
    pub fn next_attempt(&self, attempts_made: usize, random: f64) -> NextAttempt {
        let Some(index) = attempts_made.checked_sub(1) else {
            return NextAttempt::In(Duration::ZERO);
        };
        match self.0.get(index) {
            Some(wait) => NextAttempt::In(jittered(*wait, random)),
            None => NextAttempt::GiveUp,
        }
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule::parse(DEFAULT_RETRY_SCHEDULE).expect("the default schedule is valid")
    }
}

impl fmt::Display for RetrySchedule {
    /// As it is written, each wait in its largest whole unit: `5s,5m,30m,2h,5h,10h,10h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, wait) in self.0.iter().enumerate() {
            let ms = wait_ms(*wait);
            let (unit, size) = UNITS
                .into_iter()
                .find(|(_, size)| ms.is_multiple_of(*size))
                .expect("every wait is whole milliseconds");
            let comma = if i == 0 { "" } else { "," };
            write!(f, "{comma}{}{unit}", ms / size)?;
        }
        Ok(())
    }
}

/// One wait, e.g. `30m`.
fn parse_wait(text: &str) -> Option<Duration> {
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits);
    let (_, size) = UNITS.into_iter().find(|(name, _)| *name == unit)?;
    let ms = number.parse::<u64>().ok()?.checked_mul(size)?;
    let wait = Duration::from_millis(ms);
    (ms > 0 && wait <= LONGEST_WAIT).then_some(wait)
}

/// A wait in whole milliseconds (waits are at most a day: it fits).
fn wait_ms(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).expect("waits are at most a day")
}

/// `wait` shortened by up to 20%, `random` picking where: in whole milliseconds from 80%
/// (rounded up, never below) to 100% of it.
fn jittered(wait: Duration, random: f64) -> Duration {
    let full = wait_ms(wait);
    let shortest = (full * 4).div_ceil(5);
    let spread = full - shortest;
    // Exact in f64 (a day is 8.64e7 ms); the `as` cast saturates, and NaN becomes 0.
    let extra = ((spread as f64) * random.clamp(0.0, 1.0)).round() as u64;
    Duration::from_millis(shortest + extra.min(spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(text: &str) -> RetrySchedule {
        RetrySchedule::parse(text).unwrap_or_else(|| panic!("{text} refused"))
    }

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const MINUTE: u64 = 60_000;
    const HOUR: u64 = 60 * MINUTE;

    #[test]
    fn the_default_is_the_spec_s() {
        let default = RetrySchedule::default();
        assert_eq!(
            default.waits(),
            [
                ms(5000),
                ms(5 * MINUTE),
                ms(30 * MINUTE),
                ms(2 * HOUR),
                ms(5 * HOUR),
                ms(10 * HOUR),
                ms(10 * HOUR)
            ]
        );
        assert_eq!(default.attempts(), 8);
        assert_eq!(default.to_string(), DEFAULT_RETRY_SCHEDULE);
    }

    #[test]
    fn units_spaces_and_the_written_form() {
        let s = schedule(" 250ms, 90s ,120s,1m,24h ");
        assert_eq!(
            s.waits(),
            [
                ms(250),
                ms(90_000),
                ms(2 * MINUTE),
                ms(MINUTE),
                ms(24 * HOUR)
            ]
        );
        assert_eq!(s.to_string(), "250ms,90s,2m,1m,24h");
        assert_eq!(schedule("1500ms").to_string(), "1500ms");
        assert_eq!(schedule("60m").to_string(), "1h");
        assert_eq!(schedule("1ms").attempts(), 2);
    }

    #[test]
    fn refused_schedules() {
        for text in [
            "",
            " ",
            "5s,",
            ",5s",
            "5s,,5m",
            "0s",
            "5s,0ms",
            "5",
            "s",
            "1.5h",
            "-5s",
            "+5s",
            "5 s",
            "5S",
            "5sec",
            "2d",
            "1h30m",
            "24h1ms",
            "1441m",
            "86400001ms",
            "99999999999999999999h",
            "18446744073709551615h",
            "5s;5m",
        ] {
            assert_eq!(RetrySchedule::parse(text), None, "{text:?} accepted");
        }
        assert!(RetrySchedule::parse("86400000ms").is_some());
    }

    #[test]
    fn n_waits_give_n_plus_one_attempts() {
        let s = schedule("5s,5m");
        assert_eq!(s.next_attempt(0, 0.5), NextAttempt::In(Duration::ZERO));
        assert_eq!(s.next_attempt(1, 1.0), NextAttempt::In(ms(5000)));
        assert_eq!(s.next_attempt(2, 1.0), NextAttempt::In(ms(5 * MINUTE)));
        assert_eq!(s.next_attempt(3, 1.0), NextAttempt::GiveUp);
        assert_eq!(s.next_attempt(usize::MAX, 1.0), NextAttempt::GiveUp);
        let once_more = schedule("1h");
        assert_eq!(once_more.next_attempt(1, 1.0), NextAttempt::In(ms(HOUR)));
        assert_eq!(once_more.next_attempt(2, 0.0), NextAttempt::GiveUp);
    }

    #[test]
    fn jitter_keeps_80_to_100_percent() {
        let s = schedule("10h,5s,1ms,4ms,5ms,7ms");
        let waits = |random: f64| -> Vec<Duration> {
            (1..=6)
                .map(|n| match s.next_attempt(n, random) {
                    NextAttempt::In(wait) => wait,
                    NextAttempt::GiveUp => panic!("attempt {n} given up"),
                })
                .collect()
        };
        // At 0: 80%, rounded up to a whole millisecond (never below 80%).
        assert_eq!(
            waits(0.0),
            [ms(8 * HOUR), ms(4000), ms(1), ms(4), ms(4), ms(6)]
        );
        // At 1: the whole wait.
        assert_eq!(
            waits(1.0),
            [ms(10 * HOUR), ms(5000), ms(1), ms(4), ms(5), ms(7)]
        );
        assert_eq!(waits(0.5)[..2], [ms(9 * HOUR), ms(4500)]);
        // Out of range: clamped; NaN: the shortest.
        assert_eq!(waits(-3.0), waits(0.0));
        assert_eq!(waits(7.0), waits(1.0));
        assert_eq!(waits(f64::NAN), waits(0.0));
        assert_eq!(waits(f64::INFINITY), waits(1.0));
        // Anywhere in between: within the bounds.
        for i in 0..=1000 {
            let random = f64::from(i) / 1000.0;
            for (wait, full) in waits(random).into_iter().zip(s.waits()) {
                assert!(
                    wait <= *full && wait.as_millis() * 5 >= full.as_millis() * 4,
                    "{random}: {wait:?} of {full:?}"
                );
            }
        }
    }
}
