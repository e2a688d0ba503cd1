//! The application: its state and `build_app`, the one constructor used by `main`, the demo
//! and the tests.

use std::sync::Arc;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::store::Store;
use crate::{api, telemetry};

/// What every handler can reach. Cheap to clone (all `Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: PrometheusHandle,
}

/// The outside world the app talks to; tests pass their own.
pub struct AppDeps {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
}

/// The whole HTTP application: routes, middleware, the OpenAPI document.
pub fn build_app(config: Arc<Config>, deps: AppDeps) -> Router {
    let state = AppState {
        config,
        store: deps.store,
        clock: deps.clock,
        metrics: telemetry::metrics_handle(),
    };
    api::router(state)
}
