//! The §4.12 view of a teleconsultation in JSON: in the agenda's answers and, as it was when
//! it happened, in every event's `data` (spec §9). One set of types, so that the two never
//! differ.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::agenda::{AgendaEntry, AgendaParticipant, RoomState, Status};
use crate::domain::roles::Role;
use crate::domain::schedule::format_instant;

/// Where a teleconsultation stands in time: `open` from `linksOpenAt` (inclusive; complete
/// teleconsultations only) until `endDate` (exclusive), `ended` from `endDate` on (complete or
/// not), else `scheduled`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgendaStatusBody {
    Scheduled,
    Open,
    Ended,
}

impl From<Status> for AgendaStatusBody {
    fn from(status: Status) -> Self {
        match status {
            Status::Scheduled => AgendaStatusBody::Scheduled,
            Status::Open => AgendaStatusBody::Open,
            Status::Ended => AgendaStatusBody::Ended,
        }
    }
}

/// How far the Kaleyra room is: `waiting_for_participants` while not all participants are
/// known, `ready` when the room matching the participants exists, else `preparing` (being
/// created or replaced).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgendaRoomBody {
    WaitingForParticipants,
    Preparing,
    Ready,
}

impl From<RoomState> for AgendaRoomBody {
    fn from(room: RoomState) -> Self {
        match room {
            RoomState::WaitingForParticipants => AgendaRoomBody::WaitingForParticipants,
            RoomState::Preparing => AgendaRoomBody::Preparing,
            RoomState::Ready => AgendaRoomBody::Ready,
        }
    }
}

/// A participant's role for this teleconsultation (from its groups and `privileges`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgendaRoleBody {
    Plus,
    Basic,
}

impl From<Role> for AgendaRoleBody {
    fn from(role: Role) -> Self {
        match role {
            Role::Plus => AgendaRoleBody::Plus,
            Role::Basic => AgendaRoleBody::Basic,
        }
    }
}

/// A participant as the agenda shows it: no link, no Kaleyra id, no groups.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgendaParticipantBody {
    #[serde(rename = "userId")]
    pub user_id: String,
    /// Always present, null when unknown.
    #[serde(rename = "fullName")]
    #[schema(required = true)]
    pub full_name: Option<String>,
    pub role: AgendaRoleBody,
    /// As given at booking; always present, null when none was given.
    #[schema(example = "it", required = true)]
    pub language: Option<String>,
}

impl From<AgendaParticipant> for AgendaParticipantBody {
    fn from(participant: AgendaParticipant) -> Self {
        AgendaParticipantBody {
            user_id: participant.user_id,
            full_name: participant.full_name,
            role: participant.role.into(),
            language: participant.language,
        }
    }
}

/// A teleconsultation as the agenda shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgendaEntryBody {
    #[serde(rename = "roomId")]
    #[schema(example = "65a1f0c2e4b0a1b2c3d4e5f6")]
    pub room_id: String,
    #[serde(rename = "startDate")]
    #[schema(example = "2030-02-22T15:30:00.000Z")]
    pub start_date: String,
    #[serde(rename = "endDate")]
    #[schema(example = "2030-02-22T16:30:00.000Z")]
    pub end_date: String,
    /// The expected number of participants.
    pub number: u32,
    pub status: AgendaStatusBody,
    /// `startDate − IMMUTABLE_PERIOD_MS`: from then on the participants get their links (and
    /// a complete teleconsultation can no longer change).
    #[serde(rename = "linksOpenAt")]
    #[schema(example = "2030-02-22T15:20:00.000Z")]
    pub links_open_at: String,
    pub room: AgendaRoomBody,
    /// The participants known so far, in the order they were given.
    pub participants: Vec<AgendaParticipantBody>,
    /// When it was booked.
    #[serde(rename = "createdAt")]
    pub created_at: String,
    /// When a caller last changed it (the booking's time until then).
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
}

impl From<AgendaEntry> for AgendaEntryBody {
    fn from(entry: AgendaEntry) -> Self {
        AgendaEntryBody {
            room_id: entry.id,
            start_date: format_instant(entry.start),
            end_date: format_instant(entry.end),
            number: entry.number,
            status: entry.status.into(),
            links_open_at: format_instant(entry.links_open_at),
            room: entry.room.into(),
            participants: entry
                .participants
                .into_iter()
                .map(AgendaParticipantBody::from)
                .collect(),
            created_at: format_instant(entry.created_at),
            updated_at: format_instant(entry.updated_at),
        }
    }
}
