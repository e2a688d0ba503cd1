//! The JSON shapes of `shared/spec/kaleyra.md`, and nothing else.
//!
//! Every assumption about Kaleyra's wire format lives in this module, so it can be corrected in
//! one place once a real response is seen. Requests refuse unknown fields (the spec's
//! strictness rule); an `Option` field accepts both an omitted key and `null`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Error body of every non-2xx answer: `{"error": "<snake_case_code>", "message": "<text>"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Users

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Plus,
    Basic,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Plus => "plus",
            Role::Basic => "basic",
        }
    }
}

/// `POST /v2/users`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub id: Option<String>,
    pub role: Role,
    pub language: Option<String>,
}

/// `PUT /v2/users/{id}`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub role: Option<Role>,
    pub active: Option<bool>,
    pub language: Option<String>,
}

/// A user as `POST`, `GET` and `PUT /v2/users…` return it.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub role: String,
    pub active: bool,
    pub language: String,
}

// ---------------------------------------------------------------------------------------------
// Rooms

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recording {
    #[default]
    None,
    Manual,
    Automatic,
}

impl Recording {
    pub fn as_str(self) -> &'static str {
        match self {
            Recording::None => "none",
            Recording::Manual => "manual",
            Recording::Automatic => "automatic",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallType {
    #[default]
    AudioVideo,
    AudioUpgradable,
    AudioOnly,
}

impl CallType {
    pub fn as_str(self) -> &'static str {
        match self {
            CallType::AudioVideo => "audio_video",
            CallType::AudioUpgradable => "audio_upgradable",
            CallType::AudioOnly => "audio_only",
        }
    }
}

/// `POST /v2/rooms`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoomRequest {
    pub participants: Vec<ParticipantRequest>,
    pub duration: Option<u64>,
    pub live: Option<bool>,
    pub recording: Option<Recording>,
    pub call_type: Option<CallType>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantRequest {
    pub user_id: String,
    pub is_admin: Option<bool>,
    pub tools: Option<BTreeMap<String, bool>>,
}

/// A room as `GET /v2/rooms/{id}` returns it (camelCase where the spec has it).
///
/// The per-participant `tools` are deliberately not part of this shape: the spec does not list
/// them, so they are only visible through `GET /_sim/rooms` and `Simulator::rooms()`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    pub id: String,
    pub recording: String,
    pub recording_status: &'static str,
    pub call_type: String,
    /// `null` when the room was created without a description.
    pub description: Option<String>,
    pub status: &'static str,
    pub disabled: bool,
    pub creation_date: String,
    pub duration_in_seconds: u64,
    pub duration_used_in_seconds: u64,
    pub live: bool,
    pub participants: Vec<RoomParticipant>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoomParticipant {
    pub user_id: String,
    pub is_admin: bool,
    pub link: String,
}

// ---------------------------------------------------------------------------------------------
// Uploads

/// `GET /v2/uploads?room_id=…`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsQuery {
    pub room_id: String,
}

/// One file shared during a call, as `GET /v2/uploads` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub key: String,
    pub name: String,
    pub size: u64,
    pub room_id: String,
    pub creation_date: String,
}

// ---------------------------------------------------------------------------------------------
// SDK credentials

/// `POST /v2/sdk/credentials`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsRequest {
    pub user_id: String,
    pub expires_in: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Credentials {
    pub access_token: String,
    pub expires_at: String,
    pub user_id: String,
}

// ---------------------------------------------------------------------------------------------
// Company

/// `PUT /v2/company`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCompanyRequest {
    pub background_alias: Option<String>,
    pub default_language: Option<String>,
    pub end_call_redirect_url: Option<String>,
    pub end_call_redirect_timeout_ms: Option<u64>,
    pub user_details_provider_url: Option<String>,
}

/// `GET` and `PUT /v2/company` answer `{"company": {…}}`.
#[derive(Debug, Clone, Serialize)]
pub struct CompanyEnvelope {
    pub company: CompanyBody,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompanyBody {
    pub name: String,
    pub default_language: String,
    pub default_background: Option<DefaultBackground>,
    pub end_call_redirect_url: Option<String>,
    pub user_details_provider_url: Option<String>,
    pub end_call_redirect_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DefaultBackground {
    pub alias: String,
    pub url: String,
    pub creation_date: String,
}

/// The multipart part name of `POST /v2/company/virtual-background`.
pub const VIRTUAL_BACKGROUND_PART: &str = "virtual_background";

/// `201` answer of `POST /v2/company/virtual-background`.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualBackgroundEnvelope {
    pub virtual_background: VirtualBackground,
}

#[derive(Debug, Clone, Serialize)]
pub struct VirtualBackground {
    pub background_alias: String,
    pub url: String,
    pub creation_date: String,
}

// ---------------------------------------------------------------------------------------------
// Webhooks the simulator sends

/// The envelope of every webhook: `{"event", "event_version", "namespace", "timestamp"
/// (epoch ms), "data"}`, in this order.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookEnvelope<T> {
    pub event: &'static str,
    pub event_version: &'static str,
    pub namespace: &'static str,
    pub timestamp: i64,
    pub data: T,
}

/// `data` of `on_room_deleted`.
#[derive(Debug, Clone, Serialize)]
pub struct RoomDeletedData {
    pub room_id: String,
}
