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
//! The events (spec §9, on unless `--no-events`) go to a receiver the soak runs, which fails a
//! share of the deliveries and goes away for a while; with `--kill` one instance is the real
//! `telecons` binary, SIGKILLed mid-burst and started again. Once the invariant holds, the
//! outbox must drain, and then every stored event must have arrived, in order per
//! teleconsultation, be what the answered changes imply, and none before its change was
//! answered ([`events_check`]).
//!
//! Exits non-zero when the invariant does not hold within `--converge-within` of the faults
//! stopping, the outbox does not drain within `--drain-within`, an events check fails, or a
//! request got an unexpected status.

mod child;
mod clients;
mod events_check;
mod receiver;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use kaleyra_sim::{Fault, FaultAction, RecordedRequest};
use telecons::app::Services;
use telecons::clock::{Clock, SystemClock};
use telecons::config::Config;
use telecons::domain::teleconsultation::TeleconsultationState;
use telecons::provisioner::AuditReport;
use telecons::store::{Backlog, Store};
use telecons::{Application, Dependencies};
use tokio_util::sync::CancellationToken;

use child::ChildInstance;
use clients::{Booking, Client, Killed, Tally};
use receiver::Receiver;

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
    /// No events: the instances run without `EVENTS_WEBHOOK_URL` and nothing of them is
    /// checked.
    #[arg(long)]
    no_events: bool,
    /// The share of deliveries the events' receiver answers 503 while the operations run.
    #[arg(long, default_value_t = 0.1)]
    receiver_failures: f64,
    /// Seconds the receiver is away (its port closed, its connections cut), from when a
    /// third of the operations were sent; 0: never. Well below the retry schedule's ~100 s,
    /// so that no event is given up meanwhile.
    #[arg(long, default_value_t = 5.0)]
    receiver_away: f64,
    /// One instance is the `telecons` binary beside the soak's, SIGKILLed when half the
    /// operations were sent and started again on the same port (on SQLite the only
    /// instance; with several, the last).
    #[arg(long)]
    kill: bool,
    /// Milliseconds an event's arrival may be read ahead of its answer without failing the
    /// soak. This process reads both, the receiver's request and the client's answer, and a
    /// busy machine stalls it now and then for milliseconds, after which it reads whatever
    /// is ready in any order (the service answered first, by its own clock). An event not
    /// held until its answer is read far earlier: its request still waits for Kaleyra.
    #[arg(long, default_value_t = 50)]
    answer_slack_ms: u64,
    /// Seconds after the faults stop within which no event may be left pending.
    #[arg(long, default_value_t = 120)]
    drain_within: u64,
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

const API_KEY: &str = "soak-key";

/// How often the soak looks whether the invariant holds, and how often it says how far the
/// backlog is.
const POLL: Duration = Duration::from_secs(1);
const PROGRESS_EVERY: Duration = Duration::from_secs(15);
/// How often the soak says how far the operations are (a long run takes minutes).
const OPERATIONS_PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// The instances' retry schedule for events: short, so that the outbox drains soon after the
/// faults stop, yet about two minutes in all (100 s at least, jitter included), far longer
/// than the receiver is away: no event is given up meanwhile, whatever its attempts met.
const RETRY_SCHEDULE: &str = "200ms,500ms,1s,2s,5s,10s,20s,30s,60s";
/// How often the soak looks whether the outbox has drained.
const DRAIN_POLL: Duration = Duration::from_millis(200);

/// An instance of the service in this process, running.
struct InProcess {
    base: String,
    services: Services,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The instances the clients talk to.
struct Instances {
    in_process: Vec<InProcess>,
    /// The one the soak kills (`--kill`), a child process; last in [`Self::bases`].
    child: Option<Arc<ChildInstance>>,
    /// Where the soak looks underneath: the first in-process instance's parts, or, when the
    /// child is the only instance, the same wiring without a listener.
    observer: Services,
}

impl Instances {
    fn bases(&self) -> Vec<String> {
        self.in_process
            .iter()
            .map(|i| i.base.clone())
            .chain(self.child.iter().map(|c| c.base.clone()))
            .collect()
    }

    /// Stops them all (the child by SIGKILL: it has nothing left to do).
    async fn stop(self, stop: &CancellationToken) -> anyhow::Result<()> {
        stop.cancel();
        for instance in self.in_process {
            instance.server.await??;
        }
        if let Some(child) = self.child {
            child.stop().await?;
        }
        Ok(())
    }
}

/// What the faults beside Kaleyra's came to.
struct Injected {
    /// How long the receiver was away.
    receiver_away: Duration,
    /// How long the killed instance took from SIGKILL to ready again.
    down: Option<Duration>,
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
    if !(0.0..1.0).contains(&args.receiver_failures) || !(0.0..=60.0).contains(&args.receiver_away)
    {
        bail!("--receiver-failures: from 0 to below 1; --receiver-away: 0 to 60 seconds");
    }
    let converge_within = Duration::from_secs(args.converge_within);
    let wait_at_most = Duration::from_secs(args.wait_at_most.unwrap_or(0)).max(converge_within);

    let sim = kaleyra_sim::spawn(API_KEY).await?;
    let receiver = if args.no_events {
        None
    } else {
        Some(Arc::new(Receiver::start(args.receiver_failures).await?))
    };
    let stop = CancellationToken::new();
    let instances = start_instances(
        &args,
        sim.base_url(),
        &database_url,
        receiver.as_deref(),
        &stop,
    )
    .await?;
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
    if receiver.is_some() {
        println!(
            "  events: the receiver answers 503 to {:.0}% of deliveries while the operations run and is away {:.1} s from a third of them; retried after {RETRY_SCHEDULE}",
            args.receiver_failures * 100.0,
            args.receiver_away
        );
    }
    if instances.child.is_some() {
        println!(
            "  instance {} is the telecons binary, SIGKILLed when half the operations were sent and started again",
            args.instances
        );
    }
    let tally = Arc::new(Tally::default());
    let http = reqwest::Client::new();
    let started = Instant::now();
    let bases = instances.bases();
    let killed = instances.child.as_ref().map(|child| Killed {
        watch: child.watch(),
        database_url: database_url.clone(),
    });
    let clients: Vec<_> = (0..args.concurrency)
        .map(|number| {
            let share = args.operations / args.concurrency
                + u64::from(number < args.operations % args.concurrency);
            let instance = number as usize % bases.len();
            let client = Client {
                number,
                base: bases[instance].clone(),
                http: http.clone(),
                tally: tally.clone(),
                cut_off: args.cut_off,
                // The child is the last instance.
                killed: killed.clone().filter(|_| instance == bases.len() - 1),
            };
            tokio::spawn(client.run(share))
        })
        .collect();
    let progress = tokio::spawn(report_operations(tally.clone(), started));
    let faults = tokio::spawn(inject_faults(
        tally.clone(),
        args.operations,
        receiver
            .clone()
            .filter(|_| args.receiver_away > 0.0)
            .map(|r| (r, Duration::from_secs_f64(args.receiver_away))),
        instances.child.clone(),
    ));
    let mut bookings = Vec::new();
    for client in clients {
        bookings.extend(client.await??);
    }
    progress.abort();
    let elapsed = started.elapsed();
    let injected = faults.await??;

    // Kaleyra and the receiver recover; from now on only the instances' background workers
    // act.
    sim.clear_faults();
    if let Some(receiver) = &receiver {
        receiver.stop_failing();
    }
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
    if let Some(down) = injected.down {
        println!(
            "  killed: down {:.1} s (SIGKILL to ready again); requests unanswered: {}, changes among them: {} ({} found stored)",
            down.as_secs_f64(),
            tally.connection_errors.load(Ordering::SeqCst),
            tally.unanswered_changes.load(Ordering::SeqCst),
            tally.unanswered_stored.load(Ordering::SeqCst)
        );
    }
    println!("  Kaleyra: {}", describe_faults(&during_operations));
    let services = instances.observer.clone();
    let backlog = services.store.backlog(SystemClock.now(), 0).await?;
    println!(
        "faults stopped: {} teleconsultations to provision, {} rooms to delete ({} of these due now)",
        backlog.teleconsultations, backlog.room_deletions, backlog.due
    );

    let outcome = converge(&services, faults_stopped, wait_at_most).await?;
    let meanwhile = &sim.requests()[during_operations.len()..];
    let drain_within = Duration::from_secs(args.drain_within);
    let drained_after = match &receiver {
        Some(_) => drain(&*services.store, faults_stopped, drain_within).await?,
        None => None,
    };
    instances.stop(&stop).await?;
    if let Some(receiver) = &receiver {
        receiver.stop();
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
    let mut events_failures = Vec::new();
    if let Some(receiver) = &receiver {
        let stored = services.store.all_events().await?;
        let arrivals = receiver.arrivals();
        let events = events_check::check(&events_check::Observed {
            stored: &stored,
            arrivals: &arrivals,
            bookings: &bookings,
            rejected: receiver.rejected(),
            receiver_away: injected.receiver_away,
            answer_slack: Duration::from_millis(args.answer_slack_ms),
            drained_after,
        });
        for line in &events.lines {
            println!("{line}");
        }
        if drained_after.is_none_or(|after| after > drain_within) {
            events_failures.push(format!(
                "events still pending {} s after the faults stopped",
                drain_within.as_secs()
            ));
        }
        events_failures.extend(events.failures);
    }
    let in_time = outcome
        .converged_after
        .is_some_and(|after| after <= converge_within);
    let mut problems = Vec::new();
    if !in_time {
        problems.push(describe_inconsistency(
            &report,
            &outcome.backlog,
            converge_within,
        ));
    }
    for (count, what) in [
        (lost, "lost"),
        (unknown, "booked twice or unanswered"),
        (unexpected, "unexpected answers"),
    ] {
        if count > 0 {
            problems.push(format!("{what} {count}"));
        }
    }
    problems.extend(events_failures.iter().map(|f| format!("events: {f}")));
    if !problems.is_empty() {
        bail!("soak failed: {}", problems.join("; "));
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

/// The faults beside Kaleyra's, timed by the operations begun: the receiver goes away for
/// its while once a third were, the child is killed and restarted once half were.
async fn inject_faults(
    tally: Arc<Tally>,
    operations: u64,
    receiver_away: Option<(Arc<Receiver>, Duration)>,
    child: Option<Arc<ChildInstance>>,
) -> anyhow::Result<Injected> {
    let begun = |share: u64| {
        let tally = Arc::clone(&tally);
        async move {
            while tally.operations.load(Ordering::SeqCst) < operations / share {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let away = async {
        let Some((receiver, away)) = receiver_away else {
            return Ok(Duration::ZERO);
        };
        begun(3).await;
        receiver.go_away(away).await
    };
    let kill = async {
        let Some(child) = child else {
            return Ok(None);
        };
        begun(2).await;
        child.kill_and_restart().await.map(Some)
    };
    let (receiver_away, down) = tokio::try_join!(away, kill)?;
    Ok(Injected {
        receiver_away,
        down,
    })
}

/// The variables every instance is configured by.
fn service_vars(
    kaleyra_url: &str,
    database_url: &str,
    receiver: Option<&Receiver>,
) -> Vec<(String, String)> {
    let mut vars = vec![
        ("BANDYER_API_SECRET_KEY", API_KEY),
        ("BANDYER_BASE_URL", kaleyra_url),
        ("DATABASE_URL", database_url),
        ("UNLIMITED_TELECONSULTATION", "false"),
    ];
    if let Some(receiver) = receiver {
        vars.extend([
            ("EVENTS_WEBHOOK_URL", receiver.url.as_str()),
            ("EVENTS_WEBHOOK_SECRET", receiver.secret.as_str()),
            ("EVENTS_RETRY_SCHEDULE", RETRY_SCHEDULE),
        ]);
    }
    vars.into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn config(vars: &[(String, String)]) -> anyhow::Result<Config> {
    Config::from_vars(&vars.iter().cloned().collect()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Starts `--instances` instances on `database_url`, the last one a child process with
/// `--kill`, all configured alike.
async fn start_instances(
    args: &Args,
    kaleyra_url: &str,
    database_url: &str,
    receiver: Option<&Receiver>,
    stop: &CancellationToken,
) -> anyhow::Result<Instances> {
    let vars = service_vars(kaleyra_url, database_url, receiver);
    let mut in_process = Vec::new();
    for _ in 0..args.instances - usize::from(args.kill) {
        in_process.push(start_instance(&vars, stop).await?);
    }
    let child = if args.kill {
        let port = child::free_port()?;
        let mut vars = vars.clone();
        vars.push(("HTTP_PORT".into(), port.to_string()));
        vars.push(("LOG_LEVEL".into(), "error".into()));
        Some(Arc::new(ChildInstance::start(vars, port).await?))
    } else {
        None
    };
    let observer = match in_process.first() {
        Some(first) => first.services.clone(),
        None => {
            let deps = Dependencies {
                existing_installation_only: true,
                ..Dependencies::default()
            };
            Services::build(&config(&vars)?, &deps).await?
        }
    };
    Ok(Instances {
        in_process,
        child,
        observer,
    })
}

/// Builds one instance of the service configured by `vars`, serving on a loopback port, with
/// its own background workers, until `stop`.
async fn start_instance(
    vars: &[(String, String)],
    stop: &CancellationToken,
) -> anyhow::Result<InProcess> {
    let mut vars = vars.to_vec();
    vars.push(("HTTP_PORT".into(), "0".into()));
    let application = Application::build(
        config(&vars)?,
        Dependencies {
            address: std::net::Ipv4Addr::LOCALHOST.into(),
            ..Dependencies::default()
        },
    )
    .await?;
    let base = format!("http://{}", application.address()?);
    let services = application.services().clone();
    let server = tokio::spawn(application.run_until_stopped(stop.clone().cancelled_owned()));
    Ok(InProcess {
        base,
        services,
        server,
    })
}

/// Polls the outbox every [`DRAIN_POLL`] until no event is pending, for at most `within`
/// since `since`: how long after `since` it drained.
async fn drain(
    store: &dyn Store,
    since: Instant,
    within: Duration,
) -> anyhow::Result<Option<Duration>> {
    let mut next_progress = PROGRESS_EVERY;
    loop {
        let counts = store.event_counts().await?;
        if counts.pending == 0 {
            return Ok(Some(since.elapsed()));
        }
        if since.elapsed() >= within {
            return Ok(None);
        }
        if since.elapsed() >= next_progress {
            next_progress += PROGRESS_EVERY;
            println!(
                "  after {:>3} s: {} events pending, {} given up",
                since.elapsed().as_secs(),
                counts.pending,
                counts.given_up
            );
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
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
