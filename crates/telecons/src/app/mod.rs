//! The one assembly of the service: [`Application::build`] wires storage, Kaleyra, the
//! provisioner, the events' delivery, the use cases and the HTTP API from a [`Config`], and
//! binds the listener;
//! `serve`, `demo`, the tests and the soak all use it. [`Services`] is the same wiring
//! without a listener, for commands that do not serve (`telecons audit`).

mod server;

pub use server::{ConnectionLimits, raise_open_files_limit};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};
use kaleyra_client::{KaleyraClient, RetryPolicy};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::join_page::JoinPage;
use crate::api::{self, ApiState, CallerSchemes, GatewayHeaders};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, KaleyraSettings};
use crate::domain::access;
use crate::domain::join::JoinRules;
use crate::domain::room_spec::RoomRules;
use crate::events::{self, EventDelivery};
use crate::identity::bearer::{BearerOptions, BearerVerifier};
use crate::identity::directory::Auth0Directory;
use crate::identity::{CallerGroups, GatewayIdentity, Identity};
use crate::outbox::{LinksMoments, Outbox};
use crate::provisioner::{Provisioner, ProvisionerSettings};
use crate::services::credentials::Credentials;
use crate::services::guard::GroupGuard;
use crate::services::health::Health;
use crate::services::idempotency::IdempotencyKeys;
use crate::services::kaleyra_webhooks::KaleyraWebhooks;
use crate::services::settings::CompanySettings;
use crate::services::teleconsultations::{TeleconsultationSettings, Teleconsultations};
use crate::store::{self, Installation, InstallationMode, Store};
use crate::telemetry;

/// How long one request's work may take (the HTTP timeout is a little longer).
pub const DEFAULT_REQUEST_BUDGET: Duration = store::DEFAULT_BUDGET;

/// How long after its change a request may still answer: its budget, and the margin the
/// HTTP timeout gives past it. Its events are held until then at the latest.
fn event_hold(request_budget: Duration) -> TimeDelta {
    TimeDelta::from_std(request_budget + api::REQUEST_TIMEOUT_MARGIN).unwrap_or(TimeDelta::MAX)
}

/// How long shutdown waits for the background workers' passes in progress (after the
/// requests in flight: a deployment's stop timeout covers both).
pub const WORKER_DRAIN: Duration = Duration::from_secs(10);

/// What the application runs on besides its configuration. `Default` is production's;
/// tests, the demo and the soak change what they need.
pub struct Dependencies {
    pub clock: Arc<dyn Clock>,
    /// An open, migrated store; `None` opens `DATABASE_URL` and applies the migrations.
    pub store: Option<Arc<dyn Store>>,
    /// The Kaleyra client's retry policy; `None` keeps the client's own.
    pub kaleyra_retry: Option<RetryPolicy>,
    /// The address to listen on (the port is `HTTP_PORT`).
    pub address: IpAddr,
    /// Whether [`Application::run_until_stopped`] runs the background worker (tests run its
    /// passes themselves, with their own clock).
    pub background_worker: bool,
    /// The service, or the demo: neither starts on the other's database.
    pub mode: InstallationMode,
    /// How long one request's work may take, all of it; see [`TeleconsultationSettings`].
    pub request_budget: Duration,
    /// Only a database that already has an installation (`audit`: an empty or wrong
    /// database would look consistent); none is made.
    pub existing_installation_only: bool,
    /// Connection deadlines and limits.
    pub connections: ConnectionLimits,
    /// How long the events' receiver has to answer an attempt (spec §9: 10 s).
    pub event_delivery_timeout: Duration,
}

impl Default for Dependencies {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            store: None,
            kaleyra_retry: None,
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            background_worker: true,
            mode: InstallationMode::Service,
            request_budget: DEFAULT_REQUEST_BUDGET,
            existing_installation_only: false,
            connections: ConnectionLimits::default(),
            event_delivery_timeout: events::DEFAULT_TIMEOUT,
        }
    }
}

/// The service's parts, wired together: what the HTTP API reaches, and what runs beside it
/// (the provisioner's worker, the events' delivery) or looks underneath it (tests, the
/// soak, `audit`).
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub kaleyra: KaleyraClient,
    pub provisioner: Provisioner,
    /// The timed events' worker (spec §9); run only with `EVENTS_WEBHOOK_URL`.
    pub links_moments: Arc<LinksMoments>,
    /// Sends the stored events; `None` without `EVENTS_WEBHOOK_URL` (no events are sent).
    pub events: Option<EventDelivery>,
    pub api: ApiState,
}

impl Services {
    /// Wires the parts. Refuses a configuration the service cannot honour (no Kaleyra) and a
    /// user directory or bearer verifier that cannot be set up: better not to start than to
    /// answer 503 on every request.
    pub async fn build(config: &Config, deps: &Dependencies) -> anyhow::Result<Services> {
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        let mut kaleyra = kaleyra_client(config.require_kaleyra()?)
            .context("cannot build the Kaleyra client from BANDYER_BASE_URL")?;
        if let Some(retry) = deps.kaleyra_retry {
            kaleyra = kaleyra.with_retry_policy(retry);
        }
        let directory = match (&config.auth_service, &config.auth0) {
            (Some(_), Some(settings)) => Some(Arc::new(
                Auth0Directory::new(settings).context("cannot set up the user directory")?,
            )),
            (Some(_), None) => {
                anyhow::bail!("AUTH_SERVICE is set but the Auth0 directory is not configured")
            }
            (None, _) => None,
        };
        let store = match &deps.store {
            Some(store) => Arc::clone(store),
            None => open_store_within(config, deps.request_budget).await?,
        };
        let clock = Arc::clone(&deps.clock);
        let installation = if deps.existing_installation_only {
            store
                .existing_installation()
                .await
                .context("cannot read this database's installation")?
                .context("telecons has never run on this database (no installation): nothing to compare; check DATABASE_URL")?
        } else {
            installation(&*store, deps.mode, clock.now()).await?
        };
        let outbox = Arc::new(Outbox::new(
            config.events.is_some(),
            config.immutable_period_ms,
            event_hold(deps.request_budget),
        ));
        let provisioner = Provisioner::new(
            Arc::clone(&store),
            kaleyra.clone(),
            Arc::clone(&clock),
            ProvisionerSettings {
                installation_id: installation.id,
                lease: TimeDelta::seconds(
                    i64::try_from(config.provisioning_lease_secs).unwrap_or(i64::MAX),
                ),
                immutable_period_ms: config.immutable_period_ms,
                concurrency: config.provisioning_concurrency,
            },
            Arc::clone(&outbox),
        );
        let links_moments = Arc::new(LinksMoments::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            Arc::clone(&outbox),
            config.immutable_period_ms,
        ));
        let events = config
            .events
            .as_ref()
            .map(|events| {
                EventDelivery::new(
                    Arc::clone(&store),
                    Arc::clone(&clock),
                    events,
                    deps.event_delivery_timeout,
                    Arc::clone(&outbox),
                )
            })
            .transpose()
            .context("cannot set up the events' delivery")?;
        let caller_groups = CallerGroups::new(directory.clone());
        let credentials = Credentials::new(
            provisioner.clone(),
            kaleyra.clone(),
            caller_groups.clone(),
            config.service.privileges.clone(),
        );
        let company = CompanySettings::new(
            kaleyra.clone(),
            GroupGuard::new(
                config.service.settings_groups.clone(),
                caller_groups.clone(),
                access::CHANGE_SETTINGS,
            ),
        );
        let teleconsultations = Teleconsultations::new(
            Arc::clone(&store),
            provisioner.clone(),
            kaleyra.clone(),
            directory,
            GroupGuard::new(
                config.service.booking_groups.clone(),
                caller_groups,
                access::BOOK,
            ),
            Arc::clone(&clock),
            TeleconsultationSettings {
                rooms: RoomRules {
                    privileges: config.service.privileges.clone(),
                    settings: config.room_settings(),
                },
                join: JoinRules {
                    immutable_period_ms: config.immutable_period_ms,
                    groups_with_background: config.service.groups_with_background.clone(),
                },
                delete_uploads: config.delete_uploads,
                request_budget: deps.request_budget,
            },
        );
        let teleconsultations = Arc::new(teleconsultations);
        let idempotency = Arc::new(IdempotencyKeys::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            deps.request_budget,
        ));
        let webhooks = KaleyraWebhooks::new(
            config.require_kaleyra()?.api_key.clone(),
            Arc::clone(&clock),
            Arc::clone(&teleconsultations),
        );
        let (identity, documented_callers) = match &config.jwt {
            Some(settings) => (
                Identity::Bearer(
                    BearerVerifier::with_options(
                        settings.clone(),
                        BearerOptions {
                            clock: Arc::clone(&deps.clock),
                            ..BearerOptions::default()
                        },
                    )
                    .context("cannot set up bearer-token verification")?,
                ),
                CallerSchemes::bearer(),
            ),
            None => (
                Identity::Gateway(GatewayIdentity::new(
                    config.service.user_id_path.clone(),
                    &config.headers.groups,
                    &config.headers.user_properties,
                )),
                CallerSchemes::gateway(GatewayHeaders {
                    user_id: config
                        .service
                        .user_id_path
                        .start_header()
                        .unwrap_or(&config.headers.user_id)
                        .to_owned(),
                    groups: config.headers.groups.clone(),
                    user_properties: config.headers.user_properties.clone(),
                    booking_groups: config.service.booking_groups.is_some(),
                }),
            ),
        };
        let health = Health::new(
            Arc::clone(&store),
            kaleyra.clone(),
            clock,
            config.immutable_period_ms,
            identity.bearer().cloned(),
            events.is_some(),
        );
        Ok(Services {
            store,
            kaleyra,
            provisioner,
            links_moments,
            events,
            api: ApiState {
                teleconsultations,
                idempotency,
                credentials: Arc::new(credentials),
                company: Arc::new(company),
                health: Arc::new(health),
                identity: Arc::new(identity),
                webhooks: Arc::new(webhooks),
                metrics: telemetry::metrics_handle(),
                request_budget: deps.request_budget,
                body_read_timeout: deps.connections.body_read_timeout,
                documented_callers,
                join_page: Arc::new(JoinPage::new(
                    &config.link_origins,
                    // Only the demo takes a participant's identity from the page's URL.
                    (deps.mode == InstallationMode::Demo)
                        .then_some(config.headers.user_id.as_str()),
                )),
            },
        })
    }

    /// The HTTP application on these parts.
    pub fn router(&self) -> Router {
        api::router(self.api.clone())
    }
}

/// The service, built and listening, not yet serving.
pub struct Application {
    listener: TcpListener,
    services: Services,
    background_worker: bool,
    connections: ConnectionLimits,
}

impl Application {
    /// Wires the service (see [`Services::build`]) and binds `deps.address` on `HTTP_PORT`
    /// (`0`: a free port, see [`Self::address`]).
    pub async fn build(config: Config, deps: Dependencies) -> anyhow::Result<Application> {
        let services = Services::build(&config, &deps).await?;
        let address = SocketAddr::new(deps.address, config.http_port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on port {} (HTTP_PORT)", config.http_port))?;
        Ok(Application {
            listener,
            services,
            background_worker: deps.background_worker,
            connections: deps.connections,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serves until `shutdown` completes: requests in flight finish first (idle and stalled
    /// connections are not waited for), then the background worker's pass in progress
    /// (bounded).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        raise_open_files_limit();
        let background = CancellationToken::new();
        tokio::spawn(telemetry::run_metrics_upkeep(
            telemetry::metrics_handle(),
            background.clone(),
        ));
        if self.background_worker {
            tokio::spawn(
                Arc::clone(&self.services.api.idempotency).sweep_until(background.clone()),
            );
        }
        if self.background_worker && self.services.provisioner.outbox().is_enabled() {
            tokio::spawn(Arc::clone(&self.services.links_moments).run_until(background.clone()));
        }
        // Rooms whose creation or deletion failed are retried here, also after a restart.
        let worker = self.background_worker.then(|| {
            tokio::spawn(
                self.services
                    .provisioner
                    .clone()
                    .run_worker(background.clone()),
            )
        });
        // Stored events are sent here, also those a stopped instance left.
        let delivery = self
            .services
            .events
            .clone()
            .filter(|_| self.background_worker)
            .map(|events| tokio::spawn(events.run_worker(background.clone())));
        tracing::info!(
            address = %self.listener.local_addr()?,
            storage = self.services.store.backend(),
            "telecons listening"
        );
        server::serve(
            self.listener,
            self.services.router(),
            self.connections,
            shutdown,
        )
        .await;
        background.cancel();
        // Both drain at once, within one bound.
        let drained_by = tokio::time::Instant::now() + WORKER_DRAIN;
        if let Some(worker) = worker
            && tokio::time::timeout_at(drained_by, worker).await.is_err()
        {
            tracing::warn!("the provisioning worker did not finish in time; its leases expire");
        }
        if let Some(delivery) = delivery
            && tokio::time::timeout_at(drained_by, delivery).await.is_err()
        {
            tracing::warn!(
                "the events' delivery did not finish in time; its leases expire and the events \
                 in flight are sent again"
            );
        }
        tracing::info!("telecons stopped");
        Ok(())
    }
}

/// This database's installation (made now if it has none), refused when it belongs to the
/// other mode: the demo must never write simulator users into a service's database, nor a
/// service inherit a demo's.
async fn installation(
    store: &dyn Store,
    mode: InstallationMode,
    now: DateTime<Utc>,
) -> anyhow::Result<Installation> {
    let candidate = Installation {
        id: format!("{:016x}", rand::random::<u64>()),
        mode,
        created_at: now,
    };
    let installation = store
        .installation(&candidate)
        .await
        .context("cannot read this database's installation")?;
    match (installation.mode, mode) {
        (InstallationMode::Service, InstallationMode::Demo) => anyhow::bail!(
            "this database belongs to a telecons service: the demo never writes into it; \
             run the demo without --database-url (it makes its own) or on another database"
        ),
        (InstallationMode::Demo, InstallationMode::Service) => anyhow::bail!(
            "this database was made by `telecons demo` (its Kaleyra users and rooms are a \
             simulator's): start the service on another database"
        ),
        _ => {}
    }
    check_database_identity(store).await?;
    Ok(installation)
}

/// Refuses a database that is not the one its installation was recorded in (copied, moved
/// or restored): a copy would act for the original — its clean-up, its changes — on the
/// rooms of a deployment it knows nothing about. The first start records the identity.
async fn check_database_identity(store: &dyn Store) -> anyhow::Result<()> {
    let current = store
        .database_identity()
        .await
        .context("cannot tell which database this is")?;
    let recorded = store
        .recorded_identity(Some(&current))
        .await
        .context("cannot read this database's recorded identity")?;
    match recorded {
        Some(recorded) if recorded != current => anyhow::bail!(
            "this database is not the one its installation was recorded in (recorded: \
             {recorded}; this one: {current}): it was copied, moved or restored. If it is the \
             same deployment, moved or restored from its own backup, run \
             `telecons adopt-database` (keeps the installation id); if it is a copy (staging \
             made from a production dump, say), run `telecons adopt-database \
             --new-installation` (a new installation id: it never acts on the original's \
             rooms). Then start again."
        ),
        _ => Ok(()),
    }
}

/// How long `telecons healthcheck` waits for `/-/healthz`.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `telecons healthcheck`: whether the service on this machine's `port` answers
/// `GET /-/healthz` with 200 (a container's HEALTHCHECK, with no other program in the image).
pub async fn check_health(port: u16) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/-/healthz");
    let answer = reqwest::Client::builder()
        .timeout(HEALTHCHECK_TIMEOUT)
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} did not answer within {HEALTHCHECK_TIMEOUT:?}"))?;
    anyhow::ensure!(
        answer.status() == reqwest::StatusCode::OK,
        "{url} answered {}",
        answer.status()
    );
    println!("alive ({url})");
    Ok(())
}

/// `telecons adopt-database`: records the database `config` names as its installation's
/// own, after a move or a restore (`new_installation` false: the same deployment, same
/// installation id), or makes a copy a deployment of its own (`new_installation`: a new
/// id, and none of the original's rooms; see [`Store::adopt_database`]). Returns what was
/// done, for the operator.
pub async fn adopt_database(
    config: &Config,
    new_installation: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let store = open_store(config).await?;
    let installation = store
        .existing_installation()
        .await
        .context("cannot read this database's installation")?
        .context(
            "telecons has never run on this database (no installation): nothing to adopt; \
             `telecons serve` makes its installation at the first start",
        )?;
    let current = store
        .database_identity()
        .await
        .context("cannot tell which database this is")?;
    let recorded = store
        .recorded_identity(None)
        .await
        .context("cannot read this database's recorded identity")?;
    let is_the_original = recorded.as_deref() == Some(current.as_str());
    if !new_installation {
        if is_the_original {
            return Ok(format!(
                "nothing to do: {current} is the database of installation {} already",
                installation.id
            ));
        }
        store
            .adopt_database(&current, None, now)
            .await
            .context("cannot adopt the database")?;
        return Ok(format!(
            "adopted: installation {} (kept) is now recorded on {current}",
            installation.id
        ));
    }
    anyhow::ensure!(
        !is_the_original,
        "{current} is the database installation {} was recorded in: the original, not a \
         copy; a new installation would abandon its rooms. Nothing done.",
        installation.id
    );
    let id = format!("{:016x}", rand::random::<u64>());
    store
        .adopt_database(&current, Some(&id), now)
        .await
        .context("cannot adopt the database")?;
    Ok(format!(
        "adopted as a new installation: {id} (was {}), recorded on {current}; the original's \
         rooms are forgotten, and every live teleconsultation that has not ended gets a room \
         of its own once the service runs",
        installation.id
    ))
}

/// Opens the configured store and applies its migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    open_store_within(config, DEFAULT_REQUEST_BUDGET).await
}

/// [`open_store`] for requests of `request_budget`: the database gives up on a statement or
/// a lock in time for the request to answer (see [`store::DatabaseTimeouts`]).
async fn open_store_within(
    config: &Config,
    request_budget: Duration,
) -> anyhow::Result<Arc<dyn Store>> {
    let store = store::connect_within(
        &config.database_url,
        store::DatabaseTimeouts::within(request_budget),
    )
    .await
    .context("cannot open the database named by DATABASE_URL")?;
    store
        .migrate()
        .await
        .context("cannot apply the migrations")?;
    Ok(store)
}

/// The Kaleyra client for `settings` (base URL and key from the configuration).
pub fn kaleyra_client(
    settings: &KaleyraSettings,
) -> Result<KaleyraClient, kaleyra_client::ConfigError> {
    KaleyraClient::new(kaleyra_client::KaleyraClientConfig::new(
        settings.base_url.clone(),
        settings.api_key.clone(),
    ))
}

/// Completes on SIGTERM (orchestrators) or SIGINT (Ctrl-C). The handlers are installed when
/// this is called (inside the runtime), not when it is first awaited: a signal that comes
/// in between is not lost (the default action would kill the process).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (terminate, interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(terminate) => {},
                () = wait(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
    }
}
