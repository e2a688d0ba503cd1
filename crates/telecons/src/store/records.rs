//! The store's own records besides the teleconsultation (spec §8): the user map, the room
//! deletion queue and the provisioning backlog.

use chrono::{DateTime, Utc};

use crate::domain::roster::Role;

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

/// A provisioning lease: only `owner` works on a teleconsultation until `until` (several
/// instances share one database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until: DateTime<Utc>,
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

/// Which program made a database: the service, or `telecons demo` (whose Kaleyra is a
/// simulator). Neither starts on the other's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallationMode {
    Service,
    Demo,
}

/// This database's installation, made once by the first instance that starts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// 16 lowercase hex (64 random bits), in every room tag.
    pub id: String,
    pub mode: InstallationMode,
    pub created_at: DateTime<Utc>,
}
