//! The pure parts of the events sent to the platform (spec §9): which event a stored change
//! makes, how an event is signed, what an attempt's answer means and when a failed delivery
//! is tried again. Storing and sending them is not here.

pub mod answer;
pub mod retry;
pub mod signature;

use chrono::{DateTime, Utc};

use crate::domain::agenda::{RoomState, room_state};
use crate::domain::schedule;
use crate::domain::teleconsultation::Teleconsultation;

/// What happened to a teleconsultation, as the platform is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Created,
    /// Any stored change but a deletion, participants and their data included.
    Updated,
    Deleted,
    /// The current room exists and matches (again, after a replacement).
    RoomReady,
    /// At `linksOpenAt`, or when the room becomes ready after it: the participants can join.
    LinksOpen,
    /// At `linksOpenAt` the room is not ready: the alarm of spec §7.
    RoomMissing,
}

impl EventType {
    /// Its name in the event's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "teleconsultation.created",
            EventType::Updated => "teleconsultation.updated",
            EventType::Deleted => "teleconsultation.deleted",
            EventType::RoomReady => "teleconsultation.room_ready",
            EventType::LinksOpen => "teleconsultation.links_open",
            EventType::RoomMissing => "teleconsultation.room_missing",
        }
    }
}

/// The event of a stored change by a caller or by the service (a lost room), `stored` being
/// the record as stored.
pub fn of_change(stored: &Teleconsultation) -> EventType {
    if stored.is_live() {
        EventType::Updated
    } else {
        EventType::Deleted
    }
}

/// The event of a room recorded by the provisioner, `stored` being the record as stored:
/// `room_ready` when the room it now has is its current one (none when the record wants
/// another meanwhile).
pub fn of_recorded_room(stored: &Teleconsultation) -> Option<EventType> {
    (stored.is_live() && room_state(stored) == RoomState::Ready).then_some(EventType::RoomReady)
}

/// Where a teleconsultation's links moment (`linksOpenAt`) stands, while it is still to be
/// told: once per start date, `links_open` (the room ready) or `room_missing` then
/// `links_open` when the room becomes ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinksMoment {
    /// Nothing told yet for this start date.
    Due,
    /// `room_missing` told; `links_open` owed.
    RoomMissing,
}

/// What the links moment of a teleconsultation comes to now: the event to tell, if any,
/// and where the moment stands after it (`None`: nothing more to tell for this start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinksMomentStep {
    pub event: Option<EventType>,
    pub next: Option<LinksMoment>,
}

/// The step of `tc`'s links moment, standing at `moment`, at `now` (links opening
/// `immutable_period_ms` before the start); `None` while there is nothing to do yet: before
/// `linksOpenAt`, while not every participant is known (its links cannot open), or while
/// the room told missing is still not ready. A deleted or ended teleconsultation is told
/// nothing more.
pub fn links_moment(
    tc: &Teleconsultation,
    moment: LinksMoment,
    now: DateTime<Utc>,
    immutable_period_ms: u64,
) -> Option<LinksMomentStep> {
    if !tc.is_live() || now >= tc.end() {
        return Some(LinksMomentStep {
            event: None,
            next: None,
        });
    }
    if !schedule::link_available(now, tc.start, immutable_period_ms) {
        return None;
    }
    match (room_state(tc), moment) {
        (RoomState::WaitingForParticipants, _) => None,
        (RoomState::Ready, _) => Some(LinksMomentStep {
            event: Some(EventType::LinksOpen),
            next: None,
        }),
        (RoomState::Preparing, LinksMoment::Due) => Some(LinksMomentStep {
            event: Some(EventType::RoomMissing),
            next: Some(LinksMoment::RoomMissing),
        }),
        (RoomState::Preparing, LinksMoment::RoomMissing) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    use crate::domain::teleconsultation::tests::{complete, provisioned};

    #[test]
    fn the_types_are_named_as_the_spec_names_them() {
        let names: Vec<_> = [
            EventType::Created,
            EventType::Updated,
            EventType::Deleted,
            EventType::RoomReady,
            EventType::LinksOpen,
            EventType::RoomMissing,
        ]
        .map(EventType::as_str)
        .into();
        assert_eq!(
            names,
            [
                "teleconsultation.created",
                "teleconsultation.updated",
                "teleconsultation.deleted",
                "teleconsultation.room_ready",
                "teleconsultation.links_open",
                "teleconsultation.room_missing",
            ]
        );
    }

    #[test]
    fn a_stored_change_is_an_update_unless_it_deletes() {
        let tc = complete();
        assert_eq!(of_change(&tc), EventType::Updated);
        let (deleted, _) = tc.deleted(chrono::Utc.timestamp_opt(1, 0).unwrap());
        assert_eq!(of_change(&deleted), EventType::Deleted);
    }

    #[test]
    fn a_recorded_room_is_ready_only_when_it_is_the_current_one() {
        let tc = complete();
        assert_eq!(
            of_recorded_room(&provisioned(&tc)),
            Some(EventType::RoomReady)
        );
        // Recorded for a spec the record no longer wants: not ready.
        let mut changed = provisioned(&tc);
        changed.room_fingerprint = Some("made-for-another-spec".into());
        assert_eq!(of_recorded_room(&changed), None);
    }

    /// A minute, in milliseconds.
    const PERIOD_MS: u64 = 60_000;

    fn step(event: Option<EventType>, next: Option<LinksMoment>) -> Option<LinksMomentStep> {
        Some(LinksMomentStep { event, next })
    }

    #[test]
    fn the_links_moment_is_told_from_links_open_at_on() {
        let ready = provisioned(&complete());
        let links_open_at = ready.start - chrono::TimeDelta::minutes(1);
        let just_before = links_open_at - chrono::TimeDelta::milliseconds(1);
        assert_eq!(
            links_moment(&ready, LinksMoment::Due, just_before, PERIOD_MS),
            None
        );
        assert_eq!(
            links_moment(&ready, LinksMoment::Due, links_open_at, PERIOD_MS),
            step(Some(EventType::LinksOpen), None)
        );
    }

    #[test]
    fn a_room_not_ready_is_told_missing_then_open_once_ready() {
        let preparing = complete();
        let at = preparing.start;
        assert_eq!(
            links_moment(&preparing, LinksMoment::Due, at, PERIOD_MS),
            step(Some(EventType::RoomMissing), Some(LinksMoment::RoomMissing))
        );
        assert_eq!(
            links_moment(&preparing, LinksMoment::RoomMissing, at, PERIOD_MS),
            None,
            "told once, then waits for the room"
        );
        assert_eq!(
            links_moment(
                &provisioned(&preparing),
                LinksMoment::RoomMissing,
                at,
                PERIOD_MS
            ),
            step(Some(EventType::LinksOpen), None)
        );
    }

    #[test]
    fn an_incomplete_one_waits_and_an_ended_or_deleted_one_is_told_nothing() {
        let mut incomplete = complete();
        incomplete.participant_count = 3;
        assert_eq!(
            links_moment(&incomplete, LinksMoment::Due, incomplete.start, PERIOD_MS),
            None
        );
        let ready = provisioned(&complete());
        assert_eq!(
            links_moment(&ready, LinksMoment::Due, ready.end(), PERIOD_MS),
            step(None, None)
        );
        let (deleted, _) = ready.deleted(ready.start);
        assert_eq!(
            links_moment(&deleted, LinksMoment::Due, ready.start, PERIOD_MS),
            step(None, None)
        );
    }
}
