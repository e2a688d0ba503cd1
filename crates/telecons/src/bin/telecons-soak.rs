//! `telecons-soak`: thousands of mixed lifecycle operations against the real service (HTTP on
//! loopback, SQLite or PostgreSQL) while the embedded Kaleyra simulator fails about one call in
//! five; then Kaleyra recovers, the provisioner catches up, and the invariant is checked:
//! every live teleconsultation has exactly its room, matching its spec (rooms expected =
//! rooms live), no orphan room, and nothing that was answered 2xx is lost.
//!
//! Exits non-zero when the invariant does not hold or a request got an unexpected status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use kaleyra_sim::{Fault, FaultAction};
use rand::Rng;
use reqwest::Method;
use serde_json::{Value, json};
use telecons::clock::Clock;
use telecons::config::Config;
use telecons::domain::teleconsultation::TeleconsultationState;
use telecons::store::Store;
use telecons::{Application, Dependencies};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(about = "Soak test: mixed operations under Kaleyra faults, then the invariant check")]
struct Args {
    /// How many lifecycle operations to send.
    #[arg(long, default_value_t = 3000)]
    operations: u64,
    /// How many clients send them at once.
    #[arg(long, default_value_t = 16)]
    concurrency: u64,
    /// The share of Kaleyra calls that fail (refused, answer lost, or connection dropped).
    #[arg(long, default_value_t = 0.2)]
    fault_rate: f64,
    /// Storage; by default a fresh SQLite file in a temporary directory.
    #[arg(long)]
    database_url: Option<String>,
}

/// The real time, plus an offset the soak moves forward to skip retry delays at the end.
#[derive(Default)]
struct SkewClock {
    offset_ms: AtomicI64,
}

impl SkewClock {
    fn skip(&self, by: TimeDelta) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for SkewClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }
}

/// What the soak believes about one teleconsultation, from the answers it got.
#[derive(Debug, Clone)]
struct Booking {
    id: String,
    number: usize,
    participants: Vec<String>,
    start: String,
    duration: i64,
    deleted: bool,
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    unexpected: AtomicU64,
}

const API_KEY: &str = "soak-key";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telecons::telemetry::init_logging("error");
    let dir = tempfile_dir()?;
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/soak.db", dir.display()));

    let sim = kaleyra_sim::spawn(API_KEY).await?;
    let vars = [
        ("BANDYER_API_SECRET_KEY", API_KEY.to_owned()),
        ("BANDYER_BASE_URL", sim.base_url().to_owned()),
        ("DATABASE_URL", database_url.clone()),
        ("UNLIMITED_TELECONSULTATION", "false".to_owned()),
        ("HTTP_PORT", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = Config::from_vars(&vars).map_err(|e| anyhow::anyhow!("{e}"))?;
    let clock = Arc::new(SkewClock::default());
    let application = Application::build(
        config,
        Dependencies {
            clock: clock.clone(),
            kaleyra_retry: Some(kaleyra_client::RetryPolicy {
                max_retries: 2,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(50),
            }),
            address: std::net::Ipv4Addr::LOCALHOST.into(),
            ..Dependencies::default()
        },
    )
    .await?;
    let base = format!("http://{}", application.address()?);
    let services = application.services().clone();
    let stop = CancellationToken::new();
    let server = tokio::spawn(application.run_until_stopped(stop.clone().cancelled_owned()));

    // About `fault_rate` of the calls fail: most are refused, some take effect but lose
    // their answer, some drop the connection after taking effect.
    let refused = args.fault_rate * 0.6;
    let lost = args.fault_rate * 0.2 / (1.0 - refused);
    let dropped = args.fault_rate * 0.2 / (1.0 - refused - args.fault_rate * 0.2);
    sim.add_fault(Fault::new(FaultAction::Status(503)).rate(refused));
    sim.add_fault(Fault::new(FaultAction::StatusAfterEffect(502)).rate(lost));
    sim.add_fault(Fault::new(FaultAction::DropAfterEffect).rate(dropped));

    println!(
        "soak: {} operations, {} clients, Kaleyra fault rate {:.0}%, storage {}",
        args.operations,
        args.concurrency,
        args.fault_rate * 100.0,
        if database_url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        }
    );
    let tally = Arc::new(Tally::default());
    let http = reqwest::Client::new();
    let started = Instant::now();
    let clients: Vec<_> = (0..args.concurrency)
        .map(|client| {
            let share = args.operations / args.concurrency
                + u64::from(client < args.operations % args.concurrency);
            tokio::spawn(run_client(
                client,
                share,
                base.clone(),
                http.clone(),
                tally.clone(),
            ))
        })
        .collect();
    let mut bookings = Vec::new();
    for client in clients {
        bookings.extend(client.await??);
    }
    let elapsed = started.elapsed();
    let kaleyra_calls = sim.requests().len();
    let faults = sim.requests().iter().filter(|r| r.fault.is_some()).count();
    println!(
        "  sent {} requests in {:.1} s ({:.0}/s); unexpected answers: {}",
        tally.sent.load(Ordering::SeqCst),
        elapsed.as_secs_f64(),
        tally.sent.load(Ordering::SeqCst) as f64 / elapsed.as_secs_f64(),
        tally.unexpected.load(Ordering::SeqCst)
    );
    println!("  Kaleyra calls: {kaleyra_calls}, of which failed by injection: {faults}");

    // Kaleyra recovers; skip past every retry delay until the provisioner has caught up.
    sim.clear_faults();
    let mut passes = 0;
    loop {
        clock.skip(TimeDelta::minutes(10));
        services.provisioner.run_due().await?;
        passes += 1;
        let backlog = services.store.backlog(clock.now(), 0).await?;
        if backlog.teleconsultations == 0 && backlog.room_deletions == 0 {
            break;
        }
        if passes > 100 {
            bail!("the provisioner did not catch up: {backlog:?}");
        }
    }
    let orphans_swept = services.provisioner.sweep_orphans().await?;
    stop.cancel();
    server.await??;

    let report = services.provisioner.audit().await?;
    let lost = count_lost(&*services.store, &bookings).await?;
    let unexpected = tally.unexpected.load(Ordering::SeqCst);
    println!("  caught up in {passes} background passes; orphans swept: {orphans_swept}");
    println!(
        "invariant: rooms expected = {}, rooms live = {}, matching = {}, missing = {}, orphans = {}, lost = {}",
        report.rooms_expected,
        report.rooms_live,
        report.rooms_matching,
        report.missing.len(),
        report.orphans.len(),
        lost
    );
    if !report.is_consistent() || lost > 0 || unexpected > 0 {
        bail!("soak failed: {report:?}; lost {lost}; unexpected answers {unexpected}");
    }
    println!("soak: OK");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("telecons-soak-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).context("temporary directory")?;
    Ok(dir)
}

/// One client: its own teleconsultations, so that it knows exactly what each should be.
async fn run_client(
    client: u64,
    operations: u64,
    base: String,
    http: reqwest::Client,
    tally: Arc<Tally>,
) -> anyhow::Result<Vec<Booking>> {
    let mut bookings: Vec<Booking> = Vec::new();
    let mut next_user = 0_u64;
    let mut new_patient = |client: u64| {
        next_user += 1;
        format!("c{client}-patient-{next_user}")
    };
    for _ in 0..operations {
        let live: Vec<usize> = (0..bookings.len())
            .filter(|i| !bookings[*i].deleted)
            .collect();
        let roll = rand::rng().random_range(0..100);
        let pick = |live: &[usize]| live[rand::rng().random_range(0..live.len())];
        if live.is_empty() || roll < 30 {
            // Create: a doctor shared by many bookings, new patients; some left incomplete.
            let number = rand::rng().random_range(2..=4);
            let known = if rand::rng().random_bool(0.7) {
                number
            } else {
                number - 1
            };
            let mut participants = vec![format!("doctor-{}", rand::rng().random_range(0..20))];
            while participants.len() < known {
                participants.push(new_patient(client));
            }
            let start = format!("2031-0{}-1{}T10:00:00.000Z", 1 + client % 9, client % 10);
            let body = json!({
                "participants": {"number": number, "data": data(&participants)},
                "start_date": start,
                "duration_in_seconds": 1800,
            });
            if let Some(answer) = call(
                &http,
                &tally,
                Method::POST,
                &format!("{base}/teleconsultation"),
                Some(body),
                201,
            )
            .await?
            {
                bookings.push(Booking {
                    id: answer["roomId"].as_str().unwrap_or_default().to_owned(),
                    number,
                    participants,
                    start,
                    duration: 1800,
                    deleted: false,
                });
            }
        } else if roll < 45 {
            let i = pick(&live);
            let booking = &mut bookings[i];
            let url = format!("{base}/teleconsultation/{}", booking.id);
            if booking.participants.len() < booking.number {
                let user = new_patient(client);
                let body = data(std::slice::from_ref(&user)).pop();
                if call(
                    &http,
                    &tally,
                    Method::POST,
                    &format!("{url}/participants/data"),
                    body,
                    201,
                )
                .await?
                .is_some()
                {
                    booking.participants.push(user);
                }
            } else if rand::rng().random_bool(0.5) {
                let duration = 600 + 60 * rand::rng().random_range(0..30);
                if call(
                    &http,
                    &tally,
                    Method::PATCH,
                    &url,
                    Some(json!({"duration_in_seconds": duration})),
                    204,
                )
                .await?
                .is_some()
                {
                    booking.duration = duration;
                }
            } else {
                // Replace a patient: a new room.
                let mut participants = booking.participants.clone();
                if let Some(last) = participants.last_mut() {
                    *last = new_patient(client);
                }
                let body = json!({"participants": {"number": booking.number, "data": data(&participants)}});
                if call(&http, &tally, Method::PATCH, &url, Some(body), 204)
                    .await?
                    .is_some()
                {
                    booking.participants = participants;
                }
            }
        } else if roll < 85 {
            let booking = &bookings[pick(&live)];
            let url = format!("{base}/teleconsultation/{}", booking.id);
            let request = http.get(&url).header("miauserid", &booking.participants[0]);
            tally.sent.fetch_add(1, Ordering::SeqCst);
            let status = request.send().await?.status().as_u16();
            if status != 200 {
                report_unexpected(&tally, "GET", &url, status, "");
            }
        } else {
            let booking = &mut bookings[pick(&live)];
            let url = format!("{base}/teleconsultation/{}", booking.id);
            if call(&http, &tally, Method::DELETE, &url, None, 204)
                .await?
                .is_some()
            {
                booking.deleted = true;
            }
        }
    }
    Ok(bookings)
}

fn data(participants: &[String]) -> Vec<Value> {
    participants
        .iter()
        .map(|id| {
            let group = if id.starts_with("doctor-") {
                "doctor"
            } else {
                "patient"
            };
            json!({"userId": id, "groups": [group], "fullName": format!("Name of {id}")})
        })
        .collect()
}

/// Sends one request; `Some(body)` when it got the `expected` status.
async fn call(
    http: &reqwest::Client,
    tally: &Tally,
    method: Method,
    url: &str,
    body: Option<Value>,
    expected: u16,
) -> anyhow::Result<Option<Value>> {
    let mut request = http.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    tally.sent.fetch_add(1, Ordering::SeqCst);
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    if status != expected {
        report_unexpected(tally, method.as_str(), url, status, &text);
        return Ok(None);
    }
    Ok(Some(serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn report_unexpected(tally: &Tally, method: &str, url: &str, status: u16, body: &str) {
    // Show the first few; count them all.
    if tally.unexpected.fetch_add(1, Ordering::SeqCst) < 5 {
        eprintln!("  unexpected: {method} {url} -> {status} {body}");
    }
}

/// Bookings whose stored state is not what their 2xx answers said.
async fn count_lost(store: &dyn Store, bookings: &[Booking]) -> anyhow::Result<u64> {
    let mut lost = 0;
    for booking in bookings {
        let stored = store.get_teleconsultation(&booking.id).await?;
        let ok = match stored {
            None => false,
            Some(tc) if booking.deleted => tc.state == TeleconsultationState::Deleted,
            Some(tc) => {
                let ids: Vec<&str> = tc
                    .participants
                    .iter()
                    .map(|p| p.external_id.as_str())
                    .collect();
                let wanted: Vec<&str> = booking.participants.iter().map(String::as_str).collect();
                tc.state == TeleconsultationState::Active
                    && ids == wanted
                    && tc.participant_count as usize == booking.number
                    && tc.duration_secs == booking.duration
                    && telecons::domain::schedule::format_instant(tc.start) == booking.start
            }
        };
        if !ok {
            lost += 1;
            eprintln!("  lost: {booking:?}");
        }
    }
    let ids: BTreeSet<&str> = bookings.iter().map(|b| b.id.as_str()).collect();
    if ids.len() != bookings.len() {
        eprintln!("  duplicate ids answered");
        lost += (bookings.len() - ids.len()) as u64;
    }
    Ok(lost)
}
