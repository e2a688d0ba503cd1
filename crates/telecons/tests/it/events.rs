//! Events to the platform (spec §9): each stored change stores its event in the same
//! transaction, with the §4.12 view of the teleconsultation as it was; nothing is stored
//! without `EVENTS_WEBHOOK_URL`, nor for a change that stored nothing. What the outbox holds
//! is read here the way its sender reads it (claims of each teleconsultation's next event).

use std::sync::Arc;

use chrono::{Duration, TimeDelta};
use reqwest::Method;
use serde_json::{Value, json};
use telecons::clock::Clock as _;
use telecons::domain::teleconsultation::Teleconsultation;
use telecons::store::{KeyClaim, NewEvent, Store, StoreError};

use crate::agenda_view::{
    EPOCH, as_back_office, body, book_as_back_office, doctor_and_patient, scheduled_pair,
    shown_doctor, shown_patient, spawn,
};
use crate::support::{TestDatabase, test_epoch};
use crate::teleconsultations::{DOC, PAT, START, booking, doctor, patient, start};

crate::on_both_backends!(
    every_change_stores_its_event_with_the_view_as_it_was,
    no_event_is_kept_without_a_receiver,
    a_change_that_stores_nothing_stores_no_event,
    a_room_kaleyra_lost_is_an_update_then_ready_again,
    a_write_refused_by_its_checks_stores_none_of_its_events,
    links_open_is_told_once_at_links_open_at_when_the_room_is_ready,
    a_room_missing_at_links_open_at_is_told_then_links_open_once_ready,
    a_moved_start_is_told_at_its_new_moment,
    ended_and_deleted_ones_are_told_nothing,
    an_incomplete_one_is_told_once_its_room_is_ready,
    two_instances_tell_a_moment_once,
    a_requests_events_are_sent_only_once_it_has_answered,
);

/// A receiver on loopback (nothing listens there: these tests read the outbox itself).
pub(crate) const EVENTS_ENV: [(&str, &str); 2] = [
    ("EVENTS_WEBHOOK_URL", "http://127.0.0.1:9/telecons-events"),
    (
        "EVENTS_WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
];

/// The events stored since the last call, in the order they are sent, as sent (their
/// bodies): each is claimed as the sender claims it and settled as delivered.
pub(crate) async fn sent(store: &dyn Store) -> Vec<Value> {
    // Far enough ahead that events held for their request are due too.
    let later = test_epoch() + Duration::days(3650);
    let mut sent = Vec::new();
    loop {
        let claimed = store
            .claim_events(later, "reader", later + Duration::minutes(1), 1000)
            .await
            .unwrap();
        if claimed.is_empty() {
            return sent;
        }
        for event in claimed {
            let body: Value = serde_json::from_str(&event.body).unwrap();
            assert_eq!(body["type"], event.event_type.as_str(), "{body}");
            assert_eq!(body["data"]["roomId"], event.teleconsultation_id.as_str());
            assert!(event.webhook_id.starts_with("msg_"), "{}", event.webhook_id);
            assert!(
                store
                    .event_delivered(event.id, "reader", later, "HTTP 204")
                    .await
                    .unwrap()
            );
            sent.push(body);
        }
    }
}

/// An event's body: `type`, `timestamp`, and `data`.
fn event(kind: &str, timestamp: &str, data: Value) -> Value {
    json!({"type": format!("teleconsultation.{kind}"), "timestamp": timestamp, "data": data})
}

/// The agenda's view without `you`, as list items and event data carry it.
fn without_you(mut view: Value) -> Value {
    view.as_object_mut().unwrap().remove("you");
    view
}

async fn every_change_stores_its_event_with_the_view_as_it_was(db: TestDatabase) {
    let (app, _file) = spawn(db, &EVENTS_ENV).await;
    let store = &*app.services.store;
    let id = book_as_back_office(&app, doctor_and_patient()).await;
    let preparing = without_you(body(
        &id,
        2,
        vec![shown_doctor(), shown_patient()],
        (START, "scheduled", "preparing"),
        Value::Null,
    ));
    let ready = without_you(scheduled_pair(&id, Value::Null));
    assert_eq!(
        sent(store).await,
        [
            event("created", EPOCH, preparing.clone()),
            event("room_ready", EPOCH, ready.clone())
        ]
    );

    // Two hours later a participant's name changes: an update, the room as it was.
    app.clock.set(test_epoch() + Duration::hours(2));
    let renamed = json!({"participants": {"number": 2, "data": [
        doctor(crate::teleconsultations::DOC),
        {"userId": crate::teleconsultations::PAT, "groups": ["patient"], "fullName": "Renamed"},
    ]}});
    patch(&app, &id, renamed).await;
    let two_hours_later = "2030-01-01T12:00:00.000Z";
    let mut updated = ready.clone();
    updated["participants"][1]["fullName"] = json!("Renamed");
    updated["updatedAt"] = json!(two_hours_later);
    assert_eq!(
        sent(store).await,
        [event("updated", two_hours_later, updated.clone())]
    );

    // Deleted: told with the teleconsultation as it last was.
    app.clock.set(test_epoch() + Duration::hours(3));
    delete(&app, &id).await;
    assert_eq!(
        sent(store).await,
        [event("deleted", "2030-01-01T13:00:00.000Z", updated)]
    );

    // A participant added to an incomplete one is an update too; its room follows.
    let waiting = book_as_back_office(
        &app,
        booking(2, vec![doctor(crate::teleconsultations::DOC)]),
    )
    .await;
    assert_eq!(types(&sent(store).await), ["teleconsultation.created"]);
    add_patient(&app, &waiting, crate::teleconsultations::PAT).await;
    let events = sent(store).await;
    assert_eq!(
        types(&events),
        ["teleconsultation.updated", "teleconsultation.room_ready"]
    );
    assert_eq!(events[0]["data"]["room"], "preparing", "{}", events[0]);
    assert_eq!(events[1]["data"]["room"], "ready", "{}", events[1]);
    assert_eq!(
        events[1]["data"],
        without_you(
            crate::agenda_view::view(&app, &waiting, &crate::agenda_view::BACK_OFFICE)
                .await
                .1
        )
    );
}

async fn no_event_is_kept_without_a_receiver(db: TestDatabase) {
    let (app, _file) = spawn(db, &[]).await;
    let id = book_as_back_office(&app, doctor_and_patient()).await;
    patch(&app, &id, json!({"duration_in_seconds": 1800})).await;
    delete(&app, &id).await;
    assert_eq!(app.db.count("SELECT COUNT(*) FROM events").await, 0);
    assert_eq!(sent(&*app.services.store).await, Vec::<Value>::new());
}

async fn a_change_that_stores_nothing_stores_no_event(db: TestDatabase) {
    let (app, _file) = spawn(db, &EVENTS_ENV).await;
    let store = &*app.services.store;
    // The same booking sent again with its key: answered as before, booked once.
    let headers = [
        crate::agenda_view::BACK_OFFICE[0],
        crate::agenda_view::BACK_OFFICE[1],
        ("idempotency-key", "booking-1"),
    ];
    let book = || {
        app.send(
            Method::POST,
            "/teleconsultation",
            &headers,
            Some(doctor_and_patient()),
        )
    };
    let first = book().await;
    let again = book().await;
    assert_eq!(first.0, 201);
    assert_eq!(again, first);
    let id = first.1["roomId"].as_str().unwrap().to_owned();
    assert_eq!(sent(store).await.len(), 2, "created and room_ready, once");

    // Refused (400), and a change to what it already is: nothing stored, nothing told.
    let path = format!("/teleconsultation/{id}");
    let refused = json!({"duration_in_seconds": -5});
    let (status, _) = as_back_office(&app, Method::PATCH, &path, Some(refused)).await;
    assert_eq!(status, 400);
    patch(&app, &id, json!({"start_date": START})).await;
    assert_eq!(sent(store).await, Vec::<Value>::new());
    assert_eq!(app.db.count("SELECT COUNT(*) FROM events").await, 2);
}

async fn a_room_kaleyra_lost_is_an_update_then_ready_again(db: TestDatabase) {
    let (app, _file) = spawn(db, &EVENTS_ENV).await;
    let store = &*app.services.store;
    let id = book_as_back_office(&app, doctor_and_patient()).await;
    sent(store).await;
    let room = app.stored(&id).await.room_id.unwrap();
    // As the webhook of a room deleted in Kaleyra's console has it done.
    let replaced = app.services.api.teleconsultations.room_lost(&room).await;
    assert_eq!(replaced.unwrap(), Some(id.clone()));
    let events = sent(store).await;
    assert_eq!(
        types(&events),
        ["teleconsultation.updated", "teleconsultation.room_ready"]
    );
    assert_eq!(events[0]["data"]["room"], "preparing");
    assert_eq!(events[1]["data"]["room"], "ready");
    // Not a caller's change: `updatedAt` is the booking's.
    assert_eq!(events[0]["data"]["updatedAt"], EPOCH);
}

/// The store's writes: events go with the change or not at all.
async fn a_write_refused_by_its_checks_stores_none_of_its_events(db: TestDatabase) {
    let (app, _file) = spawn(db, &EVENTS_ENV).await;
    let store: Arc<dyn Store> = Arc::clone(&app.services.store);
    let id = book_as_back_office(&app, doctor_and_patient()).await;
    sent(&*store).await;
    let stored = app.stored(&id).await;
    let now = app.clock.now();
    let events = |tc: &Teleconsultation, kinds: &[&str]| -> Vec<NewEvent> {
        kinds
            .iter()
            .enumerate()
            .map(|(n, kind)| NewEvent {
                webhook_id: format!("msg_{}_{n}_{kind}", tc.version),
                teleconsultation_id: tc.id.clone(),
                event_type: format!("teleconsultation.{kind}"),
                body:
                    json!({"type": format!("teleconsultation.{kind}"), "data": {"roomId": tc.id}})
                        .to_string(),
                due_at: now,
                created_at: now,
            })
            .collect()
    };

    // A stale version: neither the update nor its events.
    let mut stale = stored.clone();
    stale.version -= 1;
    let update = store
        .update_teleconsultation(&stale, &[], &events(&stale, &["updated"]))
        .await;
    assert!(
        matches!(update, Err(StoreError::StaleVersion)),
        "{update:?}"
    );
    let record = store
        .record_room(&stale, &[], "owner", &events(&stale, &["room_ready"]))
        .await;
    assert!(
        matches!(record, Err(StoreError::StaleVersion)),
        "{record:?}"
    );
    assert_eq!(sent(&*store).await, Vec::<Value>::new());

    // A current version: the events, in their order.
    let version = store
        .record_room(
            &stored,
            &[],
            "owner",
            &events(&stored, &["room_ready", "links_open"]),
        )
        .await
        .unwrap();
    assert_eq!(version, stored.version + 1);
    let kinds: Vec<Value> = sent(&*store)
        .await
        .into_iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        kinds,
        ["teleconsultation.room_ready", "teleconsultation.links_open"]
    );

    // A booking whose idempotency key was taken over: nothing stored, events included.
    let mut copy = stored.clone();
    copy.id = "64b0000000000000000000aa".into();
    copy.version = 1;
    let lost = KeyClaim {
        scope: "anonymous".into(),
        key: "never-claimed".into(),
        fingerprint: "f".into(),
        owner: "nobody".into(),
        at: now,
        until: now + TimeDelta::seconds(25),
    };
    let insert = store
        .insert_teleconsultation(&copy, None, None, Some(&lost), &events(&copy, &["created"]))
        .await;
    assert!(matches!(insert, Err(StoreError::KeyLost)), "{insert:?}");
    assert_eq!(sent(&*store).await, Vec::<Value>::new());
}

/// [`EVENTS_ENV`] with links opening ten minutes before the start.
const TIMED_ENV: [(&str, &str); 3] = [
    EVENTS_ENV[0],
    EVENTS_ENV[1],
    ("IMMUTABLE_PERIOD_MS", "600000"),
];
/// Ten minutes before [`START`]: the bookings' `linksOpenAt` under [`TIMED_ENV`].
const LINKS_OPEN_AT: &str = "2030-01-02T09:50:00.000Z";

fn links_open_at() -> chrono::DateTime<chrono::Utc> {
    start() - Duration::minutes(10)
}

/// One pass of the timed events at the app's clock; how many it stored.
async fn tell_moments(app: &crate::support::TestApp) -> usize {
    app.services.links_moments.run_pass().await.unwrap()
}

/// The types of `events`, in their order.
fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

async fn links_open_is_told_once_at_links_open_at_when_the_room_is_ready(db: TestDatabase) {
    let (app, _file) = spawn(db, &TIMED_ENV).await;
    let store = &*app.services.store;
    let id = book_as_back_office(&app, doctor_and_patient()).await;
    sent(store).await;
    assert_eq!(tell_moments(&app).await, 0);
    app.clock.set(links_open_at() - Duration::milliseconds(1));
    assert_eq!(tell_moments(&app).await, 0, "not before linksOpenAt");
    app.clock.set(links_open_at());
    assert_eq!(tell_moments(&app).await, 1);
    let open = without_you(body(
        &id,
        2,
        vec![shown_doctor(), shown_patient()],
        (LINKS_OPEN_AT, "open", "ready"),
        Value::Null,
    ));
    assert_eq!(
        sent(store).await,
        [event("links_open", LINKS_OPEN_AT, open)]
    );
    app.clock.set(start());
    assert_eq!(tell_moments(&app).await, 0, "told once");
    assert_eq!(sent(store).await, Vec::<Value>::new());
}

async fn a_room_missing_at_links_open_at_is_told_then_links_open_once_ready(db: TestDatabase) {
    let (app, _file) = spawn(db, &TIMED_ENV).await;
    let store = &*app.services.store;
    app.sim
        .add_fault(kaleyra_sim::Fault::status("/v2/rooms", 500).method("POST"));
    let id = book_as_back_office(&app, doctor_and_patient()).await;
    assert_eq!(types(&sent(store).await), ["teleconsultation.created"]);
    app.clock.set(links_open_at());
    assert_eq!(tell_moments(&app).await, 1);
    let missing = sent(store).await;
    assert_eq!(
        missing,
        [event(
            "room_missing",
            LINKS_OPEN_AT,
            without_you(body(
                &id,
                2,
                vec![shown_doctor(), shown_patient()],
                (LINKS_OPEN_AT, "open", "preparing"),
                Value::Null,
            ))
        )]
    );
    app.clock.set(links_open_at() + Duration::minutes(1));
    assert_eq!(tell_moments(&app).await, 0, "the alarm is told once");

    // Kaleyra is back: the worker makes the room, and the links open then.
    app.sim.clear_faults();
    app.clock.set(links_open_at() + Duration::minutes(2));
    app.services.provisioner.run_due().await.unwrap();
    assert_eq!(tell_moments(&app).await, 1);
    let events = sent(store).await;
    assert_eq!(
        types(&events),
        ["teleconsultation.room_ready", "teleconsultation.links_open"]
    );
    assert_eq!(events[1]["timestamp"], "2030-01-02T09:52:00.000Z");
    assert_eq!(events[1]["data"]["room"], "ready");
    assert_eq!(tell_moments(&app).await, 0);
}

async fn a_moved_start_is_told_at_its_new_moment(db: TestDatabase) {
    let (app, _file) = spawn(db, &TIMED_ENV).await;
    let store = &*app.services.store;
    let id = book_as_back_office(&app, doctor_and_patient()).await;
    patch(&app, &id, json!({"start_date": "2030-01-02T12:00:00.000Z"})).await;
    sent(store).await;
    app.clock.set(links_open_at());
    assert_eq!(tell_moments(&app).await, 0, "the old moment is gone");
    app.clock.set(links_open_at() + Duration::hours(2));
    assert_eq!(tell_moments(&app).await, 1);
    let events = sent(store).await;
    assert_eq!(types(&events), ["teleconsultation.links_open"]);
    assert_eq!(events[0]["data"]["linksOpenAt"], "2030-01-02T11:50:00.000Z");
}

async fn ended_and_deleted_ones_are_told_nothing(db: TestDatabase) {
    let (app, _file) = spawn(db, &TIMED_ENV).await;
    let store = &*app.services.store;
    let ended = book_as_back_office(&app, doctor_and_patient()).await;
    let deleted = book_as_back_office(&app, doctor_and_patient()).await;
    delete(&app, &deleted).await;
    sent(store).await;
    let untold = "SELECT COUNT(*) FROM teleconsultations WHERE links_event IS NOT NULL";
    assert_eq!(
        app.db.count(untold).await,
        1,
        "a deletion clears its moment"
    );
    // No pass ran while it took place (the service was down): nothing is told late.
    app.clock.set(start() + Duration::hours(1));
    assert_eq!(tell_moments(&app).await, 0);
    assert_eq!(sent(store).await, Vec::<Value>::new());
    assert_eq!(app.db.count(untold).await, 0, "{ended} is cleared");
}

async fn an_incomplete_one_is_told_once_its_room_is_ready(db: TestDatabase) {
    let (app, _file) = spawn(db, &TIMED_ENV).await;
    let store = &*app.services.store;
    let id = book_as_back_office(&app, booking(2, vec![doctor(DOC)])).await;
    sent(store).await;
    app.clock.set(links_open_at());
    assert_eq!(tell_moments(&app).await, 0, "its links cannot open yet");
    app.clock.set(start());
    add_patient(&app, &id, PAT).await;
    assert_eq!(tell_moments(&app).await, 1);
    let events = sent(store).await;
    assert_eq!(
        types(&events),
        [
            "teleconsultation.updated",
            "teleconsultation.room_ready",
            "teleconsultation.links_open"
        ]
    );
    assert_eq!(events[2]["timestamp"], START);
}

async fn two_instances_tell_a_moment_once(db: TestDatabase) {
    let (app, _file) = spawn(db, &TIMED_ENV).await;
    let other = app.spawn_another_instance().await;
    let store = &*app.services.store;
    for _ in 0..20 {
        book_as_back_office(&app, doctor_and_patient()).await;
    }
    sent(store).await;
    app.clock.set(links_open_at());
    other.clock.set(links_open_at());
    let (here, there) = tokio::join!(tell_moments(&app), tell_moments(&other));
    assert_eq!(here + there, 20, "{here} here, {there} there");
    let events = sent(store).await;
    assert_eq!(events.len(), 20);
    let told: std::collections::HashSet<&str> = events
        .iter()
        .map(|e| e["data"]["roomId"].as_str().unwrap())
        .collect();
    assert_eq!(told.len(), 20, "each once");
}

async fn a_requests_events_are_sent_only_once_it_has_answered(db: TestDatabase) {
    let receiver = crate::support::WebhookReceiver::spawn().await;
    let (app, _file) = spawn(db, &[("EVENTS_WEBHOOK_URL", &receiver.url), EVENTS_ENV[1]]).await;
    let delivery = app.services.events.as_ref().expect("events are on");
    // Kaleyra holds room creations until two are asked at once: the first booking stays in
    // flight after its commit, its event stored.
    app.sim
        .add_fault(kaleyra_sim::Fault::gather("/v2/rooms", 2).method("POST"));
    let first = tokio::spawn({
        let request = app
            .http
            .post(app.url("/teleconsultation"))
            .headers(headers(&crate::agenda_view::BACK_OFFICE))
            .json(&doctor_and_patient());
        async move { request.send().await.unwrap().status().as_u16() }
    });
    crate::support::until_heard("the first booking's event stored", || async {
        app.db.count("SELECT COUNT(*) FROM events").await == 1
    })
    .await;
    delivery.run_pass().await.unwrap();
    assert!(
        receiver.received().is_empty(),
        "sent before its request answered"
    );

    // A second booking lets both room creations through: both requests answer.
    book_as_back_office(&app, doctor_and_patient()).await;
    assert_eq!(first.await.unwrap(), 201);
    crate::support::until_heard("the events of both, once answered", || async {
        delivery.run_pass().await.unwrap();
        receiver.received().len() == 4
    })
    .await;
    let types: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "teleconsultation.created")
            .count(),
        2,
        "{types:?}"
    );
    // Still before the hold would have let them go on its own.
    assert_eq!(app.clock.now(), test_epoch());
}

/// `pairs` as a header map.
fn headers(pairs: &[(&str, &str)]) -> reqwest::header::HeaderMap {
    pairs
        .iter()
        .map(|(name, value)| {
            (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            )
        })
        .collect()
}

/// `PATCH`es `id` with `body` as the back office: 204.
async fn patch(app: &crate::support::TestApp, id: &str, body: Value) {
    let answer = as_back_office(
        app,
        Method::PATCH,
        &format!("/teleconsultation/{id}"),
        Some(body),
    )
    .await;
    assert_eq!(answer, (204, Value::Null), "PATCH {id}");
}

/// Deletes `id` as the back office: 204.
async fn delete(app: &crate::support::TestApp, id: &str) {
    let answer = as_back_office(
        app,
        Method::DELETE,
        &format!("/teleconsultation/{id}"),
        None,
    )
    .await;
    assert_eq!(answer, (204, Value::Null), "DELETE {id}");
}

/// Adds the patient `user` to `id` as the back office: 201.
async fn add_patient(app: &crate::support::TestApp, id: &str, user: &str) {
    let path = format!("/teleconsultation/{id}/participants/data");
    let answer = as_back_office(app, Method::POST, &path, Some(patient(user))).await;
    assert_eq!(answer, (201, Value::Null), "participants/data of {id}");
}
