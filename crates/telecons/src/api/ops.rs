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

use super::{ApiState, examples};

pub fn routes() -> OpenApiRouter<ApiState> {
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
    responses((status = 200, description = "Alive", body = StatusBody, example = json!(example_alive()))))]
async fn healthz() -> (StatusCode, Json<StatusBody>) {
    status_response(BTreeMap::new())
}

/// The storage is reachable: the instance can serve requests.
#[utoipa::path(get, path = "/-/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = StatusBody, example = json!(example_ready())),
        (status = 503, description = "Storage unreachable", body = StatusBody, example = json!(example_not_ready())),
    ))]
async fn ready(State(state): State<ApiState>) -> (StatusCode, Json<StatusBody>) {
    let storage = state.health.ready().await;
    status_response(BTreeMap::from([("storage", verdict(storage))]))
}

/// The storage and Kaleyra are reachable, no teleconsultation whose links are due is
/// missing its room, and no due work has waited over a minute.
#[utoipa::path(get, path = "/-/check-up", tag = "operations",
    responses(
        (status = 200, description = "Every dependency answers", body = StatusBody, example = json!(example_checked_up())),
        (status = 503, description = "A dependency does not answer", body = StatusBody, example = json!(example_check_up_failed())),
    ))]
async fn check_up(State(state): State<ApiState>) -> (StatusCode, Json<StatusBody>) {
    let checks = state.health.check_up().await;
    let mut verdicts = BTreeMap::from([
        ("storage", verdict(checks.storage)),
        ("kaleyra", verdict(checks.kaleyra)),
        // KO while a teleconsultation whose links are due (start − IMMUTABLE_PERIOD_MS has
        // passed) still has no room: its participants cannot join.
        ("rooms", verdict(checks.rooms)),
        // KO while a due provisioning or room deletion has waited over a minute.
        ("backlog", verdict(checks.backlog)),
    ]);
    // Only in bearer mode: the issuer's key set can be read.
    if let Some(identity) = checks.identity {
        verdicts.insert("identity", verdict(identity));
    }
    status_response(verdicts)
}

/// Prometheus text format.
#[utoipa::path(get, path = "/-/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics", body = String, content_type = "text/plain",
        example = json!(examples::METRICS))))]
async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    state.health.refresh_gauges().await;
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
pub fn documentation(openapi: utoipa::openapi::OpenApi) -> axum::Router<ApiState> {
    let json = openapi.to_json().unwrap_or_else(|_| "{}".to_owned());
    axum::Router::new().route(
        "/documentation/json",
        axum::routing::get(move || {
            let json = json.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], json) }
        }),
    )
}

// --- OpenAPI examples of the answers (see `examples`) ---------------------------------------

fn example_alive() -> StatusBody {
    StatusBody {
        status: "OK",
        checks: BTreeMap::new(),
    }
}

fn example_ready() -> StatusBody {
    StatusBody {
        status: "OK",
        checks: BTreeMap::from([("storage", "OK")]),
    }
}

fn example_not_ready() -> StatusBody {
    StatusBody {
        status: "KO",
        checks: BTreeMap::from([("storage", "KO")]),
    }
}

fn example_checked_up() -> StatusBody {
    StatusBody {
        status: "OK",
        checks: BTreeMap::from([
            ("backlog", "OK"),
            ("kaleyra", "OK"),
            ("rooms", "OK"),
            ("storage", "OK"),
        ]),
    }
}

fn example_check_up_failed() -> StatusBody {
    StatusBody {
        status: "KO",
        checks: BTreeMap::from([
            ("backlog", "OK"),
            ("kaleyra", "KO"),
            ("rooms", "OK"),
            ("storage", "OK"),
        ]),
    }
}
