//! When a teleconsultation happens: start, duration, and the instants derived from them.
//!
//! Pure functions: the current time is always passed in.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

/// The shortest teleconsultation accepted (5 minutes, as the original documents).
pub const MIN_DURATION_SECS: i64 = 300;
/// The longest teleconsultation accepted (24 hours, Kaleyra's room maximum).
pub const MAX_DURATION_SECS: i64 = 86_400;

/// How the caller gave the duration: an `end_date` or a `duration_in_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationInput {
    End(DateTime<Utc>),
    Seconds(i64),
}

impl DurationInput {
    /// The duration as a body gives it: `end_date` or `duration_in_seconds`, not both;
    /// `None` when neither is given.
    pub fn from_fields(
        end: Option<DateTime<Utc>>,
        secs: Option<i64>,
    ) -> Result<Option<DurationInput>, ScheduleError> {
        match (end, secs) {
            (Some(_), Some(_)) => Err(ScheduleError::EndAndDuration),
            (Some(end), None) => Ok(Some(DurationInput::End(end))),
            (None, Some(secs)) => Ok(Some(DurationInput::Seconds(secs))),
            (None, None) => Ok(None),
        }
    }
}

/// Why a schedule is refused. Messages name the request field and the allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("give either end_date or duration_in_seconds, not both")]
    EndAndDuration,
    #[error("end_date must be after start_date")]
    EndNotAfterStart,
    #[error(
        "{field} gives a duration of {secs} seconds; it must be at least {MIN_DURATION_SECS} seconds (5 minutes) and at most {MAX_DURATION_SECS} seconds (24 hours)"
    )]
    TooShort { field: &'static str, secs: i64 },
    #[error(
        "{field} gives a duration of {secs} seconds; it must be at least {MIN_DURATION_SECS} seconds (5 minutes) and at most {MAX_DURATION_SECS} seconds (24 hours)"
    )]
    TooLong { field: &'static str, secs: i64 },
}

/// A validated schedule: a start and a duration within the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub start: DateTime<Utc>,
    pub duration_secs: i64,
}

impl Schedule {
    /// Validates `start` with the given duration. An `end_date` is turned into whole seconds
    /// (sub-second remainders are dropped: 300.9 s is stored as 300 s; 299.9 s and
    /// 86400.001 s are refused).
    pub fn new(start: DateTime<Utc>, duration: DurationInput) -> Result<Schedule, ScheduleError> {
        // Bounds are checked on the exact duration (an end 1 ms past 24 hours is too long);
        // the stored duration is then whole seconds.
        let (field, millis) = match duration {
            DurationInput::End(end) => {
                if end <= start {
                    return Err(ScheduleError::EndNotAfterStart);
                }
                ("end_date", (end - start).num_milliseconds())
            }
            DurationInput::Seconds(secs) => ("duration_in_seconds", secs.saturating_mul(1000)),
        };
        let secs = millis.div_euclid(1000);
        if millis < MIN_DURATION_SECS * 1000 {
            return Err(ScheduleError::TooShort { field, secs });
        }
        if millis > MAX_DURATION_SECS * 1000 {
            return Err(ScheduleError::TooLong { field, secs });
        }
        Ok(Schedule {
            start,
            duration_secs: secs,
        })
    }

    /// The planned end: start + duration.
    pub fn end(&self) -> DateTime<Utc> {
        self.start + TimeDelta::seconds(self.duration_secs)
    }
}

/// The instant from which a complete teleconsultation can no longer change and its links are
/// given out: `start − period`. Saturates at the earliest representable instant.
pub fn immutable_from(start: DateTime<Utc>, period_ms: u64) -> DateTime<Utc> {
    i64::try_from(period_ms)
        .ok()
        .and_then(TimeDelta::try_milliseconds)
        .and_then(|d| start.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Whether changes are refused at `now`: only once all participants are known (`complete`),
/// from `start − period` on (inclusive).
pub fn is_immutable(
    now: DateTime<Utc>,
    start: DateTime<Utc>,
    period_ms: u64,
    complete: bool,
) -> bool {
    complete && now >= immutable_from(start, period_ms)
}

/// Whether join links may be handed out at `now` (from `start − period` on, inclusive). The
/// caller also checks that the room exists and is current.
pub fn link_available(now: DateTime<Utc>, start: DateTime<Utc>, period_ms: u64) -> bool {
    now >= immutable_from(start, period_ms)
}

/// The response date format: UTC with milliseconds, e.g. `2022-02-22T15:30:00.000Z`.
pub fn format_instant(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A date the caller sent that is not an RFC 3339 date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not an RFC 3339 date-time (expected e.g. 2022-02-22T15:30:00.000Z or 2022-02-22T16:30:00+01:00)"
)]
pub struct InstantError {
    pub value: String,
}

/// Parses any RFC 3339 date-time (any offset, any fraction of a second) into UTC.
pub fn parse_instant(value: &str) -> Result<DateTime<Utc>, InstantError> {
    DateTime::parse_from_rfc3339(value)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| InstantError {
            value: value.to_owned(),
        })
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_end_a_millisecond_past_the_bounds_is_refused() {
        let start = parse_instant("2030-01-02T10:00:00Z").unwrap();
        let too_long = parse_instant("2030-01-03T10:00:00.001Z").unwrap();
        assert!(matches!(
            Schedule::new(start, DurationInput::End(too_long)),
            Err(ScheduleError::TooLong { .. })
        ));
        let too_short = parse_instant("2030-01-02T10:04:59.999Z").unwrap();
        assert!(matches!(
            Schedule::new(start, DurationInput::End(too_short)),
            Err(ScheduleError::TooShort { .. })
        ));
        let day = parse_instant("2030-01-03T10:00:00Z").unwrap();
        assert_eq!(
            Schedule::new(start, DurationInput::End(day))
                .unwrap()
                .duration_secs,
            86_400
        );
    }

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_instant(s).unwrap()
    }

    #[test]
    fn from_end_date() {
        let s = Schedule::new(
            t("2030-01-01T10:00:00Z"),
            DurationInput::End(t("2030-01-01T11:00:00Z")),
        )
        .unwrap();
        assert_eq!(s.duration_secs, 3600);
        assert_eq!(s.end(), t("2030-01-01T11:00:00Z"));
    }

    #[test]
    fn from_seconds() {
        let s = Schedule::new(t("2030-01-01T10:00:00Z"), DurationInput::Seconds(300)).unwrap();
        assert_eq!(s.end(), t("2030-01-01T10:05:00Z"));
        let s = Schedule::new(t("2030-01-01T10:00:00Z"), DurationInput::Seconds(86_400)).unwrap();
        assert_eq!(s.end(), t("2030-01-02T10:00:00Z"));
    }

    #[test]
    fn end_not_after_start() {
        let start = t("2030-01-01T10:00:00Z");
        assert_eq!(
            Schedule::new(start, DurationInput::End(start)),
            Err(ScheduleError::EndNotAfterStart)
        );
        let e = Schedule::new(start, DurationInput::End(t("2030-01-01T09:00:00Z"))).unwrap_err();
        assert!(e.to_string().contains("end_date"), "{e}");
    }

    #[test]
    fn bounds_name_the_field_and_range() {
        let start = t("2030-01-01T10:00:00Z");
        let e = Schedule::new(start, DurationInput::Seconds(299)).unwrap_err();
        assert!(matches!(
            e,
            ScheduleError::TooShort {
                field: "duration_in_seconds",
                secs: 299
            }
        ));
        let msg = e.to_string();
        assert!(
            msg.contains("duration_in_seconds") && msg.contains("300") && msg.contains("86400"),
            "{msg}"
        );
        let e = Schedule::new(start, DurationInput::Seconds(86_401)).unwrap_err();
        assert!(matches!(e, ScheduleError::TooLong { .. }));
        let e = Schedule::new(start, DurationInput::Seconds(-5)).unwrap_err();
        assert!(matches!(e, ScheduleError::TooShort { .. }));
        let e =
            Schedule::new(start, DurationInput::End(t("2030-01-01T10:04:59.900Z"))).unwrap_err();
        assert!(matches!(
            e,
            ScheduleError::TooShort {
                field: "end_date",
                secs: 299
            }
        ));
        let e = Schedule::new(start, DurationInput::End(t("2030-01-02T10:00:01Z"))).unwrap_err();
        assert!(e.to_string().contains("end_date"), "{e}");
        assert!(matches!(
            e,
            ScheduleError::TooLong {
                field: "end_date",
                secs: 86_401
            }
        ));
    }

    #[test]
    fn immutable_window() {
        let start = t("2030-01-01T10:00:00Z");
        let period = 15 * 60 * 1000;
        assert_eq!(immutable_from(start, period), t("2030-01-01T09:45:00Z"));
        assert_eq!(immutable_from(start, 0), start);
        assert_eq!(immutable_from(start, u64::MAX), DateTime::<Utc>::MIN_UTC);

        let before = t("2030-01-01T09:44:59.999Z");
        let at = t("2030-01-01T09:45:00Z");
        let after = t("2030-01-01T12:00:00Z");
        assert!(!is_immutable(before, start, period, true));
        assert!(is_immutable(at, start, period, true));
        assert!(is_immutable(after, start, period, true));
        // Never while participants are missing.
        assert!(!is_immutable(at, start, period, false));
        assert!(!is_immutable(after, start, period, false));
        // Default period 0: from the start on.
        assert!(!is_immutable(before, start, 0, true));
        assert!(is_immutable(start, start, 0, true));
    }

    #[test]
    fn link_window() {
        let start = t("2030-01-01T10:00:00Z");
        assert!(!link_available(t("2030-01-01T09:59:59.999Z"), start, 0));
        assert!(link_available(start, start, 0));
        assert!(link_available(t("2030-01-01T09:00:00Z"), start, 3_600_000));
        assert!(!link_available(t("2030-01-01T08:59:59Z"), start, 3_600_000));
    }

    #[test]
    fn format_and_parse() {
        assert_eq!(
            format_instant(t("2022-02-22T15:30:00Z")),
            "2022-02-22T15:30:00.000Z"
        );
        assert_eq!(
            format_instant(t("2022-02-22T16:30:00.5+01:00")),
            "2022-02-22T15:30:00.500Z"
        );
        // Extra precision is truncated to milliseconds in the output.
        assert_eq!(
            format_instant(t("2022-02-22T15:30:00.123456Z")),
            "2022-02-22T15:30:00.123Z"
        );
        assert_eq!(t("2022-02-22T10:30:00-05:00"), t("2022-02-22T15:30:00Z"));
        assert!(parse_instant("2022-02-22").is_err());
        assert!(
            parse_instant("2022-02-22T15:30:00").is_err(),
            "an offset is required"
        );
        assert!(parse_instant("tomorrow").is_err());
        let e = parse_instant("x").unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Instants within a few centuries of the epoch, to the millisecond.
    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        (-5_000_000_000_000_i64..10_000_000_000_000)
            .prop_map(|ms| DateTime::from_timestamp_millis(ms).expect("in chrono's range"))
    }

    proptest! {
        /// Links are given out exactly when changes stop (for a complete list), never while
        /// participants are missing, and once given they stay given.
        #[test]
        fn the_link_window_is_the_immutable_window(
            now in instant(),
            start in instant(),
            period in 0_u64..=u64::MAX,
            later_ms in 0_i64..1_000_000_000,
        ) {
            prop_assert_eq!(is_immutable(now, start, period, true), link_available(now, start, period));
            prop_assert!(!is_immutable(now, start, period, false));
            prop_assert!(immutable_from(start, period) <= start);
            if link_available(now, start, period) {
                let later = now + TimeDelta::milliseconds(later_ms);
                prop_assert!(link_available(later, start, period));
                prop_assert!(is_immutable(later, start, period, true));
            }
        }

        /// A duration is accepted exactly within 5 minutes to 24 hours, and stored in whole
        /// seconds, whether it comes as seconds or as an end date.
        #[test]
        fn durations_are_bounded_exactly(start in instant(), ms in -100_000_000_i64..200_000_000) {
            let by_end = Schedule::new(start, DurationInput::End(start + TimeDelta::milliseconds(ms)));
            let within = (MIN_DURATION_SECS * 1000..=MAX_DURATION_SECS * 1000).contains(&ms);
            prop_assert_eq!(by_end.is_ok(), within);
            if let Ok(schedule) = by_end {
                prop_assert_eq!(schedule.duration_secs, ms / 1000);
                prop_assert_eq!(schedule.start, start);
            }
            let secs = ms / 1000;
            let by_secs = Schedule::new(start, DurationInput::Seconds(secs));
            prop_assert_eq!(
                by_secs.is_ok(),
                (MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(&secs)
            );
        }
    }
}
