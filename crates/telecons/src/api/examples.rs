//! The OpenAPI document's examples: one booking of Anna Bianchi (`doc-1`, a doctor) and Mario
//! Rossi (`pat-1`, a patient) on 2030-01-02 at 10:00 UTC, seen through every route, and the
//! errors each route answers. Answers are built from the answer types themselves, so that an
//! example cannot show a key the API does not send; request examples are JSON, and the tests
//! below read each with its body type. Error messages are the service's own.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::credentials::CredentialsAnswer;
use super::error::{ApiError, ErrorBody};
use super::ops::StatusBody;
use super::settings::{
    BackgroundUploaded, CompanyAnswer, CompanyBody, DefaultBackgroundBody, VirtualBackgroundBody,
};
use super::teleconsultations::{
    AgendaListBody, AgendaViewBody, CreatedBody, DetailsBody, JoinBody, ParticipantCallBody,
    UploadsDeletedBody,
};
use crate::views::{
    AgendaEntryBody, AgendaParticipantBody, AgendaRoleBody, AgendaRoomBody, AgendaStatusBody,
};

pub const ROOM_ID: &str = "65a1f0c2e4b0a1b2c3d4e5f6";
const ALIAS: &str = "5f6b0c7e-6e8f-4c39-9d0e-2a1b3c4d5e6f";

// --- requests -----------------------------------------------------------------------------

/// `POST /teleconsultation`: two participants, a start, a duration.
pub fn booking() -> Value {
    json!({
        "participants": {"number": 2, "data": [
            {"userId": "doc-1", "groups": ["doctor"], "fullName": "Anna Bianchi", "language": "it"},
            {"userId": "pat-1", "groups": ["patient"], "fullName": "Mario Rossi"}
        ]},
        "start_date": "2030-01-02T10:00:00.000Z",
        "duration_in_seconds": 3600
    })
}

/// `PATCH /teleconsultation/{roomId}`: an hour later, the duration kept.
pub fn change() -> Value {
    json!({"start_date": "2030-01-02T11:00:00.000Z"})
}

/// `POST /teleconsultation/{roomId}/participants/data`.
pub fn participant() -> Value {
    json!({"userId": "pat-2", "groups": ["patient"], "fullName": "Giulia Verdi", "language": "en"})
}

/// `POST /credentials`.
pub fn credentials_request() -> Value {
    json!({"expiresIn": 3600})
}

/// `PATCH /settings/update`.
pub fn settings_update() -> Value {
    json!({"background_alias": ALIAS})
}

/// `POST /webhooks/kaleyra`: Kaleyra's envelope.
pub fn kaleyra_event() -> Value {
    json!({
        "event": "on_room_deleted",
        "event_version": "1.0",
        "namespace": "room",
        "timestamp": 1_893_578_400_000_u64,
        "data": {"room_id": "room_5beecf8c0f29"}
    })
}

// --- answers ------------------------------------------------------------------------------

pub fn created() -> CreatedBody {
    CreatedBody {
        room_id: ROOM_ID.to_owned(),
    }
}

/// `GET /teleconsultation/{roomId}` as the patient asks it.
pub fn join() -> JoinBody {
    let call = |user: &str, name: &str| ParticipantCallBody {
        bandyer_user_id: kaleyra_client::kaleyra_user_id(user),
        full_name: Some(name.to_owned()),
    };
    JoinBody {
        bandyer_user_id: kaleyra_client::kaleyra_user_id("pat-1"),
        access_link_url: Some(
            "https://sandbox.bandyer.com/eu/direct-rest-call-handler/3f9a1c0b7d2e4a".to_owned(),
        ),
        participants_bandyer_call: vec![
            call("doc-1", "Anna Bianchi"),
            call("pat-1", "Mario Rossi"),
        ],
        details: Some(DetailsBody {
            recording: "none".to_owned(),
            recording_status: "stopped".to_owned(),
            call_type: "audio_video".to_owned(),
            description: Some(format!(
                "telecons:9c1e5b2a7f3d4e60:4b1d7a9e02c3f815:{ROOM_ID}:1d2c3b4a5f6e7d8c"
            )),
            status: "NOT_RUNNING".to_owned(),
            disabled: false,
            creation_date: "2030-01-01T10:00:01.000Z".to_owned(),
            duration_in_seconds: 0,
            duration_used_in_seconds: 0,
            live: true,
        }),
    }
}

fn agenda_participant(
    user: &str,
    name: &str,
    role: AgendaRoleBody,
    language: Option<&str>,
) -> AgendaParticipantBody {
    AgendaParticipantBody {
        user_id: user.to_owned(),
        full_name: Some(name.to_owned()),
        role,
        language: language.map(str::to_owned),
    }
}

fn agenda_entry() -> AgendaEntryBody {
    AgendaEntryBody {
        room_id: ROOM_ID.to_owned(),
        start_date: "2030-01-02T10:00:00.000Z".to_owned(),
        end_date: "2030-01-02T11:00:00.000Z".to_owned(),
        number: 2,
        status: AgendaStatusBody::Scheduled,
        links_open_at: "2030-01-02T09:50:00.000Z".to_owned(),
        room: AgendaRoomBody::Ready,
        participants: vec![
            agenda_participant("doc-1", "Anna Bianchi", AgendaRoleBody::Plus, Some("it")),
            agenda_participant("pat-1", "Mario Rossi", AgendaRoleBody::Basic, None),
        ],
        created_at: "2030-01-01T10:00:00.000Z".to_owned(),
        updated_at: "2030-01-01T10:00:00.000Z".to_owned(),
    }
}

/// `GET /teleconsultations/{roomId}` as the patient asks it.
pub fn view() -> AgendaViewBody {
    AgendaViewBody {
        entry: agenda_entry(),
        you: Some(agenda_participant(
            "pat-1",
            "Mario Rossi",
            AgendaRoleBody::Basic,
            None,
        )),
    }
}

/// A page of one, with more to come.
pub fn agenda_page() -> AgendaListBody {
    AgendaListBody {
        items: vec![agenda_entry()],
        next_cursor: Some("djE6MTg5MzU3ODQwMDAwMDo2NWExZjBjMmU0YjBhMWIyYzNkNGU1ZjY".to_owned()),
    }
}

pub fn uploads_deleted() -> UploadsDeletedBody {
    UploadsDeletedBody {
        total: 3,
        deleted: 3,
    }
}

pub fn credentials() -> CredentialsAnswer {
    CredentialsAnswer {
        access_token:
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VySWQiOiJ1c3JfLi4uIn0.c2lnbmF0dXJl"
                .to_owned(),
        expires_at: "2030-01-01T11:00:00.000Z".to_owned(),
        bandyer_user_id: kaleyra_client::kaleyra_user_id("doc-1"),
    }
}

fn background_url() -> String {
    format!("https://static.bandyer.com/corporate/virtual_backgrounds/sandbox/{ALIAS}.jpg")
}

pub fn background_uploaded() -> BackgroundUploaded {
    BackgroundUploaded {
        virtual_background: VirtualBackgroundBody {
            background_alias: ALIAS.to_owned(),
            url: background_url(),
            creation_date: "2030-01-01T10:00:00.000Z".to_owned(),
        },
    }
}

pub fn company() -> CompanyAnswer {
    CompanyAnswer {
        company: CompanyBody {
            name: "Example Clinic".to_owned(),
            default_language: Some("it".to_owned()),
            default_background: Some(DefaultBackgroundBody {
                alias: ALIAS.to_owned(),
                url: background_url(),
                creation_date: "2030-01-01T10:00:00.000Z".to_owned(),
            }),
            end_call_redirect_url: None,
            user_details_provider_url: None,
            end_call_redirect_timeout_ms: None,
        },
    }
}

pub fn alive() -> StatusBody {
    StatusBody {
        status: "OK",
        checks: BTreeMap::new(),
    }
}

pub fn ready() -> StatusBody {
    StatusBody {
        status: "OK",
        checks: BTreeMap::from([("storage", "OK")]),
    }
}

pub fn not_ready() -> StatusBody {
    StatusBody {
        status: "KO",
        checks: BTreeMap::from([("storage", "KO")]),
    }
}

pub fn checked_up() -> StatusBody {
    StatusBody {
        status: "OK",
        checks: BTreeMap::from([
            ("backlog", "OK"),
            ("kaleyra", "OK"),
            ("rooms", "OK"),
            ("storage", "OK"),
        ]),
    }
}

pub fn check_up_failed() -> StatusBody {
    StatusBody {
        status: "KO",
        checks: BTreeMap::from([
            ("backlog", "OK"),
            ("kaleyra", "KO"),
            ("rooms", "OK"),
            ("storage", "OK"),
        ]),
    }
}

pub const METRICS: &str = "# TYPE http_requests_total counter\n\
    http_requests_total{method=\"GET\",route=\"/teleconsultation/{roomId}\",status=\"200\"} 42\n";

// --- errors -------------------------------------------------------------------------------

fn error(status: StatusCode, message: &str) -> ErrorBody {
    ApiError::new(status, message).body()
}

/// `401 {"error": "Unauthorized user"}`, as the original documents it.
pub fn unauthorized() -> ErrorBody {
    ApiError::unauthorized().body()
}

pub fn not_in_booking_groups() -> ErrorBody {
    error(
        StatusCode::FORBIDDEN,
        "user pat-1 may not book or change teleconsultations",
    )
}

pub fn not_in_settings_groups() -> ErrorBody {
    error(
        StatusCode::FORBIDDEN,
        "user pat-1 may not change the company settings",
    )
}

pub fn body_too_slow() -> ErrorBody {
    error(
        StatusCode::REQUEST_TIMEOUT,
        "the request body did not arrive within 10 s of the request head",
    )
}

pub fn unknown_id() -> ErrorBody {
    error(
        StatusCode::NOT_FOUND,
        &format!("no live teleconsultation has the id \"{ROOM_ID}\""),
    )
}

/// The documented 404 of `GET /teleconsultation/{roomId}`.
pub fn room_not_found() -> ErrorBody {
    ApiError::documented(
        StatusCode::NOT_FOUND,
        format!("Room with id {ROOM_ID} not found on CRUD"),
    )
    .body()
}

pub fn wrong_type() -> ErrorBody {
    error(
        StatusCode::BAD_REQUEST,
        "duration_in_seconds must be a whole number of seconds, not the string \"3600\"",
    )
}

pub fn no_plus_user(route: &str) -> ErrorBody {
    ApiError::documented(
        StatusCode::BAD_REQUEST,
        format!("Failed {route}: no plus user in room"),
    )
    .body()
}

pub fn immutable() -> ErrorBody {
    error(
        StatusCode::CONFLICT,
        &format!(
            "teleconsultation {ROOM_ID} can no longer be changed: changes are refused from \
             2030-01-02T09:50:00.000Z"
        ),
    )
}

pub fn already_present() -> ErrorBody {
    error(
        StatusCode::CONFLICT,
        &format!("user pat-2 is already a participant of teleconsultation {ROOM_ID}"),
    )
}

pub fn key_in_use() -> ErrorBody {
    error(
        StatusCode::CONFLICT,
        "a request with this Idempotency-Key is still running; send it again once that one has answered",
    )
}

pub fn key_reused() -> ErrorBody {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "the Idempotency-Key was used with another body; a key names one request: send another key for another request",
    )
}

pub fn repeated_identity() -> ErrorBody {
    error(
        StatusCode::BAD_REQUEST,
        "the miauserid header was sent 2 times; a request carries one identity",
    )
}

pub fn bad_query() -> ErrorBody {
    error(
        StatusCode::BAD_REQUEST,
        "limit must be a whole number from 1 to 100, got \"500\"",
    )
}

pub fn participant_filter_refused() -> ErrorBody {
    error(
        StatusCode::FORBIDDEN,
        "user pat-1 may not filter the agenda by participant",
    )
}

pub fn expires_in_out_of_bounds() -> ErrorBody {
    error(
        StatusCode::BAD_REQUEST,
        "expiresIn must be between 360 and 86400 seconds, got 60",
    )
}

pub fn no_role() -> ErrorBody {
    error(
        StatusCode::FORBIDDEN,
        "user visitor-1 is in none of the configured groups (groups: [visitor]; allowed: doctor, patient)",
    )
}

/// A Kaleyra failure on a route whose answer needs Kaleyra: the operation and its status.
pub fn kaleyra_failed(operation: &str) -> ErrorBody {
    error(
        StatusCode::BAD_GATEWAY,
        &format!("Kaleyra {operation} failed: HTTP 500"),
    )
}

pub fn kaleyra_unreachable(operation: &str) -> ErrorBody {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("Kaleyra {operation} failed: could not connect"),
    )
}

pub fn background_missing() -> ErrorBody {
    error(
        StatusCode::BAD_REQUEST,
        "the virtual_background file is missing",
    )
}

pub fn too_many_backgrounds() -> ErrorBody {
    error(
        StatusCode::CONFLICT,
        "the company has as many virtual backgrounds as Kaleyra allows",
    )
}

pub fn background_too_large() -> ErrorBody {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "virtual_background is larger than 10 MB",
    )
}

pub fn not_jpeg() -> ErrorBody {
    error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "virtual_background must be a JPEG image (its content is not)",
    )
}

pub fn uploads_busy() -> ErrorBody {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "4 background uploads are in progress, as many as this instance takes at once; send it again in a moment",
    )
}

pub fn alias_missing() -> ErrorBody {
    error(
        StatusCode::BAD_REQUEST,
        "background_alias must be a non-empty string",
    )
}

pub fn unknown_alias() -> ErrorBody {
    error(
        StatusCode::NOT_FOUND,
        "Kaleyra knows no virtual background with the alias \"winter\"",
    )
}

pub fn bad_signature() -> ErrorBody {
    error(
        StatusCode::UNAUTHORIZED,
        "the webhook signature does not match",
    )
}

pub fn webhook_too_large() -> ErrorBody {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the webhook body is larger than 65536 bytes",
    )
}

pub fn webhook_not_now() -> ErrorBody {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the webhook could not be acted on now: database error while reading a teleconsultation: \
         pool timed out while waiting for an open connection",
    )
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;

    use super::*;
    use crate::api::credentials::CredentialsBody;
    use crate::api::settings::UpdateSettingsBody;
    use crate::api::teleconsultations::{ParticipantBody, TeleconsultationBody};

    fn reads_as<T: DeserializeOwned>(example: Value) {
        if let Err(err) = serde_json::from_value::<T>(example.clone()) {
            panic!("{example} is not a {}: {err}", std::any::type_name::<T>());
        }
    }

    #[test]
    fn each_request_example_is_read_by_its_body_type() {
        reads_as::<TeleconsultationBody>(booking());
        reads_as::<TeleconsultationBody>(change());
        reads_as::<ParticipantBody>(participant());
        reads_as::<CredentialsBody>(credentials_request());
        reads_as::<UpdateSettingsBody>(settings_update());
        let event = serde_json::to_vec(&kaleyra_event()).unwrap();
        let parsed = kaleyra_client::webhook::parse_event(&event).expect("a Kaleyra event");
        assert_eq!(parsed.room_deleted_id(), Some("room_5beecf8c0f29"));
    }
}
