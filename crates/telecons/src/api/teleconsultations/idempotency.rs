//! `Idempotency-Key` on `POST /teleconsultation` (spec §4.13), as HTTP: the header, the
//! answer kept as it was sent (status and body), and `Idempotency-Replayed: true` on an
//! answer given again.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;
use tracing::Instrument;

use super::bodies::CreatedBody;
use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::domain::idempotency::{self, IdempotencyKey, InvalidKey, KeptAnswer};
use crate::identity::Caller;
use crate::services::Unreadable;
use crate::services::idempotency::{Claimed, IdempotencyKeys};
use crate::services::teleconsultations::BookingInput;
use crate::store::KeyClaim;

/// The request's `Idempotency-Key`, handed to the handler unopened: it is read after the
/// caller is admitted (401 and 403 first).
pub struct IdempotencyKeyHeader(pub Result<Option<IdempotencyKey>, InvalidKey>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let values = parts.headers.get_all(idempotency::HEADER);
        Ok(Self(idempotency::parse_key(
            values.iter().map(HeaderValue::as_bytes),
        )))
    }
}

/// `201 {"roomId"}`.
pub fn created(room_id: String) -> Response {
    (StatusCode::CREATED, Json(CreatedBody { room_id })).into_response()
}

/// Books under `key` (the caller admitted, `body` the bytes `input` was read from): the
/// answer kept for the key when the same body was answered before; else the booking,
/// whose answer the key keeps — a 201 in the booking's transaction, a 4xx after it; a 5xx
/// frees the key.
pub async fn book_once(
    state: ApiState,
    caller: Caller,
    key: IdempotencyKey,
    body: &[u8],
    input: Result<BookingInput, Unreadable>,
    arrived: Instant,
) -> Result<Response, ApiError> {
    let fingerprint = idempotency::body_fingerprint(body);
    // A task of its own: a client that hangs up stops the wait, never the work, so a key is
    // never left held by a request that no longer runs.
    let work = tokio::spawn(
        async move {
            let claim = match state
                .idempotency
                .claim(caller.id.as_deref(), &key, fingerprint)
                .await?
            {
                Claimed::Held(claim) => claim,
                Claimed::Replay(answer) => return Ok(replay(answer)),
            };
            let unanswered = FreedUnlessAnswered {
                keys: Arc::clone(&state.idempotency),
                claim: Some(claim.clone()),
            };
            let booked = state
                .teleconsultations
                .create(caller, input, Some(claim.clone()), arrived)
                .await;
            unanswered.answered();
            match booked {
                Ok(room_id) => Ok(created(room_id)),
                Err(err) => {
                    let err = ApiError::from(err);
                    if err.status().is_client_error() {
                        let body = serde_json::to_string(&err.body()).unwrap_or_default();
                        state
                            .idempotency
                            .keep_refusal(&claim, err.status().as_u16(), &body)
                            .await;
                    } else {
                        state.idempotency.release(&claim).await;
                    }
                    Err(err)
                }
            }
        }
        .in_current_span(),
    );
    match work.await {
        Ok(answer) => answer,
        // A panic goes on up (the panic layer answers 500; the key was freed); otherwise
        // the runtime is stopping, and this request with it.
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => std::future::pending().await,
    }
}

/// Frees a claimed key when the booking ends without an answer (a panic unwinds through
/// it): a 500 keeps nothing, and the key need not wait for its hold to end.
struct FreedUnlessAnswered {
    keys: Arc<IdempotencyKeys>,
    claim: Option<KeyClaim>,
}

impl FreedUnlessAnswered {
    fn answered(mut self) {
        self.claim = None;
    }
}

impl Drop for FreedUnlessAnswered {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            let keys = Arc::clone(&self.keys);
            tokio::spawn(async move { keys.release(&claim).await });
        }
    }
}

/// The answer kept for a key, sent again as it was, marked as such.
fn replay(answer: KeptAnswer) -> Response {
    let mut response = match answer {
        KeptAnswer::Booked { room_id } => created(room_id),
        KeptAnswer::Refused { status, body } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
    };
    response.headers_mut().insert(
        idempotency::REPLAYED_HEADER,
        HeaderValue::from_static("true"),
    );
    response
}
