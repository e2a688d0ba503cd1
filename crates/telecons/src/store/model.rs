//! The records the store keeps (spec §8).

use chrono::{DateTime, Utc};

use crate::domain::room_spec::RoomSpec;
use crate::domain::roster::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeleconsultationState {
    Active,
    /// Kept for the record; invisible to the API (404).
    Deleted,
}

impl TeleconsultationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
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
    /// Set while a room for this fingerprint is being created (see
    /// [`super::Store::mark_room_creation`]). Read-only here: versioned updates leave it alone.
    pub creating_fingerprint: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub updated_by: Option<String>,
}

impl Teleconsultation {
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
        self.state == TeleconsultationState::Active
            && self.desired_room.is_some()
            && !self.room_is_current()
    }

    pub fn participant(&self, external_id: &str) -> Option<&Participant> {
        self.participants
            .iter()
            .find(|p| p.external_id == external_id)
    }
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

/// The map external id → Kaleyra user.
#[derive(Debug, Clone, PartialEq)]
pub struct KaleyraUser {
    pub external_id: String,
    pub kaleyra_user_id: String,
    /// The role the Kaleyra user has (only ever goes up).
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A Kaleyra room waiting to be deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomDeletion {
    pub room_id: String,
    pub teleconsultation_id: Option<String>,
    pub due_at: DateTime<Utc>,
    pub attempts: u32,
}

/// Work the provisioner has not finished, for metrics and the check-up route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Teleconsultations with users or a room still to create.
    pub teleconsultations: u64,
    /// Of those, the ones whose links should already be available (start − period passed).
    pub rooms_missing_at_start: u64,
    /// Rooms still to delete on Kaleyra.
    pub room_deletions: u64,
}
