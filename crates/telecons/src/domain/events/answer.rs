//! What the receiver's answer to one delivery attempt means (spec §9): a `2xx` delivers the
//! event; `410 Gone` stops every delivery; anything else — another status, no answer within
//! the timeout, no connection — is tried again on the schedule, or given up after the last
//! attempt.
//!
//! Choices where the spec is silent:
//! - Redirects are not followed: a `3xx` is a failed attempt like any other status (the
//!   signed body must reach the URL configured, not wherever an answer points).
//! - The answer recorded for an attempt says what came back and nothing else: `HTTP 503`,
//!   `timeout`, `connection failed`, or `no answer` for any other failure to send — never
//!   the URL (its password), the secrets or the receiver's body.

use std::fmt;
use std::time::Duration;

use super::retry::{NextAttempt, RetrySchedule};

/// What one attempt got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP status, within the timeout.
    Status(u16),
    /// No answer within the timeout.
    Timeout,
    /// The receiver could not be reached.
    ConnectionFailed,
    /// The request failed otherwise (cut off mid-answer, say).
    NoAnswer,
}

impl fmt::Display for Answer {
    /// As recorded with the event and listed by `telecons events --failed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Status(status) => write!(f, "HTTP {status}"),
            Answer::Timeout => f.write_str("timeout"),
            Answer::ConnectionFailed => f.write_str("connection failed"),
            Answer::NoAnswer => f.write_str("no answer"),
        }
    }
}

/// What to do with the event after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A `2xx`: delivered.
    Delivered,
    /// `410 Gone`: the receiver wants no more events; deliveries stop, the attempt is not
    /// counted (the event stays as it was).
    Stop,
    /// Failed: try again after this wait.
    RetryIn(Duration),
    /// Failed, and it was the schedule's last attempt.
    GiveUp,
}

/// The verdict on an attempt that got `answer`, after `attempts_before` earlier attempts of
/// the event, on `schedule`; `random` (uniform in [0, 1]) places the wait in its jitter.
pub fn verdict(
    answer: Answer,
    attempts_before: u32,
    schedule: &RetrySchedule,
    random: f64,
) -> Verdict {
    match answer {
        Answer::Status(200..=299) => Verdict::Delivered,
        Answer::Status(410) => Verdict::Stop,
        _ => {
            let attempts_made = usize::try_from(attempts_before)
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            match schedule.next_attempt(attempts_made, random) {
                NextAttempt::In(wait) => Verdict::RetryIn(wait),
                NextAttempt::GiveUp => Verdict::GiveUp,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> RetrySchedule {
        RetrySchedule::parse("5s,1m").expect("valid")
    }

    #[test]
    fn any_2xx_delivers_whatever_the_attempt() {
        for status in [200, 201, 202, 204, 299] {
            for attempts_before in [0, 1, 2, 50] {
                assert_eq!(
                    verdict(Answer::Status(status), attempts_before, &schedule(), 0.5),
                    Verdict::Delivered
                );
            }
        }
    }

    #[test]
    fn gone_stops_and_is_not_an_attempt() {
        for attempts_before in [0, 2, 9] {
            assert_eq!(
                verdict(Answer::Status(410), attempts_before, &schedule(), 1.0),
                Verdict::Stop
            );
        }
    }

    #[test]
    fn every_other_answer_is_retried_on_the_schedule_then_given_up() {
        for answer in [
            Answer::Status(100),
            Answer::Status(301),
            Answer::Status(307),
            Answer::Status(400),
            Answer::Status(404),
            Answer::Status(429),
            Answer::Status(500),
            Answer::Status(503),
            Answer::Timeout,
            Answer::ConnectionFailed,
            Answer::NoAnswer,
        ] {
            assert_eq!(
                verdict(answer, 0, &schedule(), 1.0),
                Verdict::RetryIn(Duration::from_secs(5)),
                "{answer}"
            );
            assert_eq!(
                verdict(answer, 1, &schedule(), 0.0),
                Verdict::RetryIn(Duration::from_secs(48)),
                "{answer}: jittered down to 80% at most"
            );
            assert_eq!(verdict(answer, 2, &schedule(), 1.0), Verdict::GiveUp);
            assert_eq!(verdict(answer, u32::MAX, &schedule(), 1.0), Verdict::GiveUp);
        }
    }

    #[test]
    fn answers_are_recorded_in_plain_words() {
        assert_eq!(Answer::Status(503).to_string(), "HTTP 503");
        assert_eq!(Answer::Status(204).to_string(), "HTTP 204");
        assert_eq!(Answer::Timeout.to_string(), "timeout");
        assert_eq!(Answer::ConnectionFailed.to_string(), "connection failed");
        assert_eq!(Answer::NoAnswer.to_string(), "no answer");
    }
}
