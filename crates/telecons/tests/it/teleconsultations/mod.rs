//! Black-box tests of the teleconsultation lifecycle API (spec §2, §3, §4.1–§4.6, §6, §7),
//! written from the specification and the original's documentation, against the real app,
//! the Kaleyra simulator and a fresh database on SQLite and PostgreSQL.
//!
//! Conventions: the test clock starts at 2030-01-01T10:00:00Z and bookings start a day later
//! ([`START`]); every Kaleyra effect is checked on the simulator (its request log, rooms and
//! users); whole response bodies are compared, generated values by shape.

mod create;
mod delete;
mod errors;
mod get;
mod participants;
mod patch;
mod seed_examples;
mod uploads;

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use kaleyra_sim::SimRoom;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{SIM_API_KEY, TestApp, test_epoch};

/// The start of the bookings the tests make: a day after the test clock's start.
pub const START: &str = "2030-01-02T10:00:00.000Z";

/// [`START`] as an instant.
pub fn start() -> DateTime<Utc> {
    test_epoch() + Duration::days(1)
}

/// An RFC 3339 instant.
pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("valid RFC 3339 instant")
        .with_timezone(&Utc)
}

pub const DOC: &str = "doc-1";
pub const PAT: &str = "pat-1";
pub const PAT2: &str = "pat-2";

/// The Kaleyra user id of an external id.
pub fn kid(external_id: &str) -> String {
    kaleyra_client::kaleyra_user_id(external_id)
}

/// The full name the tests give to `id`.
pub fn name_of(id: &str) -> String {
    format!("Name Of {id}")
}

/// A participant entry in the object format, with groups, full name and language.
pub fn person(id: &str, group: &str) -> Value {
    json!({"userId": id, "groups": [group], "fullName": name_of(id), "language": "it"})
}

pub fn doctor(id: &str) -> Value {
    person(id, "doctor")
}

pub fn patient(id: &str) -> Value {
    person(id, "patient")
}

/// A POST body: `number` expected participants, the given entries, [`START`], one hour.
pub fn booking(number: usize, data: Vec<Value>) -> Value {
    json!({
        "participants": {"number": number, "data": data},
        "start_date": START,
        "duration_in_seconds": 3600
    })
}

/// A complete booking of a doctor ([`DOC`]) and a patient ([`PAT`]).
pub fn pair() -> Value {
    booking(2, vec![doctor(DOC), patient(PAT)])
}

/// The identity header of the caller `id`.
pub fn caller(id: &str) -> [(&'static str, &str); 1] {
    [("miauserid", id)]
}

// --- requests -----------------------------------------------------------------------------------

pub async fn post_tc(app: &TestApp, body: Value) -> (u16, Value) {
    app.send(Method::POST, "/teleconsultation", &[], Some(body))
        .await
}

/// POSTs `body`, asserts `201 {"roomId": <24 lowercase hex>}` exactly, returns the id.
pub async fn create_tc(app: &TestApp, body: Value) -> String {
    let (status, answer) = post_tc(app, body).await;
    assert_eq!(status, 201, "POST /teleconsultation: {answer}");
    let object = answer.as_object().expect("a JSON object");
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        vec!["roomId"],
        "exactly the documented keys: {answer}"
    );
    let id = object["roomId"].as_str().expect("roomId is a string");
    assert_room_id_shape(id);
    id.to_owned()
}

#[track_caller]
pub fn assert_room_id_shape(id: &str) {
    assert!(
        id.len() == 24 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "roomId must be 24 lowercase hex characters, got {id:?}"
    );
}

pub async fn patch_tc(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    app.send(
        Method::PATCH,
        &format!("/teleconsultation/{id}"),
        &[],
        Some(body),
    )
    .await
}

pub async fn add_participant(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    app.send(
        Method::POST,
        &format!("/teleconsultation/{id}/participants/data"),
        &[],
        Some(body),
    )
    .await
}

/// GET `/teleconsultation/{id}{query}` as `who` (no identity header when None).
pub async fn get_tc(app: &TestApp, id: &str, who: Option<&str>, query: &str) -> (u16, Value) {
    let path = format!("/teleconsultation/{id}{query}");
    match who {
        Some(who) => app.get(&path, &caller(who)).await,
        None => app.get(&path, &[]).await,
    }
}

pub async fn delete_tc(app: &TestApp, id: &str) -> (u16, Value) {
    app.send(
        Method::DELETE,
        &format!("/teleconsultation/{id}"),
        &[],
        None,
    )
    .await
}

pub async fn delete_uploads(app: &TestApp, id: &str, who: Option<&str>) -> (u16, Value) {
    let path = format!("/teleconsultation/{id}/uploads");
    match who {
        Some(who) => app.send(Method::DELETE, &path, &caller(who), None).await,
        None => app.send(Method::DELETE, &path, &[], None).await,
    }
}

// --- expected errors ----------------------------------------------------------------------------

/// A documented error: `error` is the documented string and `message` repeats it.
pub fn documented(status: u16, text: &str) -> Value {
    json!({"statusCode": status, "error": text, "message": text})
}

pub fn not_found_on_crud(id: &str) -> Value {
    documented(404, &format!("Room with id {id} not found on CRUD"))
}

pub fn unauthorized() -> Value {
    documented(401, "Unauthorized user")
}

pub const NO_PLUS_POST: &str = "Failed POST /teleconsultation: no plus user in room";
pub const NO_PLUS_PATCH: &str = "Failed PATCH /teleconsultation: no plus user in room";

pub fn no_plus_participants(id: &str) -> String {
    format!("Failed POST /teleconsultation/{id}/participants/data: no plus user in room")
}

/// An undocumented error: exact status, `error` the reason phrase, `statusCode` the status,
/// no other keys, and a `message` containing each of `words`.
#[track_caller]
pub fn assert_error(answer: &(u16, Value), status: u16, reason: &str, words: &[&str]) {
    let (got, body) = answer;
    assert_eq!(*got, status, "status; body: {body}");
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("error body must be a JSON object, got {body}"));
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["error", "message", "statusCode"]),
        "error body keys: {body}"
    );
    assert_eq!(body["statusCode"], json!(status), "statusCode: {body}");
    assert_eq!(body["error"], json!(reason), "error: {body}");
    let message = body["message"].as_str().expect("message is a string");
    for word in words {
        assert!(
            message.contains(word),
            "message should mention {word:?}: {message:?}"
        );
    }
}

#[track_caller]
pub fn assert_bad_request(answer: &(u16, Value), words: &[&str]) {
    assert_error(answer, 400, "Bad Request", words);
}

/// The 404 of the routes other than GET: the plain error shape naming the id (the
/// documented `Room with id … not found on CRUD` string belongs to GET).
#[track_caller]
pub fn assert_unknown_id(answer: &(u16, Value), id: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 404, "{body}");
    assert_eq!(body["statusCode"], 404, "{body}");
    assert_eq!(body["error"], "Not Found", "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains(id), "the message names the id: {body}");
}

// --- the simulator ------------------------------------------------------------------------------

/// The only room on the simulator.
#[track_caller]
pub fn only_room(app: &TestApp) -> SimRoom {
    let rooms = app.sim.rooms();
    assert_eq!(rooms.len(), 1, "exactly one room on Kaleyra: {rooms:#?}");
    rooms.into_iter().next().unwrap()
}

/// (Kaleyra user id, is_admin) of each participant of `room`, in order.
pub fn members(room: &SimRoom) -> Vec<(String, bool)> {
    room.participants
        .iter()
        .map(|p| (p.user_id.clone(), p.is_admin))
        .collect()
}

/// The link the simulator gave `external_id` in `room`.
#[track_caller]
pub fn link_of(room: &SimRoom, external_id: &str) -> String {
    let id = kid(external_id);
    room.participants
        .iter()
        .find(|p| p.user_id == id)
        .unwrap_or_else(|| panic!("{external_id} is not in room {}", room.id))
        .link
        .clone()
}

/// The ten `details` keys of §4.4, as Kaleyra reports `room`.
pub fn details_of(room: &SimRoom) -> Value {
    let mut value = serde_json::to_value(kaleyra_sim::wire::Room::from(room)).unwrap();
    let object = value.as_object_mut().unwrap();
    object.remove("id");
    object.remove("participants");
    assert_eq!(object.len(), 10);
    value
}

/// The ids of the users created on Kaleyra (`POST /v2/users` bodies), in order.
pub fn user_creations(app: &TestApp) -> Vec<String> {
    app.sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/users")
        .map(|r| {
            r.body
                .and_then(|b| b["id"].as_str().map(str::to_owned))
                .unwrap_or_default()
        })
        .collect()
}

/// The bodies of the `POST /v2/rooms` calls.
pub fn room_creations(app: &TestApp) -> Vec<Value> {
    app.sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/rooms")
        .map(|r| r.body.unwrap_or(Value::Null))
        .collect()
}

/// The Kaleyra calls that touch rooms (create, delete, replace), ignoring reads.
pub fn room_writes(app: &TestApp) -> Vec<String> {
    app.kaleyra_calls()
        .into_iter()
        .filter(|c| c.starts_with("POST /v2/rooms") || c.starts_with("DELETE /v2/rooms"))
        .collect()
}

/// The Kaleyra calls other than room reads (`GET /v2/rooms/{id}`, which GET makes for details).
pub fn writes(app: &TestApp) -> Vec<String> {
    app.kaleyra_calls()
        .into_iter()
        .filter(|c| !c.starts_with("GET "))
        .collect()
}

/// Polls `condition` for up to 5 s (work Kaleyra may finish "shortly after" the answer).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..100 {
        if condition() {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Whether the simulator still has a room with this id.
pub fn room_exists(app: &TestApp, room_id: &str) -> bool {
    app.sim.rooms().iter().any(|r| r.id == room_id)
}

/// A direct call to the simulator's Kaleyra API (recorded in its log like the app's calls).
pub async fn sim_call(app: &TestApp, method: Method, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", app.sim.base_url()))
        .header("apikey", SIM_API_KEY)
        .send()
        .await
        .expect("simulator reachable");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Writes a service configuration file (§3) and returns it (keep it alive).
pub fn config_file(config: Value) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), config.to_string()).expect("write config");
    file
}

/// A link split into the part before `?` and its set of query parameters.
pub fn split_link(link: &str) -> (String, BTreeSet<String>) {
    match link.split_once('?') {
        Some((base, query)) => (
            base.to_owned(),
            query.split('&').map(str::to_owned).collect(),
        ),
        None => (link.to_owned(), BTreeSet::new()),
    }
}

/// Asserts `link` is `base` with exactly the query parameters `params` (any order).
#[track_caller]
pub fn assert_link(link: &Value, base: &str, params: &[&str]) {
    let link = link
        .as_str()
        .unwrap_or_else(|| panic!("accessLinkURL should be a link, got {link}"));
    let (got_base, got_params) = split_link(link);
    assert_eq!(got_base, base, "link base: {link}");
    let expected: BTreeSet<String> = params.iter().map(|p| (*p).to_owned()).collect();
    assert_eq!(got_params, expected, "link options: {link}");
}

/// The GET body's `participantsBandyerCall` for these external ids, in order.
pub fn call_list(ids: &[&str]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| json!({"bandyerUserId": kid(id), "fullName": name_of(id)}))
            .collect(),
    )
}
