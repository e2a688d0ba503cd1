//! The pure parts of the events sent to the platform (spec §9): which event a stored change
//! makes, how an event is signed and when a failed delivery is tried again. Storing and
//! sending them is not here.

pub mod retry;
pub mod signature;

use crate::domain::agenda::{RoomState, room_state};
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
}
