//! `Idempotency-Key` on `POST /teleconsultation` (spec §4.13), black-box on both backends:
//! the first answer (201 or 4xx) kept per caller and key and given again, marked
//! `Idempotency-Replayed: true`, with nothing booked and Kaleyra not called; another body
//! 422; a request still running 409 until its hold ends; a 5xx keeps nothing; 24 hours; the
//! header's form (400, after the caller's checks); across a second instance.

use std::sync::atomic::Ordering;
use std::time::Duration as StdDuration;

use chrono::Duration;
use serde_json::{Value, json};

use crate::directory::{DOCTOR_AND_PATIENT, directory_env, spawn_auth0};
use crate::support::{TestApp, TestDatabase};
use crate::teleconsultations::{
    DOC, PAT, assert_room_id_shape, booking, config_file, doctor, pair, patient,
};

crate::on_both_backends!(
    the_same_key_and_body_get_the_first_answer_again_and_book_once,
    a_body_sent_again_in_another_json_form_is_the_same_body,
    another_body_under_the_same_key_is_refused_with_422,
    a_refusal_is_kept_and_given_again,
    a_request_still_running_holds_its_key_until_it_answers_or_its_hold_ends,
    a_failure_of_the_service_keeps_nothing,
    keys_are_the_callers_own_and_requests_without_a_caller_share_theirs,
    a_key_is_kept_24_hours,
    a_key_that_is_not_1_to_255_visible_characters_is_refused_after_the_callers_checks,
    a_key_answered_by_one_instance_is_answered_again_by_another,
    expired_keys_are_swept,
    requests_with_one_key_at_once_book_once,
    a_client_that_hangs_up_leaves_its_key_answered_or_free,
);

/// An answer: status, the `Idempotency-Replayed` header (if any), the body as JSON.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    replayed: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

/// POSTs `body` (as these bytes) with `key` (and the caller `who`, if any).
async fn post_raw(app: &TestApp, key: Option<&str>, who: Option<&str>, body: Vec<u8>) -> Answer {
    post_to(&app.base_url, &app.http, key, who, body).await
}

async fn post_to(
    base_url: &str,
    http: &reqwest::Client,
    key: Option<&str>,
    who: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut request = http
        .post(format!("{base_url}/teleconsultation"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(who) = who {
        request = request.header("miauserid", who);
    }
    let response = request.send().await.expect("the app answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (replayed, retry_after) = (header("idempotency-replayed"), header("retry-after"));
    let status = response.status().as_u16();
    let body = response.json().await.expect("a JSON body");
    Answer {
        status,
        replayed,
        retry_after,
        body,
    }
}

async fn post(app: &TestApp, key: &str, body: &Value) -> Answer {
    post_raw(app, Some(key), None, serde_json::to_vec(body).unwrap()).await
}

/// The room id of a 201 that is not a replay.
#[track_caller]
fn booked(answer: &Answer) -> String {
    assert_eq!(
        (answer.status, answer.replayed.as_deref()),
        (201, None),
        "{answer:?}"
    );
    let id = answer.body["roomId"].as_str().unwrap().to_owned();
    assert_room_id_shape(&id);
    assert_eq!(answer.body, json!({"roomId": id}));
    id
}

/// `answer` is the kept one: `status` and `body`, marked replayed.
#[track_caller]
fn assert_replayed(answer: &Answer, status: u16, body: &Value) {
    assert_eq!(
        (answer.status, answer.replayed.as_deref(), &answer.body),
        (status, Some("true"), body),
    );
}

async fn live_count(app: &TestApp) -> usize {
    app.services
        .store
        .list_live_teleconsultations("", 100)
        .await
        .unwrap()
        .len()
}

fn room_creations(app: &TestApp) -> usize {
    app.kaleyra_calls()
        .iter()
        .filter(|call| *call == "POST /v2/rooms")
        .count()
}

fn error(status: u16, error: &str, message: &str) -> Value {
    json!({"statusCode": status, "error": error, "message": message})
}

const OTHER_BODY: &str = "the Idempotency-Key was used with another body; a key names one request: send another key for another request";
const STILL_RUNNING: &str = "a request with this Idempotency-Key is still running; send it again once that one has answered";
const MALFORMED: &str =
    "the Idempotency-Key header must be 1 to 255 visible ASCII characters (! to ~)";

async fn the_same_key_and_body_get_the_first_answer_again_and_book_once(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let first = post(&app, "booking-7f3a", &pair()).await;
    let id = booked(&first);
    assert_eq!(room_creations(&app), 1);

    let calls = app.kaleyra_calls();
    for _ in 0..2 {
        let again = post(&app, "booking-7f3a", &pair()).await;
        assert_replayed(&again, 201, &json!({"roomId": id}));
    }
    assert_eq!(live_count(&app).await, 1, "booked once");
    assert_eq!(app.kaleyra_calls(), calls, "Kaleyra is not called again");

    // Another key is another booking.
    let other = booked(&post(&app, "booking-7f3b", &pair()).await);
    assert_ne!(other, id);
    assert_eq!(live_count(&app).await, 2);
}

async fn a_body_sent_again_in_another_json_form_is_the_same_body(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = booked(&post(&app, "k-1", &pair()).await);
    // The same object, its keys in another order, spaced out.
    let reordered = format!(
        r#"{{ "duration_in_seconds" : 3600, "start_date" : "2030-01-02T10:00:00.000Z",
             "participants" : {{ "data" : {}, "number" : 2 }} }}"#,
        json!([doctor(DOC), patient(PAT)])
    );
    let again = post_raw(&app, Some("k-1"), None, reordered.into_bytes()).await;
    assert_replayed(&again, 201, &json!({"roomId": id}));
    assert_eq!(live_count(&app).await, 1);
}

async fn another_body_under_the_same_key_is_refused_with_422(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = booked(&post(&app, "k-1", &pair()).await);
    let mut other = pair();
    other["duration_in_seconds"] = json!(1800);
    let refused = post(&app, "k-1", &other).await;
    assert_eq!(
        refused,
        Answer {
            status: 422,
            replayed: None,
            retry_after: None,
            body: error(422, "Unprocessable Entity", OTHER_BODY),
        }
    );
    assert_eq!(live_count(&app).await, 1);
    assert_eq!(room_creations(&app), 1);
    // The key still answers its own body.
    let again = post(&app, "k-1", &pair()).await;
    assert_replayed(&again, 201, &json!({"roomId": id}));
}

async fn a_refusal_is_kept_and_given_again(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let mut no_start = pair();
    no_start.as_object_mut().unwrap().remove("start_date");
    let first = post(&app, "k-1", &no_start).await;
    let refusal = error(400, "Bad Request", "start_date is required");
    assert_eq!(
        (first.status, first.replayed.as_deref(), &first.body),
        (400, None, &refusal)
    );
    let again = post(&app, "k-1", &no_start).await;
    assert_replayed(&again, 400, &refusal);
    // The corrected booking is another body: it needs another key.
    let corrected = post(&app, "k-1", &pair()).await;
    assert_eq!(
        (corrected.status, corrected.body),
        (422, error(422, "Unprocessable Entity", OTHER_BODY))
    );
    booked(&post(&app, "k-2", &pair()).await);

    // The documented refusal of a room without a plus user, too.
    let patients = booking(2, vec![patient("pat-a"), patient("pat-b")]);
    let first = post(&app, "k-3", &patients).await;
    let refusal = error(
        400,
        "Failed POST /teleconsultation: no plus user in room",
        "Failed POST /teleconsultation: no plus user in room",
    );
    assert_eq!((first.status, &first.body), (400, &refusal));
    assert_replayed(&post(&app, "k-3", &patients).await, 400, &refusal);
    assert_eq!(live_count(&app).await, 1);
}

/// A request that claimed its key and died (its instance killed) holds it until its hold
/// ends — the request budget, 25 s — and the same request sent meanwhile gets a 409 asking
/// to retry in a second; after, the key is free. A request that still tries to book under a
/// key taken over stores nothing.
async fn a_request_still_running_holds_its_key_until_it_answers_or_its_hold_ends(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let body = serde_json::to_vec(&pair()).unwrap();
    let key = telecons::domain::idempotency::parse_key([b"k-1".as_slice()])
        .unwrap()
        .unwrap();
    let fingerprint = telecons::domain::idempotency::body_fingerprint(&body);
    let telecons::services::idempotency::Claimed::Held(dead) = app
        .services
        .api
        .idempotency
        .claim(None, &key, fingerprint)
        .await
        .unwrap()
    else {
        panic!("a new key is held by its claim");
    };

    let running = post_raw(&app, Some("k-1"), None, body.clone()).await;
    assert_eq!(
        running,
        Answer {
            status: 409,
            replayed: None,
            retry_after: Some("1".into()),
            body: error(409, "Conflict", STILL_RUNNING),
        }
    );
    app.clock.advance(Duration::seconds(20));
    let running = post_raw(&app, Some("k-1"), None, body.clone()).await;
    assert_eq!(
        (running.status, running.retry_after.as_deref()),
        (409, Some("1"))
    );
    assert_eq!(live_count(&app).await, 0);
    assert!(app.kaleyra_calls().is_empty());

    // The hold has ended: the key is taken over and the booking made, once.
    app.clock.advance(Duration::seconds(5));
    let id = booked(&post_raw(&app, Some("k-1"), None, body.clone()).await);
    assert_replayed(
        &post_raw(&app, Some("k-1"), None, body).await,
        201,
        &json!({"roomId": id}),
    );
    // The dead request's booking, were it to come now, stores nothing.
    let stored = app.stored(&id).await;
    let mut copy = stored.clone();
    copy.id = "64b000000000000000000999".into();
    let lost = app
        .services
        .store
        .insert_teleconsultation(&copy, None, None, Some(&dead), &[])
        .await;
    assert!(
        matches!(lost, Err(telecons::store::StoreError::KeyLost)),
        "{lost:?}"
    );
    assert_eq!(live_count(&app).await, 1, "nothing stored under a lost key");
}

/// A 5xx keeps nothing: the user directory too slow for the request (503, nothing stored),
/// then the same key again once it answers is booked, not a replay of the 503.
async fn a_failure_of_the_service_keeps_nothing(db: TestDatabase) {
    let (url, auth0) = spawn_auth0(DOCTOR_AND_PATIENT).await;
    auth0.user_delay_ms.store(3_000, Ordering::SeqCst);
    let budget = StdDuration::from_secs(1);
    let db = db.with_request_budget(budget).await;
    let app = TestApp::spawn_with_budget(db, &directory_env(&url), budget).await;
    let body = serde_json::to_vec(&json!({
        "participants": ["auth0|doctor", "auth0|patient"],
        "start_date": "2030-01-01T10:00:00.000Z",
        "duration_in_seconds": 1800,
    }))
    .unwrap();
    let failed = post_raw(&app, Some("k-1"), None, body.clone()).await;
    assert_eq!(
        (failed.status, failed.replayed),
        (503, None),
        "{:?}",
        failed.body
    );
    assert_eq!(live_count(&app).await, 0);

    auth0.user_delay_ms.store(0, Ordering::SeqCst);
    booked(&post_raw(&app, Some("k-1"), None, body).await);
    assert_eq!(live_count(&app).await, 1);
}

async fn keys_are_the_callers_own_and_requests_without_a_caller_share_theirs(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let body = || serde_json::to_vec(&pair()).unwrap();
    let a = booked(&post_raw(&app, Some("k-1"), Some("backend-a"), body()).await);
    let b = booked(&post_raw(&app, Some("k-1"), Some("backend-b"), body()).await);
    let none = booked(&post_raw(&app, Some("k-1"), None, body()).await);
    assert_eq!(
        [&a, &b, &none]
            .into_iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3,
        "three scopes, three bookings"
    );
    for (who, id) in [
        (Some("backend-a"), &a),
        (Some("backend-b"), &b),
        (None, &none),
    ] {
        let again = post_raw(&app, Some("k-1"), who, body()).await;
        assert_replayed(&again, 201, &json!({"roomId": id}));
    }
    assert_eq!(live_count(&app).await, 3);
}

async fn a_key_is_kept_24_hours(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = booked(&post(&app, "k-1", &pair()).await);
    let mut later = pair();
    later["start_date"] = json!("2030-01-05T10:00:00.000Z");

    app.clock
        .advance(Duration::hours(24) - Duration::milliseconds(1));
    assert_replayed(
        &post(&app, "k-1", &pair()).await,
        201,
        &json!({"roomId": id}),
    );
    assert_eq!(post(&app, "k-1", &later).await.status, 422);

    // 24 hours after the first request: the key names a new request.
    app.clock.advance(Duration::milliseconds(1));
    let new = booked(&post(&app, "k-1", &later).await);
    assert_ne!(new, id);
    assert_eq!(live_count(&app).await, 2);
}

async fn a_key_that_is_not_1_to_255_visible_characters_is_refused_after_the_callers_checks(
    db: TestDatabase,
) {
    let service_file = config_file(json!({
        "privileges": {"basic": {"groups": ["patient"]}, "plus": {"groups": ["doctor"]}},
        "bookingGroups": ["booking"],
    }));
    let path = service_file.path().to_str().unwrap().to_owned();
    let app = TestApp::spawn_with(db, &[("TELECONSULTATION_SERVICE_CONFIG_PATH", &path)]).await;
    let send = |keys: Vec<String>, who: Option<(&'static str, &'static str)>| {
        let mut request = app.http.post(app.url("/teleconsultation")).json(&pair());
        for key in keys {
            request = request.header("Idempotency-Key", key);
        }
        if let Some((id, groups)) = who {
            request = request
                .header("miauserid", id)
                .header("miausergroups", groups);
        }
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let booking = Some(("backend", "booking"));
    let malformed = (400, error(400, "Bad Request", MALFORMED));
    for bad in [String::new(), "a b".into(), "k".repeat(256), "ключ".into()] {
        // The caller's checks come first: no caller 401, outside bookingGroups 403.
        assert_eq!(send(vec![bad.clone()], None).await.0, 401, "{bad:?}");
        assert_eq!(
            send(vec![bad.clone()], Some(("doc", "doctor"))).await.0,
            403
        );
        assert_eq!(send(vec![bad.clone()], booking).await, malformed, "{bad:?}");
    }
    assert_eq!(
        send(vec!["k-1".into(), "k-2".into()], booking).await,
        (
            400,
            error(
                400,
                "Bad Request",
                "the Idempotency-Key header was sent 2 times; a request carries one key"
            )
        )
    );
    // The identity's 400 comes before the key's, the key's before the body's.
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/teleconsultation",
            &[
                ("miauserid", "a"),
                ("miauserid", "b"),
                ("Idempotency-Key", "a b"),
            ],
            Some(pair()),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("miauserid"),
        "{body}"
    );
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/teleconsultation",
            &[
                ("miauserid", "backend"),
                ("miausergroups", "booking"),
                ("Idempotency-Key", "a b"),
            ],
            Some(json!({"participants": "none"})),
        )
        .await;
    assert_eq!((status, body), malformed);
    assert_eq!(live_count(&app).await, 0);
    // The longest and the most varied keys are keys.
    for good in ["~".repeat(255), "!#$%&'*+-.^_`|~0aZ".into()] {
        let (status, body) = send(vec![good], booking).await;
        assert_eq!(status, 201, "{body}");
    }
}

/// The keys are in the database: another instance on it answers a key the first kept.
async fn a_key_answered_by_one_instance_is_answered_again_by_another(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = booked(&post(&app, "k-1", &pair()).await);

    let second_store = telecons::store::connect(&app.db.url).await.unwrap();
    let second = telecons::Application::build(
        app.config.clone(),
        telecons::Dependencies {
            store: Some(second_store),
            ..crate::support::test_dependencies(&app.db, &app.clock)
        },
    )
    .await
    .unwrap();
    let second_url = format!("http://{}", second.address().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(second.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let again = post_to(
        &second_url,
        &app.http,
        Some("k-1"),
        None,
        serde_json::to_vec(&pair()).unwrap(),
    )
    .await;
    assert_replayed(&again, 201, &json!({"roomId": id}));
    assert_eq!(live_count(&app).await, 1);
    assert_eq!(room_creations(&app), 1);
    let _ = stop.send(());
}

/// The sweep deletes the keys kept 24 hours (they are free already) and no other.
async fn expired_keys_are_swept(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    booked(&post(&app, "old", &pair()).await);
    app.clock.advance(Duration::hours(23));
    booked(&post(&app, "recent", &pair()).await);
    app.clock.advance(Duration::hours(1));
    let keys = || {
        app.db.count(
            "SELECT COUNT(*) FROM idempotency_keys WHERE idempotency_key IN ('old', 'recent')",
        )
    };
    assert_eq!(keys().await, 2);
    app.services.api.idempotency.sweep().await.unwrap();
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM idempotency_keys WHERE idempotency_key = 'recent'")
            .await,
        1,
        "the recent key is kept"
    );
    assert_eq!(keys().await, 1, "the old key is swept");
}

/// Requests sent at once with one key and body: one books, each other gets its answer
/// again or a 409 while it runs; one teleconsultation, one room.
async fn requests_with_one_key_at_once_book_once(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let body = serde_json::to_vec(&pair()).unwrap();
    let sent: Vec<_> = (0..8)
        .map(|_| {
            let (base, http, body) = (app.base_url.clone(), app.http.clone(), body.clone());
            tokio::spawn(async move { post_to(&base, &http, Some("k-1"), None, body).await })
        })
        .collect();
    let mut answers = Vec::new();
    for answer in sent {
        answers.push(answer.await.unwrap());
    }
    let booked: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.replayed.is_none() && a.status == 201)
        .collect();
    assert_eq!(booked.len(), 1, "{answers:?}");
    let id = &booked[0].body;
    for answer in &answers {
        match (answer.status, answer.replayed.as_deref()) {
            (201, None) => {}
            (201, Some("true")) => assert_eq!(&answer.body, id),
            (409, None) => assert_eq!(answer.body, error(409, "Conflict", STILL_RUNNING)),
            other => panic!("{other:?}: {answer:?}"),
        }
    }
    assert_eq!(live_count(&app).await, 1);
    assert_eq!(room_creations(&app), 1);
}

/// A client that hangs up mid-request (at any point of it) leaves its key answered or free,
/// never held: sent again, the booking gets its answer within a few retries — the test
/// clock never moves, so a key left held would stay held — and is booked once.
async fn a_client_that_hangs_up_leaves_its_key_answered_or_free(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let body = serde_json::to_vec(&pair()).unwrap();
    for (i, cut_after_us) in [0, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000]
        .into_iter()
        .enumerate()
    {
        let key = format!("k-{i}");
        let request = post_raw(&app, Some(&key), None, body.clone());
        let _ = tokio::time::timeout(StdDuration::from_micros(cut_after_us), request).await;
        let mut attempts = 0;
        let answer = loop {
            let answer = post_raw(&app, Some(&key), None, body.clone()).await;
            if answer.status != 409 {
                break answer;
            }
            attempts += 1;
            assert!(attempts < 200, "key {key} stays held");
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        };
        assert_eq!(answer.status, 201, "{answer:?}");
        assert_eq!(live_count(&app).await, i + 1, "booked once under {key}");
    }
}
