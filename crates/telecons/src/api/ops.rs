//! The operational routes of the original platform (spec §4.10).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(ready))
        .routes(routes!(check_up))
        .routes(routes!(metrics))
}

/// `{"status": "OK" | "KO", "checks": {…}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusBody {
    /// `OK` when every check passed, else `KO`.
    #[schema(example = "OK")]
    pub status: &'static str,
    /// Each dependency checked, with `OK` or `KO`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<&'static str, &'static str>,
}

fn status_response(checks: BTreeMap<&'static str, &'static str>) -> (StatusCode, Json<StatusBody>) {
    let ok = checks.values().all(|v| *v == "OK");
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if ok { "OK" } else { "KO" };
    (code, Json(StatusBody { status, checks }))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "OK" } else { "KO" }
}

/// The process is alive.
#[utoipa::path(get, path = "/-/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = StatusBody)))]
async fn healthz() -> (StatusCode, Json<StatusBody>) {
    status_response(BTreeMap::new())
}

/// The storage is reachable: the instance can serve requests.
#[utoipa::path(get, path = "/-/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = StatusBody),
        (status = 503, description = "Storage unreachable", body = StatusBody),
    ))]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<StatusBody>) {
    let storage = state.store.ping().await;
    if let Err(e) = &storage {
        tracing::warn!(error = %e, "readiness: storage unreachable");
    }
    status_response(BTreeMap::from([("storage", verdict(storage.is_ok()))]))
}

/// The storage and Kaleyra are reachable, and no teleconsultation whose links are due is
/// missing its room.
#[utoipa::path(get, path = "/-/check-up", tag = "operations",
    responses(
        (status = 200, description = "Every dependency answers", body = StatusBody),
        (status = 503, description = "A dependency does not answer", body = StatusBody),
    ))]
async fn check_up(State(state): State<AppState>) -> (StatusCode, Json<StatusBody>) {
    let now = state.clock.now();
    let (backlog, kaleyra) = tokio::join!(
        state.store.backlog(now, state.config.immutable_period_ms),
        tokio::time::timeout(KALEYRA_CHECK_BUDGET, state.kaleyra.check_reachable()),
    );
    let (storage_ok, rooms_ok) = match &backlog {
        Ok(backlog) => {
            if backlog.rooms_missing_at_start > 0 {
                tracing::warn!(
                    rooms_missing_at_start = backlog.rooms_missing_at_start,
                    "check-up: teleconsultations whose links are due have no room"
                );
            }
            (true, backlog.rooms_missing_at_start == 0)
        }
        Err(e) => {
            tracing::warn!(error = %e, "check-up: storage unreachable");
            (false, false) // unverifiable: not OK
        }
    };
    let kaleyra_ok = match kaleyra {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "check-up: Kaleyra unreachable");
            false
        }
        Err(_) => {
            tracing::warn!("check-up: Kaleyra did not answer within 2 s");
            false
        }
    };
    status_response(BTreeMap::from([
        ("storage", verdict(storage_ok)),
        ("kaleyra", verdict(kaleyra_ok)),
        // KO while a teleconsultation whose links are due (start − IMMUTABLE_PERIOD_MS has
        // passed) still has no room: its participants cannot join.
        ("rooms", verdict(rooms_ok)),
    ]))
}

/// Kaleyra counts as reachable when `GET /v2/company` answers 2xx within this time.
const KALEYRA_CHECK_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// Prometheus text format.
#[utoipa::path(get, path = "/-/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // The provisioning backlog lives in the store (shared by every instance): read it now.
    match state
        .store
        .backlog(state.clock.now(), state.config.immutable_period_ms)
        .await
    {
        Ok(backlog) => {
            metrics::gauge!("teleconsultations_awaiting_provisioning")
                .set(backlog.teleconsultations as f64);
            metrics::gauge!("rooms_missing_at_start").set(backlog.rooms_missing_at_start as f64);
            metrics::gauge!("rooms_awaiting_deletion").set(backlog.room_deletions as f64);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the provisioning backlog"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// `GET /documentation/json`: the OpenAPI document (served as built, so it is not itself
/// described in it).
pub fn documentation(openapi: utoipa::openapi::OpenApi) -> axum::Router<AppState> {
    let json = openapi.to_json().unwrap_or_else(|_| "{}".to_owned());
    axum::Router::new().route(
        "/documentation/json",
        axum::routing::get(move || {
            let json = json.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], json) }
        }),
    )
}
