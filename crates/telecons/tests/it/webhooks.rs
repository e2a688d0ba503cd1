//! `POST /webhooks/kaleyra` (spec §4.11): Kaleyra's signed webhooks. A room deleted in
//! Kaleyra's console is made again; a missing, wrong or stale signature is a 401 and nothing
//! is done. The simulator deletes rooms "from its console" and sends the signed webhook.

use chrono::Utc;
use kaleyra_sim::WebhookTamper;
use serde_json::{Value, json};
use telecons::clock::Clock as _;

use crate::raw_http::HeldRequest;
use crate::support::{SIM_API_KEY, TestApp, TestDatabase};
use crate::teleconsultations::create_tc;

crate::on_both_backends!(
    a_room_deleted_in_kaleyras_console_is_made_again,
    a_missing_wrong_or_stale_signature_is_401_and_nothing_is_done,
    other_events_and_unknown_rooms_are_acknowledged_and_ignored,
    a_body_over_64_kib_is_413_and_left_unread,
    a_missing_malformed_or_stale_header_is_401_before_the_body_is_read,
    a_webhook_storage_cannot_take_now_is_503_naming_no_internals_then_taken_when_sent_again,
);

/// An app whose clock is the real time (webhook signatures are checked against it) and whose
/// simulator sends its webhooks to it; a booking that starts now (links due), with its room.
async fn app_with_room(db: TestDatabase) -> (TestApp, String, String) {
    let app = TestApp::spawn(db).await;
    app.clock.set(Utc::now());
    app.sim.set_webhook_url(app.url("/webhooks/kaleyra"));
    let id = create_tc(
        &app,
        json!({
            "participants": {"number": 2, "data": [
                {"userId": "doc", "groups": ["doctor"], "fullName": "Dr. A"},
                {"userId": "pat", "groups": ["patient"], "fullName": "B"},
            ]},
            "start_date": telecons::domain::schedule::format_instant(app.clock.now()),
            "duration_in_seconds": 1800,
        }),
    )
    .await;
    let room = app.sim.rooms()[0].id.clone();
    (app, id, room)
}

async fn link(app: &TestApp, id: &str) -> Value {
    let (status, body) = app
        .get(&format!("/teleconsultation/{id}"), &[("miauserid", "pat")])
        .await;
    assert_eq!(status, 200, "{body}");
    body["accessLinkURL"].clone()
}

async fn a_room_deleted_in_kaleyras_console_is_made_again(db: TestDatabase) {
    let (app, id, room) = app_with_room(db).await;
    let before = link(&app, &id).await;
    assert!(before.is_string());
    let delivery = app
        .sim
        .delete_room_from_console(&room)
        .await
        .unwrap()
        .expect("a webhook was sent");
    assert_eq!(delivery.status, Some(204), "{delivery:?}");
    let rooms = app.sim.rooms();
    assert_eq!(
        rooms.len(),
        1,
        "a new room, made while answering the webhook"
    );
    assert_ne!(rooms[0].id, room);
    let after = link(&app, &id).await;
    assert!(after.is_string() && after != before, "{after}");
    let report = app.services.provisioner.audit().await.unwrap();
    assert!(report.is_consistent(), "{report:#?}");
}

async fn a_missing_wrong_or_stale_signature_is_401_and_nothing_is_done(db: TestDatabase) {
    let (app, id, room) = app_with_room(db).await;
    // Kaleyra's console deletes the room; the webhook comes signed with another key.
    app.sim
        .set_webhook_tamper(Some(WebhookTamper::WrongSignature));
    let delivery = app
        .sim
        .delete_room_from_console(&room)
        .await
        .unwrap()
        .expect("a webhook was sent");
    assert_eq!(delivery.status, Some(401), "{delivery:?}");
    // By hand: stale, missing, malformed — each a 401 in the error shape.
    let raw = json!({"event": "on_room_deleted", "event_version": "1.0", "namespace": "room",
                     "timestamp": 1, "data": {"room_id": room}})
    .to_string();
    let stale = kaleyra_client::webhook::signature_header(
        SIM_API_KEY,
        Utc::now().timestamp() - 3600,
        raw.as_bytes(),
    );
    for signature in [Some(stale.as_str()), None, Some("t=1,v0=00")] {
        let mut request = app
            .http
            .post(app.url("/webhooks/kaleyra"))
            .header("content-type", "application/json")
            .body(raw.clone());
        if let Some(signature) = signature {
            request = request.header("bandyer-signature", signature);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{signature:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["statusCode"], 401, "{body}");
    }
    assert!(app.sim.rooms().is_empty(), "no room was made again");
    let stored = app.stored(&id).await;
    assert_eq!(
        stored.room_id.as_deref(),
        Some(room.as_str()),
        "nothing changed"
    );
}

async fn other_events_and_unknown_rooms_are_acknowledged_and_ignored(db: TestDatabase) {
    let (app, id, room) = app_with_room(db).await;
    app.sim.clear_requests();
    for body in [
        json!({"event": "on_call_started", "event_version": "1.0", "namespace": "call", "timestamp": 1, "data": {"room_id": room}}),
        json!({"event": "on_room_deleted", "event_version": "1.0", "namespace": "room", "timestamp": 1, "data": {"room_id": "room_000000000000"}}),
    ] {
        let raw = body.to_string();
        let signature = kaleyra_client::webhook::signature_header(
            SIM_API_KEY,
            Utc::now().timestamp(),
            raw.as_bytes(),
        );
        let response = app
            .http
            .post(app.url("/webhooks/kaleyra"))
            .header("bandyer-signature", signature)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new(), "nothing done");
    assert!(link(&app, &id).await.is_string(), "the room is untouched");
}

/// The largest body the route takes (spec §10).
const LIMIT: usize = 64 * 1024;

/// A signed envelope of `event` about `room`, padded with JSON whitespace to `size` bytes.
fn padded_event(event: &str, room: &str, size: usize) -> (String, String) {
    let mut raw = json!({"event": event, "event_version": "1.0", "namespace": "room",
                         "timestamp": 1, "data": {"room_id": room}})
    .to_string();
    raw.push_str(&" ".repeat(size - raw.len()));
    let signature = kaleyra_client::webhook::signature_header(
        SIM_API_KEY,
        Utc::now().timestamp(),
        raw.as_bytes(),
    );
    (raw, signature)
}

fn head(signature: Option<&str>, content_length: usize) -> String {
    let signature = signature
        .map(|s| format!("bandyer-signature: {s}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /webhooks/kaleyra HTTP/1.1\r\nhost: telecons\r\ncontent-type: application/json\r\n\
         {signature}content-length: {content_length}\r\nconnection: close"
    )
}

async fn a_body_over_64_kib_is_413_and_left_unread(db: TestDatabase) {
    let (app, id, room) = app_with_room(db).await;
    app.sim.clear_requests();
    // Signed as Kaleyra would, but 65 KiB, sent without a length (chunked): reading stops
    // past 64 KiB. One byte over is sent, the rest held: a client still sending when the
    // service answers and closes could see its connection reset instead of the 413.
    let (raw, signature) = padded_event("on_room_deleted", &room, 65 * 1024);
    let chunked =
        head(Some(&signature), 0).replace("content-length: 0", "transfer-encoding: chunked");
    let mut start = format!("{:x}\r\n", raw.len()).into_bytes();
    start.extend_from_slice(&raw.as_bytes()[..=LIMIT]);
    let mut held = HeldRequest::send(&app.base_url, &chunked, &start).await;
    let answer = held.answer().await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(answer.json()["statusCode"], 413);
    // Declared that large: refused before a byte of it arrives.
    let mut held = HeldRequest::send(&app.base_url, &head(Some(&signature), 65 * 1024), b"").await;
    let answer = held.answer().await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(answer.json()["statusCode"], 413);
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new(), "nothing done");
    assert_eq!(
        app.stored(&id).await.room_id.as_deref(),
        Some(room.as_str())
    );
    // 64 KiB is still taken.
    let (raw, signature) = padded_event("on_call_started", &room, LIMIT);
    let response = app
        .http
        .post(app.url("/webhooks/kaleyra"))
        .header("bandyer-signature", signature)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

async fn a_missing_malformed_or_stale_header_is_401_before_the_body_is_read(db: TestDatabase) {
    let (app, id, room) = app_with_room(db).await;
    app.sim.clear_requests();
    let (_, stale) = padded_event("on_room_deleted", &room, 1000);
    let stale = stale.replacen(
        &format!("t={}", Utc::now().timestamp()),
        &format!("t={}", Utc::now().timestamp() - 3600),
        1,
    );
    let many = format!(
        "t={},{}",
        Utc::now().timestamp(),
        vec![format!("v0={}", "0".repeat(64)); 58].join(",")
    );
    for (signature, what) in [
        (None, "missing"),
        (Some("garbage"), "malformed"),
        (Some("t=1,v0=00"), "malformed"),
        (Some(stale.as_str()), "stale"),
    ] {
        // The body is announced and never sent.
        let mut held = HeldRequest::send(&app.base_url, &head(signature, 1000), b"{").await;
        let answer = held.answer().await;
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
        assert_eq!(answer.json()["statusCode"], 401, "{what}");
    }
    // A well-formed, fresh header needs the body: with it, a wrong signature is a 401 too,
    // however many entries it holds.
    let (raw, _) = padded_event("on_room_deleted", &room, 1000);
    let mut held = HeldRequest::send(&app.base_url, &head(Some(&many), 1000), raw.as_bytes()).await;
    assert_eq!(held.answer().await.status, 401);
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new(), "nothing done");
    assert_eq!(
        app.stored(&id).await.room_id.as_deref(),
        Some(room.as_str())
    );
}

/// What a webhook asks cannot be stored now (the store refuses the teleconsultation's
/// change): 503, so that Kaleyra sends it again, and the answer names none of the service's
/// internals (spec §6: the reason is logged). Sent again once the store takes it, it is done.
async fn a_webhook_storage_cannot_take_now_is_503_naming_no_internals_then_taken_when_sent_again(
    db: TestDatabase,
) {
    let (app, id, room) = app_with_room(db).await;
    let before = link(&app, &id).await;
    app.db
        .run_sql(
            "CREATE TRIGGER refuse_changes BEFORE UPDATE ON teleconsultations \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            "CREATE FUNCTION refuse_changes() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
             CREATE TRIGGER refuse_changes BEFORE UPDATE ON teleconsultations \
             FOR EACH ROW EXECUTE FUNCTION refuse_changes();",
        )
        .await;
    let delivery = app
        .sim
        .delete_room_from_console(&room)
        .await
        .unwrap()
        .expect("a webhook was sent");
    assert_eq!(delivery.status, Some(503), "{delivery:?}");
    // Sent again as Kaleyra would (the same body and signature), to read the answer.
    let send_again = || {
        app.http
            .post(app.url("/webhooks/kaleyra"))
            .header("content-type", "application/json")
            .header(
                "bandyer-signature",
                delivery.signature.clone().expect("signed"),
            )
            .body(delivery.body.clone())
            .send()
    };
    let answer = send_again().await.unwrap();
    assert_eq!(answer.status(), 503);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        json!({
            "statusCode": 503,
            "error": "Service Unavailable",
            "message": "the webhook could not be acted on now: the service logged why; send it again",
        })
    );
    assert_eq!(link(&app, &id).await, before, "nothing was done");

    app.db
        .run_sql(
            "DROP TRIGGER refuse_changes;",
            "DROP TRIGGER refuse_changes ON teleconsultations;",
        )
        .await;
    assert_eq!(send_again().await.unwrap().status(), 204);
    let after = link(&app, &id).await;
    assert!(after.is_string() && after != before, "{after}");
}
