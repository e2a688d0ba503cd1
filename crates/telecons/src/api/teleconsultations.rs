//! `/teleconsultation` routes (spec §4.1–§4.6): parse, call the lifecycle, shape the answer.
//!
//! Bodies are parsed inside the handlers, after the id is known to exist, so that errors
//! come in the documented order: 404 (unknown id) → 401 (caller) → 400 (body) → 409 → 400
//! (no plus user).

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::{json_body, json_response};
use super::caller::{Caller, RequestCaller};
use super::error::{ApiError, ErrorBody};
use super::middleware::Arrival;
use super::{ApiState, to_completion};
use crate::domain::join::LinkOptions;
use crate::domain::participants::{ParticipantEntry, ParticipantsInput};
use crate::domain::schedule::{format_instant, parse_instant};
use crate::services::teleconsultations::{BookingInput, TeleconsultationError};

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
            // `/teleconsultation/<segment>[/...]`
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

// ---------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------

/// One participant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a participant: an object with userId (or userExternalId), groups (or group), fullName and language"
)]
pub struct ParticipantBody {
    /// The participant's external user id (alias `userExternalId`).
    #[serde(rename = "userId", alias = "userExternalId")]
    pub user_id: String,
    /// Groups deciding the role (alias `group`, a single string also accepted). Required
    /// without a user directory.
    #[serde(default, alias = "group")]
    #[schema(value_type = Option<Vec<String>>)]
    pub groups: Option<OneOrMany>,
    /// Shown to the other participants. Required without a user directory.
    #[serde(default, rename = "fullName")]
    pub full_name: Option<String>,
    /// The participant's language (`it`, `en`, `pl`, `fr`, `de` reach the join link).
    #[serde(default)]
    pub language: Option<String>,
}

/// `groups` as a list, or `group` as one string.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;
        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a group name or a list of group names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<OneOrMany, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(OneOrMany)
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

/// `{"number": N, "data": [...]}`: N participants expected, those known so far.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with number (2 to 25) and data (a list of participants)"
)]
pub struct ListedParticipants {
    /// How many participants the teleconsultation will have (2–25).
    pub number: i64,
    /// The participants known so far (at most `number`), in order; may be empty.
    pub data: Vec<ParticipantBody>,
}

/// `participants`: user ids (with a user directory) or `{number, data}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ParticipantsBody {
    /// User ids; needs the user directory (`AUTH_SERVICE`).
    Ids(Vec<String>),
    Listed(ListedParticipants),
}

// Hand-written so that errors name the field (an untagged derive only says "no variant
// matched").
impl<'de> Deserialize<'de> for ParticipantsBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParticipantsVisitor;
        impl<'de> Visitor<'de> for ParticipantsVisitor {
            type Value = ParticipantsBody;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of user ids or an object {\"number\", \"data\"}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ParticipantsBody, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(ParticipantsBody::Ids)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ParticipantsBody, A::Error> {
                ListedParticipants::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ParticipantsBody::Listed)
            }
        }
        deserializer.deserialize_any(ParticipantsVisitor)
    }
}

/// The body of `POST /teleconsultation` (all required but one of `end_date` /
/// `duration_in_seconds`) and of `PATCH` (any subset).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with participants, start_date, and end_date or duration_in_seconds"
)]
pub struct TeleconsultationBody {
    #[serde(default)]
    pub participants: Option<ParticipantsBody>,
    /// ISO 8601 / RFC 3339 date-time, e.g. `2030-02-22T15:30:00.000Z`.
    #[serde(default)]
    #[schema(example = "2030-02-22T15:30:00.000Z")]
    pub start_date: Option<String>,
    /// The end; give it or `duration_in_seconds`, not both. 5 minutes to 24 hours after the
    /// start.
    #[serde(default)]
    pub end_date: Option<String>,
    /// The duration in seconds (300–86400); give it or `end_date`, not both.
    #[serde(default)]
    pub duration_in_seconds: Option<i64>,
}

fn instant(field: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            parse_instant(&v).map_err(|_| {
                ApiError::bad_request(format!(
                    "{field} must be an ISO 8601 date-time with a time zone, such as \
                     2030-02-22T15:30:00.000Z; got {v:?}"
                ))
            })
        })
        .transpose()
}

fn participant_input(body: ParticipantBody) -> ParticipantEntry {
    ParticipantEntry {
        external_id: body.user_id,
        groups: body.groups.map(|g| g.0),
        full_name: body.full_name,
        language: body.language,
    }
}

impl TeleconsultationBody {
    fn into_input(self) -> Result<BookingInput, ApiError> {
        Ok(BookingInput {
            participants: self.participants.map(|p| match p {
                ParticipantsBody::Ids(ids) => ParticipantsInput::Ids(ids),
                ParticipantsBody::Listed(listed) => ParticipantsInput::Listed {
                    number: listed.number,
                    data: listed.data.into_iter().map(participant_input).collect(),
                },
            }),
            start: instant("start_date", self.start_date)?,
            end: instant("end_date", self.end_date)?,
            duration_secs: self.duration_in_seconds,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedBody {
    /// The teleconsultation's id (24 hex characters).
    #[serde(rename = "roomId")]
    #[schema(example = "65a1f0c2e4b0a1b2c3d4e5f6")]
    pub room_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantCallBody<'a> {
    #[serde(rename = "bandyerUserId")]
    pub bandyer_user_id: &'a str,
    #[serde(rename = "fullName")]
    pub full_name: Option<&'a str>,
}

/// The room as Kaleyra reports it (never the participants' links).
#[derive(Debug, Serialize, ToSchema)]
pub struct DetailsBody<'a> {
    pub recording: &'a str,
    #[serde(rename = "recordingStatus")]
    pub recording_status: &'a str,
    #[serde(rename = "callType")]
    pub call_type: &'a str,
    pub description: Option<&'a str>,
    pub status: &'a str,
    pub disabled: bool,
    #[serde(rename = "creationDate")]
    pub creation_date: String,
    #[serde(rename = "durationInSeconds")]
    pub duration_in_seconds: u64,
    #[serde(rename = "durationUsedInSeconds")]
    pub duration_used_in_seconds: u64,
    pub live: bool,
}

// Borrowed from the teleconsultation and the room's details: every participant polls it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JoinBody<'a> {
    /// The caller's Kaleyra user id.
    #[serde(rename = "bandyerUserId")]
    pub bandyer_user_id: &'a str,
    /// The caller's personal join link; null until `start − IMMUTABLE_PERIOD_MS` and while
    /// the room is being created or replaced (poll).
    #[serde(rename = "accessLinkURL")]
    pub access_link_url: Option<String>,
    /// Every known participant, the caller included.
    #[serde(rename = "participantsBandyerCall")]
    pub participants_bandyer_call: Vec<ParticipantCallBody<'a>>,
    /// The room's details, or null when there is no room yet or Kaleyra cannot be read.
    pub details: Option<DetailsBody<'a>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadsDeletedBody {
    pub total: u64,
    pub deleted: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JoinQuery {
    /// `true` for a link with the company background on.
    #[serde(default, rename = "useBackground")]
    #[param(value_type = Option<bool>)]
    pub use_background: Option<String>,
    /// `it`, `en`, `pl`, `fr` or `de`; any other value falls back to the default.
    #[serde(default)]
    pub language: Option<String>,
}

/// Maps a lifecycle error; `no_plus_user` is the route's documented string. The documented
/// 404 string belongs to GET (see [`get_teleconsultation`]); the other routes answer the
/// plain shape, as the original's CRUD did.
fn booking_error(err: TeleconsultationError, no_plus_user: impl FnOnce() -> String) -> ApiError {
    match err {
        TeleconsultationError::NotFound(id) => {
            ApiError::not_found(format!("no live teleconsultation has the id {id:?}"))
        }
        TeleconsultationError::Unauthorized => ApiError::unauthorized(),
        TeleconsultationError::Invalid(message) => ApiError::bad_request(message),
        err @ TeleconsultationError::Immutable { .. } => ApiError::conflict(err.to_string()),
        TeleconsultationError::Conflict(message) => ApiError::conflict(message),
        TeleconsultationError::NoPlusUser(_) => {
            ApiError::documented(StatusCode::BAD_REQUEST, no_plus_user())
        }
        TeleconsultationError::Storage(err) => err.into(),
        TeleconsultationError::Kaleyra(err) => super::error::kaleyra_failure(&err),
        // Nothing was stored: the request may be sent again.
        err @ (TeleconsultationError::Directory(_) | TeleconsultationError::OutOfTime) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
        }
    }
}

/// The caller; when its identity is ambiguous, the 400 comes only after the 404 of an
/// unknown id (spec §4's order).
async fn known_caller(
    state: &ApiState,
    id: &str,
    caller: RequestCaller,
    map: impl Fn(TeleconsultationError) -> ApiError,
) -> Result<Caller, ApiError> {
    match caller.get() {
        Ok(caller) => Ok(caller),
        Err(ambiguous) => {
            state.teleconsultations.ensure_live(id).await.map_err(map)?;
            Err(ambiguous)
        }
    }
}

fn no_plus(route: &str) -> impl FnOnce() -> String + '_ {
    move || format!("Failed {route}: no plus user in room")
}

// ---------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------

/// Books a teleconsultation; creates the Kaleyra room when all participants are known.
#[utoipa::path(post, path = "/teleconsultation", tag = "teleconsultations",
    request_body = TeleconsultationBody,
    responses(
        (status = 201, description = "Stored (and its room created when complete)", body = CreatedBody),
        (status = 400, description = "Invalid body, or `Failed POST /teleconsultation: no plus user in room`", body = ErrorBody),
    ))]
async fn create_teleconsultation(
    State(state): State<ApiState>,
    Arrival(arrived): Arrival,
    caller: RequestCaller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedBody>), ApiError> {
    let caller = caller.get()?;
    let input = json_body::<TeleconsultationBody>(&headers, body)?.into_input()?;
    let teleconsultations = Arc::clone(&state.teleconsultations);
    let id =
        to_completion(async move { teleconsultations.create(input, caller.id, arrived).await })
            .await
            .map_err(|e| booking_error(e, no_plus("POST /teleconsultation")))?;
    Ok((StatusCode::CREATED, Json(CreatedBody { room_id: id })))
}

/// Changes the given fields; the room is replaced only when the change affects it.
#[utoipa::path(patch, path = "/teleconsultation/{roomId}", tag = "teleconsultations",
    params(("roomId" = String, Path, description = "The teleconsultation id")),
    request_body = TeleconsultationBody,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "Invalid body, or `Failed PATCH /teleconsultation: no plus user in room`", body = ErrorBody),
        (status = 404, description = "Unknown or deleted", body = ErrorBody),
        (status = 409, description = "Inside the immutable period", body = ErrorBody),
    ))]
async fn update_teleconsultation(
    State(state): State<ApiState>,
    Arrival(arrived): Arrival,
    RoomId(id): RoomId,
    caller: RequestCaller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let map = |e| booking_error(e, no_plus("PATCH /teleconsultation"));
    state
        .teleconsultations
        .ensure_live(&id)
        .await
        .map_err(map)?;
    let caller = caller.get()?;
    let input = json_body::<TeleconsultationBody>(&headers, body)?.into_input()?;
    let teleconsultations = Arc::clone(&state.teleconsultations);
    let target = id.clone();
    to_completion(async move {
        teleconsultations
            .update(&target, input, caller.id, arrived)
            .await
    })
    .await
    .map_err(map)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds one participant; creates the room when it completes the list.
#[utoipa::path(post, path = "/teleconsultation/{roomId}/participants/data", tag = "teleconsultations",
    params(("roomId" = String, Path, description = "The teleconsultation id")),
    request_body = ParticipantBody,
    responses(
        (status = 201, description = "Added (empty body)"),
        (status = 400, description = "Invalid body, or `Failed POST /teleconsultation/<roomId>/participants/data: no plus user in room`", body = ErrorBody),
        (status = 404, description = "Unknown or deleted", body = ErrorBody),
        (status = 409, description = "Immutable, already complete, or the user is already a participant", body = ErrorBody),
    ))]
async fn add_participant(
    State(state): State<ApiState>,
    Arrival(arrived): Arrival,
    RoomId(id): RoomId,
    caller: RequestCaller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = format!("POST /teleconsultation/{id}/participants/data");
    let map = |e| booking_error(e, no_plus(&route));
    state
        .teleconsultations
        .ensure_live(&id)
        .await
        .map_err(map)?;
    let caller = caller.get()?;
    let entry = participant_input(json_body::<ParticipantBody>(&headers, body)?);
    let teleconsultations = Arc::clone(&state.teleconsultations);
    let target = id.clone();
    to_completion(async move {
        teleconsultations
            .add_participant(&target, entry, caller.id, arrived)
            .await
    })
    .await
    .map_err(map)?;
    Ok(StatusCode::CREATED.into_response())
}

/// The caller's join link and the room's details.
#[utoipa::path(get, path = "/teleconsultation/{roomId}", tag = "teleconsultations",
    params(("roomId" = String, Path, description = "The teleconsultation id"), JoinQuery),
    responses(
        (status = 200, description = "The caller's view", body = JoinBody),
        (status = 401, description = "`Unauthorized user`: no caller, or not a participant", body = ErrorBody),
        (status = 404, description = "`Room with id <roomId> not found on CRUD`", body = ErrorBody),
    ))]
async fn get_teleconsultation(
    State(state): State<ApiState>,
    RoomId(id): RoomId,
    caller: RequestCaller,
    query: Result<Query<JoinQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let map = |e| match e {
        TeleconsultationError::NotFound(id) => ApiError::documented(
            StatusCode::NOT_FOUND,
            format!("Room with id {id} not found on CRUD"),
        ),
        other => booking_error(other, String::new),
    };
    let caller = known_caller(&state, &id, caller, map).await?;
    // 404, then 401, then the query's 400.
    let tc = state
        .teleconsultations
        .authorize(&id, caller.id.as_deref())
        .await
        .map_err(map)?;
    let caller_id = caller.id.unwrap_or_default();
    let Query(query) = query?;
    let use_background = match query.use_background.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "useBackground must be true or false, got {other:?}"
            )));
        }
    };
    let options = LinkOptions {
        use_background,
        language: query.language,
        caller_groups: caller.groups,
    };
    let join = state
        .teleconsultations
        .view(&tc, &caller_id, &options)
        .await
        .map_err(map)?;
    let view = join.view;
    let participants = view.participants.len();
    let body = JoinBody {
        bandyer_user_id: view.kaleyra_user_id,
        access_link_url: view.access_link,
        participants_bandyer_call: view
            .participants
            .into_iter()
            .map(|(bandyer_user_id, full_name)| ParticipantCallBody {
                bandyer_user_id,
                full_name,
            })
            .collect(),
        details: join.details.as_deref().map(|room| DetailsBody {
            recording: &room.recording,
            recording_status: &room.recording_status,
            call_type: &room.call_type,
            description: room.description.as_deref(),
            status: &room.status,
            disabled: room.disabled,
            creation_date: format_instant(room.creation_date),
            duration_in_seconds: room.duration_in_seconds,
            duration_used_in_seconds: room.duration_used_in_seconds,
            live: room.live,
        }),
    };
    // About 530 bytes with the link and the details, and 100 per participant (Kaleyra ids are
    // 67 characters) plus its name: room for names of up to 60 bytes.
    Ok(json_response(&body, 640 + 160 * participants))
}

/// Deletes the teleconsultation and its Kaleyra room (later, if Kaleyra is down).
#[utoipa::path(delete, path = "/teleconsultation/{roomId}", tag = "teleconsultations",
    params(("roomId" = String, Path, description = "The teleconsultation id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Unknown or already deleted", body = ErrorBody),
    ))]
async fn delete_teleconsultation(
    State(state): State<ApiState>,
    Arrival(arrived): Arrival,
    RoomId(id): RoomId,
    caller: RequestCaller,
) -> Result<StatusCode, ApiError> {
    let map = |e| booking_error(e, String::new);
    let caller = known_caller(&state, &id, caller, map).await?;
    let teleconsultations = Arc::clone(&state.teleconsultations);
    to_completion(async move { teleconsultations.delete(&id, caller.id, arrived).await })
        .await
        .map_err(|e| booking_error(e, String::new))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes the files shared in the room (when `TELECONSULTATION_DELETE_UPLOADS` is true).
#[utoipa::path(delete, path = "/teleconsultation/{roomId}/uploads", tag = "teleconsultations",
    params(("roomId" = String, Path, description = "The teleconsultation id")),
    responses(
        (status = 200, description = "`deleted` < `total` when some deletions failed: send again", body = UploadsDeletedBody),
        (status = 204, description = "Disabled: nothing done"),
        (status = 401, description = "`Unauthorized user`: not a participant", body = ErrorBody),
        (status = 404, description = "Unknown or deleted", body = ErrorBody),
        (status = 502, description = "Kaleyra failed", body = ErrorBody),
        (status = 503, description = "Kaleyra unreachable", body = ErrorBody),
    ))]
async fn delete_uploads(
    State(state): State<ApiState>,
    RoomId(id): RoomId,
    caller: RequestCaller,
) -> Result<Response, ApiError> {
    let map = |e| booking_error(e, String::new);
    let caller = known_caller(&state, &id, caller, map).await?;
    let deleted = state
        .teleconsultations
        .delete_uploads(&id, caller.id.as_deref())
        .await
        .map_err(|e| booking_error(e, String::new))?;
    Ok(match deleted {
        Some(deleted) => Json(UploadsDeletedBody {
            total: deleted.total,
            deleted: deleted.deleted,
        })
        .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}
