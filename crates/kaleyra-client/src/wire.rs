//! Every JSON body of the Kaleyra Video v2 API as this project speaks it
//! (`shared/spec/kaleyra.md`), request and response, in one place.
//!
//! Where the public Kaleyra documentation is silent, the shapes follow our own spec; when a real
//! response is seen to differ, this module is the one to correct.
//!
//! Conventions:
//! - Request types serialize exactly the documented fields; optional fields are *omitted* when
//!   `None` (the simulator refuses unknown fields, and `null` and absent mean the same).
//! - Response types ignore unknown fields (a new Kaleyra field must not break decoding) and
//!   default the fields whose absence is harmless.
//! - Dates are `chrono::DateTime<Utc>` (ISO 8601 UTC, e.g. `2023-12-22T13:36:48.164Z`).

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Common
// ---------------------------------------------------------------------------------------------

/// A Kaleyra user role. `plus` users may open rooms; every room needs at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A participant without the right to host a room.
    Basic,
    /// A participant who may host a room.
    Plus,
}

impl Role {
    /// The wire name (`"basic"` or `"plus"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Basic => "basic",
            Role::Plus => "plus",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every non-2xx answer: `{"error": "<snake_case_code>", "message": "<text>"}`.
/// Both fields are optional here so that an unexpected error body still decodes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `no_plus_user`, `user_already_exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

/// `POST /v2/users` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateUser {
    /// Our own id (`[A-Za-z0-9._-]{1,128}`); we always choose it, which makes creation
    /// idempotent (a repeat gets `409 user_already_exists`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The user's role.
    pub role: Role,
    /// Preferred language, e.g. `"it"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// `PUT /v2/users/{id}` body: any of the fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateUser {
    /// New role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Enable or disable the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// New preferred language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// A Kaleyra user, as `POST`, `GET` and `PUT /v2/users…` return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user id.
    pub id: String,
    /// The role.
    pub role: Role,
    /// Whether the user is active.
    #[serde(default = "default_true")]
    pub active: bool,
    /// Preferred language, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Rooms
// ---------------------------------------------------------------------------------------------

/// Room recording mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recording {
    /// No recording (Kaleyra's default).
    #[default]
    None,
    /// Participants start the recording.
    Manual,
    /// The call is recorded from the start.
    Automatic,
}

/// Room call type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallType {
    /// Audio and video (Kaleyra's default).
    #[default]
    AudioVideo,
    /// Starts as audio, video may be switched on.
    AudioUpgradable,
    /// Audio only.
    AudioOnly,
}

/// Per-participant tools. Absent (`None` on [`NewParticipant::tools`]) means every tool on;
/// present means only those set to `true` are on. Unset fields are omitted from the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tools {
    /// Chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<bool>,
    /// Screen sharing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen_sharing: Option<bool>,
    /// File upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_upload: Option<bool>,
    /// Whiteboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whiteboard: Option<bool>,
    /// Snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<bool>,
    /// Live edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_edit: Option<bool>,
    /// Live pointer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_pointer: Option<bool>,
    /// Present to everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present_to_everyone: Option<bool>,
}

/// One participant of a `POST /v2/rooms` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewParticipant {
    /// An existing Kaleyra user id.
    pub user_id: String,
    /// Whether the participant administers the room.
    pub is_admin: bool,
    /// Tools; `None` = all tools on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Tools>,
}

/// `POST /v2/rooms` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRoom {
    /// 2–25 distinct existing users, at least one `plus`.
    pub participants: Vec<NewParticipant>,
    /// Duration in seconds (≥ 60); `None` = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    /// Live flag; `None` = Kaleyra's default (`true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
    /// Recording mode; `None` = `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<Recording>,
    /// Call type; `None` = `audio_video`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_type: Option<CallType>,
    /// Free text. Participants can read it: put only our own non-personal tag here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A participant of a room as Kaleyra returns it, with its personal join link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomParticipant {
    /// The Kaleyra user id.
    pub user_id: String,
    /// Whether the participant administers the room.
    #[serde(default)]
    pub is_admin: bool,
    /// The participant's own join link (link options go in its query string).
    pub link: String,
}

/// A room, as `POST /v2/rooms`, `GET /v2/rooms` and `GET /v2/rooms/{id}` return it.
///
/// The camelCase fields are those the service passes through as `details`. `recording`,
/// `callType`, `recordingStatus` and `status` are kept as strings: they are reported, not
/// interpreted, and a value new to us must not make the room unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// `room_` + 12 lowercase hex.
    pub id: String,
    /// `none` | `manual` | `automatic`.
    pub recording: String,
    /// E.g. `stopped`.
    #[serde(rename = "recordingStatus")]
    pub recording_status: String,
    /// `audio_video` | `audio_upgradable` | `audio_only`.
    #[serde(rename = "callType")]
    pub call_type: String,
    /// The description given at creation, if any.
    #[serde(default)]
    pub description: Option<String>,
    /// E.g. `NOT_RUNNING`.
    pub status: String,
    /// Whether the room is disabled.
    #[serde(default)]
    pub disabled: bool,
    /// When the room was created.
    #[serde(rename = "creationDate")]
    pub creation_date: DateTime<Utc>,
    /// Duration in seconds; 0 = unlimited.
    #[serde(rename = "durationInSeconds", default)]
    pub duration_in_seconds: u64,
    /// Seconds already used.
    #[serde(rename = "durationUsedInSeconds", default)]
    pub duration_used_in_seconds: u64,
    /// Live flag.
    #[serde(default = "default_true")]
    pub live: bool,
    /// The participants, each with its own link.
    #[serde(default)]
    pub participants: Vec<RoomParticipant>,
}

// ---------------------------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------------------------

/// A file shared during a call (`GET /v2/uploads?room_id=…` returns a plain array of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// `upl_…`; used by `DELETE /v2/uploads/{key}`.
    pub key: String,
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The room it was shared in.
    pub room_id: String,
    /// When it was uploaded.
    pub creation_date: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------------
// SDK credentials
// ---------------------------------------------------------------------------------------------

/// `POST /v2/sdk/credentials` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSdkCredentials {
    /// An existing Kaleyra user id.
    pub user_id: String,
    /// Validity in seconds, 360–86400; `None` = 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u32>,
}

/// `POST /v2/sdk/credentials` answer. The token is a bearer credential: it is kept in a
/// [`SecretString`] so that it never shows in `Debug` output or logs
/// (use `secrecy::ExposeSecret` to hand it to its owner).
#[derive(Debug, Clone, Deserialize)]
pub struct SdkCredentials {
    /// The JWT access token.
    pub access_token: SecretString,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// The user it was issued for.
    pub user_id: String,
}

// ---------------------------------------------------------------------------------------------
// Company
// ---------------------------------------------------------------------------------------------

/// The company's default virtual background, as part of [`Company`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultBackground {
    /// The background alias (32 hex).
    pub alias: String,
    /// Where the image is served.
    pub url: String,
    /// When it was uploaded.
    pub creation_date: DateTime<Utc>,
}

/// The company settings (`GET`/`PUT /v2/company` return `{"company": Company}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    /// Company name.
    pub name: String,
    /// Default language.
    #[serde(default)]
    pub default_language: Option<String>,
    /// Default virtual background, or `null`.
    #[serde(default)]
    pub default_background: Option<DefaultBackground>,
    /// Where participants go when a call ends.
    #[serde(default)]
    pub end_call_redirect_url: Option<String>,
    /// The user-details provider URL.
    #[serde(default)]
    pub user_details_provider_url: Option<String>,
    /// Delay before the end-of-call redirect.
    #[serde(default)]
    pub end_call_redirect_timeout_ms: Option<u64>,
}

/// The envelope `{"company": {...}}` of `GET`/`PUT /v2/company`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanyEnvelope {
    /// The company.
    pub company: Company,
}

/// `PUT /v2/company` body: any of the fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateCompany {
    /// Make this uploaded background the company default (unknown alias: `404`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_alias: Option<String>,
    /// Default language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_language: Option<String>,
    /// Where participants go when a call ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_call_redirect_url: Option<String>,
    /// Delay before the end-of-call redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_call_redirect_timeout_ms: Option<u64>,
    /// The user-details provider URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_details_provider_url: Option<String>,
}

/// An uploaded virtual background.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualBackground {
    /// The alias (32 hex), to pass as [`UpdateCompany::background_alias`].
    pub background_alias: String,
    /// Where the image is served.
    pub url: String,
    /// When it was uploaded.
    pub creation_date: DateTime<Utc>,
}

/// The envelope `{"virtual_background": {...}}` of `POST /v2/company/virtual-background`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualBackgroundEnvelope {
    /// The uploaded background.
    pub virtual_background: VirtualBackground,
}

/// Name of the multipart file part of `POST /v2/company/virtual-background`.
pub const VIRTUAL_BACKGROUND_PART: &str = "virtual_background";

// ---------------------------------------------------------------------------------------------
// Webhooks Kaleyra sends
// ---------------------------------------------------------------------------------------------

/// The `event` of the webhook Kaleyra sends when a room is deleted.
pub const ON_ROOM_DELETED: &str = "on_room_deleted";

/// The envelope of every webhook Kaleyra sends: `{"event", "event_version", "namespace",
/// "timestamp" (epoch ms), "data"}`. Verify the signature first
/// ([`crate::webhook::verify`]), then decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// E.g. [`ON_ROOM_DELETED`].
    pub event: String,
    /// E.g. `"1.0"`.
    #[serde(default)]
    pub event_version: String,
    /// E.g. `"room"`.
    #[serde(default)]
    pub namespace: String,
    /// When Kaleyra sent it, in milliseconds since the epoch (the signature header's `t` is
    /// in seconds).
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// The event's data; for [`ON_ROOM_DELETED`] a [`RoomDeletedData`].
    #[serde(default)]
    pub data: serde_json::Value,
}

impl WebhookEvent {
    /// The deleted room's id, when this is an [`ON_ROOM_DELETED`] event that names one.
    pub fn room_deleted_id(&self) -> Option<&str> {
        if self.event != ON_ROOM_DELETED {
            return None;
        }
        self.data.get("room_id")?.as_str()
    }
}

/// The `data` of an [`ON_ROOM_DELETED`] webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomDeletedData {
    /// The deleted room.
    pub room_id: String,
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn optional_request_fields_are_omitted() {
        let body = CreateUser {
            id: Some("tc_1".into()),
            role: Role::Plus,
            language: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"id": "tc_1", "role": "plus"})
        );
        let room = CreateRoom {
            participants: vec![NewParticipant {
                user_id: "a".into(),
                is_admin: true,
                tools: Some(Tools {
                    chat: Some(true),
                    ..Tools::default()
                }),
            }],
            duration: None,
            live: Some(true),
            recording: Some(Recording::None),
            call_type: Some(CallType::AudioUpgradable),
            description: None,
        };
        assert_eq!(
            serde_json::to_value(&room).unwrap(),
            json!({
                "participants": [{"user_id": "a", "is_admin": true, "tools": {"chat": true}}],
                "live": true, "recording": "none", "call_type": "audio_upgradable"
            })
        );
        assert_eq!(
            serde_json::to_value(UpdateCompany::default()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn room_decodes_from_the_spec_example() {
        let room: Room = serde_json::from_value(json!({
          "id": "room_5beecf8c0f29",
          "recording": "none", "recordingStatus": "stopped", "callType": "audio_video",
          "description": "text", "status": "NOT_RUNNING", "disabled": false,
          "creationDate": "2023-12-22T13:36:48.164Z",
          "durationInSeconds": 3600, "durationUsedInSeconds": 0, "live": true,
          "participants": [
            {"user_id": "tc_9f2c", "is_admin": true,
             "link": "https://sandbox.bandyer.com/eu/direct-rest-call-handler/3f9a"}
          ],
          "someFutureField": 1
        }))
        .unwrap();
        assert_eq!(room.id, "room_5beecf8c0f29");
        assert_eq!(room.duration_in_seconds, 3600);
        assert_eq!(room.participants[0].user_id, "tc_9f2c");
        let back = serde_json::to_value(&room).unwrap();
        assert_eq!(back["creationDate"], "2023-12-22T13:36:48.164Z");
        assert_eq!(back["callType"], "audio_video");
    }

    #[test]
    fn company_with_null_background_decodes() {
        let env: CompanyEnvelope = serde_json::from_value(json!({"company": {
            "name": "Acme", "default_language": "it", "default_background": null,
            "end_call_redirect_url": null, "user_details_provider_url": null,
            "end_call_redirect_timeout_ms": null
        }}))
        .unwrap();
        assert_eq!(env.company.name, "Acme");
        assert!(env.company.default_background.is_none());
    }

    #[test]
    fn sdk_credentials_debug_hides_the_token() {
        let creds: SdkCredentials = serde_json::from_value(json!({
            "access_token": "eyJ.secret-token.sig",
            "expires_at": "2023-12-22T13:36:48.164Z",
            "user_id": "tc_1"
        }))
        .unwrap();
        assert!(!format!("{creds:?}").contains("secret-token"));
    }
}
