//! One error type for every route, rendered as `{"statusCode", "error", "message"}`
//! (spec §6). Unexpected failures (storage, panics) reach the response as a generic message
//! and the cause goes to the logs; a failed Kaleyra call reaches it as the operation and
//! Kaleyra's status only (Kaleyra's text goes to the logs). Every service's error is mapped
//! here, once.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use kaleyra_client::KaleyraError;

use crate::domain::access::Denied;
use crate::identity::directory::DirectoryError;
use crate::identity::{GroupsError, IdentityError};
use crate::services::teleconsultations::Operation;
use crate::services::{ServiceError, Unreadable, UnreadableKind};
use crate::store::StoreError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// The documented error string for the errors the original service documents; else the
    /// HTTP reason phrase.
    pub error: String,
    /// What was wrong, in words a caller can act on.
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    message: String,
    /// Seconds, sent as `Retry-After`.
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error the original service documents: `error` is the exact documented string and
    /// `message` repeats it.
    pub fn documented(status: StatusCode, text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            status,
            error: text.clone(),
            message: text,
            retry_after: None,
        }
    }

    /// Any other error: `error` is the reason phrase, `message` says what was wrong.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            error: status.canonical_reason().unwrap_or("Error").to_owned(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// Asks the caller to send the request again after `seconds` (`Retry-After`).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// `401 {"error": "Unauthorized user"}`, as documented.
    pub fn unauthorized() -> Self {
        Self::documented(StatusCode::UNAUTHORIZED, "Unauthorized user")
    }

    /// An unexpected failure: the cause is logged here, the caller gets a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the request id in x-request-id finds it in the logs",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl ApiError {
    /// The body this error is answered with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            status_code: self.status.as_u16(),
            error: self.error.clone(),
            message: self.message.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Database { .. } => {
                tracing::error!(error = %err, "storage failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage is unavailable; try again",
                )
            }
            // The request held its key longer than the hold; another took it over.
            StoreError::KeyLost => Self::conflict(
                "another request with this Idempotency-Key took it over meanwhile; nothing was stored: send the request again",
            ),
            StoreError::StaleVersion => Self::conflict(
                "the teleconsultation was changed by another request meanwhile; read it and try again",
            ),
            other => Self::internal(other),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<Unreadable> for ApiError {
    fn from(err: Unreadable) -> Self {
        let status = match err.kind {
            UnreadableKind::Invalid => StatusCode::BAD_REQUEST,
            UnreadableKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnreadableKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        };
        Self::new(status, err.message)
    }
}

impl From<IdentityError> for ApiError {
    fn from(err: IdentityError) -> Self {
        Self::bad_request(err.to_string())
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Unidentified | Denied::NotAParticipant => Self::unauthorized(),
            forbidden @ Denied::NotInGroups { .. } => {
                Self::new(StatusCode::FORBIDDEN, forbidden.to_string())
            }
        }
    }
}

/// The directory cannot answer: nothing was done, the request may be sent again.
impl From<DirectoryError> for ApiError {
    fn from(err: DirectoryError) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
    }
}

impl From<GroupsError> for ApiError {
    fn from(err: GroupsError) -> Self {
        match err {
            GroupsError::UnknownUser(_) => Self::bad_request(err.to_string()),
            GroupsError::Directory(err) => err.into(),
        }
    }
}

/// A failed Kaleyra call on a route whose answer needs Kaleyra: 503 when Kaleyra cannot be
/// reached or does not answer in time, else 502 — Kaleyra's refusals too: on the routes that
/// use this, what Kaleyra refuses came from stored data, not from the caller's body. The
/// message names the operation and Kaleyra's status only (spec §6): Kaleyra's own text (its
/// error code and message) is logged, cut short, never echoed to the caller. Never the API
/// key either, which only ever travels in a header.
impl From<KaleyraError> for ApiError {
    fn from(err: KaleyraError) -> Self {
        tracing::warn!(error = %err, "a Kaleyra call failed");
        let status =
            if err.is_unreachable() || matches!(err.kind(), kaleyra_client::ErrorKind::Timeout) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_GATEWAY
            };
        Self::new(status, err.summary())
    }
}

/// The documented 404 string belongs to GET; the other routes answer the plain shape, as the
/// original's CRUD did. The documented no-plus-user string names the route.
impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::NotFound(id) => {
                Self::not_found(format!("no live teleconsultation has the id {id:?}"))
            }
            ServiceError::RoomNotFound(id) => Self::documented(
                StatusCode::NOT_FOUND,
                format!("Room with id {id} not found on CRUD"),
            ),
            ServiceError::Denied(denied) => denied.into(),
            ServiceError::Identity(err) => err.into(),
            ServiceError::Unreadable(err) => err.into(),
            ServiceError::Invalid(message) => Self::bad_request(message),
            ServiceError::NoRole(message) => Self::new(StatusCode::FORBIDDEN, message),
            err @ ServiceError::Immutable { .. } => Self::conflict(err.to_string()),
            ServiceError::Conflict(message) | ServiceError::TooMany(message) => {
                Self::conflict(message)
            }
            ServiceError::NoPlusUser { operation, .. } => {
                let route = match operation {
                    Operation::Book => "POST /teleconsultation".to_owned(),
                    Operation::Change => "PATCH /teleconsultation".to_owned(),
                    Operation::AddParticipant { id } => {
                        format!("POST /teleconsultation/{id}/participants/data")
                    }
                };
                Self::documented(
                    StatusCode::BAD_REQUEST,
                    format!("Failed {route}: no plus user in room"),
                )
            }
            ServiceError::UnknownAlias(message) => Self::not_found(message),
            ServiceError::TooLarge(message) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, message),
            ServiceError::NotJpeg(message) => {
                Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
            }
            ServiceError::Groups(err) => err.into(),
            ServiceError::Directory(err) => err.into(),
            ServiceError::Kaleyra(err) => err.into(),
            ServiceError::Storage(err) => err.into(),
            ServiceError::InvalidKey(err) => Self::bad_request(err.to_string()),
            err @ ServiceError::KeyReused => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string())
            }
            err @ ServiceError::KeyInUse => Self::conflict(err.to_string())
                .with_retry_after(crate::domain::idempotency::RETRY_AFTER_SECS),
            // Nothing was stored: the request may be sent again.
            err @ ServiceError::OutOfTime => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
            }
        }
    }
}

/// Every upload slot is taken: nothing was read, the upload may be sent again in a second.
impl From<crate::services::settings::TooManyUploads> for ApiError {
    fn from(err: crate::services::settings::TooManyUploads) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string()).with_retry_after(1)
    }
}
