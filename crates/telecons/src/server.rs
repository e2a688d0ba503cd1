//! Running the app: storage, listener, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{AppDeps, AppState, kaleyra_client};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::{provisioner, store, telemetry};

/// How long shutdown waits for the provisioning worker's pass in progress.
const WORKER_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the configured store and applies its migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn store::Store>> {
    let store = store::connect(&config.database_url)
        .await
        .context("cannot open the database named by DATABASE_URL")?;
    store
        .migrate()
        .await
        .context("cannot apply the migrations")?;
    Ok(store)
}

/// `telecons serve`: the service on the configured port until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], config.http_port)))
        .await
        .with_context(|| format!("cannot listen on port {} (HTTP_PORT)", config.http_port))?;
    serve_on(listener, config, shutdown_signal()).await
}

/// Serves on `listener` until `shutdown` completes; in-flight requests finish first.
pub async fn serve_on(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.refuse_unsupported()?;
    let kaleyra = kaleyra_client(config.require_kaleyra()?)
        .context("cannot build the Kaleyra client from BANDYER_BASE_URL")?;
    let store = open_store(&config).await?;
    let backend = store.backend();
    let deps = AppDeps {
        store,
        clock: Arc::new(SystemClock),
        kaleyra,
    };
    let state = AppState::new(Arc::new(config), deps);
    let app = crate::api::router(state.clone());
    let background = CancellationToken::new();
    tokio::spawn(telemetry::run_metrics_upkeep(
        telemetry::metrics_handle(),
        background.clone(),
    ));
    // Rooms whose creation or deletion failed are retried here, also after a restart.
    let worker = tokio::spawn(provisioner::run_worker(state, background.clone()));
    tracing::info!(address = %listener.local_addr()?, storage = backend, "telecons listening");
    run(listener, app, shutdown).await?;
    background.cancel();
    // Let a pass in progress finish (bounded: requests are bounded, Kaleyra calls too).
    if tokio::time::timeout(WORKER_DRAIN, worker).await.is_err() {
        tracing::warn!("the provisioning worker did not finish in time; its leases expire");
    }
    tracing::info!("telecons stopped");
    Ok(())
}

/// Serves `app` with graceful shutdown.
pub async fn run(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Completes on SIGTERM (orchestrators) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
