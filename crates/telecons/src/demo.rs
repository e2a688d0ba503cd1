//! `telecons demo`: the service on its embedded defaults — SQLite and an in-process Kaleyra
//! simulator on a loopback port — for trying it without a Kaleyra account.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use secrecy::SecretString;

use crate::app::{self, Application, Dependencies};
use crate::config::{Config, KaleyraSettings};
use crate::domain::schedule::format_instant;

/// Runs until SIGTERM/SIGINT. Any configured Kaleyra is ignored: the demo never calls out.
pub async fn run(mut config: Config) -> anyhow::Result<()> {
    // A fresh key per run: the simulator only has to agree with our client.
    let api_key = format!("demo-{:032x}", rand::random::<u128>());
    let simulator = kaleyra_sim::spawn(&api_key)
        .await
        .context("cannot start the embedded Kaleyra simulator")?;
    config.kaleyra = Some(KaleyraSettings {
        base_url: simulator.base_url().to_owned(),
        api_key: SecretString::from(api_key),
    });
    let banner = config.clone();
    // Loopback only: the demo is for the machine it runs on.
    let deps = Dependencies {
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ..Dependencies::default()
    };
    let application = Application::build(config, deps).await?;
    println!(
        "{}",
        instructions(application.address()?, simulator.base_url(), &banner)
    );
    application.run_until_stopped(app::shutdown_signal()).await
}

fn instructions(address: SocketAddr, simulator: &str, config: &Config) -> String {
    let base = format!("http://{address}");
    let start = format_instant(chrono::Utc::now());
    let user_header = &config.headers.user_id;
    format!(
        r#"telecons demo: listening on {base}
  storage:            {database}
  Kaleyra simulator:  {simulator}  (its rooms: {simulator}/_sim/rooms)
  OpenAPI document:   {base}/documentation/json

Try it (the booking starts now, so the links are available at once):

ROOM=$(curl -s -X POST {base}/teleconsultation -H 'content-type: application/json' -d '{{
  "participants": {{"number": 2, "data": [
    {{"userId": "doctor-1",  "groups": ["doctor"],  "fullName": "Dr. Maria Rossi", "language": "it"}},
    {{"userId": "patient-1", "groups": ["patient"], "fullName": "Luca Bianchi",    "language": "it"}}]}},
  "start_date": "{start}", "duration_in_seconds": 1800}}' | sed -E 's/.*"roomId":"([^"]+)".*/\1/')
curl -s {base}/teleconsultation/$ROOM -H '{user_header}: patient-1'
curl -s -X DELETE -i {base}/teleconsultation/$ROOM

Stop with Ctrl-C."#,
        database = config.database_url,
    )
}
