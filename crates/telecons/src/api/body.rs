//! JSON request bodies, parsed the way `axum::Json` would, but handed to the use cases as a
//! `Result` (so that a 404 or 401 comes before a body's 400).

use std::convert::Infallible;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::services::{Unreadable, UnreadableKind};

/// A JSON body, read as `axum::Json` would (also over the size limit: 413), kept as a
/// `Result` for the use case.
pub struct JsonBody<T>(pub Result<T, Unreadable>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Infallible> {
        let json = is_json(request.headers());
        let body = Bytes::from_request(request, state).await;
        Ok(JsonBody(parse(json, body)))
    }
}

/// A [`JsonBody`] with the bytes it was read from, for what compares bodies (an
/// `Idempotency-Key`'s); `None` when they could not be read whole (too large, cut off).
pub struct JsonBodyAndBytes<T> {
    pub body: Result<T, Unreadable>,
    pub bytes: Option<Bytes>,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBodyAndBytes<T> {
    type Rejection = Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Infallible> {
        let json = is_json(request.headers());
        let body = Bytes::from_request(request, state).await;
        let bytes = body.as_ref().ok().cloned();
        Ok(JsonBodyAndBytes {
            body: parse(json, body),
            bytes,
        })
    }
}

/// A body that may be left out (empty or blank), else as [`JsonBody`].
pub struct OptionalJsonBody<T>(pub Result<Option<T>, Unreadable>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Infallible> {
        let json = is_json(request.headers());
        let body = Bytes::from_request(request, state).await;
        Ok(OptionalJsonBody(match &body {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(None),
            _ => parse(json, body).map(Some),
        }))
    }
}

/// A JSON object sent as JSON (`json`: the content type says so).
fn parse<T: DeserializeOwned>(
    json: bool,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Unreadable> {
    let body = body.map_err(|e| unreadable(e.status(), e.body_text()))?;
    if !json {
        return Err(unreadable(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent with Content-Type: application/json".into(),
        ));
    }
    // serde would also read a struct from a JSON array; the bodies here are objects.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Unreadable::invalid("the body must be a JSON object"));
    }
    Json::<T>::from_bytes(&body)
        .map(|Json(v)| v)
        .map_err(|rejection| {
            // axum's preamble speaks of "the target type"; the rest names the field and what
            // belongs there. A body that does not fit the schema is a 400, as the original
            // answers (axum would say 422).
            let text = rejection.body_text();
            let text = text
                .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                .map_or(text.clone(), |detail| {
                    format!("the body does not fit: {detail}")
                });
            unreadable(rejection.status(), text)
        })
}

/// A request part that cannot be read, by the status axum gives it.
fn unreadable(status: StatusCode, message: String) -> Unreadable {
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => UnreadableKind::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => UnreadableKind::UnsupportedMediaType,
        _ => UnreadableKind::Invalid,
    };
    Unreadable { kind, message }
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

/// What [`read_at_most`] read.
pub enum Limited {
    /// The whole body.
    Whole(Bytes),
    /// The body holds more than the limit; reading stopped there.
    TooLarge,
}

/// Reads `body` whole when it holds at most `limit` bytes, into one buffer reserved once
/// (`declared` is its `Content-Length`, when given). Never buffers more than `limit`.
pub async fn read_at_most(
    mut body: axum::body::Body,
    declared: Option<u64>,
    limit: usize,
) -> Result<Limited, axum::Error> {
    use axum::body::HttpBody as _;
    let mut buffer = Vec::with_capacity(reserve_for(declared, limit));
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        if buffer.len() + data.len() > limit {
            return Ok(Limited::TooLarge);
        }
        buffer.extend_from_slice(&data);
    }
    Ok(Limited::Whole(Bytes::from(buffer)))
}

/// The buffer to reserve once for a body of `declared` length read up to `limit` bytes: the
/// declared length, never more than the limit (the limit itself when nothing is declared).
pub fn reserve_for(declared: Option<u64>, limit: usize) -> usize {
    declared.map_or(limit, |length| {
        usize::try_from(length).unwrap_or(usize::MAX).min(limit)
    })
}

/// The request's `Content-Length`, when it has a readable one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
