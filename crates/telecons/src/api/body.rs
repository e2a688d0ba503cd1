//! JSON request bodies, parsed the way `axum::Json` would but in the service's error shape,
//! and inside the handlers (so that a 404 or 401 comes before a body's 400); and JSON
//! response bodies written without regrowing their buffer.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;

/// `value` as a JSON response, as `axum::Json` answers it, but written into a buffer of
/// `capacity` bytes from the start: `axum::Json` starts at 128 bytes and copies the body each
/// time it outgrows them (for the join, which every participant polls, that was 3 copies).
/// A value that cannot be serialised (none of ours) is a logged 500 in the service's error
/// shape.
pub fn json_response<T: Serialize>(value: &T, capacity: usize) -> Response {
    let mut body = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(err) => ApiError::internal(err).into_response(),
    }
}

/// Parses a JSON body the way `axum::Json` would, with our error shape (also for a body
/// over the size limit: 413).
pub fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    if !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent with Content-Type: application/json",
        ));
    }
    // serde would also read a struct from a JSON array; the bodies here are objects.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    Json::<T>::from_bytes(&body)
        .map(|Json(v)| v)
        .map_err(ApiError::from)
}

/// `application/json` or `application/*+json`, parameters (charset) ignored.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}
