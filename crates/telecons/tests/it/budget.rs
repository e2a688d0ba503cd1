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
use crate::teleconsultations::{
    DOC, create_tc, delete_tc, doctor, pair, patch_tc, patient, post_tc,
};

crate::on_both_backends!(
    a_delete_answers_204_while_kaleyra_asks_to_retry_in_30_seconds,
    a_patch_that_retires_a_room_answers_while_kaleyra_is_slow,
    a_booking_answers_201_when_kaleyra_is_slow_after_a_slow_directory,
    a_booking_of_known_users_answers_201_when_kaleyra_is_slow,
    a_directory_too_slow_for_the_request_stores_nothing,
    the_budget_counts_from_the_requests_arrival,
    a_booking_blocked_by_a_lock_fails_within_the_budget_and_stores_nothing,
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

/// A connection of its own holding the lock a booking's write needs: on PostgreSQL the
/// teleconsultations table in EXCLUSIVE mode (reads go on, writes wait), on SQLite the
/// database's write lock. Dropped, it gives the lock up.
enum LockHolder {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl LockHolder {
    async fn take(url: &str) -> Self {
        use sqlx::Connection;
        if url.starts_with("sqlite:") {
            let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut connection)
                .await
                .unwrap();
            Self::Sqlite(connection)
        } else {
            let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql("BEGIN; LOCK TABLE teleconsultations IN EXCLUSIVE MODE")
                .execute(&mut connection)
                .await
                .unwrap();
            Self::Postgres(connection)
        }
    }

    async fn release(self) {
        use sqlx::Connection;
        match self {
            Self::Sqlite(mut c) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
            Self::Postgres(mut c) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
        }
    }
}

/// Every write's commit finishes within the request's budget or not at all (spec §7): the
/// database gives up on the lock (PostgreSQL's lock and statement timeouts, SQLite's busy
/// timeout, all derived from the budget) while the request still waits, so the answer is
/// storage's 503 and nothing is stored — never a 503 from the HTTP timeout followed by a
/// commit once the lock is released (which the booking backend's retry would double).
async fn a_booking_blocked_by_a_lock_fails_within_the_budget_and_stores_nothing(db: TestDatabase) {
    let budget = Duration::from_secs(2);
    let db = db.with_request_budget(budget).await;
    let app = TestApp::spawn_with_budget(db, &[], budget).await;
    let lock = LockHolder::take(&app.db.url).await;
    let started = std::time::Instant::now();
    let (status, body) = post_tc(&app, pair()).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["message"], "storage is unavailable; try again",
        "storage gave up, not the HTTP timeout"
    );
    assert!(elapsed < budget, "answered after {elapsed:?}");
    lock.release().await;
    // A booking after the lock is released commits after anything the blocked one could
    // still do: only it is stored, and only its room made.
    let id = create_tc(&app, pair()).await;
    let stored: Vec<String> = app
        .services
        .store
        .list_live_teleconsultations("", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|tc| tc.id)
        .collect();
    assert_eq!(stored, vec![id], "nothing of the refused booking is stored");
    assert_eq!(app.sim.rooms().len(), 1);
}
