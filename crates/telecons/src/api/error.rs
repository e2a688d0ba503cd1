//! One error type for every route, rendered as `{"statusCode", "error", "message"}`
//! (spec §6). Unexpected failures (storage, panics) reach the response as a generic message
//! and the cause goes to the logs; a failed Kaleyra call reaches it as the operation and
//! Kaleyra's status (see [`kaleyra_failure`]).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

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
        }
    }

    /// Any other error: `error` is the reason phrase, `message` says what was wrong.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            error: status.canonical_reason().unwrap_or("Error").to_owned(),
            message: message.into(),
        }
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            status_code: self.status.as_u16(),
            error: self.error,
            message: self.message,
        };
        (self.status, Json(body)).into_response()
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
            StoreError::StaleVersion => Self::conflict(
                "the teleconsultation was changed by another request meanwhile; read it and try again",
            ),
            other => Self::internal(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // axum picks 400/415/413/422; a body that does not fit the schema is 400 here, as
        // the original answers. serde's text names the field, the expected type and where.
        let status = match rejection.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            other => other,
        };
        // axum's preamble speaks of "the target type"; the rest names the field and what
        // belongs there.
        let text = rejection.body_text();
        let text = text
            .strip_prefix("Failed to deserialize the JSON body into the target type: ")
            .map_or(text.clone(), |detail| {
                format!("the body does not fit: {detail}")
            });
        Self::new(status, text)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

/// A failed Kaleyra call on a route whose answer needs Kaleyra: 503 when Kaleyra cannot be
/// reached or does not answer in time, else 502 — Kaleyra's refusals too: on the routes that
/// use this, what Kaleyra refuses came from stored data, not from the caller's body. The
/// message is the error's text: the operation and Kaleyra's status and error code (never the
/// API key, which only ever travels in a header).
pub fn kaleyra_failure(err: &kaleyra_client::KaleyraError) -> ApiError {
    if err.is_unreachable() || matches!(err.kind(), kaleyra_client::ErrorKind::Timeout) {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string());
    }
    ApiError::new(StatusCode::BAD_GATEWAY, err.to_string())
}
