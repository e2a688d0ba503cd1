//! HTTP only: routes, extraction, mapping to responses. Each handler calls one use case of
//! `services`; rules live in `domain`, effects behind the services.

mod body;
mod body_deadline;
mod caller;
mod credentials;
pub mod error;
mod examples;
mod expect;
pub mod join_page;
mod middleware;
pub mod openapi;
mod ops;
mod settings;
mod teleconsultations;
mod webhooks;

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

use crate::identity::Identity;
use crate::services::credentials::Credentials;
use crate::services::health::Health;
use crate::services::idempotency::IdempotencyKeys;
use crate::services::kaleyra_webhooks::KaleyraWebhooks;
use crate::services::settings::CompanySettings;
use crate::services::teleconsultations::Teleconsultations;
use error::ApiError;
pub use openapi::{CallerSchemes, GatewayHeaders};

/// What handlers reach. Cheap to clone (all `Arc`s).
#[derive(Clone)]
pub struct ApiState {
    pub teleconsultations: Arc<Teleconsultations>,
    /// `Idempotency-Key`s of `POST /teleconsultation`.
    pub idempotency: Arc<IdempotencyKeys>,
    pub credentials: Arc<Credentials>,
    pub company: Arc<CompanySettings>,
    pub health: Arc<Health>,
    pub identity: Arc<Identity>,
    pub webhooks: Arc<KaleyraWebhooks>,
    /// Renders `/-/metrics`.
    pub metrics: PrometheusHandle,
    /// The use cases' budget for one request; requests time out a little after it.
    pub request_budget: Duration,
    /// How long after its head a request's body may take to arrive (408 after it).
    pub body_read_timeout: Duration,
    /// How callers identify here, as `GET /documentation/json` says.
    pub documented_callers: CallerSchemes,
    /// `GET /join/:roomId`, the waiting-room page.
    pub join_page: Arc<join_page::JoinPage>,
}

/// JSON bodies are small; the one large body (a background image) has its own limit.
pub const JSON_BODY_LIMIT: usize = 256 * 1024;
/// How much longer than the use cases' request budget a request may take before it gets
/// 503: the use cases answer within their budget, so this only bounds what has no budget of
/// its own (and lets shutdown drain in bounded time).
pub const REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// The OpenAPI document of every route, as `telecons openapi` prints it: callers in either
/// mode (an instance serves the one of its configuration).
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::document(&CallerSchemes::either_mode())
}

/// The whole HTTP application: routes, middleware, the OpenAPI document.
pub fn router(state: ApiState) -> Router {
    let routes = openapi::routes().split_for_parts().0;
    let document = openapi::document(&state.documented_callers);
    let request_id = HeaderName::from_static(middleware::REQUEST_ID);
    let middleware = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
            HeaderName::from_static("apikey"),
        ]))
        .layer(axum::middleware::map_request(
            middleware::drop_unusable_request_id,
        ))
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
        .layer(axum::middleware::from_fn(body_deadline::read_within(
            state.body_read_timeout,
        )))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT));
    routes
        .merge(ops::documentation(document))
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

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;

    use serde_json::Value;

    use super::examples::*;
    use crate::api::credentials::CredentialsBody;
    use crate::api::settings::UpdateSettingsBody;
    use crate::api::teleconsultations::{ParticipantBody, TeleconsultationBody};

    fn reads_as<T: DeserializeOwned>(example: Value) {
        if let Err(err) = serde_json::from_value::<T>(example.clone()) {
            panic!("{example} is not a {}: {err}", std::any::type_name::<T>());
        }
    }

    #[test]
    fn each_request_example_is_read_by_its_body_type() {
        reads_as::<TeleconsultationBody>(booking());
        reads_as::<TeleconsultationBody>(change());
        reads_as::<ParticipantBody>(participant());
        reads_as::<CredentialsBody>(credentials_request());
        reads_as::<UpdateSettingsBody>(settings_update());
        let event = serde_json::to_vec(&kaleyra_event()).unwrap();
        let parsed = kaleyra_client::webhook::parse_event(&event).expect("a Kaleyra event");
        assert_eq!(parsed.room_deleted_id(), Some("room_5beecf8c0f29"));
    }
}
