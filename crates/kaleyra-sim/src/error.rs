//! Every error answer, in Kaleyra's shape `{"error": "<snake_case>", "message": "<text>"}`, and
//! the extractors that turn axum's own rejections into that shape.

use axum::{
    Json,
    extract::{
        FromRequest, FromRequestParts, Query, Request,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{HeaderValue, StatusCode, header::RETRY_AFTER, request::Parts},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

use crate::{state::SimError, wire::ErrorBody};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (seconds).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_owned(),
            message: self.message,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<SimError> for ApiError {
    fn from(e: SimError) -> Self {
        match e {
            SimError::Invalid(m) => ApiError::invalid(m),
            SimError::UserNotFound(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "user_not_found", m)
            }
            SimError::NoPlusUser => ApiError::new(
                StatusCode::BAD_REQUEST,
                "no_plus_user",
                "a room needs at least one participant whose role is plus",
            ),
            SimError::NotFound(m) => ApiError::not_found(m),
            SimError::UserAlreadyExists(id) => ApiError::new(
                StatusCode::CONFLICT,
                "user_already_exists",
                format!("user `{id}` already exists"),
            ),
            SimError::TooManyBackgrounds => ApiError::new(
                StatusCode::CONFLICT,
                "too_many_backgrounds",
                format!(
                    "a company may have at most {} virtual backgrounds",
                    crate::state::MAX_BACKGROUNDS
                ),
            ),
            SimError::TooLarge(m) => ApiError::too_large(m),
            SimError::UnsupportedMediaType(m) => ApiError::unsupported_media_type(m),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::unsupported_media_type("the body must be sent as application/json")
            }
            // serde's text names the offending field, e.g. "unknown field `x`, expected …".
            JsonRejection::JsonDataError(e) => ApiError::invalid(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => ApiError::invalid(e.body_text()),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::too_large(e.body_text())
            }
            other => ApiError::invalid(other.body_text()),
        }
    }
}

/// `axum::Json` with Kaleyra-shaped rejections (415 without the JSON content type, 400 naming
/// an unknown or malformed field).
pub struct KJson<T>(pub T);

impl<S, T> FromRequest<S> for KJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(KJson(value))
    }
}

/// `axum::extract::Query` with Kaleyra-shaped rejections.
pub struct KQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for KQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e: QueryRejection| ApiError::invalid(e.body_text()))?;
        Ok(KQuery(value))
    }
}
