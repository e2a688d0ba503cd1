//! A request that has stored its effect never answers 5xx because Kaleyra (or the directory)
//! is slow afterwards (spec §7): one budget covers the request's work; what does not fit after
//! the commit goes to the stored queue or the background worker. These apps have a 1 s
//! budget (so their HTTP timeout is 6 s); Kaleyra is made to take far longer.

use std::sync::atomic::Ordering;
use std::time::Duration;

use kaleyra_sim::Fault;
use serde_json::{Value, json};

use crate::directory::{DOCTOR_AND_PATIENT, book_by_ids, directory_env, spawn_auth0};
use crate::support::{TestApp, TestDatabase};
use crate::teleconsultations::{DOC, create_tc, delete_tc, doctor, pair, patch_tc, patient};

crate::on_both_backends!(
    a_delete_answers_204_while_kaleyra_asks_to_retry_in_30_seconds,
    a_patch_that_retires_a_room_answers_while_kaleyra_is_slow,
    a_booking_answers_201_when_kaleyra_is_slow_after_a_slow_directory,
    a_booking_of_known_users_answers_201_when_kaleyra_is_slow,
    a_directory_too_slow_for_the_request_stores_nothing,
    the_budget_counts_from_the_requests_arrival,
);

const BUDGET: Duration = Duration::from_secs(1);

async fn deletions_pending(app: &TestApp) -> u64 {
    let far = chrono::Utc::now() + chrono::TimeDelta::days(3650);
    app.services
        .store
        .backlog(far, 0)
        .await
        .unwrap()
        .room_deletions
}

async fn a_delete_answers_204_while_kaleyra_asks_to_retry_in_30_seconds(db: TestDatabase) {
    let app = TestApp::spawn_with_budget(db, &[], BUDGET).await;
    let id = create_tc(&app, pair()).await;
    assert_eq!(app.sim.rooms().len(), 1);
    app.sim.add_fault(
        Fault::status("/v2/rooms/{id}", 503)
            .method("DELETE")
            .retry_after(30),
    );
    assert_eq!(delete_tc(&app, &id).await, (204, Value::Null));
    assert_eq!(deletions_pending(&app).await, 1, "the deletion is queued");
    // Once Kaleyra recovers, the worker deletes it (after the request's lease expired).
    app.sim.clear_faults();
    app.clock.advance(chrono::Duration::minutes(10));
    app.services.provisioner.run_due().await.unwrap();
    assert!(app.sim.rooms().is_empty());
    assert_eq!(deletions_pending(&app).await, 0);
}

async fn a_patch_that_retires_a_room_answers_while_kaleyra_is_slow(db: TestDatabase) {
    let app = TestApp::spawn_with_budget(db, &[], BUDGET).await;
    let id = create_tc(&app, pair()).await;
    app.sim.add_fault(
        Fault::status("/v2/rooms/{id}", 503)
            .method("DELETE")
            .retry_after(30),
    );
    app.sim
        .add_fault(Fault::delay("/v2/rooms", Duration::from_secs(20)).method("POST"));
    let replaced =
        json!({"participants": {"number": 2, "data": [doctor(DOC), patient("pat-new")]}});
    let (status, body) = patch_tc(&app, &id, replaced).await;
    assert_eq!(status, 204, "{body}");
    let stored = app.stored(&id).await;
    assert_eq!(
        stored.participants[1].external_id, "pat-new",
        "the change is stored"
    );
}

async fn a_booking_answers_201_when_kaleyra_is_slow_after_a_slow_directory(db: TestDatabase) {
    let (url, auth0) = spawn_auth0(DOCTOR_AND_PATIENT).await;
    // Two lookups of 150 ms: most of the time before the commit is used up.
    auth0.user_delay_ms.store(150, Ordering::SeqCst);
    let app = TestApp::spawn_with_budget(db, &directory_env(&url), BUDGET).await;
    app.sim
        .add_fault(Fault::delay("/v2/rooms", Duration::from_secs(20)).method("POST"));
    let (status, body) = book_by_ids(&app, &["auth0|doctor", "auth0|patient"]).await;
    assert_eq!(status, 201, "{body}");
    let id = body["roomId"].as_str().unwrap();
    let stored = app.stored(id).await;
    assert!(
        stored.provision_due_at.is_some(),
        "the worker finishes the room"
    );
}

/// Users known from an earlier booking: the room is asked for while the booking is stored,
/// and its answer is awaited within the budget like any other Kaleyra call.
async fn a_booking_of_known_users_answers_201_when_kaleyra_is_slow(db: TestDatabase) {
    let app = TestApp::spawn_with_budget(db, &[], BUDGET).await;
    create_tc(&app, pair()).await;
    app.sim
        .add_fault(Fault::delay("/v2/rooms", Duration::from_secs(20)).method("POST"));
    let id = create_tc(&app, pair()).await;
    let stored = app.stored(&id).await;
    assert_eq!(stored.room_id, None, "no answer yet");
    assert!(
        stored.creating_fingerprint.is_some(),
        "the creation under way is marked"
    );
}

async fn a_directory_too_slow_for_the_request_stores_nothing(db: TestDatabase) {
    let (url, auth0) = spawn_auth0(DOCTOR_AND_PATIENT).await;
    auth0.user_delay_ms.store(3_000, Ordering::SeqCst);
    let app = TestApp::spawn_with_budget(db, &directory_env(&url), BUDGET).await;
    let (status, body) = book_by_ids(&app, &["auth0|doctor", "auth0|patient"]).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        app.services
            .store
            .list_live_teleconsultations("", 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing stored"
    );
    assert!(app.kaleyra_calls().is_empty());
}

/// The budget counts from when the request arrived, not from when its handler ran: a body
/// that takes long to arrive, then a slow Kaleyra after the commit, still gets its 201 (or a
/// 503 with nothing stored) — never a 503 for a stored booking.
async fn the_budget_counts_from_the_requests_arrival(db: TestDatabase) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with_budget(db, &[], Duration::from_secs(2)).await;
    app.sim
        .add_fault(Fault::delay("/v2/rooms", Duration::from_secs(20)).method("POST"));
    let body = pair().to_string();
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /teleconsultation HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(body.len() - 1);
    stream.write_all(first.as_bytes()).await.unwrap();
    // Longer than the budget's time before the commit (1 s), shorter than the timeout.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let stored = app
        .services
        .store
        .list_live_teleconsultations("", 10)
        .await
        .unwrap();
    let status_line = answer.lines().next().unwrap_or_default();
    if stored.is_empty() {
        assert!(status_line.contains(" 503 "), "{answer}");
    } else {
        assert!(status_line.contains(" 201 "), "stored, so 201: {answer}");
    }
}
