//! The agenda's view of a teleconsultation (`/teleconsultations`, spec §4.12): when it is,
//! whether it can be joined now, whether its room is ready, who takes part. Never a link, a
//! Kaleyra id or groups: the agenda is for finding consultations, the join (§4.4) for joining
//! them. Pure: the time is passed in.

use chrono::{DateTime, Utc};

use super::access::AgendaViewer;
use super::roles::Role;
use super::schedule;
use super::teleconsultation::{Participant, Teleconsultation};

/// A place in the agenda's order (start, then id): the last item of a page. The next page
/// starts strictly after it, so an item that stays where it is is never shown twice nor
/// skipped, whatever is added, moved or deleted around it between pages. (The list's
/// cursor carries it: `agenda_query`.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub start: DateTime<Utc>,
    pub id: String,
}

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
    status_of(
        tc.start,
        tc.end(),
        tc.is_complete(),
        now,
        immutable_period_ms,
    )
}

/// [`status`] from what it reads of a teleconsultation: its start, its end and whether it
/// is complete.
fn status_of(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    complete: bool,
    now: DateTime<Utc>,
    immutable_period_ms: u64,
) -> Status {
    if now >= end {
        Status::Ended
    } else if complete && schedule::link_available(now, start, immutable_period_ms) {
        Status::Open
    } else {
        Status::Scheduled
    }
}

/// A status as [`status`] gives it at `now`, the links opening `immutable_period_ms` before
/// the start: what the list's `status` filter asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusAt {
    pub status: Status,
    pub now: DateTime<Utc>,
    pub immutable_period_ms: u64,
}

/// What the agenda list's order and filters read of a teleconsultation: its place in the
/// order (start, then id), its end, and whether it is complete. Not its participants: a
/// participant's list of these is small enough to keep in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgendaItem {
    pub start: DateTime<Utc>,
    pub id: String,
    pub end: DateTime<Utc>,
    /// As many participants known as expected.
    pub complete: bool,
}

impl AgendaItem {
    pub fn of(tc: &Teleconsultation) -> Self {
        AgendaItem {
            start: tc.start,
            id: tc.id.clone(),
            end: tc.end(),
            complete: tc.is_complete(),
        }
    }

    /// Whether it is what the list reads of `tc` (no allocation, unlike comparing with
    /// [`AgendaItem::of`]).
    pub fn describes(&self, tc: &Teleconsultation) -> bool {
        self.id == tc.id
            && self.start == tc.start
            && self.end == tc.end()
            && self.complete == tc.is_complete()
    }

    pub fn status(&self, now: DateTime<Utc>, immutable_period_ms: u64) -> Status {
        status_of(
            self.start,
            self.end,
            self.complete,
            now,
            immutable_period_ms,
        )
    }

    /// Whether it comes at or before `position` in the list's order.
    fn is_at_or_before(&self, position: &Position) -> bool {
        (self.start, self.id.as_str()) <= (position.start, position.id.as_str())
    }
}

/// Which teleconsultations a page of the agenda list holds, besides whose they are (spec
/// §4.12): start dates in `[from, to)`, strictly after `after` in (start, id) order, with
/// `status`. The store decides the same in SQL (`agenda_page_statement`) where it reads a
/// page off an index; this decides it for a list kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgendaFilter<'a> {
    /// Start dates from this instant on (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Start dates before this instant (exclusive).
    pub to: Option<DateTime<Utc>>,
    pub status: Option<StatusAt>,
    /// Only the teleconsultations after this position in (start, id) order.
    pub after: Option<&'a Position>,
}

impl AgendaFilter<'_> {
    pub fn admits(&self, item: &AgendaItem) -> bool {
        !self.is_before_the_first(item) && !self.is_past_the_last(item) && self.has_status(item)
    }

    /// The first `limit` of `items` (in the list's order) that it admits. Skips what comes
    /// before the first place it admits by a binary search, and stops at `to`.
    pub fn page<'i>(
        &self,
        items: &'i [AgendaItem],
        limit: usize,
    ) -> impl Iterator<Item = &'i AgendaItem> {
        let first = items.partition_point(|item| self.is_before_the_first(item));
        items[first..]
            .iter()
            .take_while(|item| !self.is_past_the_last(item))
            .filter(|item| self.has_status(item))
            .take(limit)
    }

    /// Before `from`, or at or before `after`: true for a leading run of a list in order.
    fn is_before_the_first(&self, item: &AgendaItem) -> bool {
        self.from.is_some_and(|from| item.start < from)
            || self.after.is_some_and(|after| item.is_at_or_before(after))
    }

    /// At or after `to`: true for a trailing run of a list in order.
    fn is_past_the_last(&self, item: &AgendaItem) -> bool {
        self.to.is_some_and(|to| item.start >= to)
    }

    fn has_status(&self, item: &AgendaItem) -> bool {
        self.status.is_none_or(|wanted| {
            item.status(wanted.now, wanted.immutable_period_ms) == wanted.status
        })
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

    /// Items of 30 minutes at START + `offsets` (seconds), complete unless named in
    /// `incomplete`, their ids `i<n>` in the list's order.
    fn items(offsets: &[i64], incomplete: &[usize]) -> Vec<AgendaItem> {
        offsets
            .iter()
            .enumerate()
            .map(|(n, offset)| AgendaItem {
                start: at(START + offset),
                id: format!("i{n}"),
                end: at(START + offset + 1800),
                complete: !incomplete.contains(&n),
            })
            .collect()
    }

    /// The ids of the page of at most `limit` of `items` that `filter` gives, checked
    /// against [`AgendaFilter::admits`] item by item.
    fn page(items: &[AgendaItem], filter: AgendaFilter<'_>, limit: usize) -> Vec<String> {
        let paged: Vec<String> = filter
            .page(items, limit)
            .map(|item| item.id.clone())
            .collect();
        let admitted: Vec<String> = items
            .iter()
            .filter(|item| filter.admits(item))
            .take(limit)
            .map(|item| item.id.clone())
            .collect();
        assert_eq!(paged, admitted, "page and admits agree");
        paged
    }

    fn named(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn the_filter_takes_starts_from_from_inclusive_to_to_exclusive() {
        let list = items(&[0, 3600, 7200], &[]);
        let ms = TimeDelta::milliseconds(1);
        let us = TimeDelta::microseconds(1);
        let hour = at(START + 3600);
        for (from, to, expected) in [
            (Some(hour), None, named(&["i1", "i2"])),
            (Some(hour + ms), None, named(&["i2"])),
            // A bound finer than the stored milliseconds: to the microsecond.
            (Some(hour + us), None, named(&["i2"])),
            (Some(hour - us), None, named(&["i1", "i2"])),
            (None, Some(hour), named(&["i0"])),
            (None, Some(hour + us), named(&["i0", "i1"])),
            (None, Some(hour + ms), named(&["i0", "i1"])),
            (
                Some(at(START)),
                Some(at(START + 7200)),
                named(&["i0", "i1"]),
            ),
            (Some(at(START + 7200) + ms), None, named(&[])),
            (None, Some(at(START)), named(&[])),
            (None, None, named(&["i0", "i1", "i2"])),
        ] {
            let filter = AgendaFilter {
                from,
                to,
                ..AgendaFilter::default()
            };
            assert_eq!(page(&list, filter, 10), expected, "{from:?} {to:?}");
        }
    }

    #[test]
    fn the_filter_takes_what_comes_strictly_after_the_cursor() {
        // Two at the same start: by id.
        let list = items(&[0, 3600, 3600, 7200], &[]);
        let position = |n: usize| Position {
            start: list[n].start,
            id: list[n].id.clone(),
        };
        let after = |position: &Position| {
            page(
                &list,
                AgendaFilter {
                    after: Some(position),
                    ..AgendaFilter::default()
                },
                10,
            )
        };
        assert_eq!(after(&position(0)), named(&["i1", "i2", "i3"]));
        assert_eq!(after(&position(1)), named(&["i2", "i3"]));
        assert_eq!(after(&position(3)), named(&[]));
        // A position that is no item's (it moved or went): what comes after its place.
        let between = Position {
            start: list[1].start,
            id: "i1z".into(),
        };
        assert_eq!(after(&between), named(&["i2", "i3"]));
        let earlier = Position {
            start: list[1].start - TimeDelta::milliseconds(1),
            id: "zzz".into(),
        };
        assert_eq!(after(&earlier), named(&["i1", "i2", "i3"]));
        // With `from` and `to`, the later of the lower bounds counts.
        let both = AgendaFilter {
            from: Some(at(START + 3600)),
            to: Some(at(START + 7200)),
            after: Some(&position(0)),
            ..AgendaFilter::default()
        };
        assert_eq!(page(&list, both, 10), named(&["i1", "i2"]));
        let both = AgendaFilter {
            after: Some(&position(1)),
            ..both
        };
        assert_eq!(page(&list, both, 10), named(&["i2"]));
    }

    #[test]
    fn the_filter_takes_each_status_at_its_edges() {
        // i0 complete, i1 incomplete, both at START; i2 ended long before.
        let list = items(&[0, 0, -86_400], &[1]);
        let list = [list[2].clone(), list[0].clone(), list[1].clone()];
        let opens = at(START - 600);
        let end = at(END);
        let ms = TimeDelta::milliseconds(1);
        let us = TimeDelta::microseconds(1);
        for (now, expected) in [
            (
                at(START - 3600),
                [named(&["i0", "i1"]), named(&[]), named(&["i2"])],
            ),
            (
                opens - ms,
                [named(&["i0", "i1"]), named(&[]), named(&["i2"])],
            ),
            (
                opens - us,
                [named(&["i0", "i1"]), named(&[]), named(&["i2"])],
            ),
            (opens, [named(&["i1"]), named(&["i0"]), named(&["i2"])]),
            (end - us, [named(&["i1"]), named(&["i0"]), named(&["i2"])]),
            (end, [named(&[]), named(&[]), named(&["i2", "i0", "i1"])]),
        ] {
            for (status, expected) in [Status::Scheduled, Status::Open, Status::Ended]
                .into_iter()
                .zip(expected)
            {
                let filter = AgendaFilter {
                    status: Some(StatusAt {
                        status,
                        now,
                        immutable_period_ms: PERIOD_MS,
                    }),
                    ..AgendaFilter::default()
                };
                assert_eq!(page(&list, filter, 10), expected, "{status:?} at {now}");
                // The item's status is the entry's.
                for item in &list {
                    if expected.contains(&item.id) {
                        assert_eq!(item.status(now, PERIOD_MS), status);
                    }
                }
            }
        }
    }

    #[test]
    fn a_page_is_the_first_items_admitted_up_to_the_limit() {
        let list = items(&[0, 60, 120, 180, 240], &[1, 3]);
        let scheduled = AgendaFilter {
            status: Some(StatusAt {
                status: Status::Open,
                now: at(START),
                immutable_period_ms: PERIOD_MS,
            }),
            from: Some(at(START + 30)),
            ..AgendaFilter::default()
        };
        assert_eq!(page(&list, scheduled, 1), named(&["i2"]));
        assert_eq!(page(&list, scheduled, 2), named(&["i2", "i4"]));
        assert_eq!(page(&list, scheduled, 0), named(&[]));
        assert_eq!(page(&[], scheduled, 5), named(&[]));
    }

    #[test]
    fn an_item_describes_its_teleconsultation_as_it_is() {
        let tc = complete();
        let item = AgendaItem::of(&tc);
        assert!(item.describes(&tc));
        assert_eq!(
            item.status(at(START), PERIOD_MS),
            status(&tc, at(START), PERIOD_MS)
        );
        let mut moved = tc.clone();
        moved.start = at(START + 60);
        assert!(!item.describes(&moved));
        let mut longer = tc.clone();
        longer.duration_secs += 60;
        assert!(!item.describes(&longer));
        let mut waiting = tc.clone();
        waiting.participant_count = 3;
        assert!(!item.describes(&waiting));
    }
}
