//! The agenda's view of a teleconsultation (`/teleconsultations`, spec §4.12): when it is,
//! whether it can be joined now, whether its room is ready, who takes part. Never a link, a
//! Kaleyra id or groups: the agenda is for finding consultations, the join (§4.4) for joining
//! them. Pure: the time is passed in.

use chrono::{DateTime, Utc};

use super::access::AgendaViewer;
use super::roles::Role;
use super::schedule;
use super::teleconsultation::{Participant, Teleconsultation};

/// Where a teleconsultation stands in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its links are not open yet, or it is still waiting for participants.
    Scheduled,
    /// Complete, from `linksOpenAt` (inclusive) until its end (exclusive).
    Open,
    /// Its end has come, complete or not.
    Ended,
}

/// How far its Kaleyra room is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomState {
    /// Not all participants are known: no room is made yet.
    WaitingForParticipants,
    /// All are known, but the room that matches them is not made yet (being created, or
    /// replaced after a change).
    Preparing,
    /// The room exists and matches the teleconsultation as it is.
    Ready,
}

/// A participant as the agenda shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgendaParticipant {
    pub user_id: String,
    pub full_name: Option<String>,
    pub role: Role,
    pub language: Option<String>,
}

impl From<&Participant> for AgendaParticipant {
    fn from(participant: &Participant) -> Self {
        AgendaParticipant {
            user_id: participant.external_id.clone(),
            full_name: participant.full_name.clone(),
            role: participant.role,
            language: participant.language.clone(),
        }
    }
}

/// A teleconsultation as the agenda shows it (an item of the list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgendaEntry {
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The expected number of participants.
    pub number: u32,
    pub status: Status,
    /// `start − IMMUTABLE_PERIOD_MS`: from then on a complete one is open.
    pub links_open_at: DateTime<Utc>,
    pub room: RoomState,
    /// The known participants, in the order they were given.
    pub participants: Vec<AgendaParticipant>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The single view (`/teleconsultations/:roomId`): the entry, and the caller's own
/// participant entry (`None` for a `bookingGroups` caller who does not take part), so that a
/// front end learns its own role and language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgendaView {
    pub entry: AgendaEntry,
    pub you: Option<AgendaParticipant>,
}

/// Where `tc` stands at `now`, its links opening `immutable_period_ms` before its start.
pub fn status(tc: &Teleconsultation, now: DateTime<Utc>, immutable_period_ms: u64) -> Status {
    if now >= tc.end() {
        Status::Ended
    } else if tc.is_complete() && schedule::link_available(now, tc.start, immutable_period_ms) {
        Status::Open
    } else {
        Status::Scheduled
    }
}

/// How far the room of `tc` is.
pub fn room_state(tc: &Teleconsultation) -> RoomState {
    if !tc.is_complete() {
        RoomState::WaitingForParticipants
    } else if tc.room_is_current() {
        RoomState::Ready
    } else {
        RoomState::Preparing
    }
}

/// `tc` as the agenda shows it at `now`.
pub fn entry(tc: &Teleconsultation, now: DateTime<Utc>, immutable_period_ms: u64) -> AgendaEntry {
    AgendaEntry {
        id: tc.id.clone(),
        start: tc.start,
        end: tc.end(),
        number: tc.participant_count,
        status: status(tc, now, immutable_period_ms),
        links_open_at: schedule::immutable_from(tc.start, immutable_period_ms),
        room: room_state(tc),
        participants: tc
            .participants
            .iter()
            .map(AgendaParticipant::from)
            .collect(),
        created_at: tc.created_at,
        updated_at: tc.updated_at,
    }
}

/// `tc` as `viewer` sees it at `now` in the single view.
pub fn view(
    tc: &Teleconsultation,
    viewer: AgendaViewer<'_>,
    now: DateTime<Utc>,
    immutable_period_ms: u64,
) -> AgendaView {
    AgendaView {
        entry: entry(tc, now, immutable_period_ms),
        you: match viewer {
            AgendaViewer::Participant(participant) => Some(participant.into()),
            AgendaViewer::Booking => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;
    use crate::domain::schedule::Schedule;
    use crate::domain::teleconsultation::tests::{person, rules};

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    const START: i64 = 2_000_000_000;
    const END: i64 = START + 1800;
    /// Ten minutes, in milliseconds.
    const PERIOD_MS: u64 = 600_000;

    /// `number` participants expected, those of `known` given, its room planned.
    fn booking(number: u32, known: &[(&str, Role)]) -> Teleconsultation {
        let schedule = Schedule {
            start: at(START),
            duration_secs: 1800,
        };
        let participants = known.iter().map(|(id, role)| person(id, *role)).collect();
        let mut tc = Teleconsultation::new(
            "64b000000000000000000001".into(),
            number,
            schedule,
            participants,
            at(1_000),
            Some("booking".into()),
        );
        tc.plan_room(&rules(), at(1_000)).unwrap();
        tc
    }

    fn complete() -> Teleconsultation {
        booking(2, &[("doc", Role::Plus), ("pat", Role::Basic)])
    }

    /// `tc` with the room made for its current spec.
    fn with_room(tc: &Teleconsultation) -> Teleconsultation {
        let fingerprint = tc.desired_room.as_ref().unwrap().fingerprint();
        tc.switched_to("room_1", fingerprint, &[("tc_doc", "https://l/doc")])
            .0
    }

    fn just_before(instant: DateTime<Utc>) -> DateTime<Utc> {
        instant - TimeDelta::milliseconds(1)
    }

    #[test]
    fn a_complete_one_is_open_from_its_links_until_its_end() {
        let tc = complete();
        let opens = at(START - 600);
        assert_eq!(status(&tc, at(0), PERIOD_MS), Status::Scheduled);
        assert_eq!(
            status(&tc, just_before(opens), PERIOD_MS),
            Status::Scheduled
        );
        assert_eq!(status(&tc, opens, PERIOD_MS), Status::Open);
        assert_eq!(status(&tc, just_before(at(END)), PERIOD_MS), Status::Open);
        assert_eq!(status(&tc, at(END), PERIOD_MS), Status::Ended);
        // Without an immutable period, the links open at the start.
        assert_eq!(status(&tc, just_before(at(START)), 0), Status::Scheduled);
        assert_eq!(status(&tc, at(START), 0), Status::Open);
    }

    #[test]
    fn an_incomplete_one_is_never_open_but_ends() {
        let tc = booking(3, &[("doc", Role::Plus), ("pat", Role::Basic)]);
        assert_eq!(status(&tc, at(START - 600), PERIOD_MS), Status::Scheduled);
        assert_eq!(status(&tc, at(START), PERIOD_MS), Status::Scheduled);
        assert_eq!(
            status(&tc, just_before(at(END)), PERIOD_MS),
            Status::Scheduled
        );
        assert_eq!(status(&tc, at(END), PERIOD_MS), Status::Ended);
    }

    #[test]
    fn the_room_is_ready_only_when_the_current_room_exists() {
        let incomplete = booking(3, &[("doc", Role::Plus)]);
        assert_eq!(room_state(&incomplete), RoomState::WaitingForParticipants);
        let planned = complete();
        assert_eq!(room_state(&planned), RoomState::Preparing);
        let made = with_room(&planned);
        assert_eq!(room_state(&made), RoomState::Ready);
        // A change of roles wants another room: the one it has is awaiting replacement.
        let mut changed = made.clone();
        changed.participants[1].role = Role::Plus;
        changed.plan_room(&rules(), at(2_000)).unwrap();
        assert_eq!(changed.room_id.as_deref(), Some("room_1"));
        assert_eq!(room_state(&changed), RoomState::Preparing);
    }

    #[test]
    fn the_entry_shows_no_link_kaleyra_id_or_groups() {
        let mut tc = with_room(&complete());
        tc.participants[0].full_name = Some("Dr Who".into());
        tc.participants[0].language = Some("it".into());
        tc.participants[0].groups = vec!["doctor".into()];
        tc.updated_at = at(1_500);
        assert_eq!(
            entry(&tc, at(0), PERIOD_MS),
            AgendaEntry {
                id: "64b000000000000000000001".into(),
                start: at(START),
                end: at(END),
                number: 2,
                status: Status::Scheduled,
                links_open_at: at(START - 600),
                room: RoomState::Ready,
                participants: vec![
                    AgendaParticipant {
                        user_id: "doc".into(),
                        full_name: Some("Dr Who".into()),
                        role: Role::Plus,
                        language: Some("it".into()),
                    },
                    AgendaParticipant {
                        user_id: "pat".into(),
                        full_name: None,
                        role: Role::Basic,
                        language: None,
                    },
                ],
                created_at: at(1_000),
                updated_at: at(1_500),
            }
        );
    }

    #[test]
    fn the_view_names_the_caller_when_it_takes_part() {
        let tc = complete();
        let as_patient = view(
            &tc,
            AgendaViewer::Participant(&tc.participants[1]),
            at(0),
            PERIOD_MS,
        );
        assert_eq!(as_patient.entry, entry(&tc, at(0), PERIOD_MS));
        assert_eq!(as_patient.you, Some((&tc.participants[1]).into()));
        let as_booking = view(&tc, AgendaViewer::Booking, at(0), PERIOD_MS);
        assert_eq!(as_booking.you, None);
    }
}
