//! The `/_sim/` control API (not part of Kaleyra; no `apikey`): the same operations as the
//! methods of [`Simulator`], for tests and tools that drive the simulator over HTTP.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get, post},
};
use serde::{Deserialize, Serialize};

use crate::{
    Fault, MAX_LATENCY, RecordedRequest, SimBackground, SimCompany, SimRoom, SimUser, Simulator,
    WebhookDelivery, WebhookSettings,
    error::{ApiError, KJson},
    wire::Upload,
};

pub(crate) fn router() -> Router<Simulator> {
    Router::new()
        .route("/_sim/requests", get(requests).delete(clear_requests))
        .route(
            "/_sim/faults",
            get(faults).post(add_fault).delete(clear_faults),
        )
        .route("/_sim/call/{token}", get(call_page))
        .route("/_sim/rooms", get(rooms))
        .route("/_sim/rooms/{id}", delete(console_delete_room))
        .route("/_sim/rooms/{id}/uploads", post(seed_upload))
        .route("/_sim/users", get(users))
        .route("/_sim/company", get(company))
        .route("/_sim/backgrounds", get(backgrounds))
        .route("/_sim/reset", post(reset))
        .route("/_sim/latency", get(latency).put(set_latency))
        .route("/_sim/rate-limit", get(rate_limit).put(set_rate_limit))
        .route("/_sim/webhook", get(webhook).put(set_webhook))
        .route(
            "/_sim/webhook/deliveries",
            get(deliveries).delete(clear_deliveries),
        )
}

async fn requests(State(sim): State<Simulator>) -> Json<Vec<RecordedRequest>> {
    Json(sim.requests())
}

async fn clear_requests(State(sim): State<Simulator>) -> StatusCode {
    sim.clear_requests();
    StatusCode::NO_CONTENT
}

async fn faults(State(sim): State<Simulator>) -> Json<Vec<Fault>> {
    Json(sim.faults())
}

async fn add_fault(
    State(sim): State<Simulator>,
    KJson(fault): KJson<Fault>,
) -> Result<(StatusCode, Json<Fault>), ApiError> {
    let fault = fault.validated().map_err(ApiError::invalid)?;
    sim.lock_faults().push(fault.clone());
    Ok((StatusCode::CREATED, Json(fault)))
}

async fn clear_faults(State(sim): State<Simulator>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

/// Where participants' links point with [`crate::SimOptions::links_to_itself`]: a page
/// standing in for the call, so that a browser opening a link (the service's waiting-room
/// page, a demo) lands somewhere real. It shows the link's token and options.
async fn call_page(
    Path(token): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> axum::response::Html<String> {
    let options = query.unwrap_or_default();
    axum::response::Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Simulated Kaleyra call</title></head><body>\
         <h1 id=\"simulated-call\">Simulated Kaleyra call</h1>\
         <p>The Kaleyra simulator stands in for a video call here: no camera, no one else.</p>\
         <p>Link <code id=\"token\">{}</code>, options <code id=\"options\">{}</code></p>\
         </body></html>",
        escape_html(&token),
        escape_html(&options)
    ))
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn rooms(State(sim): State<Simulator>) -> Json<Vec<SimRoom>> {
    Json(sim.rooms())
}

async fn users(State(sim): State<Simulator>) -> Json<Vec<SimUser>> {
    Json(sim.users())
}

async fn company(State(sim): State<Simulator>) -> Json<SimCompany> {
    Json(sim.company())
}

async fn backgrounds(State(sim): State<Simulator>) -> Json<Vec<SimBackground>> {
    Json(sim.backgrounds())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedUpload {
    name: String,
    size: u64,
}

async fn seed_upload(
    State(sim): State<Simulator>,
    Path(room_id): Path<String>,
    KJson(req): KJson<SeedUpload>,
) -> Result<(StatusCode, Json<Upload>), ApiError> {
    let upload = sim
        .lock_model()
        .seed_upload(&room_id, &req.name, req.size)?;
    Ok((StatusCode::CREATED, Json(upload)))
}

/// `{"ms": 50}`: the artificial latency of every `/v2` answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Latency {
    ms: u64,
}

async fn latency(State(sim): State<Simulator>) -> Json<Latency> {
    Json(Latency {
        ms: u64::try_from(sim.latency().as_millis()).unwrap_or(u64::MAX),
    })
}

async fn set_latency(
    State(sim): State<Simulator>,
    KJson(req): KJson<Latency>,
) -> Result<Json<Latency>, ApiError> {
    let latency = Duration::from_millis(req.ms);
    if latency > MAX_LATENCY {
        return Err(ApiError::invalid(format!(
            "ms must be at most {}, got {}",
            MAX_LATENCY.as_millis(),
            req.ms
        )));
    }
    sim.set_latency(latency);
    Ok(Json(req))
}

/// `{"per_second": 50}` (or `null`: unlimited): the company's rate limit.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimit {
    per_second: Option<NonZeroU32>,
}

async fn rate_limit(State(sim): State<Simulator>) -> Json<RateLimit> {
    Json(RateLimit {
        per_second: sim.rate_limit(),
    })
}

/// A `per_second` of 0 is refused (400) by its type: `null` means unlimited.
async fn set_rate_limit(
    State(sim): State<Simulator>,
    KJson(req): KJson<RateLimit>,
) -> Json<RateLimit> {
    sim.set_rate_limit(req.per_second);
    Json(req)
}

async fn webhook(State(sim): State<Simulator>) -> Json<WebhookSettings> {
    Json(sim.webhook())
}

async fn set_webhook(
    State(sim): State<Simulator>,
    KJson(settings): KJson<WebhookSettings>,
) -> Result<Json<WebhookSettings>, ApiError> {
    sim.set_webhook(settings).map_err(ApiError::invalid)?;
    Ok(Json(sim.webhook()))
}

async fn deliveries(State(sim): State<Simulator>) -> Json<Vec<WebhookDelivery>> {
    Json(sim.webhook_deliveries())
}

async fn clear_deliveries(State(sim): State<Simulator>) -> StatusCode {
    sim.clear_webhook_deliveries();
    StatusCode::NO_CONTENT
}

/// The answer of `DELETE /_sim/rooms/{id}`.
#[derive(Debug, Serialize)]
struct ConsoleDeletion {
    room_id: String,
    /// `null` when no webhook URL is set.
    webhook: Option<WebhookDelivery>,
}

async fn console_delete_room(
    State(sim): State<Simulator>,
    Path(room_id): Path<String>,
) -> Result<Json<ConsoleDeletion>, ApiError> {
    let webhook = sim.delete_room_from_console(&room_id).await?;
    Ok(Json(ConsoleDeletion { room_id, webhook }))
}

async fn reset(State(sim): State<Simulator>) -> StatusCode {
    sim.reset();
    StatusCode::NO_CONTENT
}
