//! The real `telecons serve` process, killed with SIGKILL in the middle of a burst (while
//! Kaleyra refuses calls, asks to slow down and loses answers) and restarted; and two
//! processes sharing one database. Whatever was answered 2xx is kept, every live
//! teleconsultation ends with exactly its room, and no room leaks or is created twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kaleyra_sim::{Fault, FaultAction};
use serde_json::json;

use crate::cli::{Running, free_port, telecons};
use crate::support::{SIM_API_KEY, TestDatabase};

crate::on_both_backends!(
    killed_mid_burst_then_restarted_loses_nothing_and_leaks_nothing,
    bookings_sent_again_with_their_keys_after_a_kill_are_each_booked_once,
    two_processes_share_the_work_and_never_create_a_room_twice,
);

/// How long the restarted service may take to catch up (its retry delay is 10 s).
const CONVERGENCE: Duration = Duration::from_secs(90);

fn service_env(
    sim: &kaleyra_sim::RunningSimulator,
    db: &TestDatabase,
    port: u16,
) -> Vec<(String, String)> {
    vec![
        ("BANDYER_API_SECRET_KEY".into(), SIM_API_KEY.into()),
        ("BANDYER_BASE_URL".into(), sim.base_url().into()),
        ("DATABASE_URL".into(), db.url.clone()),
        ("HTTP_PORT".into(), port.to_string()),
        // Work a killed process held is taken over after a second, not a minute.
        ("PROVISIONING_LEASE_SECONDS".into(), "1".into()),
        ("LOG_LEVEL".into(), "warn".into()),
    ]
}

async fn start(env: &[(String, String)], dir: &std::path::Path, port: u16) -> Running {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut running = Running::start(telecons(&["serve"], dir, &env));
    running.wait_for(port, "/-/ready", 200).await;
    running
}

fn booking(i: usize) -> serde_json::Value {
    json!({
        "participants": {"number": 2, "data": [
            {"userId": format!("crash-doc-{i}"), "groups": ["doctor"], "fullName": "Dr. A"},
            {"userId": format!("crash-pat-{i}"), "groups": ["patient"], "fullName": "P. B"},
        ]},
        "start_date": "2031-01-01T10:00:00.000Z",
        "duration_in_seconds": 1800,
    })
}

/// A change of booking `i`'s participants (a new room): another doctor and patient.
fn participants_change(i: usize) -> serde_json::Value {
    let mut change = booking(i + 1000);
    let fields = change.as_object_mut().unwrap();
    fields.remove("start_date");
    fields.remove("duration_in_seconds");
    change
}

/// What the answers of the burst promised about one teleconsultation: that it exists, and
/// `user` takes part, or that it was deleted.
#[derive(Debug)]
struct Promised {
    id: String,
    user: String,
    exists: bool,
}

/// Polls the audit until every live teleconsultation has exactly its room and nothing
/// else exists (or fails after [`CONVERGENCE`]).
async fn wait_converged(db: &TestDatabase, sim: &kaleyra_sim::RunningSimulator) {
    let settings = telecons::config::KaleyraSettings {
        base_url: sim.base_url().to_owned(),
        api_key: SIM_API_KEY.to_owned().into(),
    };
    let kaleyra = telecons::app::kaleyra_client(&settings).unwrap();
    // The installation the services made (a candidate is stored only in an empty database).
    let installation = db
        .store
        .installation(&telecons::store::Installation {
            id: "0000000000000000".into(),
            mode: telecons::store::InstallationMode::Service,
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let provisioner = telecons::provisioner::Provisioner::new(
        Arc::clone(&db.store),
        kaleyra,
        Arc::new(telecons::clock::SystemClock),
        telecons::provisioner::ProvisionerSettings {
            installation_id: installation.id,
            lease: chrono::TimeDelta::seconds(60),
            immutable_period_ms: 0,
            concurrency: 32,
        },
        Arc::new(telecons::outbox::Outbox::disabled()),
    );
    let deadline = Instant::now() + CONVERGENCE;
    loop {
        let report = provisioner.audit().await.unwrap();
        let far_future = chrono::Utc::now() + chrono::TimeDelta::days(3650);
        let backlog = db.store.backlog(far_future, 0).await.unwrap();
        if report.is_consistent() && backlog.teleconsultations == 0 && backlog.room_deletions == 0 {
            assert_eq!(report.untagged_rooms, 0);
            assert_eq!(sim.rooms().len() as u64, report.rooms_expected);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not converged: {report:#?} {backlog:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn killed_mid_burst_then_restarted_loses_nothing_and_leaks_nothing(db: TestDatabase) {
    let sim = kaleyra_sim::spawn(SIM_API_KEY).await.unwrap();
    // Kaleyra misbehaves during the burst: refused calls, back-pressure, lost answers.
    sim.add_fault(Fault::status("/v2/rooms", 503).method("POST").rate(0.3));
    sim.add_fault(
        Fault::new(FaultAction::Status(429))
            .retry_after(1)
            .rate(0.1),
    );
    sim.add_fault(
        Fault::status_after_effect("/v2/rooms", 502)
            .method("POST")
            .rate(0.2),
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = service_env(&sim, &db, port);
    let mut first = start(&env, dir.path(), port).await;

    // Each booking, then a change of two in three: deleted, or its participants replaced
    // (its room retired). A request the kill leaves unanswered promises nothing: it may or
    // may not have taken effect.
    let booked = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/teleconsultation");
    let burst: Vec<_> = (0..60)
        .map(|i| {
            let (http, url, booked) = (http.clone(), url.clone(), Arc::clone(&booked));
            tokio::spawn(async move {
                let response = http.post(&url).json(&booking(i)).send().await.ok()?;
                assert_eq!(response.status(), 201);
                let body: serde_json::Value = response.json().await.ok()?;
                let id = body["roomId"].as_str().unwrap().to_owned();
                booked.fetch_add(1, Ordering::SeqCst);
                let (change, user, exists) = match i % 3 {
                    0 => (http.delete(format!("{url}/{id}")), i, false),
                    1 => (
                        http.patch(format!("{url}/{id}"))
                            .json(&participants_change(i)),
                        i + 1000,
                        true,
                    ),
                    _ => {
                        let user = format!("crash-pat-{i}");
                        return Some(Promised {
                            id,
                            user,
                            exists: true,
                        });
                    }
                };
                let status = change.send().await.ok()?.status();
                assert_eq!(status, 204);
                let user = format!("crash-pat-{user}");
                Some(Promised { id, user, exists })
            })
        })
        .collect();
    // SIGKILL once a third of the burst has been booked.
    let deadline = Instant::now() + Duration::from_secs(30);
    while booked.load(Ordering::SeqCst) < 20 {
        assert!(Instant::now() < deadline, "the burst is not being answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill();
    let mut promised = Vec::new();
    for task in burst {
        promised.extend(task.await.unwrap());
    }
    assert!(!promised.is_empty(), "nothing was answered before the kill");

    sim.clear_faults();
    let mut second = start(&env, dir.path(), port).await;
    wait_converged(&db, &sim).await;
    // Nothing that was answered 2xx is lost.
    for promise in &promised {
        let response = http
            .get(format!("{url}/{}", promise.id))
            .header("miauserid", &promise.user)
            .send()
            .await
            .unwrap();
        let status = if promise.exists { 200 } else { 404 };
        assert_eq!(response.status(), status, "{promise:?}");
    }
    second.terminate_idle().await;
}

/// Each booking of a burst carries an `Idempotency-Key`; the service is SIGKILLed mid-burst
/// and restarted, and every booking is sent again with its key until answered (after a
/// 409, when the killed request's hold ends: the request budget). Each is booked exactly
/// once, and a booking answered before the kill is answered again with the same id.
///
/// Kaleyra takes [`ROOM_CREATION`] to create a room and the bookings are sent one every
/// [`BOOKING_GAP`], so that bookings are in flight at every moment, at different stages: the
/// kill always cuts some that are stored but unanswered. (Sent all at once, the group commit
/// of SQLite answered the whole burst together, and the kill could come after it.)
async fn bookings_sent_again_with_their_keys_after_a_kill_are_each_booked_once(db: TestDatabase) {
    const BURST: usize = 40;
    const ROOM_CREATION: Duration = Duration::from_millis(300);
    const BOOKING_GAP: Duration = Duration::from_millis(20);
    let sim = kaleyra_sim::spawn(SIM_API_KEY).await.unwrap();
    sim.add_fault(Fault::delay("/v2/rooms", ROOM_CREATION).method("POST"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = service_env(&sim, &db, port);
    let mut first = start(&env, dir.path(), port).await;
    let url = format!("http://127.0.0.1:{port}/teleconsultation");
    let http = reqwest::Client::new();
    let send = |i: usize| {
        http.post(&url)
            .header("Idempotency-Key", format!("crash-key-{i}"))
            .json(&booking(i))
            .send()
    };
    let answered = Arc::new(AtomicUsize::new(0));
    let burst: Vec<_> = (0..BURST)
        .map(|i| {
            let (request, answered) = (send(i), Arc::clone(&answered));
            tokio::spawn(async move {
                tokio::time::sleep(BOOKING_GAP * i as u32).await;
                let response = request.await.ok()?;
                assert_eq!(response.status(), 201);
                let body: serde_json::Value = response.json().await.ok()?;
                answered.fetch_add(1, Ordering::SeqCst);
                Some((i, body["roomId"].as_str().unwrap().to_owned()))
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.load(Ordering::SeqCst) < BURST / 4 {
        assert!(Instant::now() < deadline, "the burst is not being answered");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.kill();
    let mut before_the_kill = BTreeMap::new();
    for task in burst {
        before_the_kill.extend(task.await.unwrap());
    }
    assert!(before_the_kill.len() < BURST, "the kill cut no request");

    sim.clear_faults();
    let mut second = start(&env, dir.path(), port).await;
    let mut ids = BTreeMap::new();
    // Bookings stored by the killed service whose answers the kill cut: answered now as
    // they were stored.
    let mut stored_unanswered = 0;
    for i in 0..BURST {
        let deadline = Instant::now() + Duration::from_secs(60);
        let id = loop {
            let response = send(i).await.unwrap();
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotency-replayed");
            let body: serde_json::Value = response.json().await.unwrap();
            if status == 201 {
                if before_the_kill.contains_key(&i) {
                    assert!(replayed, "booking {i} was answered before the kill");
                } else if replayed {
                    stored_unanswered += 1;
                }
                break body["roomId"].as_str().unwrap().to_owned();
            }
            // The killed request still holds its key, until its hold ends.
            assert_eq!(status, 409, "booking {i}: {body}");
            assert!(Instant::now() < deadline, "booking {i} stays held");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        if let Some(answered) = before_the_kill.get(&i) {
            assert_eq!(&id, answered, "booking {i} keeps its id");
        }
        ids.insert(i, id);
    }
    let live = db
        .store
        .list_live_teleconsultations("", 1000)
        .await
        .unwrap();
    assert_eq!(live.len(), BURST, "each booking once");
    assert!(
        stored_unanswered > 0,
        "the kill cut no booking between its insert and its answer"
    );
    let distinct: BTreeSet<&String> = ids.values().collect();
    assert_eq!(distinct.len(), BURST);
    second.terminate_idle().await;
}

async fn two_processes_share_the_work_and_never_create_a_room_twice(db: TestDatabase) {
    let sim = kaleyra_sim::spawn(SIM_API_KEY).await.unwrap();
    sim.add_fault(Fault::status("/v2/rooms", 503).method("POST").rate(0.3));
    sim.add_fault(
        Fault::status_after_effect("/v2/rooms", 502)
            .method("POST")
            .rate(0.1),
    );
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port()];
    let mut instances = Vec::new();
    for port in ports {
        instances.push(start(&service_env(&sim, &db, port), dir.path(), port).await);
    }

    // A burst spread over both instances: bookings, then a change of each through the
    // other instance.
    let http = reqwest::Client::new();
    let burst: Vec<_> = (0..40)
        .map(|i| {
            let http = http.clone();
            tokio::spawn(async move {
                let first = format!("http://127.0.0.1:{}/teleconsultation", ports[i % 2]);
                let other = format!("http://127.0.0.1:{}/teleconsultation", ports[(i + 1) % 2]);
                let response = http.post(&first).json(&booking(i)).send().await.unwrap();
                assert_eq!(response.status(), 201);
                let id = response.json::<serde_json::Value>().await.unwrap()["roomId"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let response = http
                    .patch(format!("{other}/{id}"))
                    .json(&participants_change(i))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 204);
            })
        })
        .collect();
    for task in burst {
        task.await.unwrap();
    }
    sim.clear_faults();
    wait_converged(&db, &sim).await;

    // Every creation that took effect, counted per room spec (our tag): never twice.
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    for request in sim.requests() {
        let took_effect = request
            .fault
            .as_deref()
            .is_none_or(|f| !f.starts_with("status:"));
        if request.method == "POST" && request.path == "/v2/rooms" && took_effect {
            let tag = request
                .body
                .as_ref()
                .and_then(|b| b["description"].as_str())
                .unwrap_or_default();
            *created.entry(tag.to_owned()).or_default() += 1;
        }
    }
    let twice: Vec<_> = created.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "rooms created twice: {twice:?}");
    for mut instance in instances {
        instance.terminate_idle().await;
    }
}
