//! Never lose, never leak (spec §7): with Kaleyra failing and recovering, every live
//! teleconsultation ends with exactly one room matching its spec, every deleted one with
//! none, and no other room exists.

use std::sync::Arc;

use chrono::Duration;
use kaleyra_sim::Fault;
use serde_json::{Value, json};
use telecons::clock::Clock;
use telecons::domain::roles::Tool;
use telecons::domain::room_spec::{RoomAttempt, RoomSpec};

use crate::support::{TestApp, TestDatabase};
use crate::teleconsultations::{create_tc, delete_tc, patch_tc, post_tc};

crate::on_both_backends!(
    rooms_are_created_once_kaleyra_recovers,
    a_booking_costs_kaleyra_its_users_and_one_room,
    a_booking_of_known_users_costs_kaleyra_one_room,
    a_known_users_room_refused_at_booking_is_made_later,
    a_known_users_room_whose_answer_was_lost_is_adopted,
    lost_answers_are_settled_from_one_listing_per_pass,
    lost_answers_retried_soon_share_one_listing,
    a_lost_answer_is_retried_soon_however_often_it_failed_before,
    a_backlog_waiting_over_a_minute_is_reported,
    a_booking_the_store_refuses_asks_kaleyra_for_no_room,
    users_are_created_once_kaleyra_recovers,
    a_replacement_waits_for_kaleyra_and_keeps_the_old_link_hidden,
    a_deleted_teleconsultations_room_is_deleted_once_kaleyra_recovers,
    a_room_whose_creation_answer_was_lost_is_adopted_not_duplicated,
    a_dropped_connection_on_room_creation_leaves_no_duplicate,
    orphan_rooms_are_swept_but_rooms_in_flight_are_kept,
    a_lost_room_of_a_list_made_incomplete_is_found_and_deleted,
    a_missing_room_at_start_is_reported,
    two_instances_never_create_the_same_room_twice,
    a_backlog_is_drained_in_one_pass_as_many_at_once_as_the_concurrency,
    a_pass_goes_back_to_the_full_concurrency_after_kaleyra_failed,
    a_refusal_for_rate_keeps_the_pass_under_a_lower_ceiling,
    concurrent_patches_apply_one_after_the_other,
    concurrent_bookings_introducing_one_user_create_it_once,
    a_user_kaleyra_no_longer_knows_is_created_again_under_its_id,
    a_forgotten_user_who_becomes_plus_is_created_again_as_plus,
    deployments_sharing_a_kaleyra_company_never_sweep_each_others_rooms,
    a_room_deleted_on_kaleyras_side_is_made_again,
    sweeps_go_on_from_where_the_last_stopped,
    rooms_of_attempts_this_database_never_recorded_are_left_alone_and_reported,
    the_creation_attempt_is_recorded_before_kaleyra_is_asked,
    a_copy_adopted_as_a_new_installation_never_touches_the_originals_rooms,
    a_copy_makes_rooms_only_for_teleconsultations_that_have_not_ended,
);

const DOCTOR: &str = "doc-1";
const PATIENT: &str = "pat-1";

fn booking(doctor: &str, patient: &str) -> Value {
    json!({
        "participants": {"number": 2, "data": [
            {"userId": doctor, "groups": ["doctor"], "fullName": "Dr. House", "language": "en"},
            {"userId": patient, "groups": ["patient"], "fullName": "Ann Smith"},
        ]},
        "start_date": "2030-01-02T10:00:00.000Z",
        "duration_in_seconds": 1800,
    })
}

/// Moves the clock to the start of [`booking`]s: their links are due.
fn at_start(app: &TestApp) {
    app.clock.set(
        chrono::DateTime::parse_from_rfc3339("2030-01-02T10:00:00Z")
            .unwrap()
            .into(),
    );
}

/// A creation attempt at a room for `spec` of teleconsultation `id`, recorded as the
/// provisioner records its own (the mark is cleared again: no creation is in flight).
async fn recorded_attempt(app: &TestApp, id: &str, spec: &RoomSpec) -> RoomAttempt {
    let attempt = RoomAttempt::new(spec, app.clock.now());
    let store = &app.services.store;
    store.mark_room_creation(id, Some(&attempt)).await.unwrap();
    store.mark_room_creation(id, None).await.unwrap();
    attempt
}

/// The request the provisioner would send for `spec` of teleconsultation `id` under
/// creation attempt `attempt`.
fn room_request(
    app: &TestApp,
    spec: &RoomSpec,
    attempt: &str,
    id: &str,
) -> kaleyra_client::CreateRoom {
    telecons::provisioner::create_room_request(
        spec,
        app.services.provisioner.installation_id(),
        attempt,
        id,
    )
}

async fn link(app: &TestApp, id: &str, user: &str) -> Value {
    let (status, body) = app
        .get(&format!("/teleconsultation/{id}"), &[("miauserid", user)])
        .await;
    assert_eq!(status, 200, "{body}");
    body["accessLinkURL"].clone()
}

/// Moves past every retry delay and runs the background worker's pass.
async fn background_pass(app: &TestApp) {
    app.clock.advance(Duration::minutes(10));
    app.services.provisioner.run_due().await.expect("pass");
}

/// The invariant, checked through the Kaleyra API (audit) and the simulator's own view
/// (which also shows each participant's tools).
async fn assert_converged(app: &TestApp) {
    let report = app.services.provisioner.audit().await.expect("audit");
    assert!(report.is_consistent(), "{report:#?}");
    assert_eq!(report.untagged_rooms, 0, "{report:#?}");
    let backlog = app
        .services
        .store
        .backlog(app.clock.now(), 0)
        .await
        .unwrap();
    assert_eq!(backlog.room_deletions, 0, "{backlog:?}");
    let mut after = String::new();
    loop {
        let page = app
            .services
            .store
            .list_live_teleconsultations(&after, 100)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for tc in page {
            let Some(spec) = tc.desired_room else {
                continue;
            };
            let room = app
                .sim
                .rooms()
                .into_iter()
                .find(|r| Some(&r.id) == tc.room_id.as_ref())
                .expect("the recorded room exists");
            assert_tools(&spec, &room);
        }
    }
}

fn assert_tools(spec: &RoomSpec, room: &kaleyra_sim::SimRoom) {
    for wanted in spec.participants() {
        let actual = room
            .participants
            .iter()
            .find(|p| p.user_id == wanted.kaleyra_user_id)
            .expect("participant in room");
        // Kaleyra's tools object: all eight tools listed, each on or off.
        let wanted_tools = wanted.tools.as_ref().map(|tools| {
            Tool::ALL
                .into_iter()
                .map(|tool| (tool.as_str().to_owned(), tools.is_enabled(tool)))
                .collect()
        });
        assert_eq!(
            actual.tools, wanted_tools,
            "tools of {}",
            wanted.kaleyra_user_id
        );
        assert_eq!(actual.is_admin, wanted.is_admin);
    }
}

fn count(app: &TestApp, call: &str) -> usize {
    app.kaleyra_calls().iter().filter(|c| *c == call).count()
}

async fn rooms_are_created_once_kaleyra_recovers(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    at_start(&app);
    app.sim
        .add_fault(Fault::status("/v2/rooms", 503).method("POST"));
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    assert_eq!(link(&app, &id, PATIENT).await, Value::Null, "no room yet");
    assert!(app.sim.rooms().is_empty());

    background_pass(&app).await; // still down: stays pending
    assert!(app.sim.rooms().is_empty());
    let backlog = app
        .services
        .store
        .backlog(app.clock.now(), 0)
        .await
        .unwrap();
    assert_eq!(backlog.teleconsultations, 1);

    app.sim.clear_faults();
    background_pass(&app).await;
    assert_converged(&app).await;
    assert_eq!(app.sim.rooms().len(), 1);
    assert!(link(&app, &id, PATIENT).await.is_string());
    let backlog = app
        .services
        .store
        .backlog(app.clock.now(), 0)
        .await
        .unwrap();
    assert_eq!(backlog.teleconsultations, 0, "nothing left to do");
}

/// The room creation is marked with the insert, so that nothing needs looking for: a
/// complete booking costs Kaleyra its new users and one room, nothing else.
async fn a_booking_costs_kaleyra_its_users_and_one_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    assert_eq!(
        app.kaleyra_calls(),
        ["POST /v2/users", "POST /v2/users", "POST /v2/rooms"]
    );
    assert_eq!(app.stored(&id).await.creating_fingerprint, None, "done");
    assert_converged(&app).await;
}

/// Users known from an earlier booking: the room is asked for while the booking is stored,
/// and the answer comes with it recorded.
async fn a_booking_of_known_users_costs_kaleyra_one_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    at_start(&app);
    create_tc(&app, booking(DOCTOR, PATIENT)).await;
    let before = app.kaleyra_calls().len();
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    assert_eq!(app.kaleyra_calls()[before..], ["POST /v2/rooms"]);
    let tc = app.stored(&id).await;
    assert!(tc.room_id.is_some(), "recorded before the answer");
    assert_eq!(tc.creating_fingerprint, None, "done");
    assert_eq!(tc.provision_due_at, None, "nothing left to do");
    assert!(link(&app, &id, PATIENT).await.is_string());
    assert_converged(&app).await;
}

/// The room asked for with the insert is refused: the booking is stored all the same, with
/// nothing marked as tried (a 429 surely made nothing), and made by the worker later.
async fn a_known_users_room_refused_at_booking_is_made_later(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    at_start(&app);
    create_tc(&app, booking(DOCTOR, PATIENT)).await;
    app.sim
        .add_fault(Fault::status("/v2/rooms", 429).method("POST"));
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    assert_eq!(link(&app, &id, PATIENT).await, Value::Null, "no room yet");
    let tc = app.stored(&id).await;
    assert_eq!(tc.room_id, None);
    assert_eq!(
        tc.creating_fingerprint, None,
        "the refused creation made nothing"
    );
    assert!(tc.provision_due_at.is_some(), "left to the worker");
    assert_eq!(app.sim.rooms().len(), 1, "the first booking's");

    app.sim.clear_faults();
    background_pass(&app).await;
    assert!(link(&app, &id, PATIENT).await.is_string());
    assert_eq!(app.sim.rooms().len(), 2);
    assert_converged(&app).await;
}

/// A booking of known users whose room is made but whose answer is lost: the insert's mark
/// lets the worker find it by its tag instead of making a second one.
async fn a_known_users_room_whose_answer_was_lost_is_adopted(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    create_tc(&app, booking(DOCTOR, PATIENT)).await;
    book_with_a_lost_answer_and_adopt_its_room(&app, 1).await;
}

/// The room is asked for only once the booking is stored: when the store refuses the
/// booking (503, nothing stored), Kaleyra is asked for nothing.
async fn a_booking_the_store_refuses_asks_kaleyra_for_no_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    create_tc(&app, booking(DOCTOR, PATIENT)).await;
    app.db
        .run_sql(
            "CREATE TRIGGER refuse_bookings BEFORE INSERT ON teleconsultations \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            "CREATE FUNCTION refuse_bookings() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
             CREATE TRIGGER refuse_bookings BEFORE INSERT ON teleconsultations \
             FOR EACH ROW EXECUTE FUNCTION refuse_bookings();",
        )
        .await;
    let (status, answer) = post_tc(&app, booking(DOCTOR, PATIENT)).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(count(&app, "POST /v2/rooms"), 1, "the first booking's only");
    assert_eq!(app.sim.rooms().len(), 1);
    assert_converged(&app).await;
}

async fn users_are_created_once_kaleyra_recovers(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    app.sim.add_fault(Fault::status("/v2/users", 503));
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    assert!(app.sim.users().is_empty());
    assert!(app.sim.rooms().is_empty());
    assert_eq!(
        app.stored(&id).await.creating_fingerprint,
        None,
        "no room was tried under the insert's creation mark: cleared"
    );

    app.sim.clear_faults();
    background_pass(&app).await;
    assert_eq!(app.sim.users().len(), 2);
    assert_eq!(count(&app, "POST /v2/rooms"), 1);
    assert_eq!(count(&app, "GET /v2/rooms"), 0, "no lost room looked for");
    assert_eq!(app.sim.rooms().len(), 1);
    assert_converged(&app).await;
    // The booking is intact.
    let tc = app.stored(&id).await;
    assert_eq!(tc.participants.len(), 2);
}

async fn a_replacement_waits_for_kaleyra_and_keeps_the_old_link_hidden(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    at_start(&app);
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    let old_room = app.sim.rooms()[0].id.clone();
    app.clock.set(
        chrono::DateTime::parse_from_rfc3339("2030-01-01T10:00:00Z")
            .unwrap()
            .into(),
    );

    app.sim
        .add_fault(Fault::status("/v2/rooms", 503).method("POST"));
    let mut change = booking(DOCTOR, "pat-2");
    change.as_object_mut().unwrap().remove("start_date");
    change
        .as_object_mut()
        .unwrap()
        .remove("duration_in_seconds");
    let (status, body) = patch_tc(&app, &id, change).await;
    assert_eq!(status, 204, "{body}");
    // The old room still exists (it is deleted only once the new one is there), but nobody
    // gets a link to a room that is being replaced.
    assert_eq!(app.sim.rooms().len(), 1);
    at_start(&app);
    assert_eq!(link(&app, &id, DOCTOR).await, Value::Null);

    app.sim.clear_faults();
    app.services.provisioner.run_due().await.unwrap();
    assert_converged(&app).await;
    let rooms = app.sim.rooms();
    assert_eq!(rooms.len(), 1);
    assert_ne!(rooms[0].id, old_room, "replaced");
    assert!(link(&app, &id, "pat-2").await.is_string());
}

async fn a_deleted_teleconsultations_room_is_deleted_once_kaleyra_recovers(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    assert_eq!(app.sim.rooms().len(), 1);

    app.sim
        .add_fault(Fault::status("/v2/rooms/{id}", 503).method("DELETE"));
    let (status, _) = delete_tc(&app, &id).await;
    assert_eq!(status, 204);
    assert_eq!(
        app.sim.rooms().len(),
        1,
        "Kaleyra is down: the room is still there"
    );
    let backlog = app
        .services
        .store
        .backlog(app.clock.now(), 0)
        .await
        .unwrap();
    assert_eq!(backlog.room_deletions, 1);

    background_pass(&app).await; // still down
    assert_eq!(app.sim.rooms().len(), 1);
    app.sim.clear_faults();
    background_pass(&app).await;
    assert!(app.sim.rooms().is_empty());
    assert_converged(&app).await;
}

async fn a_room_whose_creation_answer_was_lost_is_adopted_not_duplicated(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    book_with_a_lost_answer_and_adopt_its_room(&app, 0).await;
}

/// Books while Kaleyra creates the room but its answer is lost, then checks that the
/// worker adopts that room rather than making a second one. `rooms_before`: the rooms
/// earlier bookings made.
async fn book_with_a_lost_answer_and_adopt_its_room(app: &TestApp, rooms_before: usize) {
    app.sim.add_fault(
        Fault::status_after_effect("/v2/rooms", 502)
            .method("POST")
            .times(1),
    );
    let id = create_tc(app, booking(DOCTOR, PATIENT)).await;
    assert_eq!(
        app.sim.rooms().len(),
        rooms_before + 1,
        "created on Kaleyra"
    );
    let tc = app.stored(&id).await;
    assert_eq!(tc.room_id, None, "but not recorded");
    assert!(tc.creating_fingerprint.is_some(), "the attempt is marked");

    background_pass(app).await;
    assert_eq!(
        app.sim.rooms().len(),
        rooms_before + 1,
        "adopted, not created again"
    );
    assert_eq!(count(app, "POST /v2/rooms"), rooms_before + 1);
    assert_eq!(app.stored(&id).await.creating_fingerprint, None);
    assert_converged(app).await;
}

/// The creation answers of several teleconsultations are lost: one pass settles them all
/// from one listing of the company's rooms, never a listing each.
async fn lost_answers_are_settled_from_one_listing_per_pass(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    create_tc(&app, booking(DOCTOR, PATIENT)).await;
    app.sim.add_fault(
        Fault::status_after_effect("/v2/rooms", 502)
            .method("POST")
            .times(5),
    );
    let mut lost = Vec::new();
    for _ in 0..5 {
        lost.push(create_tc(&app, booking(DOCTOR, PATIENT)).await);
    }
    assert_eq!(app.sim.rooms().len(), 6, "made on Kaleyra, answers lost");
    app.sim.clear_requests();

    background_pass(&app).await;
    assert_eq!(count(&app, "GET /v2/rooms"), 1, "one listing for the pass");
    assert_eq!(
        count(&app, "POST /v2/rooms"),
        0,
        "each adopted, none made again"
    );
    for id in &lost {
        let tc = app.stored(id).await;
        assert!(
            tc.room_id.is_some() && tc.creating_fingerprint.is_none(),
            "{id}"
        );
    }
    assert_converged(&app).await;
}

/// Answers lost a moment apart come due again soon (`LOST_ANSWER_RETRY`), and need not wait
/// until the longest call could be over: their calls' ends are recorded, so the first
/// retry's listing serves both (a listing taken once each call ended shows its room).
async fn lost_answers_retried_soon_share_one_listing(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    app.sim.add_fault(
        Fault::status_after_effect("/v2/rooms", 502)
            .method("POST")
            .times(2),
    );
    let first = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    app.clock.advance(Duration::seconds(1));
    let second = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    assert_eq!(app.sim.rooms().len(), 2, "made on Kaleyra, answers lost");
    app.sim.clear_requests();

    app.clock.advance(telecons::provisioner::LOST_ANSWER_RETRY);
    app.services.provisioner.run_due().await.expect("pass");
    assert_eq!(
        count(&app, "GET /v2/rooms"),
        1,
        "the first retry's listing serves the second"
    );
    assert_eq!(count(&app, "POST /v2/rooms"), 0, "both adopted");
    for id in [&first, &second] {
        assert!(app.stored(id).await.room_id.is_some(), "{id}");
    }
    assert_converged(&app).await;
}

/// A teleconsultation that failed many times (booked during a storm, its backoff grown to
/// the longest) and whose room's creation answer is then lost comes due again soon: its room
/// is one listing away.
async fn a_lost_answer_is_retried_soon_however_often_it_failed_before(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    app.sim
        .add_fault(Fault::status("/v2/users", 503).method("POST"));
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    for _ in 0..6 {
        background_pass(&app).await;
    }
    let failed = app.stored(&id).await;
    assert_eq!(
        failed.provision_due_at,
        Some(app.clock.now() + Duration::minutes(1)),
        "backed off to the longest"
    );
    app.sim.clear_faults();
    app.sim.add_fault(
        Fault::status_after_effect("/v2/rooms", 502)
            .method("POST")
            .times(1),
    );
    background_pass(&app).await;
    assert_eq!(app.sim.rooms().len(), 1, "made, its answer lost");
    assert_eq!(
        app.stored(&id).await.provision_due_at,
        Some(app.clock.now() + telecons::provisioner::LOST_ANSWER_RETRY),
        "not the backoff it had"
    );
    app.clock.advance(telecons::provisioner::LOST_ANSWER_RETRY);
    app.services.provisioner.run_due().await.expect("pass");
    assert_eq!(app.sim.rooms().len(), 1, "adopted, not made again");
    assert!(app.stored(&id).await.room_id.is_some());
    assert_converged(&app).await;
}

async fn a_dropped_connection_on_room_creation_leaves_no_duplicate(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    app.sim.add_fault(
        Fault::drop_after_effect("/v2/rooms")
            .method("POST")
            .times(1),
    );
    create_tc(&app, booking(DOCTOR, PATIENT)).await;
    background_pass(&app).await;
    assert_eq!(count(&app, "POST /v2/rooms"), 1);
    assert_eq!(app.sim.rooms().len(), 1);
    assert_converged(&app).await;
}

async fn orphan_rooms_are_swept_but_rooms_in_flight_are_kept(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    let tc = app.stored(&id).await;
    let spec = tc.desired_room.clone().unwrap();
    // A leaked room (as if the database had failed right after its creation)…
    let attempt = recorded_attempt(&app, &id, &spec).await;
    let leaked = app
        .services
        .kaleyra
        .create_room(&room_request(&app, &spec, &attempt.id, &id))
        .await
        .unwrap();
    // …and one being created right now for another teleconsultation.
    let other = create_tc(&app, booking("doc-2", "pat-2")).await;
    let other_tc = app.stored(&other).await;
    let spec = other_tc.desired_room.clone().unwrap();
    // A new spec, mid-creation.
    let other_spec = RoomSpec::from_parts(
        spec.participants().to_vec(),
        spec.duration_secs(),
        !spec.live(),
        spec.recording(),
    );
    // (A creation in flight: the record is due for provisioning and marked.)
    app.services
        .store
        .postpone_provisioning(
            &other,
            app.clock.now(),
            chrono::TimeDelta::zero(),
            chrono::TimeDelta::zero(),
        )
        .await
        .unwrap();
    let other_attempt = RoomAttempt::new(&other_spec, app.clock.now());
    app.services
        .store
        .mark_room_creation(&other, Some(&other_attempt))
        .await
        .unwrap();
    let in_flight = app
        .services
        .kaleyra
        .create_room(&room_request(&app, &other_spec, &other_attempt.id, &other))
        .await
        .unwrap();
    // A room someone else made is never touched.
    let foreign = app
        .services
        .kaleyra
        .create_room(&kaleyra_client::CreateRoom {
            description: Some("made by hand".into()),
            ..room_request(&app, &spec, &attempt.id, &id)
        })
        .await
        .unwrap();

    let swept = app.services.provisioner.sweep_orphans().await.unwrap();
    assert_eq!(swept, 1);
    let left: Vec<String> = app.sim.rooms().into_iter().map(|r| r.id).collect();
    assert!(!left.contains(&leaked.id), "the leak is deleted");
    assert!(left.contains(&in_flight.id), "a creation in flight is kept");
    assert!(left.contains(&foreign.id), "untagged rooms are not ours");
    assert_eq!(left.len(), 4);
}

async fn a_missing_room_at_start_is_reported(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("IMMUTABLE_PERIOD_MS", "600000")]).await;
    app.sim
        .add_fault(Fault::status("/v2/rooms", 503).method("POST"));
    create_tc(&app, booking(DOCTOR, PATIENT)).await;
    let (status, body) = app.get("/-/check-up", &[]).await;
    assert_eq!(
        (status, &body["checks"]["rooms"]),
        (200, &json!("OK")),
        "not due yet"
    );

    // 09:50 on the day: the links are due, the room is still missing.
    app.clock.set(
        chrono::DateTime::parse_from_rfc3339("2030-01-02T09:50:00Z")
            .unwrap()
            .into(),
    );
    let (status, body) = app.get("/-/check-up", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["rooms"], "KO");
    let (_, metrics) = app.get("/-/metrics", &[]).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .lines()
            .any(|l| l.starts_with("rooms_missing_at_start ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    app.sim.clear_faults();
    background_pass(&app).await;
    let (status, body) = app.get("/-/check-up", &[]).await;
    assert_eq!(status, 200, "{body}");
}

/// Due work that has waited over a minute (the worker does not keep up, or Kaleyra still
/// refuses) makes the check-up's `backlog` KO; the gauges say how much and how old.
async fn a_backlog_waiting_over_a_minute_is_reported(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    app.sim
        .add_fault(Fault::status("/v2/rooms", 503).method("POST"));
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    let due_at = app
        .stored(&id)
        .await
        .provision_due_at
        .expect("left to the worker");
    let gauge = |metrics: &Value, name: &str| -> f64 {
        metrics
            .as_str()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };

    // Due for exactly a minute: not late yet.
    app.clock.set(due_at + Duration::minutes(1));
    let (status, body) = app.get("/-/check-up", &[]).await;
    assert_eq!(
        (status, &body["checks"]["backlog"]),
        (200, &json!("OK")),
        "{body}"
    );
    let (_, metrics) = app.get("/-/metrics", &[]).await;
    assert_eq!(gauge(&metrics, "backlog_due"), 1.0);
    assert_eq!(gauge(&metrics, "backlog_oldest_due_seconds"), 60.0);

    // Over a minute: late.
    app.clock.advance(Duration::seconds(5));
    let (status, body) = app.get("/-/check-up", &[]).await;
    assert_eq!(
        (status, &body["checks"]["backlog"]),
        (503, &json!("KO")),
        "{body}"
    );

    app.sim.clear_faults();
    background_pass(&app).await;
    let (status, body) = app.get("/-/check-up", &[]).await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = app.get("/-/metrics", &[]).await;
    assert_eq!(gauge(&metrics, "backlog_due"), 0.0);
    assert_eq!(gauge(&metrics, "backlog_oldest_due_seconds"), 0.0);
}

async fn two_instances_never_create_the_same_room_twice(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    app.sim
        .add_fault(Fault::status("/v2/rooms", 503).method("POST"));
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(create_tc(&app, booking(&format!("doc-{i}"), &format!("pat-{i}"))).await);
    }
    app.sim.clear_faults();
    app.sim.clear_requests();
    app.clock.advance(Duration::minutes(10));

    // A second instance: its own store connection and its own name, same database.
    let second_store = telecons::store::connect(&app.db.url).await.unwrap();
    let second = telecons::Services::build(
        &app.config,
        &telecons::Dependencies {
            store: Some(second_store),
            ..crate::support::test_dependencies(&app.db, &app.clock)
        },
    )
    .await
    .unwrap();
    let (a, b) = tokio::join!(
        app.services.provisioner.run_due(),
        second.provisioner.run_due(),
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(
        count(&app, "POST /v2/rooms"),
        ids.len(),
        "one creation per teleconsultation"
    );
    assert_eq!(app.sim.rooms().len(), ids.len());
    assert_converged(&app).await;
}

/// Books `n` teleconsultations while Kaleyra refuses room creations: a backlog of `n` due
/// rooms for the worker. The request log starts empty after it.
async fn book_while_rooms_are_refused(app: &TestApp, n: u32) -> Vec<String> {
    app.sim
        .add_fault(Fault::status("/v2/rooms", 503).method("POST"));
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(create_tc(app, booking(DOCTOR, PATIENT)).await);
    }
    app.sim.clear_faults();
    app.sim.clear_requests();
    ids
}

/// The fault each room creation the simulator received met, in order (`None`: none).
fn room_creation_faults(app: &TestApp) -> Vec<Option<String>> {
    app.sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/rooms")
        .map(|r| r.fault)
        .collect()
}

/// A backlog twice the concurrency is drained in one pass, `PROVISIONING_CONCURRENCY`
/// rooms made at once: the simulator holds each creation until that many are held, and lets
/// them through by the count, never by the time. Fewer at once, and the held creations would
/// wait until the client gave up on them (10 s each): rooms missing after the pass.
async fn a_backlog_is_drained_in_one_pass_as_many_at_once_as_the_concurrency(db: TestDatabase) {
    const CONCURRENCY: u32 = 4;
    let app = TestApp::spawn_with(
        db,
        &[("PROVISIONING_CONCURRENCY", &CONCURRENCY.to_string())],
    )
    .await;
    let ids = book_while_rooms_are_refused(&app, 2 * CONCURRENCY).await;
    app.sim.add_fault(
        Fault::gather("/v2/rooms", CONCURRENCY)
            .method("POST")
            .times(2 * CONCURRENCY),
    );

    background_pass(&app).await;
    assert_eq!(
        room_creation_faults(&app),
        vec![Some(format!("gather:{CONCURRENCY}")); ids.len()],
        "each room asked for once, in groups of {CONCURRENCY} at once"
    );
    assert!(app.sim.faults().is_empty(), "the rule is used up");
    assert_eq!(app.sim.rooms().len(), ids.len());
    for id in &ids {
        assert!(app.stored(id).await.room_id.is_some(), "{id}");
    }
    assert_converged(&app).await;
}

/// Kaleyra fails the first creations of a pass: the pass works fewer at once (its limit is
/// cut), then grows back with each success to the full concurrency within the same pass, as
/// the last creations, held until `PROVISIONING_CONCURRENCY` are held at once, show.
async fn a_pass_goes_back_to_the_full_concurrency_after_kaleyra_failed(db: TestDatabase) {
    // Three: the first claim takes three, and once one has failed (the limit cut to one; any
    // further cut leaves it at one) nothing more is claimed until all three have failed, so
    // that every failure is learned before any success, however far apart they come.
    const CONCURRENCY: u32 = 3;
    let app = TestApp::spawn_with(
        db,
        &[("PROVISIONING_CONCURRENCY", &CONCURRENCY.to_string())],
    )
    .await;
    // Three refused, two let through, three gathered.
    let ids = book_while_rooms_are_refused(&app, 3 * CONCURRENCY - 1).await;
    app.sim.add_fault(
        Fault::status("/v2/rooms", 503)
            .method("POST")
            .times(CONCURRENCY),
    );
    // Let the next two through: the successes that take the limit from one back to three.
    app.sim.add_fault(
        Fault::delay("/v2/rooms", std::time::Duration::ZERO)
            .method("POST")
            .times(CONCURRENCY - 1),
    );
    app.sim.add_fault(
        Fault::gather("/v2/rooms", CONCURRENCY)
            .method("POST")
            .times(CONCURRENCY),
    );

    background_pass(&app).await;
    let refused = Some("status:503".to_owned());
    let let_through = Some("delay_ms:0".to_owned());
    let gathered = Some(format!("gather:{CONCURRENCY}"));
    assert_eq!(
        room_creation_faults(&app),
        [
            refused.clone(),
            refused.clone(),
            refused,
            let_through.clone(),
            let_through,
            gathered.clone(),
            gathered.clone(),
            gathered
        ],
        "the refused ones are left for a later pass"
    );
    assert!(app.sim.faults().is_empty(), "every rule is used up");
    assert_eq!(app.sim.rooms().len(), ids.len() - 3);

    background_pass(&app).await;
    assert_eq!(app.sim.rooms().len(), ids.len());
    assert_eq!(
        count(&app, "POST /v2/rooms"),
        ids.len() + 3,
        "the refused ones asked for again"
    );
    assert_converged(&app).await;
}

/// Kaleyra refuses a creation for rate (`429`): the pass goes on under a ceiling of three
/// quarters of the concurrency, which successes do not outgrow (it rises with time only, and
/// the test's clock stands still). After the first claim, the simulator never answers more
/// than three calls at once, and three at once it does (creations held until three are held).
/// Growing back by one per success, the pass would send four at once again.
async fn a_refusal_for_rate_keeps_the_pass_under_a_lower_ceiling(db: TestDatabase) {
    const CONCURRENCY: u32 = 4;
    const CEILING: u32 = 3;
    let app = TestApp::spawn_with(
        db,
        &[("PROVISIONING_CONCURRENCY", &CONCURRENCY.to_string())],
    )
    .await;
    // The first claim (one refused, three held together), three held together, six more.
    let ids = book_while_rooms_are_refused(&app, 2 * CONCURRENCY + 2 * CEILING - 1).await;
    app.sim.add_fault(
        Fault::status("/v2/rooms", 429)
            .method("POST")
            .retry_after(1)
            .times(1),
    );
    app.sim.add_fault(
        Fault::gather("/v2/rooms", CEILING)
            .method("POST")
            .times(CEILING),
    );
    app.sim.add_fault(
        Fault::gather("/v2/rooms", CEILING)
            .method("POST")
            .times(CEILING),
    );
    app.sim.add_fault(
        Fault::delay("/v2/rooms", std::time::Duration::from_millis(50))
            .method("POST")
            .times(2 * CEILING),
    );

    background_pass(&app).await;
    assert!(app.sim.faults().is_empty(), "every rule is used up");
    let creations: Vec<_> = app
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/rooms")
        .collect();
    assert_eq!(creations.len(), ids.len());
    assert_eq!(creations[0].fault.as_deref(), Some("status:429"));
    let most_at_once = creations[CONCURRENCY as usize..]
        .iter()
        .map(|r| r.in_flight)
        .max();
    assert_eq!(most_at_once, Some(CEILING as usize), "{creations:#?}");
    assert_eq!(
        app.sim.rooms().len(),
        ids.len() - 1,
        "the refused one waits"
    );

    background_pass(&app).await;
    assert_eq!(app.sim.rooms().len(), ids.len());
    assert_converged(&app).await;
}

async fn concurrent_patches_apply_one_after_the_other(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("UNLIMITED_TELECONSULTATION", "false")]).await;
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let app = Arc::clone(&app);
            let id = id.clone();
            tokio::spawn(async move {
                patch_tc(&app, &id, json!({"duration_in_seconds": 600 + 60 * i})).await
            })
        })
        .collect();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 204, "{body}");
    }
    let tc = app.stored(&id).await;
    assert!(
        (0..6).any(|i| tc.duration_secs == 600 + 60 * i),
        "one of the changes is the last: {}",
        tc.duration_secs
    );
    background_pass(&app).await;
    assert_converged(&app).await;
    assert_eq!(
        app.sim.rooms()[0].duration_in_seconds as i64,
        tc.duration_secs
    );
}

async fn concurrent_bookings_introducing_one_user_create_it_once(db: TestDatabase) {
    let app = Arc::new(TestApp::spawn(db).await);
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let app = Arc::clone(&app);
            tokio::spawn(
                async move { create_tc(&app, booking("new-doc", &format!("pat-{i}"))).await },
            )
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let doctors: Vec<_> = app
        .sim
        .users()
        .into_iter()
        .filter(|u| u.id == kaleyra_client::kaleyra_user_id("new-doc"))
        .collect();
    assert_eq!(doctors.len(), 1);
    assert_eq!(app.sim.users().len(), 6);
    assert_eq!(app.sim.rooms().len(), 5);
    assert_converged(&app).await;
}

async fn a_lost_room_of_a_list_made_incomplete_is_found_and_deleted(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    // The room is created but its answer is lost…
    app.sim.add_fault(
        Fault::drop_after_effect("/v2/rooms")
            .method("POST")
            .times(1),
    );
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    assert_eq!(app.sim.rooms().len(), 1);
    // …then the list is made incomplete while Kaleyra cannot list its rooms.
    app.sim
        .add_fault(Fault::status("/v2/rooms", 503).method("GET"));
    let (status, body) = patch_tc(
        &app,
        &id,
        json!({"participants": {"number": 2, "data": []}}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(app.sim.rooms().len(), 1, "not found yet");

    app.sim.clear_faults();
    background_pass(&app).await;
    assert!(app.sim.rooms().is_empty(), "the lost room is deleted");
    assert_converged(&app).await;
    let tc = app.stored(&id).await;
    assert_eq!(tc.creating_fingerprint, None);
    assert_eq!(tc.provision_due_at, None);
}

/// A Kaleyra that lost its users (a user deleted on Kaleyra's side, or a fresh Kaleyra behind
/// an old database, as a restarted demo is): the mapped users are created again, under the
/// same deterministic ids, and the room is made at once.
async fn a_user_kaleyra_no_longer_knows_is_created_again_under_its_id(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    at_start(&app);
    let first = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    let doctor_id = kaleyra_client::kaleyra_user_id(DOCTOR);
    assert!(app.sim.users().iter().any(|u| u.id == doctor_id));
    delete_tc(&app, &first).await;
    app.sim.reset();

    let id = create_tc(&app, booking(DOCTOR, "pat-2")).await;
    assert!(
        link(&app, &id, DOCTOR).await.is_string(),
        "the room is made in the request"
    );
    assert!(
        app.sim.users().iter().any(|u| u.id == doctor_id),
        "the doctor exists again, under the same id"
    );
    assert_eq!(app.sim.rooms().len(), 1);
    assert_converged(&app).await;
}

/// The same when the forgotten user is to be upgraded (basic before, plus now): the upgrade
/// finds no user, so it is created again as plus.
async fn a_forgotten_user_who_becomes_plus_is_created_again_as_plus(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    at_start(&app);
    let first = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    delete_tc(&app, &first).await;
    app.sim.reset();

    // The former patient is the doctor this time.
    let id = create_tc(&app, booking(PATIENT, "pat-2")).await;
    assert!(link(&app, &id, PATIENT).await.is_string());
    let patient_id = kaleyra_client::kaleyra_user_id(PATIENT);
    let user = app
        .sim
        .users()
        .into_iter()
        .find(|u| u.id == patient_id)
        .expect("created again");
    assert_eq!(user.role, "plus");
    assert_converged(&app).await;
}

/// Production, staging and a laptop may share one Kaleyra company: each database has its
/// own installation id, in every room tag, and clean-up acts only on its own rooms. An empty
/// database (a new laptop, or a key started by mistake) deletes nothing.
async fn deployments_sharing_a_kaleyra_company_never_sweep_each_others_rooms(db: TestDatabase) {
    let production = TestApp::spawn(db).await;
    let staging = TestApp::spawn_sharing(TestDatabase::sqlite().await, &production).await;
    let empty = TestApp::spawn_sharing(TestDatabase::sqlite().await, &production).await;
    assert_ne!(
        production.services.provisioner.installation_id(),
        staging.services.provisioner.installation_id()
    );
    create_tc(&production, booking(DOCTOR, PATIENT)).await;
    create_tc(&staging, booking("doc-2", "pat-2")).await;
    let rooms: Vec<String> = production.sim.rooms().into_iter().map(|r| r.id).collect();
    assert_eq!(rooms.len(), 2);

    for app in [&production, &staging, &empty] {
        // Long after the orphan grace.
        app.clock.advance(Duration::hours(1));
        let swept = app.services.provisioner.sweep_orphans().await.unwrap();
        assert_eq!(swept, 0);
        app.services.provisioner.run_due().await.unwrap();
    }
    let left: Vec<String> = production.sim.rooms().into_iter().map(|r| r.id).collect();
    assert_eq!(left, rooms, "every room of each deployment is still there");
    for app in [&production, &staging] {
        let report = app.services.provisioner.audit().await.unwrap();
        assert!(report.is_consistent(), "{report:#?}");
        assert_eq!(report.untagged_rooms, 1, "the other deployment's room");
    }
}

/// A room Kaleyra no longer knows (deleted in its console, say) is noticed when its details
/// answer 404 — at the next refresh of its cached details, within seconds — and a new room
/// is made (spec §7).
async fn a_room_deleted_on_kaleyras_side_is_made_again(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    at_start(&app);
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    let old_link = link(&app, &id, PATIENT).await;
    assert!(old_link.is_string());
    let old_room = app.sim.rooms()[0].id.clone();
    app.services.kaleyra.delete_room(&old_room).await.unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, body) = app
            .get(
                &format!("/teleconsultation/{id}"),
                &[("miauserid", PATIENT)],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let new_link = &body["accessLinkURL"];
        if new_link.is_string() && *new_link != old_link {
            break;
        }
        if new_link.is_null() {
            assert_eq!(
                body["details"],
                Value::Null,
                "no details of a room that is gone"
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the room was not made again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let rooms = app.sim.rooms();
    assert_eq!(rooms.len(), 1);
    assert_ne!(rooms[0].id, old_room);
    assert_converged(&app).await;
}

/// A sweep checks at most 500 rooms; the next one goes on from there, so an orphan behind
/// hundreds of known rooms is found too.
async fn sweeps_go_on_from_where_the_last_stopped(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    let tc = app.stored(&id).await;
    let spec = tc.desired_room.as_ref().unwrap();
    let attempt = recorded_attempt(&app, &id, spec).await;
    let request = room_request(&app, spec, &attempt.id, &id);
    for _ in 0..520 {
        let room = app.services.kaleyra.create_room(&request).await.unwrap();
        // Known: queued for deletion, not yet deleted.
        app.services
            .store
            .retire_room(&room.id, Some(&id), app.clock.now() + Duration::days(365))
            .await
            .unwrap();
    }
    let orphan = app.services.kaleyra.create_room(&request).await.unwrap();
    app.clock.advance(Duration::hours(1));
    let first = app.services.provisioner.sweep_orphans().await.unwrap();
    assert_eq!(first, 0, "the first 500 are all known");
    let second = app.services.provisioner.sweep_orphans().await.unwrap();
    assert_eq!(second, 1);
    assert!(!app.sim.rooms().iter().any(|r| r.id == orphan.id));
}

/// How many times clean-up has left a room of an unknown attempt alone, in this process
/// (`/-/metrics`; other tests only add to it).
async fn unknown_attempts_reported(app: &TestApp) -> u64 {
    let (_, metrics) = app.get("/-/metrics", &[]).await;
    metrics
        .as_str()
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("rooms_of_unknown_attempts_total "))
        .map_or(0, |value| value.trim().parse::<f64>().unwrap() as u64)
}

/// A copy of a database shares its installation id: the rooms the original makes after the
/// copy carry that id, but an attempt the copy never recorded; so do, without any attempt,
/// rooms made before attempts were recorded. Neither the recovery of lost answers nor the
/// sweep adopts or deletes them, and each pass that meets them reports them (spec §7). A
/// room whose attempt this database recorded is still deleted when no record has it.
async fn rooms_of_attempts_this_database_never_recorded_are_left_alone_and_reported(
    db: TestDatabase,
) {
    let app = TestApp::spawn(db).await;
    let kaleyra = &app.services.kaleyra;
    // The booking's room cannot be made yet.
    app.sim
        .add_fault(Fault::status("/v2/rooms", 503).method("POST"));
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    app.sim.clear_faults();
    let spec = app.stored(&id).await.desired_room.unwrap();
    // A room for it, for its very spec, by an attempt this database never recorded…
    let unknown_attempt = RoomAttempt::new(&spec, app.clock.now());
    let unknown = kaleyra
        .create_room(&room_request(&app, &spec, &unknown_attempt.id, &id))
        .await
        .unwrap();
    // …and one tagged as rooms were before attempts existed.
    let installation = app.services.provisioner.installation_id();
    let untraced = kaleyra
        .create_room(&kaleyra_client::CreateRoom {
            description: Some(format!(
                "telecons:{installation}:{id}:{}",
                spec.fingerprint()
            )),
            ..room_request(&app, &spec, &unknown_attempt.id, &id)
        })
        .await
        .unwrap();
    // Our own creation, whose answer was lost: the next pass looks for its room.
    app.services
        .store
        .mark_room_creation(&id, Some(&RoomAttempt::new(&spec, app.clock.now())))
        .await
        .unwrap();
    let reported = unknown_attempts_reported(&app).await;

    background_pass(&app).await;
    let made = app.stored(&id).await.room_id.expect("a room of its own");
    assert!(
        made != unknown.id && made != untraced.id,
        "neither is adopted"
    );
    let left: Vec<String> = app.sim.rooms().into_iter().map(|r| r.id).collect();
    assert!(
        left.contains(&unknown.id) && left.contains(&untraced.id),
        "{left:?}"
    );
    assert_eq!(left.len(), 3);
    assert!(
        unknown_attempts_reported(&app).await >= reported + 2,
        "the recovery reports both"
    );

    // A room this database made and no record has: deleted, as before.
    let attempt = recorded_attempt(&app, &id, &spec).await;
    let leaked = kaleyra
        .create_room(&room_request(&app, &spec, &attempt.id, &id))
        .await
        .unwrap();
    let reported = unknown_attempts_reported(&app).await;
    app.clock.advance(Duration::hours(1));
    let swept = app.services.provisioner.sweep_orphans().await.unwrap();
    assert_eq!(swept, 1);
    let left: Vec<String> = app.sim.rooms().into_iter().map(|r| r.id).collect();
    assert!(!left.contains(&leaked.id), "{left:?}");
    assert!(
        left.contains(&unknown.id) && left.contains(&untraced.id) && left.contains(&made),
        "{left:?}"
    );
    assert!(
        unknown_attempts_reported(&app).await >= reported + 2,
        "the sweep reports both"
    );

    let report = app.services.provisioner.audit().await.unwrap();
    let mut expected = vec![unknown.id.clone(), untraced.id.clone()];
    expected.sort();
    let mut found = report.rooms_of_unknown_attempts.clone();
    found.sort();
    assert_eq!(found, expected, "{report:#?}");
    assert!(report.is_consistent(), "not this database's: {report:#?}");
}

/// The attempt is in the database before Kaleyra is asked: a creation Kaleyra fails leaves
/// it recorded, for a booking (recorded with the insert) as for a change (with the mark).
async fn the_creation_attempt_is_recorded_before_kaleyra_is_asked(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("UNLIMITED_TELECONSULTATION", "false")]).await;
    app.sim
        .add_fault(Fault::status("/v2/rooms", 500).method("POST"));
    let id = create_tc(&app, booking(DOCTOR, PATIENT)).await;
    let (status, body) = patch_tc(&app, &id, json!({"duration_in_seconds": 600})).await;
    assert_eq!(status, 204, "{body}");
    let attempts: Vec<String> = app
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/rooms")
        .map(|r| {
            let description = r.body.unwrap()["description"].as_str().unwrap().to_owned();
            let tag = telecons::domain::room_spec::RoomTag::parse(&description).unwrap();
            assert_eq!(tag.teleconsultation_id, id);
            tag.attempt
                .expect("every room creation carries its attempt")
        })
        .collect();
    assert!(attempts.len() >= 2, "{attempts:?}");
    let fingerprints: std::collections::BTreeSet<String> = app
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/rooms")
        .map(|r| r.body.unwrap()["description"].as_str().unwrap().to_owned())
        .filter_map(|d| telecons::domain::room_spec::RoomTag::parse(&d))
        .map(|tag| tag.fingerprint)
        .collect();
    assert_eq!(
        fingerprints.len(),
        2,
        "the booking's spec and the changed one"
    );
    for attempt in &attempts {
        assert!(
            app.services
                .store
                .is_attempt_recorded(attempt, &id)
                .await
                .unwrap(),
            "attempt {attempt} is recorded"
        );
    }
    assert!(
        !app.services
            .store
            .is_attempt_recorded(&attempts[0], "64b000000000000000000099")
            .await
            .unwrap(),
        "for its teleconsultation only"
    );
}

/// A copy of the database (staging made from production's dump) refuses to start; adopted
/// as a new installation, it gets rooms of its own for its bookings, and neither its changes
/// nor its clean-up ever touch the rooms of the original, which goes on (spec §7).
async fn a_copy_adopted_as_a_new_installation_never_touches_the_originals_rooms(db: TestDatabase) {
    let original = TestApp::spawn(db).await;
    let copied = create_tc(&original, booking(DOCTOR, PATIENT)).await;
    let copy_db = original.db.copy().await;
    // The original goes on after the copy.
    create_tc(&original, booking("doc-2", "pat-2")).await;
    let originals_rooms: Vec<String> = original.sim.rooms().into_iter().map(|r| r.id).collect();
    assert_eq!(originals_rooms.len(), 2);

    let refused = telecons::Services::build(
        &original.config,
        &telecons::Dependencies {
            store: Some(Arc::clone(&copy_db.store)),
            ..crate::support::test_dependencies(&copy_db, &original.clock)
        },
    )
    .await;
    let message = format!("{:#}", refused.err().expect("a copy refuses to start"));
    assert!(
        message.contains("`telecons adopt-database`")
            && message.contains("`telecons adopt-database --new-installation`"),
        "{message}"
    );

    let mut config = original.config.clone();
    config.database_url = telecons::config::DatabaseUrl::parse(&copy_db.url).unwrap();
    let done = telecons::app::adopt_database(&config, true, original.clock.now())
        .await
        .unwrap();
    assert!(done.contains("new installation"), "{done}");
    let copy = TestApp::spawn_sharing(copy_db, &original).await;
    assert_ne!(
        copy.services.provisioner.installation_id(),
        original.services.provisioner.installation_id()
    );
    // The copied booking has no room of the original's any more, and gets its own.
    let detached = copy.stored(&copied).await;
    assert_eq!(detached.room_id, None);
    assert!(detached.participants.iter().all(|p| p.link.is_none()));
    background_pass(&copy).await;
    let own_room = copy.stored(&copied).await.room_id.expect("its own room");
    assert!(!originals_rooms.contains(&own_room));

    // Its changes and its clean-up act on its own rooms only.
    delete_tc(&copy, &copied).await;
    copy.clock.advance(Duration::hours(1));
    assert_eq!(copy.services.provisioner.sweep_orphans().await.unwrap(), 0);
    copy.services.provisioner.run_due().await.unwrap();
    let left: Vec<String> = original.sim.rooms().into_iter().map(|r| r.id).collect();
    assert_eq!(left, originals_rooms, "the original's rooms are all there");
    let report = original.services.provisioner.audit().await.unwrap();
    assert!(report.is_consistent(), "{report:#?}");
}

/// A copy adopted as a new installation makes rooms of its own only for the teleconsultations
/// that have not ended: a room for every past booking of a production dump would spend the
/// Kaleyra rate limit the copy shares with the original. The ended ones keep no room, no
/// link and nothing due, and are not reported as rooms missing.
async fn a_copy_makes_rooms_only_for_teleconsultations_that_have_not_ended(db: TestDatabase) {
    let original = TestApp::spawn(db).await;
    // 2030-01-02 10:00 for 30 minutes, and a week later.
    let past = create_tc(&original, booking(DOCTOR, PATIENT)).await;
    let mut later = booking("doc-2", "pat-2");
    later["start_date"] = json!("2030-01-09T10:00:00.000Z");
    let future = create_tc(&original, later).await;
    let originals_rooms: Vec<String> = original.sim.rooms().into_iter().map(|r| r.id).collect();
    assert_eq!(originals_rooms.len(), 2);

    // A day after the first one ended, the copy is made and adopted.
    let copied_at: chrono::DateTime<chrono::Utc> =
        chrono::DateTime::parse_from_rfc3339("2030-01-03T10:00:00Z")
            .unwrap()
            .into();
    original.clock.set(copied_at);
    let copy_db = original.db.copy().await;
    let mut config = original.config.clone();
    config.database_url = telecons::config::DatabaseUrl::parse(&copy_db.url).unwrap();
    telecons::app::adopt_database(&config, true, copied_at)
        .await
        .unwrap();
    let copy = TestApp::spawn_sharing(copy_db, &original).await;
    copy.clock.set(copied_at);
    background_pass(&copy).await;

    let new_rooms: Vec<String> = original
        .sim
        .rooms()
        .into_iter()
        .map(|r| r.id)
        .filter(|id| !originals_rooms.contains(id))
        .collect();
    assert_eq!(
        new_rooms.len(),
        1,
        "one room, for the one not ended: {new_rooms:?}"
    );
    let future_now = copy.stored(&future).await;
    assert_eq!(future_now.room_id.as_ref(), Some(&new_rooms[0]));
    assert!(future_now.participants.iter().all(|p| p.link.is_some()));
    let past_now = copy.stored(&past).await;
    assert_eq!(past_now.room_id, None);
    assert_eq!(past_now.provision_due_at, None, "nothing due");
    assert!(past_now.participants.iter().all(|p| p.link.is_none()));
    // Not a room missing at start: the copy is healthy, and consistent with Kaleyra.
    let (status, body) = copy.get("/-/check-up", &[]).await;
    assert_eq!(status, 200, "{body}");
    let report = copy.services.provisioner.audit().await.unwrap();
    assert!(report.is_consistent(), "{report:#?}");
}
