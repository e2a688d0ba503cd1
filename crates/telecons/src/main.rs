//! The `telecons` command: thin; everything lives in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use telecons::app::{self, Application, Dependencies, Services};
use telecons::config::{Config, ConfigErrors};
use telecons::telemetry;

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
    Serve,
    /// Run the service on its embedded defaults: SQLite and a built-in Kaleyra simulator.
    Demo,
    /// Apply the database migrations and exit.
    Migrate,
    /// Load and validate the configuration, print every problem, exit non-zero if any.
    CheckConfig,
    /// Print the OpenAPI document.
    Openapi,
    /// Compare the stored teleconsultations with Kaleyra's rooms; print the report (JSON);
    /// exit non-zero when a room is missing or an orphan exists.
    Audit,
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
            Ok(_) => {
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Err(problems) => fail(&format!("configuration problems:\n{problems}")),
        },
        Command::Serve => with_config(Config::from_env_for_serve, |config| async move {
            Application::build(config, Dependencies::default())
                .await?
                .run_until_stopped(app::shutdown_signal())
                .await
        }),
        Command::Demo => with_config(Config::from_env, telecons::demo::run),
        Command::Audit => with_config(Config::from_env_for_serve, |config| async move {
            let services = Services::build(&config, &Dependencies::default()).await?;
            let report = services.provisioner.audit().await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            anyhow::ensure!(
                report.is_consistent(),
                "rooms and teleconsultations disagree"
            );
            Ok(())
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
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "telecons failed");
            fail(&format!("{e:#}"))
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("telecons: {message}");
    ExitCode::FAILURE
}
