//! The `telecons` command: thin; everything lives in the library.

use std::process::ExitCode;

use clap::{ArgGroup, Parser, Subcommand};
use telecons::app::{self, Application, Dependencies, Services};
use telecons::config::{Config, ConfigErrors};
use telecons::telemetry;

/// mimalloc (its v3 series, without transparent huge pages, which would raise idle RSS)
/// rather than glibc's allocator: a request allocates and frees dozens of small blocks across
/// the runtime's threads, which mimalloc serves per thread, without glibc's arena locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "telecons",
    version,
    about = "Teleconsultation backend on Kaleyra Video"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service, configured by the environment (see the README).
    #[command(
        long_about = "Run the service, configured by the environment (README, \
        \"Configuration\").\n\n\
        Needs BANDYER_API_SECRET_KEY and BANDYER_BASE_URL (the Kaleyra company key and API \
        base; `telecons demo` runs without them). Listens on all interfaces on HTTP_PORT \
        (default 3000); stores in DATABASE_URL (default sqlite://telecons.db, created if \
        missing; postgres://... for PostgreSQL) and applies its migrations at start-up. \
        Stops gracefully on SIGTERM or SIGINT."
    )]
    Serve,
    /// Run the service on its embedded defaults: SQLite and a built-in Kaleyra simulator.
    #[command(
        long_about = "Run the service on its embedded defaults, for trying it: a \
        built-in Kaleyra simulator (in memory) and a fresh SQLite database, \
        telecons-demo.db in the working directory, replaced at each start so that it \
        always agrees with the simulator. Listens on 127.0.0.1 only, on HTTP_PORT (default \
        3000), and prints a walkthrough to paste into a shell.\n\n\
        Ignores DATABASE_URL (the database `serve` uses), the Kaleyra variables and JWT_* \
        (its walkthrough identifies callers by the gateway's headers); the other variables \
        (LOG_LEVEL, IMMUTABLE_PERIOD_MS, the service file...) apply."
    )]
    Demo {
        /// Use this database as it is instead of a fresh telecons-demo.db.
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
    /// Apply the database migrations and exit.
    #[command(long_about = "Apply the database migrations to DATABASE_URL (default \
        sqlite://telecons.db, created if missing) and exit. `serve` applies them at start-up \
        too; this is for deployments that migrate as a separate step. Needs no Kaleyra \
        settings.")]
    Migrate,
    /// Load and validate the configuration, print every problem, exit non-zero if any.
    #[command(
        long_about = "Load and validate the configuration as `serve` would (every \
        variable of the README's \"Configuration\" and the service file named by \
        TELECONSULTATION_SERVICE_CONFIG_PATH), print every problem at once, and exit \
        non-zero if there is any; else print the warnings and whether events are sent, where \
        and how (never a secret). Connects to nothing."
    )]
    CheckConfig,
    /// Print the OpenAPI document.
    Openapi,
    /// Compare the stored teleconsultations with Kaleyra's rooms; print the report (JSON);
    /// exit non-zero when a room is missing or an orphan exists.
    #[command(
        long_about = "Compare the teleconsultations stored in DATABASE_URL with the \
        rooms Kaleyra has (BANDYER_API_SECRET_KEY, BANDYER_BASE_URL): print the report as \
        JSON, and exit non-zero when a room is missing or an orphan exists. Changes nothing \
        on Kaleyra. Refuses a database telecons has never served (empty, or the wrong one): \
        it would look consistent."
    )]
    Audit,
    /// Record a copied, moved or restored database as its installation's own (see the README).
    #[command(long_about = "Record the database DATABASE_URL names as the one its \
        installation lives in. `serve` (and `demo --database-url`) refuse a database that \
        is not the one its installation was recorded in (PostgreSQL: the cluster's system \
        identifier and the database name; SQLite: the file's canonical path), because a \
        copy would act on the original's Kaleyra rooms.\n\n\
        Without options: the same deployment, moved or restored from its own backup; the \
        installation id is kept. With --new-installation: a copy (staging made from a \
        production dump, say); it gets a new installation id and forgets the original's \
        rooms (its live teleconsultations get rooms of their own), so that it never acts on \
        them. Needs no Kaleyra settings; run it while no instance serves the database.")]
    AdoptDatabase {
        /// The database is a copy: give it a new installation id, apart from the original.
        #[arg(long)]
        new_installation: bool,
    },
    /// Ask the service on this machine whether it is alive; exit non-zero if not.
    #[command(
        long_about = "GET http://127.0.0.1:HTTP_PORT/-/healthz (HTTP_PORT as `serve` \
        reads it, default 3000) within 2 seconds; exit 0 when it answers 200, non-zero \
        otherwise. For a container's HEALTHCHECK: the image needs no other program for it. \
        Needs no Kaleyra settings."
    )]
    Healthcheck,
    /// List the events given up after their last attempt, or send them again.
    #[command(
        long_about = "The events sent to the platform (EVENTS_WEBHOOK_URL) that were given up \
        after their last attempt, stored in DATABASE_URL. --failed lists them (webhook-id, \
        type, teleconsultation, last answer; tab-separated, under a header line); --redeliver \
        ID (a webhook-id) or --redeliver all makes them pending again: a running service \
        sends them within a second, ahead of their teleconsultations' events still pending. \
        Exits non-zero when ID is not a given-up event. Needs no Kaleyra settings.",
        group(ArgGroup::new("action").required(true).args(["failed", "redeliver"]))
    )]
    Events {
        /// List the given-up events.
        #[arg(long)]
        failed: bool,
        /// Make the given-up event ID (its webhook-id), or all of them, pending again.
        #[arg(long, value_name = "ID|all")]
        redeliver: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Openapi => match telecons::api::openapi().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("cannot render the OpenAPI document: {e}")),
        },
        Command::CheckConfig => match Config::from_env_for_serve() {
            Ok(config) => {
                for warning in config.warnings() {
                    println!("warning: {warning}");
                }
                println!("{}", config.events_summary());
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Err(problems) => fail(&format!("configuration problems:\n{problems}")),
        },
        Command::Serve => with_config(Config::from_env_for_serve, |config| async move {
            let shutdown = app::shutdown_signal();
            Application::build(config, Dependencies::default())
                .await?
                .run_until_stopped(shutdown)
                .await
        }),
        Command::Demo { database_url } => with_config(Config::from_env_for_demo, |config| {
            telecons::demo::run(config, database_url)
        }),
        Command::Audit => with_config(Config::from_env_for_serve, |config| async move {
            let deps = Dependencies {
                existing_installation_only: true,
                ..Dependencies::default()
            };
            let services = Services::build(&config, &deps).await?;
            let report = services.provisioner.audit().await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            anyhow::ensure!(
                report.is_consistent(),
                "rooms and teleconsultations disagree"
            );
            Ok(())
        }),
        Command::AdoptDatabase { new_installation } => {
            with_config(Config::from_env, |config| async move {
                let done =
                    app::adopt_database(&config, new_installation, chrono::Utc::now()).await?;
                println!("{done}");
                Ok(())
            })
        }
        Command::Events { failed, redeliver } => {
            with_config(Config::from_env, |config| async move {
                let store = app::open_store(&config).await?;
                let done = match redeliver {
                    Some(which) => {
                        telecons::events::commands::redeliver(&*store, &which, chrono::Utc::now())
                            .await?
                    }
                    None => {
                        debug_assert!(failed, "clap requires one of the two");
                        telecons::events::commands::list_failed(&*store).await?
                    }
                };
                println!("{done}");
                Ok(())
            })
        }
        Command::Healthcheck => with_config(Config::from_env, |config| async move {
            app::check_health(config.http_port).await
        }),
        Command::Migrate => with_config(Config::from_env, |config| async move {
            let store = app::open_store(&config).await?;
            println!("migrations applied ({})", store.backend());
            Ok(())
        }),
    }
}

/// Loads the configuration with `load` (refusing to start half-configured), sets up
/// logging and runs `body` on a multi-threaded runtime.
fn with_config<F, Fut>(load: fn() -> Result<Config, ConfigErrors>, body: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = match load() {
        Ok(config) => config,
        Err(problems) => return fail(&format!("configuration problems:\n{problems}")),
    };
    telemetry::init_logging(&config.log_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(body(config)) {
        Ok(()) => ExitCode::SUCCESS,
        // Reported once, on stderr (terminals and orchestrators both show it), not also
        // as a log line on stdout.
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("telecons: {message}");
    ExitCode::FAILURE
}
