//! `POST /webhooks/kaleyra` (spec §4.11, §10): the signature header goes to the webhook
//! service before the body is read, then the raw body; 204 when accepted, 401 when the
//! signature is missing, wrong or stale, 413 when the body is over 64 KiB.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::{Limited, declared_length, read_at_most};
use super::error::{ApiError, ErrorBody};
use super::{ApiState, examples};
use crate::services::kaleyra_webhooks::{MAX_BODY_BYTES, Refusal};

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(kaleyra_webhook))
}

/// Kaleyra's webhooks, signed with the API key (`bandyer-signature`). `on_room_deleted` for
/// a room a live teleconsultation still points to makes that room again; other events are
/// acknowledged and ignored. Needs no caller identity.
#[utoipa::path(post, path = "/webhooks/kaleyra", tag = "webhooks",
    request_body(content = Object, content_type = "application/json",
        description = "Kaleyra's event envelope", example = json!(examples::kaleyra_event())),
    params(("bandyer-signature" = String, Header,
        description = "`t=<seconds>,v0=<hex HMAC-SHA256 of t + \".\" + body, keyed with the API key>`")),
    responses(
        (status = 204, description = "Accepted (acted on, or nothing to do)"),
        (status = 401, description = "Missing, malformed, wrong or stale signature: nothing done (the body is not read when the header alone says so)", body = ErrorBody,
            example = json!(examples::bad_signature())),
        (status = 408, description = "The body did not arrive whole within 10 s of the request head: the connection is closed", body = ErrorBody,
            example = json!(examples::body_too_slow())),
        (status = 413, description = "A body over 64 KiB: nothing done, the rest not read", body = ErrorBody,
            example = json!(examples::webhook_too_large())),
        (status = 503, description = "Could not be acted on now (storage): Kaleyra sends it again", body = ErrorBody,
            example = json!(examples::webhook_not_now())),
    ))]
async fn kaleyra_webhook(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let webhooks = &state.webhooks;
    // A header value that is not visible ASCII is malformed, not missing.
    let signature = headers
        .get(kaleyra_client::webhook::SIGNATURE_HEADER)
        .map(|v| v.to_str().unwrap_or_default());
    let declared = declared_length(&headers);
    let signature = webhooks.admit(declared, signature).map_err(refusal)?;
    let body = match read_at_most(body, declared, MAX_BODY_BYTES).await {
        Ok(Limited::Whole(body)) => body,
        Ok(Limited::TooLarge) => return Err(refusal(webhooks.body_too_large())),
        Err(err) => {
            return Err(ApiError::bad_request(format!(
                "the body could not be read: {err}"
            )));
        }
    };
    webhooks.receive(signature, &body).await.map_err(refusal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The answer to a refused webhook (the service has logged it).
fn refusal(refusal: Refusal) -> ApiError {
    let status = match refusal {
        Refusal::Signature(_) => StatusCode::UNAUTHORIZED,
        Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Refusal::NotNow => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, refusal.to_string())
}
