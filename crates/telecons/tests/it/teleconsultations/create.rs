//! `POST /teleconsultation` (spec §2, §4.1): validation, roles, Kaleyra users and rooms.

use std::collections::BTreeSet;

use kaleyra_sim::{Fault, SimRoomParticipant};
use serde_json::{Value, json};

use super::*;
use crate::support::{TestApp, TestDatabase};

crate::on_both_backends!(
    complete_booking_creates_users_then_room,
    room_ids_are_distinct_lowercase_hex,
    ids_of_one_second_share_nothing_but_their_time,
    incomplete_booking_creates_users_but_no_room,
    incomplete_booking_without_plus_user_is_accepted,
    complete_booking_without_plus_user_is_refused_and_nothing_is_stored,
    aliases_user_external_id_and_group_are_accepted,
    plus_wins_for_a_user_in_groups_of_both_roles,
    user_in_no_configured_group_is_refused_naming_the_user,
    same_user_twice_is_refused_naming_the_user,
    groups_and_full_name_are_required_without_a_directory,
    participants_as_ids_need_auth_service,
    required_fields_are_named,
    exactly_one_of_end_date_or_duration,
    duration_must_be_between_five_minutes_and_a_day,
    end_date_must_follow_start_date,
    number_must_be_2_to_25_and_not_below_the_data,
    any_start_is_accepted,
    known_users_are_not_created_again,
    known_basic_user_made_plus_is_upgraded_before_the_room,
    plus_user_stays_plus_and_is_admin_follows_the_booking,
    custom_privileges_decide_roles_and_tools,
    limited_durations_reach_the_room,
    live_and_recording_settings_reach_the_room,
    room_description_holds_nothing_personal,
    kaleyra_failure_still_stores_the_booking,
    concurrent_bookings_of_new_users_create_each_user_once,
);

/// The tools a participant has on (`None` = all tools on).
fn tools_on(p: &SimRoomParticipant) -> Option<BTreeSet<String>> {
    p.tools.as_ref().map(|tools| {
        tools
            .iter()
            .filter(|(_, on)| **on)
            .map(|(name, _)| name.clone())
            .collect()
    })
}

fn set(names: &[&str]) -> Option<BTreeSet<String>> {
    Some(names.iter().map(|n| (*n).to_owned()).collect())
}

/// A refused POST: the answer, and not a single Kaleyra call.
#[track_caller]
fn assert_refused_without_kaleyra(app: &TestApp, answer: &(u16, Value), words: &[&str]) {
    assert_bad_request(answer, words);
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new(), "no Kaleyra call");
}

async fn complete_booking_creates_users_then_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    create_tc(&app, pair()).await;

    assert_eq!(
        app.kaleyra_calls(),
        ["POST /v2/users", "POST /v2/users", "POST /v2/rooms"],
        "users first, then the room"
    );
    assert_eq!(user_creations(&app), [kid(DOC), kid(PAT)]);
    let roles: Vec<(String, String)> = app
        .sim
        .users()
        .into_iter()
        .map(|u| (u.id, u.role))
        .collect();
    let mut expected = vec![
        (kid(DOC), "plus".to_owned()),
        (kid(PAT), "basic".to_owned()),
    ];
    expected.sort();
    assert_eq!(roles, expected, "doctor → plus, patient → basic");

    let room = only_room(&app);
    assert_eq!(
        members(&room),
        [(kid(DOC), true), (kid(PAT), false)],
        "participants in the given order, is_admin = plus"
    );
    assert!(
        room.participants.iter().all(|p| p.tools.is_none()),
        "default privileges: all tools on, tools omitted: {room:#?}"
    );
    assert_eq!(room.duration_in_seconds, 0, "unlimited by default");
    assert!(room.live, "LIVE_TELECONSULTATION defaults to true");
    assert_eq!(room.recording, "none");
    assert_eq!(room.call_type, "audio_video");

    let request = &room_creations(&app)[0];
    assert!(
        request.get("duration").is_none_or(Value::is_null),
        "no duration when unlimited: {request}"
    );
    for p in request["participants"].as_array().unwrap() {
        assert!(p.get("tools").is_none_or(Value::is_null), "{request}");
    }
}

async fn room_ids_are_distinct_lowercase_hex(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        ids.insert(create_tc(&app, pair()).await);
        app.clock.advance(chrono::Duration::seconds(2));
    }
    assert_eq!(ids.len(), 3, "{ids:?}");
}

/// A known id tells nothing about its neighbours (spec §2 asks for ObjectId-shaped,
/// time-ordered ids; these carry 64 random bits besides the time).
async fn ids_of_one_second_share_nothing_but_their_time(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let first = create_tc(&app, booking(3, vec![doctor(DOC)])).await;
    let second = create_tc(&app, booking(3, vec![doctor(DOC)])).await;
    assert_eq!(first[..8], second[..8], "the same second");
    let differing = first[8..]
        .bytes()
        .zip(second[8..].bytes())
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differing >= 8,
        "{first} and {second}: the part after the time is guessable"
    );
    assert_ne!(first[8..18], second[8..18], "no per-process part");
}

async fn incomplete_booking_creates_users_but_no_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    create_tc(&app, booking(3, vec![doctor(DOC), patient(PAT)])).await;
    assert_eq!(app.kaleyra_calls(), ["POST /v2/users", "POST /v2/users"]);
    assert_eq!(user_creations(&app), [kid(DOC), kid(PAT)]);
    assert_eq!(app.sim.users().len(), 2);
    assert!(app.sim.rooms().is_empty());
}

async fn incomplete_booking_without_plus_user_is_accepted(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    create_tc(&app, booking(3, vec![patient(PAT), patient(PAT2)])).await;
    assert_eq!(user_creations(&app), [kid(PAT), kid(PAT2)]);
    assert!(app.sim.rooms().is_empty());
}

async fn complete_booking_without_plus_user_is_refused_and_nothing_is_stored(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let answer = post_tc(&app, booking(2, vec![patient(PAT), patient(PAT2)])).await;
    assert_eq!(answer, (400, documented(400, NO_PLUS_POST)));
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new(), "no Kaleyra call");
    assert!(app.sim.users().is_empty());

    // Nothing was remembered either: the patients are new users next time.
    create_tc(&app, booking(3, vec![patient(PAT), doctor(DOC)])).await;
    assert_eq!(user_creations(&app), [kid(PAT), kid(DOC)]);
}

async fn aliases_user_external_id_and_group_are_accepted(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(
        &app,
        json!({
            "participants": {"number": 2, "data": [
                {"userExternalId": DOC, "group": "doctor", "fullName": name_of(DOC), "language": "it"},
                {"userId": PAT, "groups": ["patient"], "fullName": name_of(PAT)}
            ]},
            "start_date": START,
            "end_date": "2030-01-02T11:00:00.000Z"
        }),
    )
    .await;
    let room = only_room(&app);
    assert_eq!(members(&room), [(kid(DOC), true), (kid(PAT), false)]);

    app.clock.set(start());
    let (status, body) = get_tc(&app, &id, Some(DOC), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["bandyerUserId"], json!(kid(DOC)));
    assert_eq!(body["participantsBandyerCall"], call_list(&[DOC, PAT]));
}

async fn plus_wins_for_a_user_in_groups_of_both_roles(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let both = json!({"userId": DOC, "groups": ["patient", "doctor"], "fullName": name_of(DOC)});
    create_tc(&app, booking(2, vec![patient(PAT), both])).await;
    let room = only_room(&app);
    assert_eq!(members(&room), [(kid(PAT), false), (kid(DOC), true)]);
    let user = app.sim.users().into_iter().find(|u| u.id == kid(DOC));
    assert_eq!(user.unwrap().role, "plus");
}

async fn user_in_no_configured_group_is_refused_naming_the_user(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let nurse = person("nurse-7", "nurse");
    let answer = post_tc(&app, booking(3, vec![doctor(DOC), nurse])).await;
    assert_refused_without_kaleyra(&app, &answer, &["nurse-7"]);

    let no_groups = json!({"userId": "nurse-8", "groups": [], "fullName": "N"});
    let answer = post_tc(&app, booking(3, vec![doctor(DOC), no_groups])).await;
    assert_refused_without_kaleyra(&app, &answer, &["nurse-8"]);
}

async fn same_user_twice_is_refused_naming_the_user(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let answer = post_tc(
        &app,
        booking(3, vec![doctor(DOC), patient(PAT), patient(PAT)]),
    )
    .await;
    assert_refused_without_kaleyra(&app, &answer, &[PAT]);

    // The two spellings of the id field name the same user.
    let again = json!({"userExternalId": DOC, "groups": ["doctor"], "fullName": "Again"});
    let answer = post_tc(&app, booking(3, vec![doctor(DOC), again])).await;
    assert_refused_without_kaleyra(&app, &answer, &[DOC]);
}

async fn groups_and_full_name_are_required_without_a_directory(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let no_groups = json!({"userId": PAT, "fullName": name_of(PAT)});
    let answer = post_tc(&app, booking(2, vec![doctor(DOC), no_groups])).await;
    assert_refused_without_kaleyra(&app, &answer, &["groups"]);

    let no_name = json!({"userId": PAT, "groups": ["patient"]});
    let answer = post_tc(&app, booking(2, vec![doctor(DOC), no_name])).await;
    assert_refused_without_kaleyra(&app, &answer, &["fullName"]);

    let no_id = json!({"groups": ["patient"], "fullName": "Nobody"});
    let answer = post_tc(&app, booking(2, vec![doctor(DOC), no_id])).await;
    assert_refused_without_kaleyra(&app, &answer, &["userId"]);
}

async fn participants_as_ids_need_auth_service(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let answer = post_tc(
        &app,
        json!({"participants": [DOC, PAT], "start_date": START, "duration_in_seconds": 3600}),
    )
    .await;
    assert_refused_without_kaleyra(&app, &answer, &["AUTH_SERVICE"]);
}

async fn required_fields_are_named(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let answer = post_tc(
        &app,
        json!({"start_date": START, "duration_in_seconds": 3600}),
    )
    .await;
    assert_refused_without_kaleyra(&app, &answer, &["participants"]);

    let mut body = pair();
    body.as_object_mut().unwrap().remove("start_date");
    let answer = post_tc(&app, body).await;
    assert_refused_without_kaleyra(&app, &answer, &["start_date"]);

    let answer = post_tc(
        &app,
        json!({"participants": {"data": [doctor(DOC)]}, "start_date": START, "duration_in_seconds": 3600}),
    )
    .await;
    assert_refused_without_kaleyra(&app, &answer, &["number"]);

    let answer = post_tc(
        &app,
        json!({"participants": {"number": 2}, "start_date": START, "duration_in_seconds": 3600}),
    )
    .await;
    assert_refused_without_kaleyra(&app, &answer, &["data"]);
}

async fn exactly_one_of_end_date_or_duration(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let mut neither = pair();
    neither
        .as_object_mut()
        .unwrap()
        .remove("duration_in_seconds");
    let answer = post_tc(&app, neither).await;
    assert_refused_without_kaleyra(&app, &answer, &["end_date", "duration_in_seconds"]);

    let mut both = pair();
    both["end_date"] = json!("2030-01-02T11:00:00.000Z");
    let answer = post_tc(&app, both).await;
    assert_refused_without_kaleyra(&app, &answer, &["end_date", "duration_in_seconds"]);

    let mut with_end = pair();
    with_end
        .as_object_mut()
        .unwrap()
        .remove("duration_in_seconds");
    with_end["end_date"] = json!("2030-01-02T11:00:00.000Z");
    create_tc(&app, with_end).await;
}

async fn duration_must_be_between_five_minutes_and_a_day(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    for seconds in [299, 86_401, 0, -300] {
        let mut body = pair();
        body["duration_in_seconds"] = json!(seconds);
        let answer = post_tc(&app, body).await;
        assert_refused_without_kaleyra(&app, &answer, &["duration"]);
    }
    for end in ["2030-01-02T10:04:59.999Z", "2030-01-03T10:00:00.001Z"] {
        let mut body = pair();
        body.as_object_mut().unwrap().remove("duration_in_seconds");
        body["end_date"] = json!(end);
        let answer = post_tc(&app, body).await;
        assert_eq!(answer.0, 400, "end_date {end}: {}", answer.1);
        assert_refused_without_kaleyra(&app, &answer, &[]);
    }

    for seconds in [300, 86_400] {
        let mut body = pair();
        body["duration_in_seconds"] = json!(seconds);
        create_tc(&app, body).await;
    }
    for end in ["2030-01-02T10:05:00.000Z", "2030-01-03T10:00:00.000Z"] {
        let mut body = pair();
        body.as_object_mut().unwrap().remove("duration_in_seconds");
        body["end_date"] = json!(end);
        create_tc(&app, body).await;
    }
}

async fn end_date_must_follow_start_date(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    for end in ["2030-01-02T09:00:00.000Z", START] {
        let mut body = pair();
        body.as_object_mut().unwrap().remove("duration_in_seconds");
        body["end_date"] = json!(end);
        let answer = post_tc(&app, body).await;
        assert_refused_without_kaleyra(&app, &answer, &["end_date"]);
    }
}

async fn number_must_be_2_to_25_and_not_below_the_data(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let answer = post_tc(&app, booking(1, vec![doctor(DOC)])).await;
    assert_refused_without_kaleyra(&app, &answer, &["number"]);
    let answer = post_tc(&app, booking(26, vec![doctor(DOC)])).await;
    assert_refused_without_kaleyra(&app, &answer, &["number"]);
    let answer = post_tc(&app, booking(0, vec![])).await;
    assert_refused_without_kaleyra(&app, &answer, &["number"]);
    let answer = post_tc(
        &app,
        booking(2, vec![doctor(DOC), patient(PAT), patient(PAT2)]),
    )
    .await;
    assert_refused_without_kaleyra(&app, &answer, &["number"]);

    // The bounds themselves are fine, and an empty list is a list still to be completed.
    create_tc(&app, booking(25, vec![doctor(DOC)])).await;
    create_tc(&app, booking(2, vec![])).await;
    assert!(app.sim.rooms().is_empty());

    let many: Vec<Value> = std::iter::once(doctor(DOC))
        .chain((1..25).map(|i| patient(&format!("p{i}"))))
        .collect();
    create_tc(&app, booking(25, many)).await;
    assert_eq!(only_room(&app).participants.len(), 25);
}

async fn any_start_is_accepted(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("IMMUTABLE_PERIOD_MS", "600000")]).await;
    for start in [
        "2029-06-01T10:00:00.000Z", // in the past
        "2030-01-01T10:05:00.000Z", // inside the immutable period
        "2030-01-02T12:00:00+02:00",
    ] {
        let mut body = pair();
        body["start_date"] = json!(start);
        create_tc(&app, body).await;
    }
    assert_eq!(app.sim.rooms().len(), 3);
}

async fn known_users_are_not_created_again(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    create_tc(&app, pair()).await;
    app.sim.clear_requests();

    create_tc(&app, pair()).await;
    assert_eq!(
        app.kaleyra_calls(),
        ["POST /v2/rooms"],
        "known external ids never cause another user creation"
    );
    assert_eq!(app.sim.rooms().len(), 2);

    // A new one among known ones: only it is created.
    app.sim.clear_requests();
    create_tc(
        &app,
        booking(3, vec![doctor(DOC), patient(PAT), patient(PAT2)]),
    )
    .await;
    assert_eq!(user_creations(&app), [kid(PAT2)]);
}

async fn known_basic_user_made_plus_is_upgraded_before_the_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    create_tc(&app, booking(3, vec![patient("u1")])).await;
    assert_eq!(app.sim.users()[0].role, "basic");
    app.sim.clear_requests();

    create_tc(&app, booking(2, vec![doctor("u1"), patient("u2")])).await;
    let requests = app.sim.requests();
    let upgrade = requests
        .iter()
        .position(|r| r.method == "PUT" && r.path == format!("/v2/users/{}", kid("u1")))
        .unwrap_or_else(|| panic!("no PUT of u1: {:?}", app.kaleyra_calls()));
    assert_eq!(requests[upgrade].body, Some(json!({"role": "plus"})));
    let room = requests
        .iter()
        .position(|r| r.method == "POST" && r.path == "/v2/rooms")
        .expect("a room");
    assert!(upgrade < room, "the upgrade comes before the room");
    assert_eq!(user_creations(&app), [kid("u2")], "u1 is not created again");
    let u1 = app.sim.users().into_iter().find(|u| u.id == kid("u1"));
    assert_eq!(u1.unwrap().role, "plus");
    assert_eq!(
        members(&only_room(&app)),
        [(kid("u1"), true), (kid("u2"), false)]
    );
}

async fn plus_user_stays_plus_and_is_admin_follows_the_booking(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    create_tc(&app, pair()).await;
    app.sim.clear_requests();

    // DOC is a patient in this booking.
    create_tc(&app, booking(2, vec![doctor("doc-2"), patient(DOC)])).await;
    assert_eq!(
        app.kaleyra_calls(),
        ["POST /v2/users", "POST /v2/rooms"],
        "no change to DOC's Kaleyra user"
    );
    let doc = app.sim.users().into_iter().find(|u| u.id == kid(DOC));
    assert_eq!(doc.unwrap().role, "plus", "roles never go down");
    let rooms = app.sim.rooms();
    assert_eq!(
        members(&rooms[1]),
        [(kid("doc-2"), true), (kid(DOC), false)]
    );
}

async fn custom_privileges_decide_roles_and_tools(db: TestDatabase) {
    let config = config_file(json!({
        "privileges": {
            "basic": {"groups": ["paziente"], "tools": {"chat": true, "file_upload": true, "whiteboard": false}},
            "plus": {"groups": ["medico"], "tools": {"chat": true, "screen_sharing": true, "whiteboard": true}}
        }
    }));
    let path = config.path().to_str().unwrap().to_owned();
    let app = TestApp::spawn_with(
        db,
        &[("TELECONSULTATION_SERVICE_CONFIG_PATH", path.as_str())],
    )
    .await;

    // The built-in groups no longer exist.
    let answer = post_tc(&app, pair()).await;
    assert_refused_without_kaleyra(&app, &answer, &[DOC]);

    create_tc(
        &app,
        booking(2, vec![person("m1", "medico"), person("p1", "paziente")]),
    )
    .await;
    let room = only_room(&app);
    assert_eq!(members(&room), [(kid("m1"), true), (kid("p1"), false)]);
    assert_eq!(
        tools_on(&room.participants[0]),
        set(&["chat", "screen_sharing", "whiteboard"])
    );
    assert_eq!(
        tools_on(&room.participants[1]),
        set(&["chat", "file_upload"])
    );
}

async fn limited_durations_reach_the_room(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("UNLIMITED_TELECONSULTATION", "false")]).await;
    create_tc(&app, pair()).await;
    let mut by_end = pair();
    by_end
        .as_object_mut()
        .unwrap()
        .remove("duration_in_seconds");
    by_end["end_date"] = json!("2030-01-02T11:30:00.000Z");
    create_tc(&app, by_end).await;

    let rooms = app.sim.rooms();
    assert_eq!(rooms.len(), 2);
    assert_eq!(rooms[0].duration_in_seconds, 3600);
    assert_eq!(rooms[1].duration_in_seconds, 5400);
    let requests = room_creations(&app);
    assert_eq!(requests[0]["duration"], json!(3600));
    assert_eq!(requests[1]["duration"], json!(5400));
}

async fn live_and_recording_settings_reach_the_room(db: TestDatabase) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("LIVE_TELECONSULTATION", "false"),
            ("DEFAULT_RECORDING_TYPE", "automatic"),
        ],
    )
    .await;
    create_tc(&app, pair()).await;
    let room = only_room(&app);
    assert!(!room.live);
    assert_eq!(room.recording, "automatic");
}

async fn room_description_holds_nothing_personal(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let start = "2030-03-15T16:45:00.000Z";
    create_tc(
        &app,
        json!({
            "participants": {"number": 2, "data": [
                {"userId": "mario.rossi@example.org", "groups": ["doctor"], "fullName": "Mario Rossi", "language": "it"},
                {"userId": "giulia.bianchi@example.org", "groups": ["patient"], "fullName": "Giulia Bianchi", "language": "it"}
            ]},
            "start_date": start,
            "duration_in_seconds": 3600
        }),
    )
    .await;
    let room = only_room(&app);
    let description = room.description.clone().unwrap_or_default().to_lowercase();
    let instant = at(start);
    for forbidden in [
        "mario".to_owned(),
        "rossi".to_owned(),
        "giulia".to_owned(),
        "bianchi".to_owned(),
        "example.org".to_owned(),
        "2030-03-15".to_owned(),
        "16:45".to_owned(),
        "20300315".to_owned(),
        instant.timestamp().to_string(),
        instant.timestamp_millis().to_string(),
    ] {
        assert!(
            !description.contains(&forbidden),
            "the room description shows {forbidden:?}: {description:?}"
        );
    }
    // No request to Kaleyra carries the external ids or names at all.
    let log = serde_json::to_string(&app.sim.requests())
        .unwrap()
        .to_lowercase();
    for forbidden in ["mario", "rossi", "giulia", "bianchi", "example.org"] {
        assert!(!log.contains(forbidden), "Kaleyra saw {forbidden:?}: {log}");
    }
}

async fn kaleyra_failure_still_stores_the_booking(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    app.sim
        .add_fault(Fault::status("/v2/rooms", 500).method("POST"));
    let id = create_tc(&app, pair()).await;
    assert!(app.sim.rooms().is_empty());

    app.clock.set(start());
    let answer = get_tc(&app, &id, Some(PAT), "").await;
    assert_eq!(
        answer,
        (
            200,
            json!({
                "bandyerUserId": kid(PAT),
                "accessLinkURL": null,
                "participantsBandyerCall": call_list(&[DOC, PAT]),
                "details": null
            })
        )
    );

    // Users cannot be created either: still stored and answered as usual.
    app.sim.add_fault(Fault::status("/v2/users", 503));
    let id = create_tc(&app, booking(2, vec![doctor("doc-9"), patient("pat-9")])).await;
    let answer = get_tc(&app, &id, Some("doc-9"), "").await;
    assert_eq!(
        answer,
        (
            200,
            json!({
                "bandyerUserId": kid("doc-9"),
                "accessLinkURL": null,
                "participantsBandyerCall": call_list(&["doc-9", "pat-9"]),
                "details": null
            })
        )
    );
}

async fn concurrent_bookings_of_new_users_create_each_user_once(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let answers = futures_join(&app, 6).await;
    let mut ids = BTreeSet::new();
    for (status, body) in answers {
        assert_eq!(status, 201, "{body}");
        ids.insert(body["roomId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 6);
    let users: Vec<(String, String)> = app
        .sim
        .users()
        .into_iter()
        .map(|u| (u.id, u.role))
        .collect();
    let mut expected = vec![
        (kid(DOC), "plus".to_owned()),
        (kid(PAT), "basic".to_owned()),
    ];
    expected.sort();
    assert_eq!(users, expected);
    assert_eq!(app.sim.rooms().len(), 6);
    for room in app.sim.rooms() {
        assert_eq!(members(&room), [(kid(DOC), true), (kid(PAT), false)]);
    }
}

/// `n` identical POSTs of [`pair`] sent at once.
async fn futures_join(app: &TestApp, n: usize) -> Vec<(u16, Value)> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let http = app.http.clone();
        let url = app.url("/teleconsultation");
        tasks.spawn(async move {
            let response = http.post(url).json(&pair()).send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer.unwrap());
    }
    answers
}
