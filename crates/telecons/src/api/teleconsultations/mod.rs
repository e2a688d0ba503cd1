//! `/teleconsultation` routes (spec §4.1–§4.6) and the agenda's `/teleconsultations` (§4.12):
//! read the request, call the use case once, shape the answer. The identity, body and query
//! go to the use case unopened (as `Result`s), so that it reports errors in the documented
//! order: 404 (unknown id) → 401 (caller) → 403 (`bookingGroups`) → 400 (body) → 409 → 400
//! (no plus user); on the agenda, 401 before 404.

mod bodies;
mod idempotency;

use std::convert::Infallible;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use bodies::*;

use super::body::{JsonBody, JsonBodyAndBytes};
use super::caller::RequestCaller;
use super::error::{ApiError, ErrorBody};
use super::middleware::Arrival;
use super::{ApiState, examples};
use crate::domain::agenda_query::parse_list_query;
use crate::domain::participants::ParticipantEntry;
use crate::services::{ServiceError, Unreadable};
use crate::views::{AgendaRoleBody, AgendaRoomBody};
use idempotency::{IdempotencyKeyHeader, book_once, created};

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_teleconsultation))
        .routes(routes!(
            get_teleconsultation,
            update_teleconsultation,
            delete_teleconsultation
        ))
        .routes(routes!(add_participant))
        .routes(routes!(delete_uploads))
        .routes(routes!(view_teleconsultation))
        .routes(routes!(list_teleconsultations))
}

/// The `:roomId` path segment. A segment that is not valid percent-encoded UTF-8 names no
/// teleconsultation either: it is kept as sent and answers 404 like any unknown id (in the
/// JSON error shape), instead of axum's plain-text rejection.
struct RoomId(String);

impl<S: Send + Sync> FromRequestParts<S> for RoomId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(RoomId(id)),
            // `/teleconsultation[s]/<segment>[/...]`
            Err(_) => Ok(RoomId(
                parts
                    .uri
                    .path()
                    .split('/')
                    .nth(2)
                    .unwrap_or_default()
                    .to_owned(),
            )),
        }
    }
}

/// Books a teleconsultation; creates the Kaleyra room when all participants are known.
/// With an `Idempotency-Key`, the first answer (201 or 4xx) is kept 24 hours for the caller
/// and the key: the same body again gets it again (`Idempotency-Replayed: true`; nothing
/// booked, Kaleyra not called), another body 422, while the first still runs 409. A 5xx
/// keeps nothing. Requests without a caller id share one set of keys. A body that cannot
/// be read whole (408, 413) is answered as without a key.
#[utoipa::path(post, path = "/teleconsultation", tag = "teleconsultations",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters (`!` to `~`), e.g. a UUID: the same booking sent again with the same key is booked once"),
    ),
    request_body(content = TeleconsultationBody, example = json!(examples::booking())),
    responses(
        (status = 201, description = "Stored (and its room created when complete); or, with `Idempotency-Replayed: true`, the answer kept for the key", body = CreatedBody,
            headers(("Idempotency-Replayed" = String, description = "`true` when this is the answer kept for the `Idempotency-Key` (also on a kept 4xx)")),
            example = json!(example_created())),
        (status = 401, description = "`Unauthorized user`: no caller, where `bookingGroups` guards the route (always in bearer mode)", body = ErrorBody,
            example = json!(examples::unauthorized())),
        (status = 403, description = "The caller is not in `bookingGroups`", body = ErrorBody,
            example = json!(examples::not_in_booking_groups())),
        (status = 400, description = "Invalid body, `Failed POST /teleconsultation: no plus user in room`, or an `Idempotency-Key` that is not 1 to 255 visible ASCII characters or is sent twice", body = ErrorBody,
            examples(
                ("invalid body" = (value = json!(examples::wrong_type()))),
                ("no plus user" = (value = json!(examples::no_plus_user("POST /teleconsultation")))),
            )),
        (status = 408, description = "The body did not arrive whole within 10 s of the request head: the connection is closed", body = ErrorBody,
            example = json!(examples::body_too_slow())),
        (status = 409, description = "A request with this `Idempotency-Key` is still running (`Retry-After: 1`; a request killed mid-way holds its key for at most the request budget), or took the key over", body = ErrorBody,
            example = json!(examples::key_in_use())),
        (status = 422, description = "This `Idempotency-Key` was used with another body (compared as parsed JSON)", body = ErrorBody,
            example = json!(examples::key_reused())),
    ))]
async fn create_teleconsultation(
    State(state): State<ApiState>,
    Arrival(arrived): Arrival,
    caller: RequestCaller,
    key: IdempotencyKeyHeader,
    body: JsonBodyAndBytes<TeleconsultationBody>,
) -> Result<Response, ApiError> {
    let caller = state.teleconsultations.admit_booking(caller.0).await?;
    let key = key.0.map_err(ServiceError::from)?;
    let input = body.body.and_then(TeleconsultationBody::into_input);
    match (key, body.bytes) {
        (Some(key), Some(bytes)) => book_once(state, caller, key, &bytes, input, arrived).await,
        _ => {
            let id = state
                .teleconsultations
                .create(caller, input, None, arrived)
                .await?;
            Ok(created(id))
        }
    }
}

/// Changes the given fields; the room is replaced only when the change affects it.
#[utoipa::path(patch, path = "/teleconsultation/{roomId}", tag = "teleconsultations",
    params(("roomId" = String, Path, description = "The teleconsultation id")),
    request_body(content = TeleconsultationBody, example = json!(examples::change())),
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "`Unauthorized user`: no caller, where `bookingGroups` guards the route (always in bearer mode)", body = ErrorBody,
            example = json!(examples::unauthorized())),
        (status = 403, description = "The caller is not in `bookingGroups`", body = ErrorBody,
            example = json!(examples::not_in_booking_groups())),
        (status = 400, description = "Invalid body, or `Failed PATCH /teleconsultation: no plus user in room`", body = ErrorBody,
            examples(
                ("invalid body" = (value = json!(examples::wrong_type()))),
                ("no plus user" = (value = json!(examples::no_plus_user("PATCH /teleconsultation")))),
            )),
        (status = 404, description = "Unknown or deleted", body = ErrorBody,
            example = json!(examples::unknown_id())),
        (status = 408, description = "The body did not arrive whole within 10 s of the request head: the connection is closed", body = ErrorBody,
            example = json!(examples::body_too_slow())),
        (status = 409, description = "Inside the immutable period", body = ErrorBody,
            example = json!(examples::immutable())),
    ))]
async fn update_teleconsultation(
    State(state): State<ApiState>,
    Arrival(arrived): Arrival,
    RoomId(id): RoomId,
    caller: RequestCaller,
    JsonBody(body): JsonBody<TeleconsultationBody>,
) -> Result<StatusCode, ApiError> {
    let input = body.and_then(TeleconsultationBody::into_input);
    state
        .teleconsultations
        .update(id, caller.0, input, arrived)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds one participant; creates the room when it completes the list.
#[utoipa::path(post, path = "/teleconsultation/{roomId}/participants/data", tag = "teleconsultations",
    params(("roomId" = String, Path, description = "The teleconsultation id")),
    request_body(content = ParticipantBody, example = json!(examples::participant())),
    responses(
        (status = 201, description = "Added (empty body)"),
        (status = 401, description = "`Unauthorized user`: no caller, where `bookingGroups` guards the route (always in bearer mode)", body = ErrorBody,
            example = json!(examples::unauthorized())),
        (status = 403, description = "The caller is not in `bookingGroups`", body = ErrorBody,
            example = json!(examples::not_in_booking_groups())),
        (status = 400, description = "Invalid body, or `Failed POST /teleconsultation/<roomId>/participants/data: no plus user in room`", body = ErrorBody,
            example = json!(examples::no_plus_user(&format!("POST /teleconsultation/{}/participants/data", examples::ROOM_ID)))),
        (status = 404, description = "Unknown or deleted", body = ErrorBody,
            example = json!(examples::unknown_id())),
        (status = 408, description = "The body did not arrive whole within 10 s of the request head: the connection is closed", body = ErrorBody,
            example = json!(examples::body_too_slow())),
        (status = 409, description = "Immutable, already complete, or the user is already a participant", body = ErrorBody,
            example = json!(examples::already_present())),
    ))]
async fn add_participant(
    State(state): State<ApiState>,
    Arrival(arrived): Arrival,
    RoomId(id): RoomId,
    caller: RequestCaller,
    JsonBody(body): JsonBody<ParticipantBody>,
) -> Result<Response, ApiError> {
    let entry = body.map(ParticipantEntry::from);
    state
        .teleconsultations
        .add_participant(id, caller.0, entry, arrived)
        .await?;
    Ok(StatusCode::CREATED.into_response())
}

/// The caller's join link and the room's details.
#[utoipa::path(get, path = "/teleconsultation/{roomId}", tag = "teleconsultations",
    params(("roomId" = String, Path, description = "The teleconsultation id"), JoinQuery),
    responses(
        (status = 200, description = "The caller's view", body = JoinBody,
            example = json!(example_join())),
        (status = 401, description = "`Unauthorized user`: no caller, or not a participant", body = ErrorBody,
            example = json!(examples::unauthorized())),
        (status = 404, description = "`Room with id <roomId> not found on CRUD`", body = ErrorBody,
            example = json!(examples::room_not_found())),
    ))]
async fn get_teleconsultation(
    State(state): State<ApiState>,
    RoomId(id): RoomId,
    caller: RequestCaller,
    query: Result<Query<JoinQuery>, QueryRejection>,
) -> Result<Json<JoinBody>, ApiError> {
    let link = match query {
        Ok(Query(query)) => query.into_link_request(),
        Err(rejection) => Err(Unreadable::invalid(rejection.body_text())),
    };
    let join = state.teleconsultations.join(&id, caller.0, link).await?;
    Ok(Json(JoinBody::from(join)))
}

/// One teleconsultation as the caller sees it in the agenda: its participants see their own,
/// callers in `bookingGroups` every one (`you` null unless they take part). No link, no
/// Kaleyra id, no groups: the join is `GET /teleconsultation/{roomId}`. Reads the store only.
#[utoipa::path(get, path = "/teleconsultations/{roomId}", tag = "teleconsultations",
    params(("roomId" = String, Path, description = "The teleconsultation id")),
    responses(
        (status = 200, description = "The teleconsultation", body = AgendaViewBody,
            example = json!(example_view())),
        (status = 400, description = "An identity header sent twice", body = ErrorBody,
            example = json!(examples::repeated_identity())),
        (status = 401, description = "`Unauthorized user`: no caller (before any 404)", body = ErrorBody,
            example = json!(examples::unauthorized())),
        (status = 404, description = "Unknown or deleted, or the caller neither takes part nor is in `bookingGroups` (the same answer: an id's existence is not revealed)", body = ErrorBody,
            example = json!(examples::unknown_id())),
    ))]
async fn view_teleconsultation(
    State(state): State<ApiState>,
    RoomId(id): RoomId,
    caller: RequestCaller,
) -> Result<Json<AgendaViewBody>, ApiError> {
    let view = state.teleconsultations.view(&id, caller.0).await?;
    Ok(Json(AgendaViewBody::from(view)))
}

/// The agenda: the teleconsultations the caller sees (its own; every one for a caller in
/// `bookingGroups`; none for anyone else), in `startDate` then `roomId` order, a page at a
/// time. A page never repeats or skips a teleconsultation that stays as it is, whatever is
/// booked, changed or deleted between pages. Any other query parameter is refused (400), as
/// is each of these given twice. Reads the store only.
#[utoipa::path(get, path = "/teleconsultations", tag = "teleconsultations",
    params(
        ("from" = Option<String>, Query, format = DateTime, description = "RFC 3339: start dates from this instant on (inclusive)"),
        ("to" = Option<String>, Query, format = DateTime, description = "RFC 3339: start dates before this instant (exclusive); after `from`"),
        ("status" = Option<AgendaStatusBody>, Query, description = "Only teleconsultations with this status now"),
        ("participant" = Option<String>, Query, min_length = 1, max_length = 256, description = "Only the teleconsultations of this user id; callers in `bookingGroups` only (403 for others)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "The page size: 1 to 100, default 20"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page, unchanged; absent for the first page"),
    ),
    responses(
        (status = 200, description = "A page of the agenda", body = AgendaListBody,
            example = json!(example_agenda_page())),
        (status = 400, description = "A bad, repeated or unknown query parameter (the message names it and what is allowed), or an identity header sent twice", body = ErrorBody,
            example = json!(examples::bad_query())),
        (status = 401, description = "`Unauthorized user`: no caller", body = ErrorBody,
            example = json!(examples::unauthorized())),
        (status = 403, description = "`participant` given by a caller not in `bookingGroups`", body = ErrorBody,
            example = json!(examples::participant_filter_refused())),
    ))]
async fn list_teleconsultations(
    State(state): State<ApiState>,
    caller: RequestCaller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<AgendaListBody>, ApiError> {
    let query = match query {
        Ok(Query(pairs)) => Ok(parse_list_query(&pairs)),
        Err(rejection) => Err(Unreadable::invalid(rejection.body_text())),
    };
    let list = state.teleconsultations.list(caller.0, query).await?;
    Ok(Json(AgendaListBody::from(list)))
}

/// Deletes the teleconsultation and its Kaleyra room (later, if Kaleyra is down).
#[utoipa::path(delete, path = "/teleconsultation/{roomId}", tag = "teleconsultations",
    params(("roomId" = String, Path, description = "The teleconsultation id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "`Unauthorized user`: no caller, where `bookingGroups` guards the route (always in bearer mode)", body = ErrorBody,
            example = json!(examples::unauthorized())),
        (status = 403, description = "The caller is not in `bookingGroups`", body = ErrorBody,
            example = json!(examples::not_in_booking_groups())),
        (status = 404, description = "Unknown or already deleted", body = ErrorBody,
            example = json!(examples::unknown_id())),
    ))]
async fn delete_teleconsultation(
    State(state): State<ApiState>,
    Arrival(arrived): Arrival,
    RoomId(id): RoomId,
    caller: RequestCaller,
) -> Result<StatusCode, ApiError> {
    state
        .teleconsultations
        .delete(id, caller.0, arrived)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes the files shared in the room (when `TELECONSULTATION_DELETE_UPLOADS` is true).
#[utoipa::path(delete, path = "/teleconsultation/{roomId}/uploads", tag = "teleconsultations",
    params(("roomId" = String, Path, description = "The teleconsultation id")),
    responses(
        (status = 200, description = "`deleted` < `total` when some deletions failed: send again", body = UploadsDeletedBody,
            example = json!(example_uploads_deleted())),
        (status = 204, description = "Disabled: nothing done"),
        (status = 401, description = "`Unauthorized user`: not a participant", body = ErrorBody,
            example = json!(examples::unauthorized())),
        (status = 404, description = "Unknown or deleted", body = ErrorBody,
            example = json!(examples::unknown_id())),
        (status = 502, description = "Kaleyra failed", body = ErrorBody,
            example = json!(examples::kaleyra_failed("list_uploads"))),
        (status = 503, description = "Kaleyra unreachable", body = ErrorBody,
            example = json!(examples::kaleyra_unreachable("list_uploads"))),
    ))]
async fn delete_uploads(
    State(state): State<ApiState>,
    RoomId(id): RoomId,
    caller: RequestCaller,
) -> Result<Response, ApiError> {
    let deleted = state
        .teleconsultations
        .delete_uploads(&id, caller.0)
        .await?;
    Ok(match deleted {
        Some(deleted) => Json(UploadsDeletedBody {
            total: deleted.total,
            deleted: deleted.deleted,
        })
        .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

// --- OpenAPI examples of the answers (see `examples`) ---------------------------------------

fn example_created() -> CreatedBody {
    CreatedBody {
        room_id: examples::ROOM_ID.to_owned(),
    }
}

/// `GET /teleconsultation/{roomId}` as the patient asks it.
fn example_join() -> JoinBody {
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
                "telecons:9c1e5b2a7f3d4e60:4b1d7a9e02c3f815:{}:1d2c3b4a5f6e7d8c",
                examples::ROOM_ID
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

fn example_agenda_participant(
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

fn example_agenda_entry() -> AgendaEntryBody {
    AgendaEntryBody {
        room_id: examples::ROOM_ID.to_owned(),
        start_date: "2030-01-02T10:00:00.000Z".to_owned(),
        end_date: "2030-01-02T11:00:00.000Z".to_owned(),
        number: 2,
        status: AgendaStatusBody::Scheduled,
        links_open_at: "2030-01-02T09:50:00.000Z".to_owned(),
        room: AgendaRoomBody::Ready,
        participants: vec![
            example_agenda_participant("doc-1", "Anna Bianchi", AgendaRoleBody::Plus, Some("it")),
            example_agenda_participant("pat-1", "Mario Rossi", AgendaRoleBody::Basic, None),
        ],
        created_at: "2030-01-01T10:00:00.000Z".to_owned(),
        updated_at: "2030-01-01T10:00:00.000Z".to_owned(),
    }
}

/// `GET /teleconsultations/{roomId}` as the patient asks it.
fn example_view() -> AgendaViewBody {
    AgendaViewBody {
        entry: example_agenda_entry(),
        you: Some(example_agenda_participant(
            "pat-1",
            "Mario Rossi",
            AgendaRoleBody::Basic,
            None,
        )),
    }
}

/// A page of one, with more to come.
fn example_agenda_page() -> AgendaListBody {
    AgendaListBody {
        items: vec![example_agenda_entry()],
        next_cursor: Some("djE6MTg5MzU3ODQwMDAwMDo2NWExZjBjMmU0YjBhMWIyYzNkNGU1ZjY".to_owned()),
    }
}

fn example_uploads_deleted() -> UploadsDeletedBody {
    UploadsDeletedBody {
        total: 3,
        deleted: 3,
    }
}
