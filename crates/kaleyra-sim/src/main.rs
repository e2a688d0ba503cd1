//! `kaleyra-sim --port N --api-key K [--latency-ms MS] [--rate-limit N] [--webhook-url URL]`: serves the
//! simulator until Ctrl-C.
//!
//! Prints one line, the base URL, on stdout; logs (JSON lines, never the API key) go to stderr.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use clap::Parser;
use kaleyra_sim::{SimOptions, Simulator};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "In-memory simulator of the Kaleyra Video v2 REST API"
)]
struct Args {
    /// Port to listen on; 0 picks a free one.
    #[arg(long, env = "KALEYRA_SIM_PORT", default_value_t = 0)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "KALEYRA_SIM_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// The company API key clients must send in the `apikey` header.
    #[arg(long, env = "KALEYRA_SIM_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Artificial latency added to every Kaleyra API answer (`/v2`), in milliseconds
    /// (at most 60000); changeable later with `PUT /_sim/latency`.
    #[arg(long, env = "KALEYRA_SIM_LATENCY_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    latency_ms: u64,
    /// At most this many Kaleyra API requests per second (`429` with `Retry-After` beyond);
    /// unlimited when absent; changeable later with `PUT /_sim/rate-limit`.
    #[arg(long, env = "KALEYRA_SIM_RATE_LIMIT")]
    rate_limit: Option<std::num::NonZeroU32>,
    /// Where to send Kaleyra's webhooks (e.g. the service's `POST /webhooks/kaleyra`);
    /// changeable later with `PUT /_sim/webhook`.
    #[arg(long, env = "KALEYRA_SIM_WEBHOOK_URL", value_parser = parse_webhook_url)]
    webhook_url: Option<String>,
}

fn parse_webhook_url(url: &str) -> Result<String, String> {
    kaleyra_sim::webhook::check_url(url)?;
    Ok(url.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let mut options = SimOptions::default().latency(Duration::from_millis(args.latency_ms));
    if let Some(url) = &args.webhook_url {
        options = options.webhook_url(url);
    }
    if let Some(per_second) = args.rate_limit {
        options = options.rate_limit(per_second);
    }
    let listener = TcpListener::bind(SocketAddr::new(args.host, args.port)).await?;
    let sim = kaleyra_sim::serve(listener, Simulator::with_options(&args.api_key, options))?;
    println!("{}", sim.base_url());
    tracing::info!(
        target: "kaleyra_sim",
        base_url = sim.base_url(),
        latency_ms = args.latency_ms,
        webhook_url = args.webhook_url.as_deref().unwrap_or(""),
        "listening"
    );

    tokio::signal::ctrl_c().await?;
    tracing::info!(target: "kaleyra_sim", "shutting down");
    sim.shutdown().await;
    Ok(())
}
