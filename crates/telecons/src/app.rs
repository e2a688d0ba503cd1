//! The application: its state and `build_app`, the one constructor used by `main`, the demo
//! and the tests.

use std::sync::Arc;

use axum::Router;
use kaleyra_client::KaleyraClient;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::directory::Auth0Directory;
use crate::domain::ids::TeleconsultationIdGenerator;
use crate::store::Store;
use crate::{api, telemetry};

/// What every handler can reach. Cheap to clone (all `Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub kaleyra: KaleyraClient,
    pub ids: Arc<TeleconsultationIdGenerator>,
    /// This instance's name in provisioning leases (several instances share one database).
    pub instance_id: Arc<str>,
    /// The user directory, when `AUTH_SERVICE` is set.
    pub directory: Option<Arc<Auth0Directory>>,
    pub metrics: PrometheusHandle,
}

/// The outside world the app talks to; tests pass their own.
pub struct AppDeps {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub kaleyra: KaleyraClient,
}

/// The whole HTTP application: routes, middleware, the OpenAPI document.
pub fn build_app(config: Arc<Config>, deps: AppDeps) -> Router {
    api::router(AppState::new(config, deps))
}

impl AppState {
    pub fn new(config: Arc<Config>, deps: AppDeps) -> Self {
        let directory = config
            .auth_service
            .as_ref()
            .and(config.auth0.as_ref())
            .and_then(|settings| match Auth0Directory::new(settings) {
                Ok(directory) => Some(Arc::new(directory)),
                Err(err) => {
                    tracing::error!(error = %err, "the user directory cannot be used");
                    None
                }
            });
        Self {
            directory,
            config,
            store: deps.store,
            clock: deps.clock,
            kaleyra: deps.kaleyra,
            ids: Arc::new(TeleconsultationIdGenerator::new()),
            instance_id: format!("{:016x}", rand::random::<u64>()).into(),
            metrics: telemetry::metrics_handle(),
        }
    }
}

/// The Kaleyra client for `settings` (base URL and key from the configuration).
pub fn kaleyra_client(
    settings: &crate::config::KaleyraSettings,
) -> Result<KaleyraClient, kaleyra_client::ConfigError> {
    KaleyraClient::new(kaleyra_client::KaleyraClientConfig::new(
        settings.base_url.clone(),
        settings.api_key.clone(),
    ))
}
