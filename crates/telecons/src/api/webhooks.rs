//! `POST /webhooks/kaleyra` (spec §4.11): the raw body and its signature go to the webhook
//! service; 204 when accepted, 401 when the signature is missing, wrong or stale.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use crate::services::kaleyra_webhooks::Refusal;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(kaleyra_webhook))
}

/// Kaleyra's webhooks, signed with the API key (`bandyer-signature`). `on_room_deleted` for
/// a room a live teleconsultation still points to makes that room again; other events are
/// acknowledged and ignored. Needs no caller identity.
#[utoipa::path(post, path = "/webhooks/kaleyra", tag = "webhooks",
    request_body(content = String, content_type = "application/json",
        description = "Kaleyra's event envelope, e.g. `{\"event\": \"on_room_deleted\", \"data\": {\"room_id\": \"room_…\"}}`"),
    params(("bandyer-signature" = String, Header,
        description = "`t=<seconds>,v0=<hex HMAC-SHA256 of t + \".\" + body, keyed with the API key>`")),
    responses(
        (status = 204, description = "Accepted (acted on, or nothing to do)"),
        (status = 401, description = "Missing, malformed, wrong or stale signature: nothing done", body = ErrorBody),
        (status = 503, description = "Could not be acted on now (storage): Kaleyra sends it again", body = ErrorBody),
    ))]
async fn kaleyra_webhook(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let signature = headers
        .get(kaleyra_client::webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    match state.webhooks.receive(signature, &body).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(Refusal::Signature(refusal)) => {
            tracing::warn!(error = %refusal, "Kaleyra webhook refused");
            Err(ApiError::new(StatusCode::UNAUTHORIZED, refusal.to_string()))
        }
        Err(not_now @ Refusal::NotNow(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            not_now.to_string(),
        )),
    }
}
