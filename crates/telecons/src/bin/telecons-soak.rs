//! `telecons-soak`: thousands of mixed lifecycle operations against the real service (HTTP on
//! loopback, SQLite or PostgreSQL, one instance or several on one database) while the
//! embedded Kaleyra simulator misbehaves; then Kaleyra recovers and the soak measures, on the
//! real clock, how long the service's own background workers take until the invariant holds:
//! every live teleconsultation has exactly its room, matching its spec (rooms expected =
//! rooms live), no orphan room, nothing left to do, and nothing that was answered 2xx is lost.
//!
//! Every booking carries an `Idempotency-Key`; a share of them have their first answer cut
//! off (the client hangs up mid-request) and are sent again with the same key until
//! answered, as a booking backend would: each must be booked once, so no live
//! teleconsultation may exist that the soak was not answered for.
//!
//! Exits non-zero when the invariant does not hold within `--converge-within` of the faults
//! stopping, or a request got an unexpected status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use kaleyra_sim::{Fault, FaultAction, RecordedRequest};
use rand::Rng;
use reqwest::Method;
use serde_json::{Value, json};
use telecons::app::Services;
use telecons::clock::{Clock, SystemClock};
use telecons::config::Config;
use telecons::domain::teleconsultation::TeleconsultationState;
use telecons::provisioner::AuditReport;
use telecons::store::{Backlog, Store};
use telecons::{Application, Dependencies};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    about = "Soak test: mixed operations under Kaleyra faults, then the time until the invariant holds"
)]
struct Args {
    /// How many lifecycle operations to send.
    #[arg(long, default_value_t = 3000)]
    operations: u64,
    /// How many clients send them at once.
    #[arg(long, default_value_t = 16)]
    concurrency: u64,
    /// How Kaleyra misbehaves while the operations run.
    #[arg(long, value_enum, default_value_t = FaultMix::Incident)]
    faults: FaultMix,
    /// Storage; by default a fresh SQLite file in a temporary directory. A PostgreSQL
    /// database must exist and be empty.
    #[arg(long)]
    database_url: Option<String>,
    /// How many instances of the service share the database (and the simulator), each with
    /// its own background worker; the clients are spread across them. More than one needs
    /// PostgreSQL.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Seconds after the faults stop within which the invariant must hold.
    #[arg(long, default_value_t = 120)]
    converge_within: u64,
    /// Seconds to keep waiting for the invariant when it does not hold in time, to measure
    /// how long it takes anyway (the soak still fails); at least `--converge-within`.
    #[arg(long)]
    wait_at_most: Option<u64>,
    /// The share of bookings whose first answer is cut off (the client hangs up within a
    /// few milliseconds), then sent again with the same `Idempotency-Key` until answered.
    #[arg(long, default_value_t = 0.1)]
    cut_off: f64,
}

/// How Kaleyra misbehaves during the operations (faults are drawn per call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FaultMix {
    /// An incident: 20% of calls refused with 503, 10% answered 429 with `Retry-After: 1`,
    /// and 10% of room creations made but their answer lost (half a 502, half a dropped
    /// connection).
    Incident,
    /// 20% of calls of every kind fail: three in five refused with 503, one answered 502
    /// after taking effect, one dropped after taking effect (lost answers of user creations
    /// and room deletions too, not only of room creations).
    AnyCallLost,
}

impl FaultMix {
    /// The simulator's rules. The first rule that matches and whose dice fire wins, so each
    /// rate is the share of the calls the rules before it spared.
    fn rules(self) -> Vec<Fault> {
        match self {
            FaultMix::Incident => vec![
                Fault::new(FaultAction::Status(503)).rate(0.2),
                Fault::new(FaultAction::Status(429))
                    .retry_after(1)
                    .rate(0.1 / 0.8),
                Fault::status_after_effect("/v2/rooms", 502)
                    .method("POST")
                    .rate(0.05 / 0.7),
                Fault::drop_after_effect("/v2/rooms")
                    .method("POST")
                    .rate(0.05 / 0.65),
            ],
            FaultMix::AnyCallLost => vec![
                Fault::new(FaultAction::Status(503)).rate(0.12),
                Fault::new(FaultAction::StatusAfterEffect(502)).rate(0.04 / 0.88),
                Fault::new(FaultAction::DropAfterEffect).rate(0.04 / 0.84),
            ],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            FaultMix::Incident => {
                "503 on 20% of calls, 429 + Retry-After: 1 on 10%, answers lost for 10% of room creations"
            }
            FaultMix::AnyCallLost => {
                "20% of calls fail: 503 (12%), 502 after taking effect (4%), dropped after taking effect (4%)"
            }
        }
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
    /// Bookings whose first answer was cut off, and the answers to their retries that were
    /// the kept one (`Idempotency-Replayed`) or a 409 (the first still running).
    cut_off: AtomicU64,
    replayed: AtomicU64,
    still_running: AtomicU64,
}

const API_KEY: &str = "soak-key";

/// How often the soak looks whether the invariant holds, and how often it says how far the
/// backlog is.
const POLL: Duration = Duration::from_secs(1);
const PROGRESS_EVERY: Duration = Duration::from_secs(15);
/// How often the soak says how far the operations are (a long run takes minutes).
const OPERATIONS_PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// One instance of the service, running.
struct Instance {
    base: String,
    services: Services,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telecons::telemetry::init_logging("error");
    let dir = tempfile_dir()?;
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/soak.db", dir.display()));
    let storage = if database_url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    if args.instances == 0 || (args.instances > 1 && storage == "sqlite") {
        bail!("--instances: 1, or several on PostgreSQL (one SQLite file serves one instance)");
    }
    let converge_within = Duration::from_secs(args.converge_within);
    let wait_at_most = Duration::from_secs(args.wait_at_most.unwrap_or(0)).max(converge_within);

    let sim = kaleyra_sim::spawn(API_KEY).await?;
    let stop = CancellationToken::new();
    let mut instances = Vec::new();
    for _ in 0..args.instances {
        instances.push(start_instance(sim.base_url(), &database_url, &stop).await?);
    }
    for rule in args.faults.rules() {
        sim.add_fault(rule);
    }

    println!(
        "soak: {} operations, {} clients, {} instance(s) on {storage}; Kaleyra faults: {}",
        args.operations,
        args.concurrency,
        args.instances,
        args.faults.describe()
    );
    let tally = Arc::new(Tally::default());
    let http = reqwest::Client::new();
    let started = Instant::now();
    let clients: Vec<_> = (0..args.concurrency)
        .map(|client| {
            let share = args.operations / args.concurrency
                + u64::from(client < args.operations % args.concurrency);
            let base = instances[client as usize % instances.len()].base.clone();
            tokio::spawn(run_client(
                client,
                share,
                base,
                http.clone(),
                tally.clone(),
                args.cut_off,
            ))
        })
        .collect();
    let progress = tokio::spawn(report_operations(tally.clone(), started));
    let mut bookings = Vec::new();
    for client in clients {
        bookings.extend(client.await??);
    }
    progress.abort();
    let elapsed = started.elapsed();

    // Kaleyra recovers; from now on only the instances' background workers act.
    sim.clear_faults();
    let faults_stopped = Instant::now();
    let during_operations = sim.requests();
    let sent = tally.sent.load(Ordering::SeqCst);
    println!(
        "operations: {sent} requests in {:.1} s ({:.0}/s); unexpected answers: {}",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        tally.unexpected.load(Ordering::SeqCst)
    );
    println!(
        "  bookings cut off and sent again with their key: {}; retries answered with the kept answer: {}, with 409 (still running): {}",
        tally.cut_off.load(Ordering::SeqCst),
        tally.replayed.load(Ordering::SeqCst),
        tally.still_running.load(Ordering::SeqCst)
    );
    println!("  Kaleyra: {}", describe_faults(&during_operations));
    let services = instances[0].services.clone();
    let backlog = services.store.backlog(SystemClock.now(), 0).await?;
    println!(
        "faults stopped: {} teleconsultations to provision, {} rooms to delete ({} of these due now)",
        backlog.teleconsultations, backlog.room_deletions, backlog.due
    );

    let outcome = converge(&services, faults_stopped, wait_at_most).await?;
    let meanwhile = &sim.requests()[during_operations.len()..];
    stop.cancel();
    for instance in instances {
        instance.server.await??;
    }
    match outcome.converged_after {
        Some(after) => println!(
            "converged in {:.1} s{} (nothing left to do after {:.1} s); {}",
            after.as_secs_f64(),
            if after > converge_within {
                format!(", over the {} s allowed", converge_within.as_secs())
            } else {
                String::new()
            },
            outcome.idle_after.unwrap_or_default().as_secs_f64(),
            describe_calls(meanwhile, outcome.audits)
        ),
        None => println!(
            "not converged within {} s; {}",
            wait_at_most.as_secs(),
            describe_calls(meanwhile, outcome.audits)
        ),
    }

    let report = outcome.report;
    let lost = count_lost(&*services.store, &bookings).await?;
    let unknown = count_unknown(&*services.store, &bookings).await?;
    let unexpected = tally.unexpected.load(Ordering::SeqCst);
    println!(
        "invariant: rooms expected = {}, rooms live = {}, matching = {}, missing = {}, orphans = {}, lost = {}, booked twice or unanswered = {}",
        report.rooms_expected,
        report.rooms_live,
        report.rooms_matching,
        report.missing.len(),
        report.orphans.len(),
        lost,
        unknown
    );
    let in_time = outcome
        .converged_after
        .is_some_and(|after| after <= converge_within);
    if !in_time || lost > 0 || unknown > 0 || unexpected > 0 {
        bail!(
            "soak failed: {}; lost {lost}; booked twice or unanswered {unknown}; unexpected answers {unexpected}",
            describe_inconsistency(&report, &outcome.backlog, converge_within)
        );
    }
    println!("soak: OK");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Says every [`OPERATIONS_PROGRESS_EVERY`] how many requests were sent (until aborted).
async fn report_operations(tally: Arc<Tally>, started: Instant) {
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + OPERATIONS_PROGRESS_EVERY,
        OPERATIONS_PROGRESS_EVERY,
    );
    loop {
        every.tick().await;
        println!(
            "  after {:>4} s: {} requests sent",
            started.elapsed().as_secs(),
            tally.sent.load(Ordering::SeqCst)
        );
    }
}

/// Builds one instance of the service on `database_url`, serving on a loopback port, with its
/// own background worker, until `stop`.
async fn start_instance(
    kaleyra_url: &str,
    database_url: &str,
    stop: &CancellationToken,
) -> anyhow::Result<Instance> {
    let vars = [
        ("BANDYER_API_SECRET_KEY", API_KEY),
        ("BANDYER_BASE_URL", kaleyra_url),
        ("DATABASE_URL", database_url),
        ("UNLIMITED_TELECONSULTATION", "false"),
        ("HTTP_PORT", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::from_vars(&vars).map_err(|e| anyhow::anyhow!("{e}"))?;
    let application = Application::build(
        config,
        Dependencies {
            address: std::net::Ipv4Addr::LOCALHOST.into(),
            ..Dependencies::default()
        },
    )
    .await?;
    let base = format!("http://{}", application.address()?);
    let services = application.services().clone();
    let server = tokio::spawn(application.run_until_stopped(stop.clone().cancelled_owned()));
    Ok(Instance {
        base,
        services,
        server,
    })
}

/// What the soak saw while waiting for the invariant.
struct Convergence {
    /// When (after the faults stopped) the invariant held with nothing left to do.
    converged_after: Option<Duration>,
    /// When nothing was left to do (no provisioning, no deletion) for the first time.
    idle_after: Option<Duration>,
    /// The last audit, and the backlog when it was taken.
    report: AuditReport,
    backlog: Backlog,
    /// How many audits the soak ran (each lists Kaleyra's rooms once).
    audits: u64,
}

/// Polls the backlog every [`POLL`] and, once nothing is left to do, the audit, until the
/// invariant holds or `wait_at_most` has passed since `since`. The service's background
/// workers do all the work, on the real clock.
async fn converge(
    services: &Services,
    since: Instant,
    wait_at_most: Duration,
) -> anyhow::Result<Convergence> {
    let mut idle_after = None;
    let mut audits = 0;
    let mut next_progress = PROGRESS_EVERY;
    loop {
        let backlog = services.store.backlog(SystemClock.now(), 0).await?;
        let idle = backlog.teleconsultations == 0 && backlog.room_deletions == 0;
        if idle && idle_after.is_none() {
            idle_after = Some(since.elapsed());
        }
        let out_of_time = since.elapsed() >= wait_at_most;
        if idle || out_of_time {
            let report = services.provisioner.audit().await?;
            audits += 1;
            let converged = idle && report.is_consistent();
            if converged || out_of_time {
                return Ok(Convergence {
                    converged_after: converged.then(|| since.elapsed()),
                    idle_after,
                    report,
                    backlog,
                    audits,
                });
            }
        }
        if since.elapsed() >= next_progress {
            next_progress += PROGRESS_EVERY;
            println!(
                "  after {:>3} s: {} teleconsultations to provision, {} rooms to delete ({} due now, {} being worked)",
                since.elapsed().as_secs(),
                backlog.teleconsultations,
                backlog.room_deletions,
                backlog.due,
                backlog.being_worked
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Kaleyra's calls during the operations: the faults injected by kind, the room creations
/// and how many lost their answer, the room listings (lost answers are settled from them).
fn describe_faults(requests: &[RecordedRequest]) -> String {
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    for fault in requests.iter().filter_map(|r| r.fault.as_deref()) {
        *faults.entry(fault).or_default() += 1;
    }
    let creations: Vec<&RecordedRequest> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/rooms")
        .collect();
    let answer_lost = |r: &&&RecordedRequest| {
        r.fault
            .as_deref()
            .is_some_and(|f| f.starts_with("status_after_effect") || f == "drop_after_effect")
    };
    let listings = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/v2/rooms")
        .count();
    let injected: u64 = faults.values().sum();
    let by_kind: Vec<String> = faults.iter().map(|(f, n)| format!("{f} {n}")).collect();
    format!(
        "{} calls, {injected} faults injected ({}); {} room creations, {} of them with the answer lost; {listings} room listings",
        requests.len(),
        by_kind.join(", "),
        creations.len(),
        creations.iter().filter(answer_lost).count()
    )
}

/// Kaleyra's calls by kind (method and route), room listings apart: those the soak's own
/// audits made are not the service's.
fn describe_calls(requests: &[RecordedRequest], audits: u64) -> String {
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    for request in requests {
        *calls.entry(call_kind(request)).or_default() += 1;
    }
    let listings = calls.remove("GET /v2/rooms").unwrap_or(0);
    let by_kind: Vec<String> = calls.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(
        "Kaleyra calls meanwhile: {} room listings by the service (+{audits} by the soak's audits), {}",
        listings.saturating_sub(audits),
        if by_kind.is_empty() {
            "nothing else".to_owned()
        } else {
            by_kind.join(", ")
        }
    )
}

/// `POST /v2/rooms`, `DELETE /v2/rooms/{id}`: the route, not the id.
fn call_kind(request: &RecordedRequest) -> String {
    let route: Vec<&str> = request.path.split('/').take(3).collect();
    let id = if request.path.split('/').count() > 3 {
        "/{id}"
    } else {
        ""
    };
    format!("{} {}{id}", request.method, route.join("/"))
}

/// Why the invariant does not hold: what is still missing or orphaned (the first few), and
/// what is left to do.
fn describe_inconsistency(report: &AuditReport, backlog: &Backlog, within: Duration) -> String {
    const NAMED: usize = 5;
    let first = |ids: &[String]| {
        ids.iter()
            .take(NAMED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    if report.is_consistent() && backlog.teleconsultations == 0 && backlog.room_deletions == 0 {
        return format!("the invariant held, but later than {} s", within.as_secs());
    }
    format!(
        "{} teleconsultations without their room (e.g. {}), {} orphan rooms (e.g. {}); left to do: {} provisionings, {} room deletions",
        report.missing.len(),
        first(&report.missing),
        report.orphans.len(),
        first(&report.orphans),
        backlog.teleconsultations,
        backlog.room_deletions
    )
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
    cut_off: f64,
) -> anyhow::Result<Vec<Booking>> {
    let mut bookings: Vec<Booking> = Vec::new();
    let mut next_key = 0_u64;
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
            next_key += 1;
            let key = format!("soak-c{client}-b{next_key}");
            let cut = rand::rng().random_bool(cut_off);
            if let Some(answer) = book(&http, &tally, &base, &key, &body, cut).await? {
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

/// Books `body` under `key`: when `cut`, the first request is abandoned within a few
/// milliseconds (its answer lost, wherever the service was in it), then sent again with the
/// same key until answered — after a 409 (the first still running), once its hold ends.
/// `Some(body)` of the 201.
async fn book(
    http: &reqwest::Client,
    tally: &Tally,
    base: &str,
    key: &str,
    body: &Value,
    cut: bool,
) -> anyhow::Result<Option<Value>> {
    let url = format!("{base}/teleconsultation");
    let request = || {
        http.post(&url)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
    };
    if cut {
        tally.cut_off.fetch_add(1, Ordering::SeqCst);
        tally.sent.fetch_add(1, Ordering::SeqCst);
        let within = Duration::from_micros(rand::rng().random_range(0..5_000));
        if let Ok(answer) = tokio::time::timeout(within, request()).await {
            // Answered before the cut: the answer is read, then dropped as if lost.
            drop(answer?.bytes().await);
        }
    }
    loop {
        tally.sent.fetch_add(1, Ordering::SeqCst);
        let response = request().await?;
        let status = response.status().as_u16();
        let replayed = response.headers().contains_key("idempotency-replayed");
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let text = response.text().await?;
        match status {
            201 => {
                if replayed {
                    tally.replayed.fetch_add(1, Ordering::SeqCst);
                }
                return Ok(Some(serde_json::from_str(&text).unwrap_or(Value::Null)));
            }
            409 if cut => {
                tally.still_running.fetch_add(1, Ordering::SeqCst);
                // Retry-After is when a dead request's hold would end; a live one answers
                // sooner, so look again shortly.
                let wait =
                    Duration::from_millis(50).min(Duration::from_secs(retry_after.unwrap_or(1)));
                tokio::time::sleep(wait).await;
            }
            _ => {
                report_unexpected(tally, "POST", &url, status, &text);
                return Ok(None);
            }
        }
    }
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

/// Live teleconsultations the soak was never answered for: a booking made twice (a retry
/// that was not recognised as one) or one whose every answer was lost.
async fn count_unknown(store: &dyn Store, bookings: &[Booking]) -> anyhow::Result<u64> {
    let known: BTreeSet<&str> = bookings.iter().map(|b| b.id.as_str()).collect();
    let mut unknown = 0;
    let mut after = String::new();
    loop {
        let page = store.list_live_teleconsultations(&after, 500).await?;
        let Some(last) = page.last() else {
            return Ok(unknown);
        };
        after = last.id.clone();
        for tc in &page {
            if !known.contains(tc.id.as_str()) {
                unknown += 1;
                if unknown <= 5 {
                    eprintln!("  booked twice or unanswered: {}", tc.id);
                }
            }
        }
    }
}
