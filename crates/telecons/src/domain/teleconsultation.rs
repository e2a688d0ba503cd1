//! The central entity: a booked teleconsultation, the room it should have and the room it
//! has, and the rules that decide between them. Pure: the time is passed in.

use chrono::{DateTime, Utc};

use super::roles::{Role, has_plus};
use super::room_spec::{RoomRules, RoomSpec};
use super::schedule::Schedule;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeleconsultationState {
    Active,
    /// Kept for the record; invisible to the API (404).
    Deleted,
}

/// A booking. `version` grows by one with every stored change (optimistic concurrency).
#[derive(Debug, Clone, PartialEq)]
pub struct Teleconsultation {
    pub id: String,
    pub version: i64,
    pub state: TeleconsultationState,
    /// The expected number of participants (`participants.number`).
    pub participant_count: u32,
    pub start: DateTime<Utc>,
    pub duration_secs: i64,
    /// The participants known so far, in the order they were given.
    pub participants: Vec<Participant>,
    /// The room it should have: `None` while the list is incomplete, and once deleted.
    pub desired_room: Option<RoomSpec>,
    /// The Kaleyra room it has, if any, and the fingerprint of the spec it was made for.
    pub room_id: Option<String>,
    pub room_fingerprint: Option<String>,
    /// Set while the provisioner has work to do for it (users or a room to create): from
    /// then on background workers retry it until it is done.
    pub provision_due_at: Option<DateTime<Utc>>,
    /// Set while a room for this fingerprint is being created (the store's creation mark).
    /// Read-only here: versioned updates leave it alone.
    pub creating_fingerprint: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub updated_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Participant {
    pub external_id: String,
    pub kaleyra_user_id: String,
    /// The role for this booking (from the groups given for it).
    pub role: Role,
    pub groups: Vec<String>,
    pub full_name: Option<String>,
    pub language: Option<String>,
    /// The participant's personal link in the current room.
    pub link: Option<String>,
}

/// A complete participant list without a plus user: no room can be made for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no plus user in room")]
pub struct NoPlusUser;

/// Why a participant cannot be added (both are 409s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddParticipantError {
    #[error("all {number} participants of teleconsultation {id} are already known")]
    Complete { id: String, number: u32 },
    #[error("user {user} is already a participant of teleconsultation {id}")]
    AlreadyPresent { id: String, user: String },
}

impl Teleconsultation {
    /// A new booking, as first stored: version 1, live, no room planned yet (see
    /// [`Self::plan_room`]).
    pub fn new(
        id: String,
        participant_count: u32,
        schedule: Schedule,
        participants: Vec<Participant>,
        now: DateTime<Utc>,
        created_by: Option<String>,
    ) -> Teleconsultation {
        Teleconsultation {
            id,
            version: 1,
            state: TeleconsultationState::Active,
            participant_count,
            start: schedule.start,
            duration_secs: schedule.duration_secs,
            participants,
            desired_room: None,
            room_id: None,
            room_fingerprint: None,
            provision_due_at: None,
            creating_fingerprint: None,
            created_at: now,
            updated_at: now,
            updated_by: created_by.clone(),
            created_by,
        }
    }

    pub fn is_live(&self) -> bool {
        self.state == TeleconsultationState::Active
    }

    /// The planned end: start + duration.
    pub fn end(&self) -> DateTime<Utc> {
        Schedule {
            start: self.start,
            duration_secs: self.duration_secs,
        }
        .end()
    }

    pub fn is_complete(&self) -> bool {
        self.participants.len() == self.participant_count as usize
    }

    /// The room it has is the room it should have (not one awaiting replacement).
    pub fn room_is_current(&self) -> bool {
        match (&self.desired_room, &self.room_fingerprint) {
            (Some(spec), Some(fingerprint)) => {
                self.room_id.is_some() && spec.fingerprint() == *fingerprint
            }
            _ => false,
        }
    }

    /// A room should be created (first, or to replace one that no longer matches).
    pub fn needs_room(&self) -> bool {
        self.is_live() && self.desired_room.is_some() && !self.room_is_current()
    }

    /// Whether it still wants a room made for the spec with this fingerprint.
    pub fn wants_room(&self, fingerprint: &str) -> bool {
        self.needs_room()
            && self
                .desired_room
                .as_ref()
                .is_some_and(|spec| spec.fingerprint() == fingerprint)
    }

    pub fn participant(&self, external_id: &str) -> Option<&Participant> {
        self.participants
            .iter()
            .find(|p| p.external_id == external_id)
    }

    /// Whether `next` books the same thing as `self`: same participants, count, start and
    /// duration. Such a change needs no write at all (no version bump, no provisioning).
    pub fn books_the_same_as(&self, next: &Teleconsultation) -> bool {
        next.participant_count == self.participant_count
            && next.start == self.start
            && next.duration_secs == self.duration_secs
            && next.participants == self.participants
    }

    /// Derives the room it should have from its participants, and marks the work for the
    /// provisioner at `now`. Returns the rooms to retire (its room, when the list became
    /// incomplete). A complete list without a plus user is refused.
    pub fn plan_room(
        &mut self,
        rules: &RoomRules,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, NoPlusUser> {
        if !self.is_complete() {
            self.desired_room = None;
            let retired: Vec<String> = self.room_id.take().into_iter().collect();
            self.room_fingerprint = None;
            self.forget_links();
            // Users to create, or a room creation whose answer was lost to clean up.
            let work = !self.participants.is_empty() || self.creating_fingerprint.is_some();
            self.provision_due_at = work.then_some(now);
            return Ok(retired);
        }
        if !has_plus(self.participants.iter().map(|p| p.role)) {
            return Err(NoPlusUser);
        }
        let members: Vec<(String, Role)> = self
            .participants
            .iter()
            .map(|p| (p.kaleyra_user_id.clone(), p.role))
            .collect();
        self.desired_room = Some(RoomSpec::new(&members, self.duration_secs, rules));
        self.provision_due_at = Some(now);
        Ok(Vec::new())
    }

    /// `self` with `participant` added at the end of the list.
    pub fn with_participant(
        &self,
        participant: Participant,
    ) -> Result<Teleconsultation, AddParticipantError> {
        if self.is_complete() {
            return Err(AddParticipantError::Complete {
                id: self.id.clone(),
                number: self.participant_count,
            });
        }
        if self.participant(&participant.external_id).is_some() {
            return Err(AddParticipantError::AlreadyPresent {
                id: self.id.clone(),
                user: participant.external_id,
            });
        }
        let mut next = self.clone();
        next.participants.push(participant);
        Ok(next)
    }

    /// `self` marked deleted at `now`: no room wanted, none kept, no links. Returns it with
    /// the room to retire.
    pub fn deleted(&self, now: DateTime<Utc>) -> (Teleconsultation, Vec<String>) {
        let mut next = self.clone();
        next.state = TeleconsultationState::Deleted;
        next.desired_room = None;
        let retired: Vec<String> = next.room_id.take().into_iter().collect();
        next.room_fingerprint = None;
        // A room creation whose answer was lost may have left a room behind: the
        // provisioner looks for it (and deletes it) before forgetting this one.
        next.provision_due_at = self.creating_fingerprint.as_ref().map(|_| now);
        next.forget_links();
        (next, retired)
    }

    /// Records `room_id` (made for the spec with `fingerprint`) as its room, with each
    /// participant's link from `links` (Kaleyra user id, link). Returns the room it retires.
    pub fn switched_to(
        &self,
        room_id: &str,
        fingerprint: &str,
        links: &[(&str, &str)],
    ) -> (Teleconsultation, Vec<String>) {
        let mut next = self.clone();
        let retired: Vec<String> = next
            .room_id
            .replace(room_id.to_owned())
            .into_iter()
            .collect();
        next.room_fingerprint = Some(fingerprint.to_owned());
        next.provision_due_at = None;
        for participant in &mut next.participants {
            participant.link = links
                .iter()
                .find(|(user, _)| *user == participant.kaleyra_user_id)
                .map(|(_, link)| (*link).to_owned());
        }
        (next, retired)
    }

    /// `self` after Kaleyra lost `room_id` (deleted on its side): if it is still its room,
    /// it has none now and wants its room made again (its links are gone with it). Returns
    /// it with the room to retire (the deletion confirms it is gone); `None` when `room_id`
    /// is not its room.
    pub fn room_lost(
        &self,
        room_id: &str,
        now: DateTime<Utc>,
    ) -> Option<(Teleconsultation, Vec<String>)> {
        if !self.is_live() || self.room_id.as_deref() != Some(room_id) {
            return None;
        }
        let mut next = self.clone();
        let retired: Vec<String> = next.room_id.take().into_iter().collect();
        next.room_fingerprint = None;
        next.forget_links();
        next.provision_due_at = next.desired_room.is_some().then_some(now);
        Some((next, retired))
    }

    fn forget_links(&mut self) {
        for participant in &mut self.participants {
            participant.link = None;
        }
    }
}

/// `participants` (a new list for `current`) with the links of those given again with the
/// same Kaleyra user: they stay valid while the room stays the same.
pub fn keep_links(
    current: &Teleconsultation,
    mut participants: Vec<Participant>,
) -> Vec<Participant> {
    for participant in &mut participants {
        participant.link = current
            .participant(&participant.external_id)
            .filter(|old| old.kaleyra_user_id == participant.kaleyra_user_id)
            .and_then(|old| old.link.clone());
    }
    participants
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::roles::Privileges;
    use crate::domain::room_spec::{Recording, RoomSettings};

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    /// Room rules with the default privileges, unlimited live rooms and no recording.
    pub(crate) fn rules() -> RoomRules {
        RoomRules {
            privileges: Privileges::default(),
            settings: RoomSettings {
                unlimited: true,
                live: true,
                recording: Recording::None,
            },
        }
    }

    /// A participant with no groups, name or link yet.
    pub(crate) fn person(id: &str, role: Role) -> Participant {
        Participant {
            external_id: id.into(),
            kaleyra_user_id: format!("tc_{id}"),
            role,
            groups: vec![],
            full_name: None,
            language: None,
            link: None,
        }
    }

    fn booking(number: u32, participants: Vec<Participant>) -> Teleconsultation {
        let schedule = Schedule {
            start: at(2_000_000_000),
            duration_secs: 1800,
        };
        Teleconsultation::new(
            "64b000000000000000000001".into(),
            number,
            schedule,
            participants,
            at(1_900_000_000),
            None,
        )
    }

    /// Doctor and patient, complete, its room planned.
    pub(crate) fn complete() -> Teleconsultation {
        let mut tc = booking(
            2,
            vec![person("doc", Role::Plus), person("pat", Role::Basic)],
        );
        tc.plan_room(&rules(), at(1)).unwrap();
        tc
    }

    /// `tc` with a room made for its current spec.
    pub(crate) fn provisioned(tc: &Teleconsultation) -> Teleconsultation {
        let fingerprint = tc.desired_room.as_ref().unwrap().fingerprint();
        tc.switched_to(
            "room_1",
            fingerprint,
            &[("tc_doc", "https://l/doc"), ("tc_pat", "https://l/pat")],
        )
        .0
    }

    #[test]
    fn an_incomplete_list_wants_no_room_but_its_users() {
        let mut tc = booking(3, vec![person("doc", Role::Plus)]);
        assert_eq!(tc.plan_room(&rules(), at(5)), Ok(vec![]));
        assert!(!tc.is_complete());
        assert_eq!(tc.desired_room, None);
        assert!(!tc.needs_room());
        assert_eq!(
            tc.provision_due_at,
            Some(at(5)),
            "its user is to be created"
        );
        let mut empty = booking(3, vec![]);
        empty.plan_room(&rules(), at(5)).unwrap();
        assert_eq!(empty.provision_due_at, None, "nothing to do");
    }

    #[test]
    fn a_complete_list_wants_a_room_and_needs_a_plus_user() {
        let tc = complete();
        assert!(tc.is_complete());
        assert!(tc.needs_room());
        assert!(!tc.room_is_current());
        assert_eq!(tc.provision_due_at, Some(at(1)));
        let mut basic_only = booking(2, vec![person("a", Role::Basic), person("b", Role::Basic)]);
        assert_eq!(basic_only.plan_room(&rules(), at(1)), Err(NoPlusUser));
    }

    #[test]
    fn a_switched_room_is_current_and_carries_the_links() {
        let tc = provisioned(&complete());
        assert!(tc.room_is_current());
        assert!(!tc.needs_room());
        assert_eq!(tc.provision_due_at, None);
        assert_eq!(tc.participants[1].link.as_deref(), Some("https://l/pat"));
        let fingerprint = tc.room_fingerprint.clone().unwrap();
        let (again, retired) = tc.switched_to("room_2", &fingerprint, &[]);
        assert_eq!(retired, vec!["room_1".to_owned()]);
        assert_eq!(again.room_id.as_deref(), Some("room_2"));
    }

    #[test]
    fn a_changed_spec_makes_the_room_stale_until_replaced() {
        let mut tc = provisioned(&complete());
        tc.participants[1].role = Role::Plus;
        tc.plan_room(&rules(), at(2)).unwrap();
        assert!(!tc.room_is_current(), "awaiting replacement");
        assert!(tc.needs_room());
        let fingerprint = tc.desired_room.as_ref().unwrap().fingerprint();
        assert!(tc.wants_room(fingerprint));
        assert!(!tc.wants_room("0000000000000000"));
    }

    #[test]
    fn a_list_made_incomplete_retires_its_room_and_links() {
        let mut tc = provisioned(&complete());
        tc.participant_count = 3;
        let retired = tc.plan_room(&rules(), at(3)).unwrap();
        assert_eq!(retired, vec!["room_1".to_owned()]);
        assert_eq!(tc.room_id, None);
        assert!(tc.participants.iter().all(|p| p.link.is_none()));
    }

    #[test]
    fn deleting_retires_the_room_and_looks_for_lost_creations() {
        let tc = provisioned(&complete());
        let (deleted, retired) = tc.deleted(at(9));
        assert!(!deleted.is_live());
        assert!(!deleted.needs_room());
        assert_eq!(retired, vec!["room_1".to_owned()]);
        assert_eq!(deleted.provision_due_at, None);
        assert!(deleted.participants.iter().all(|p| p.link.is_none()));
        let mut creating = complete();
        creating.creating_fingerprint = Some("0123456789abcdef".into());
        assert_eq!(creating.deleted(at(9)).0.provision_due_at, Some(at(9)));
    }

    #[test]
    fn a_room_kaleyra_lost_is_wanted_again() {
        let tc = provisioned(&complete());
        assert_eq!(tc.room_lost("room_other", at(7)), None);
        let (next, retired) = tc.room_lost("room_1", at(7)).unwrap();
        assert_eq!(retired, vec!["room_1".to_owned()]);
        assert_eq!(next.room_id, None);
        assert!(next.needs_room());
        assert_eq!(next.provision_due_at, Some(at(7)));
        assert!(next.participants.iter().all(|p| p.link.is_none()));
        let (deleted, _) = tc.deleted(at(8));
        assert_eq!(deleted.room_lost("room_1", at(9)), None);
    }

    #[test]
    fn participants_are_added_once_and_only_while_missing() {
        let tc = booking(2, vec![person("doc", Role::Plus)]);
        assert!(matches!(
            tc.with_participant(person("doc", Role::Plus)),
            Err(AddParticipantError::AlreadyPresent { .. })
        ));
        let full = tc.with_participant(person("pat", Role::Basic)).unwrap();
        assert_eq!(full.participants.len(), 2);
        let err = full
            .with_participant(person("other", Role::Basic))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "all 2 participants of teleconsultation 64b000000000000000000001 are already known"
        );
    }

    #[test]
    fn links_are_kept_for_the_same_kaleyra_user_only() {
        let current = provisioned(&complete());
        let mut moved = person("pat", Role::Basic);
        moved.kaleyra_user_id = "tc_other".into();
        let kept = keep_links(&current, vec![person("doc", Role::Plus), moved]);
        assert_eq!(kept[0].link.as_deref(), Some("https://l/doc"));
        assert_eq!(kept[1].link, None);
    }

    #[test]
    fn the_same_booking_is_recognised() {
        let current = complete();
        let mut next = current.clone();
        next.updated_by = Some("someone".into());
        assert!(current.books_the_same_as(&next));
        next.start = at(3);
        assert!(!current.books_the_same_as(&next));
    }
}
