//! Handlers of the Kaleyra API (`/v2/…`). Each one locks the model once, briefly.

use axum::{
    Json, Router,
    extract::{
        Multipart, Path, State,
        multipart::{MultipartError, MultipartRejection},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use chrono::TimeDelta;
use jsonwebtoken::{EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::{
    Simulator,
    error::{ApiError, KJson, KQuery},
    state,
    wire::{
        CompanyEnvelope, CreateRoomRequest, CreateUserRequest, Credentials, CredentialsRequest,
        Room, UpdateCompanyRequest, UpdateUserRequest, UploadsQuery, User, VIRTUAL_BACKGROUND_PART,
        VirtualBackgroundEnvelope,
    },
};

type ApiResult<T> = Result<T, ApiError>;

/// The `/v2` routes; their templates are listed in [`crate::faults::V2_ROUTES`].
pub(crate) fn router() -> Router<Simulator> {
    Router::new()
        .route("/v2/users", post(create_user))
        .route("/v2/users/{id}", get(get_user).put(update_user))
        .route("/v2/rooms", post(create_room).get(list_rooms))
        .route("/v2/rooms/{id}", get(get_room).delete(delete_room))
        .route("/v2/uploads", get(list_uploads))
        .route("/v2/uploads/{key}", delete(delete_upload))
        .route("/v2/sdk/credentials", post(sdk_credentials))
        .route("/v2/company", get(get_company).put(update_company))
        .route("/v2/company/virtual-background", post(upload_background))
}

async fn create_user(
    State(sim): State<Simulator>,
    KJson(req): KJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let user = sim.lock_model().create_user(req)?;
    Ok((StatusCode::CREATED, Json(User::from(&user))))
}

async fn get_user(State(sim): State<Simulator>, Path(id): Path<String>) -> ApiResult<Json<User>> {
    let user = sim.lock_model().user(&id)?;
    Ok(Json(User::from(&user)))
}

async fn update_user(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    KJson(req): KJson<UpdateUserRequest>,
) -> ApiResult<Json<User>> {
    let user = sim.lock_model().update_user(&id, req)?;
    Ok(Json(User::from(&user)))
}

async fn create_room(
    State(sim): State<Simulator>,
    KJson(req): KJson<CreateRoomRequest>,
) -> ApiResult<(StatusCode, Json<Room>)> {
    let prefix = sim.link_prefix();
    let room = sim.lock_model().create_room(req, &prefix)?;
    Ok((StatusCode::CREATED, Json(Room::from(&room))))
}

async fn list_rooms(State(sim): State<Simulator>) -> Json<Vec<Room>> {
    let rooms = sim.lock_model().rooms();
    Json(rooms.iter().map(Room::from).collect())
}

async fn get_room(State(sim): State<Simulator>, Path(id): Path<String>) -> ApiResult<Json<Room>> {
    let room = sim.lock_model().room(&id)?;
    Ok(Json(Room::from(&room)))
}

async fn delete_room(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    sim.lock_model().delete_room(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_uploads(
    State(sim): State<Simulator>,
    KQuery(q): KQuery<UploadsQuery>,
) -> Json<Vec<crate::wire::Upload>> {
    Json(sim.lock_model().uploads(&q.room_id))
}

async fn delete_upload(
    State(sim): State<Simulator>,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    sim.lock_model().delete_upload(&key)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Claims of the simulated SDK access token.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

async fn sdk_credentials(
    State(sim): State<Simulator>,
    KJson(req): KJson<CredentialsRequest>,
) -> ApiResult<Json<Credentials>> {
    let expires_in = sim
        .lock_model()
        .check_credentials(&req.user_id, req.expires_in)?;
    let iat = state::now();
    let exp = iat + TimeDelta::seconds(expires_in);
    let claims = Claims {
        sub: req.user_id.clone(),
        iat: iat.timestamp(),
        exp: exp.timestamp(),
    };
    // A real HS256 JWT keyed with the company API key, so tests can verify it.
    let token = EncodingKey::from_secret(sim.api_key().as_bytes())
        .and_then(|key| jsonwebtoken::encode(&Header::default(), &claims, &key))
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!("could not sign the token: {e}"),
            )
        })?;
    Ok(Json(Credentials {
        access_token: token,
        expires_at: state::format_date(exp),
        user_id: req.user_id,
    }))
}

async fn get_company(State(sim): State<Simulator>) -> Json<CompanyEnvelope> {
    let (company, bg) = sim.lock_model().company();
    Json(CompanyEnvelope::new(&company, bg.as_ref()))
}

async fn update_company(
    State(sim): State<Simulator>,
    KJson(req): KJson<UpdateCompanyRequest>,
) -> ApiResult<Json<CompanyEnvelope>> {
    let (company, bg) = sim.lock_model().update_company(req)?;
    Ok(Json(CompanyEnvelope::new(&company, bg.as_ref())))
}

/// `POST /v2/company/virtual-background`: exactly one file part `virtual_background`, with a
/// filename, declared `image/jpeg`.
async fn upload_background(
    State(sim): State<Simulator>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let mut multipart = multipart.map_err(|e| {
        ApiError::unsupported_media_type(format!("expected multipart/form-data: {}", e.body_text()))
    })?;
    let mut file = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name != VIRTUAL_BACKGROUND_PART {
            return Err(ApiError::invalid(format!(
                "unknown field `{name}`, expected `{VIRTUAL_BACKGROUND_PART}`"
            )));
        }
        if file.is_some() {
            return Err(ApiError::invalid(format!(
                "more than one `{VIRTUAL_BACKGROUND_PART}` part"
            )));
        }
        // Without a filename the part is a plain form field, not a file.
        let Some(filename) = field.file_name().map(str::to_owned) else {
            return Err(ApiError::invalid(format!(
                "`{VIRTUAL_BACKGROUND_PART}` must be a file part (with a filename)"
            )));
        };
        let content_type = field.content_type().map(str::to_owned);
        let bytes = field.bytes().await.map_err(multipart_error)?;
        file = Some((filename, content_type, bytes));
    }
    let (filename, content_type, image) = file.ok_or_else(|| {
        ApiError::invalid(format!("missing the file part `{VIRTUAL_BACKGROUND_PART}`"))
    })?;
    let bg = sim
        .lock_model()
        .add_background_file(&filename, content_type.as_deref(), &image)?;
    Ok((
        StatusCode::CREATED,
        Json(VirtualBackgroundEnvelope::from(&bg)),
    )
        .into_response())
}

fn multipart_error(e: MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(e.body_text())
    } else {
        ApiError::invalid(e.body_text())
    }
}

/// Unknown paths, in Kaleyra's error shape.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
