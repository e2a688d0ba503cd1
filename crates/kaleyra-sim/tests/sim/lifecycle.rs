//! The server's lifetime, and the `kaleyra-sim` binary.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::KEY;

/// `GET /v2/company` with the key, from the server at `base`.
async fn get_company(http: &reqwest::Client, base: &str) -> reqwest::Result<reqwest::Response> {
    http.get(format!("{base}/v2/company"))
        .header("apikey", KEY)
        .send()
        .await
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let sim = kaleyra_sim::spawn(KEY).await.unwrap();
    let base = sim.base_url().to_owned();
    sim.shutdown().await;
    let http = reqwest::Client::new();
    assert!(get_company(&http, &base).await.is_err());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let sim = kaleyra_sim::spawn(KEY).await.unwrap();
    let base = sim.base_url().to_owned();
    drop(sim);
    let http = reqwest::Client::new();
    // Shutdown happens in the server task; give it a moment.
    for _ in 0..100 {
        if get_company(&http, &base).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server still answers after its handle was dropped");
}

/// The `kaleyra-sim` binary on a free port with the test key, and `flags`.
fn binary(flags: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kaleyra-sim"));
    command.args(["--port", "0", "--api-key", KEY]).args(flags);
    command
}

/// Starts the binary with `flags` (stderr piped, killed when dropped) and returns it with
/// the base URL it printed.
async fn spawn_binary(flags: &[&str]) -> (Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = binary(flags)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    (child, line.trim().to_owned())
}

#[tokio::test]
async fn binary_prints_its_url_and_never_logs_the_key() {
    use tokio::io::AsyncReadExt;
    let (mut child, base) = spawn_binary(&[]).await;
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let http = reqwest::Client::new();
    let resp = get_company(&http, &base).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .await
        .unwrap();
    assert!(logs.contains("/v2/company"), "{logs}");
    assert!(!logs.contains(KEY), "{logs}");
}

#[tokio::test]
async fn binary_takes_latency_and_webhook_url_flags() {
    let (mut child, base) = spawn_binary(&[
        "--latency-ms",
        "250",
        "--webhook-url",
        "http://127.0.0.1:9/webhooks/kaleyra",
    ])
    .await;
    let http = reqwest::Client::new();
    let control = async |path: &str| -> Value {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        resp.json().await.unwrap()
    };
    assert_eq!(control("/_sim/latency").await, json!({"ms": 250}));
    let webhook = control("/_sim/webhook").await;
    assert_eq!(webhook["url"], "http://127.0.0.1:9/webhooks/kaleyra");
    let started = Instant::now();
    let resp = get_company(&http, &base).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(250));
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    // Out of range: refused at start.
    for flags in [["--latency-ms", "60001"], ["--webhook-url", "ftp://x/y"]] {
        let out = binary(&flags).output().await.unwrap();
        assert!(!out.status.success(), "{flags:?}");
    }
}
