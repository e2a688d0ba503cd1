//! HTTP only: routes, extraction, mapping to responses. Each handler calls one use case of
//! `services`; rules live in `domain`, effects behind the services.

mod body;
mod body_deadline;
mod caller;
mod credentials;
pub mod error;
pub mod join_page;
mod middleware;
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
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::identity::Identity;
use crate::services::credentials::Credentials;
use crate::services::health::Health;
use crate::services::idempotency::IdempotencyKeys;
use crate::services::kaleyra_webhooks::KaleyraWebhooks;
use crate::services::settings::CompanySettings;
use crate::services::teleconsultations::Teleconsultations;
use error::ApiError;

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
    /// `GET /join/:roomId`, the waiting-room page.
    pub join_page: Arc<join_page::JoinPage>,
}

/// JSON bodies are small; the one large body (a background image) has its own limit.
pub const JSON_BODY_LIMIT: usize = 256 * 1024;
/// How much longer than the use cases' request budget a request may take before it gets
/// 503: the use cases answer within their budget, so this only bounds what has no budget of
/// its own (and lets shutdown drain in bounded time).
pub const REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

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
        (name = "credentials", description = "Kaleyra SDK tokens for the caller"),
        (name = "settings", description = "The company's look on Kaleyra: virtual backgrounds"),
        (name = "webhooks", description = "Events Kaleyra sends, signed with the API key"),
        (name = "operations", description = "Health, readiness, metrics, documentation"),
    )
)]
struct ApiDoc;

/// The routes and their OpenAPI description, without state or middleware.
fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(teleconsultations::routes())
        .merge(credentials::routes())
        .merge(settings::routes())
        .merge(webhooks::routes())
        .merge(ops::routes())
        .merge(join_page::routes())
}

/// The OpenAPI document of every route, generated from the code.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The whole HTTP application: routes, middleware, the OpenAPI document.
pub fn router(state: ApiState) -> Router {
    let (routes, mut openapi) = routes().split_for_parts();
    if state.identity.bearer().is_some() {
        document_bearer_tokens(&mut openapi);
    }
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
        .merge(ops::documentation(openapi))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware)
        .with_state(state)
}

/// The routes that need a caller (401 without one).
const ROUTES_WITH_A_CALLER: [(&str, &str); 7] = [
    ("/teleconsultations", "get"),
    ("/teleconsultation/{roomId}", "get"),
    ("/teleconsultations/{roomId}", "get"),
    ("/teleconsultation/{roomId}/uploads", "delete"),
    ("/credentials", "post"),
    ("/settings/background-image", "post"),
    ("/settings/update", "patch"),
];

/// In bearer mode, the served document says how callers identify: `Authorization: Bearer
/// <JWT>` on the routes that need a caller (the gateway's headers are then ignored).
fn document_bearer_tokens(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    openapi
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A token of the issuer in JWT_ISSUER, signed with a key of JWT_JWKS_URL; \
                         the caller is its JWT_USER_ID_CLAIM, its groups JWT_GROUPS_CLAIM",
                    ))
                    .build(),
            ),
        );
    for (path, method) in ROUTES_WITH_A_CALLER {
        let Some(item) = openapi.paths.paths.get_mut(path) else {
            continue;
        };
        let operation = match method {
            "get" => item.get.as_mut(),
            "post" => item.post.as_mut(),
            "patch" => item.patch.as_mut(),
            _ => item.delete.as_mut(),
        };
        if let Some(operation) = operation {
            operation.security = Some(vec![SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]);
        }
    }
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
