//! The OpenAPI document's examples: one booking of Anna Bianchi (`doc-1`, a doctor) and Mario
//! Rossi (`pat-1`, a patient) on 2030-01-02 at 10:00 UTC, seen through every route, and the
//! errors each route answers. A route's answers are built beside it from its answer types, so
//! that an example cannot show a key the API does not send; request examples are JSON, which
//! `api`'s tests read each with its body type. Error messages are the service's own.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::error::{ApiError, ErrorBody};

pub const ROOM_ID: &str = "65a1f0c2e4b0a1b2c3d4e5f6";
pub const ALIAS: &str = "5f6b0c7e-6e8f-4c39-9d0e-2a1b3c4d5e6f";

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

// --- answers: each resource's own are beside its routes (`example_…`) ----------------------

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
        "the webhook could not be acted on now: the service logged why; send it again",
    )
}
