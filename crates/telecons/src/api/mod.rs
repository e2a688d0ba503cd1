//! HTTP only: routes, extraction, mapping to responses. Handlers call the lifecycle (and the
//! health checks); rules live in `domain`, effects behind the lifecycle.

mod caller;
pub mod error;
mod middleware;
mod ops;
mod teleconsultations;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, StatusCode, Uri};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::health::Health;
use crate::identity::GatewayIdentity;
use crate::lifecycle::Lifecycle;
use error::ApiError;

/// What handlers reach. Cheap to clone (all `Arc`s).
#[derive(Clone)]
pub struct ApiState {
    pub lifecycle: Arc<Lifecycle>,
    pub health: Arc<Health>,
    pub identity: Arc<GatewayIdentity>,
    /// Renders `/-/metrics`.
    pub metrics: PrometheusHandle,
    /// The lifecycle's budget for one request; requests time out a little after it.
    pub request_budget: Duration,
}

/// JSON bodies are small; the one large body (a background image) has its own limit.
pub const JSON_BODY_LIMIT: usize = 256 * 1024;
/// How much longer than the lifecycle's request budget a request may take before it gets
/// 503: the lifecycle answers within its budget, so this only bounds what has no budget of
/// its own (and lets shutdown drain in bounded time).
const REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "telecons",
        description = "Teleconsultation backend: turns booked video consultations into Kaleyra \
                       Video rooms and hands each participant a personal join link. A drop-in \
                       replacement for the Mia-Platform Teleconsultation Service Backend.",
    ),
    components(schemas(error::ErrorBody)),
    tags(
        (name = "teleconsultations", description = "Bookings, their Kaleyra rooms and join links"),
        (name = "operations", description = "Health, readiness, metrics, documentation"),
    )
)]
struct ApiDoc;

/// The routes and their OpenAPI description, without state or middleware.
fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(teleconsultations::routes())
        .merge(ops::routes())
}

/// The OpenAPI document of every route, generated from the code.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The whole HTTP application: routes, middleware, the OpenAPI document.
pub fn router(state: ApiState) -> Router {
    let (routes, openapi) = routes().split_for_parts();
    let request_id = HeaderName::from_static("x-request-id");
    let middleware = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
            HeaderName::from_static("apikey"),
        ]))
        .layer(SetRequestIdLayer::new(
            request_id.clone(),
            middleware::MakeRequestHexId,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(middleware::RequestSpan)
                .on_request(())
                .on_response(middleware::log_response),
        )
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn(middleware::record_metrics))
        .layer(axum::middleware::from_fn(middleware::time_out(
            state.request_budget + REQUEST_TIMEOUT_MARGIN,
        )))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT));
    routes
        .merge(ops::documentation(openapi))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware)
        .with_state(state)
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("Route {method} {} not found", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method {method} is not allowed on {}", uri.path()),
    )
}
