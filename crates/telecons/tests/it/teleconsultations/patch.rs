//! `PATCH /teleconsultation/:roomId` (spec §2, §4.2): partial changes, room kept, replaced,
//! created or deleted, the immutable period and the error order.

use kaleyra_sim::Fault;
use serde_json::{Value, json};

use super::*;
use crate::support::{TestApp, TestDatabase};

crate::on_both_backends!(
    start_alone_keeps_the_room,
    start_alone_keeps_the_room_and_the_duration_with_limited_durations,
    duration_change_with_limited_durations_replaces_the_room,
    duration_change_with_unlimited_durations_keeps_the_room,
    participants_change_replaces_the_room,
    same_participants_keep_the_room,
    role_change_replaces_the_room,
    making_the_list_incomplete_deletes_the_room,
    completing_the_list_creates_the_room,
    both_end_date_and_duration_are_refused,
    merged_result_is_validated_as_in_post,
    no_plus_user_is_refused_and_changes_nothing,
    unknown_malformed_or_deleted_id_is_404,
    immutable_period_refuses_changes_from_start_minus_period,
    immutable_instant_is_reported_in_utc,
    incomplete_teleconsultation_changes_inside_the_period,
    empty_patch_changes_nothing,
    error_precedence,
    kaleyra_failure_still_stores_the_change,
);

const NO_BODY: (u16, Value) = (204, Value::Null);

/// Waits until the room `old` is gone from the simulator (replaced rooms may be deleted
/// shortly after the answer).
async fn wait_deleted(app: &TestApp, old: &str) {
    eventually(&format!("room {old} is deleted"), || !room_exists(app, old)).await;
}

async fn start_alone_keeps_the_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    let room = only_room(&app);
    app.sim.clear_requests();

    let moved = "2030-01-05T10:00:00.000Z";
    assert_eq!(
        patch_tc(&app, &id, json!({"start_date": moved})).await,
        NO_BODY
    );
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new(), "no Kaleyra call");
    assert_eq!(only_room(&app), room, "the room is kept as it was");

    // The start did move: no link at the old start, the link at the new one.
    app.clock.set(start());
    let (status, body) = get_tc(&app, &id, Some(DOC), "").await;
    assert_eq!((status, &body["accessLinkURL"]), (200, &Value::Null));
    app.clock.set(at(moved));
    let (status, body) = get_tc(&app, &id, Some(DOC), "").await;
    assert_eq!(status, 200);
    assert_link(
        &body["accessLinkURL"],
        &link_of(&room, DOC),
        &["language=it"],
    );
}

async fn start_alone_keeps_the_room_and_the_duration_with_limited_durations(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("UNLIMITED_TELECONSULTATION", "false")]).await;
    let mut body = pair();
    body.as_object_mut().unwrap().remove("duration_in_seconds");
    body["end_date"] = json!("2030-01-02T11:00:00.000Z");
    let id = create_tc(&app, body).await;
    let room = only_room(&app);
    assert_eq!(room.duration_in_seconds, 3600);
    app.sim.clear_requests();

    // Past the old end: the stored duration is kept, not recomputed from the old end.
    let moved = "2030-01-02T12:00:00.000Z";
    assert_eq!(
        patch_tc(&app, &id, json!({"start_date": moved})).await,
        NO_BODY
    );
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new(), "no Kaleyra call");
    assert_eq!(only_room(&app), room);

    app.clock.set(at(moved));
    let (status, body) = get_tc(&app, &id, Some(PAT), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["details"]["durationInSeconds"], json!(3600));
    assert_link(
        &body["accessLinkURL"],
        &link_of(&room, PAT),
        &["language=it"],
    );
}

async fn duration_change_with_limited_durations_replaces_the_room(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("UNLIMITED_TELECONSULTATION", "false")]).await;
    let id = create_tc(&app, pair()).await;
    let old = only_room(&app);
    app.sim.clear_requests();

    assert_eq!(
        patch_tc(&app, &id, json!({"duration_in_seconds": 1800})).await,
        NO_BODY
    );
    wait_deleted(&app, &old.id).await;
    let new = only_room(&app);
    assert_ne!(new.id, old.id);
    assert_eq!(new.duration_in_seconds, 1800);
    assert_eq!(members(&new), members(&old));
    assert_eq!(
        room_writes(&app),
        [
            "POST /v2/rooms".to_owned(),
            format!("DELETE /v2/rooms/{}", old.id)
        ],
        "a new room, then the old one deleted"
    );
    assert_eq!(user_creations(&app), Vec::<String>::new());

    // A new end replaces the duration too (end − stored start).
    assert_eq!(
        patch_tc(&app, &id, json!({"end_date": "2030-01-02T10:45:00.000Z"})).await,
        NO_BODY
    );
    wait_deleted(&app, &new.id).await;
    assert_eq!(only_room(&app).duration_in_seconds, 2700);

    // Start and end together: the duration is end − the new start.
    let last = only_room(&app);
    assert_eq!(
        patch_tc(
            &app,
            &id,
            json!({"start_date": "2030-01-02T12:00:00.000Z", "end_date": "2030-01-02T12:20:00.000Z"})
        )
        .await,
        NO_BODY
    );
    wait_deleted(&app, &last.id).await;
    assert_eq!(only_room(&app).duration_in_seconds, 1200);
}

async fn duration_change_with_unlimited_durations_keeps_the_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    let room = only_room(&app);
    app.sim.clear_requests();

    assert_eq!(
        patch_tc(&app, &id, json!({"duration_in_seconds": 1800})).await,
        NO_BODY
    );
    assert_eq!(
        patch_tc(&app, &id, json!({"end_date": "2030-01-02T12:00:00.000Z"})).await,
        NO_BODY
    );
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new(), "no Kaleyra call");
    assert_eq!(only_room(&app), room);
}

async fn participants_change_replaces_the_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    let old = only_room(&app);
    app.sim.clear_requests();

    let answer = patch_tc(
        &app,
        &id,
        json!({"participants": {"number": 3, "data": [doctor(DOC), patient(PAT), patient(PAT2)]}}),
    )
    .await;
    assert_eq!(answer, NO_BODY);
    wait_deleted(&app, &old.id).await;
    let new = only_room(&app);
    assert_eq!(
        members(&new),
        [(kid(DOC), true), (kid(PAT), false), (kid(PAT2), false)]
    );
    assert_eq!(user_creations(&app), [kid(PAT2)]);
    let calls = app.kaleyra_calls();
    let created = calls.iter().position(|c| c == "POST /v2/rooms").unwrap();
    let user = calls.iter().position(|c| c == "POST /v2/users").unwrap();
    assert!(user < created, "{calls:?}");
    assert!(calls.contains(&format!("DELETE /v2/rooms/{}", old.id)));

    // A different patient: replaced again, the old patient is gone.
    let answer = patch_tc(
        &app,
        &id,
        json!({"participants": {"number": 2, "data": [doctor(DOC), patient("pat-3")]}}),
    )
    .await;
    assert_eq!(answer, NO_BODY);
    wait_deleted(&app, &new.id).await;
    assert_eq!(
        members(&only_room(&app)),
        [(kid(DOC), true), (kid("pat-3"), false)]
    );
    app.clock.set(start());
    assert_eq!(
        get_tc(&app, &id, Some(PAT), "").await,
        (401, unauthorized())
    );
    let (status, body) = get_tc(&app, &id, Some("pat-3"), "").await;
    assert_eq!(status, 200);
    assert_eq!(body["participantsBandyerCall"], call_list(&[DOC, "pat-3"]));
}

async fn same_participants_keep_the_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    let room = only_room(&app);
    app.sim.clear_requests();

    let answer = patch_tc(&app, &id, json!({"participants": pair()["participants"]})).await;
    assert_eq!(answer, NO_BODY);
    assert_eq!(room_writes(&app), Vec::<String>::new(), "no room change");
    assert_eq!(user_creations(&app), Vec::<String>::new());
    assert_eq!(only_room(&app), room);
}

async fn role_change_replaces_the_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    let old = only_room(&app);
    app.sim.clear_requests();

    let answer = patch_tc(
        &app,
        &id,
        json!({"participants": {"number": 2, "data": [doctor(DOC), doctor(PAT)]}}),
    )
    .await;
    assert_eq!(answer, NO_BODY);
    wait_deleted(&app, &old.id).await;
    assert_eq!(
        members(&only_room(&app)),
        [(kid(DOC), true), (kid(PAT), true)]
    );
    let requests = app.sim.requests();
    let upgrade = requests
        .iter()
        .position(|r| r.method == "PUT" && r.path == format!("/v2/users/{}", kid(PAT)))
        .unwrap_or_else(|| panic!("PAT upgraded: {:?}", app.kaleyra_calls()));
    assert_eq!(requests[upgrade].body, Some(json!({"role": "plus"})));
    let room = requests
        .iter()
        .position(|r| r.method == "POST" && r.path == "/v2/rooms")
        .unwrap();
    assert!(upgrade < room);
}

async fn making_the_list_incomplete_deletes_the_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    let old = only_room(&app);
    app.sim.clear_requests();

    let answer = patch_tc(
        &app,
        &id,
        json!({"participants": {"number": 3, "data": [doctor(DOC), patient(PAT)]}}),
    )
    .await;
    assert_eq!(answer, NO_BODY);
    wait_deleted(&app, &old.id).await;
    assert!(app.sim.rooms().is_empty());
    assert_eq!(room_writes(&app), [format!("DELETE /v2/rooms/{}", old.id)]);

    app.clock.set(start());
    assert_eq!(
        get_tc(&app, &id, Some(DOC), "").await,
        (
            200,
            json!({
                "bandyerUserId": kid(DOC),
                "accessLinkURL": null,
                "participantsBandyerCall": call_list(&[DOC, PAT]),
                "details": null
            })
        )
    );
}

async fn completing_the_list_creates_the_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(2, vec![doctor(DOC)])).await;
    assert!(app.sim.rooms().is_empty());
    app.sim.clear_requests();

    let answer = patch_tc(&app, &id, json!({"participants": pair()["participants"]})).await;
    assert_eq!(answer, NO_BODY);
    assert_eq!(
        app.kaleyra_calls(),
        ["POST /v2/users", "POST /v2/rooms"],
        "only the new user is created, then the room"
    );
    assert_eq!(user_creations(&app), [kid(PAT)]);
    assert_eq!(
        members(&only_room(&app)),
        [(kid(DOC), true), (kid(PAT), false)]
    );
}

async fn both_end_date_and_duration_are_refused(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    app.sim.clear_requests();
    let answer = patch_tc(
        &app,
        &id,
        json!({"end_date": "2030-01-02T11:00:00.000Z", "duration_in_seconds": 3600}),
    )
    .await;
    assert_bad_request(&answer, &["end_date", "duration_in_seconds"]);
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

async fn merged_result_is_validated_as_in_post(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("UNLIMITED_TELECONSULTATION", "false")]).await;
    let id = create_tc(&app, pair()).await;
    let room = only_room(&app);
    app.sim.clear_requests();

    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"duration_in_seconds": 299}), vec!["duration"]),
        (json!({"duration_in_seconds": 86_401}), vec!["duration"]),
        // Against the stored start: too short, before it.
        (json!({"end_date": "2030-01-02T10:04:00.000Z"}), vec![]),
        (
            json!({"end_date": "2030-01-02T09:00:00.000Z"}),
            vec!["end_date"],
        ),
        // Against the new start.
        (
            json!({"start_date": "2030-01-02T12:00:00.000Z", "end_date": "2030-01-02T11:00:00.000Z"}),
            vec!["end_date"],
        ),
        (
            json!({"participants": {"number": 1, "data": [doctor(DOC)]}}),
            vec!["number"],
        ),
        (
            json!({"participants": {"number": 26, "data": [doctor(DOC)]}}),
            vec!["number"],
        ),
        (
            json!({"participants": {"number": 2, "data": [doctor(DOC), patient(PAT), patient(PAT2)]}}),
            vec!["number"],
        ),
        (
            json!({"participants": {"number": 3, "data": [doctor(DOC), patient(PAT), patient(PAT)]}}),
            vec![PAT],
        ),
        (
            json!({"participants": {"number": 3, "data": [doctor(DOC), person("nurse-7", "nurse")]}}),
            vec!["nurse-7"],
        ),
        (
            json!({"participants": {"number": 3, "data": [doctor(DOC), {"userId": PAT2, "groups": ["patient"]}]}}),
            vec!["fullName"],
        ),
        (json!({"participants": [DOC, PAT]}), vec!["AUTH_SERVICE"]),
    ];
    for (body, words) in cases {
        let answer = patch_tc(&app, &id, body.clone()).await;
        assert_bad_request(&answer, &words);
        assert_eq!(app.kaleyra_calls(), Vec::<String>::new(), "{body}");
    }
    assert_eq!(only_room(&app), room, "nothing changed");
    app.clock.set(start());
    let (status, body) = get_tc(&app, &id, Some(DOC), "").await;
    assert_eq!(status, 200);
    assert_eq!(body["participantsBandyerCall"], call_list(&[DOC, PAT]));
    assert_link(
        &body["accessLinkURL"],
        &link_of(&room, DOC),
        &["language=it"],
    );
}

async fn no_plus_user_is_refused_and_changes_nothing(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    let room = only_room(&app);
    app.sim.clear_requests();

    let no_plus = json!({"number": 2, "data": [patient(PAT), patient(PAT2)]});
    let answer = patch_tc(&app, &id, json!({"participants": no_plus})).await;
    assert_eq!(answer, (400, documented(400, NO_PLUS_PATCH)));
    // With another change: nothing of it is applied either.
    let answer = patch_tc(
        &app,
        &id,
        json!({"participants": no_plus, "start_date": "2030-02-01T10:00:00.000Z"}),
    )
    .await;
    assert_eq!(answer, (400, documented(400, NO_PLUS_PATCH)));
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new(), "no Kaleyra call");
    assert_eq!(only_room(&app), room);

    app.clock.set(start());
    let (status, body) = get_tc(&app, &id, Some(DOC), "").await;
    assert_eq!(status, 200);
    assert_eq!(body["participantsBandyerCall"], call_list(&[DOC, PAT]));
    assert_link(
        &body["accessLinkURL"],
        &link_of(&room, DOC),
        &["language=it"],
    );
    assert_eq!(
        get_tc(&app, &id, Some(PAT2), "").await,
        (401, unauthorized())
    );
}

async fn unknown_malformed_or_deleted_id_is_404(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let change = json!({"duration_in_seconds": 1800});
    for id in ["0123456789abcdef01234567", "room_xyz", "ZZZ"] {
        assert_unknown_id(&patch_tc(&app, id, change.clone()).await, id);
    }
    let id = create_tc(&app, pair()).await;
    assert_eq!(delete_tc(&app, &id).await, NO_BODY);
    app.sim.clear_requests();
    assert_unknown_id(&patch_tc(&app, &id, change).await, &id);
    assert_eq!(writes(&app), Vec::<String>::new());
}

async fn immutable_period_refuses_changes_from_start_minus_period(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("IMMUTABLE_PERIOD_MS", "600000")]).await;
    let id = create_tc(&app, pair()).await;
    let period_start = at("2030-01-02T09:50:00.000Z");

    app.clock
        .set(period_start - chrono::Duration::milliseconds(1));
    assert_eq!(
        patch_tc(&app, &id, json!({"duration_in_seconds": 1800})).await,
        NO_BODY,
        "allowed 1 ms before the period"
    );

    app.clock.set(period_start);
    let room = only_room(&app);
    app.sim.clear_requests();
    for body in [
        json!({"duration_in_seconds": 2400}),
        json!({"start_date": "2030-01-03T10:00:00.000Z"}),
        json!({"participants": {"number": 3, "data": [doctor(DOC), patient(PAT)]}}),
        json!({}),
    ] {
        let answer = patch_tc(&app, &id, body.clone()).await;
        assert_error(&answer, 409, "Conflict", &["2030-01-02T09:50:00.000Z"]);
    }
    let answer = add_participant(&app, &id, patient(PAT2)).await;
    assert_error(&answer, 409, "Conflict", &["2030-01-02T09:50:00.000Z"]);
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
    assert_eq!(only_room(&app), room);

    // Later still, and after the start: still refused; deleting stays allowed.
    app.clock.set(start() + chrono::Duration::hours(1));
    let answer = patch_tc(&app, &id, json!({"duration_in_seconds": 2400})).await;
    assert_error(&answer, 409, "Conflict", &["2030-01-02T09:50:00.000Z"]);
    assert_eq!(delete_tc(&app, &id).await, NO_BODY);
}

async fn immutable_instant_is_reported_in_utc(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("IMMUTABLE_PERIOD_MS", "600000")]).await;
    let mut body = pair();
    body["start_date"] = json!("2030-01-02T12:00:00+02:00");
    let id = create_tc(&app, body).await;
    app.clock.set(at("2030-01-02T09:50:00Z"));
    let answer = patch_tc(&app, &id, json!({"duration_in_seconds": 1800})).await;
    assert_error(&answer, 409, "Conflict", &["2030-01-02T09:50:00.000Z"]);
}

async fn incomplete_teleconsultation_changes_inside_the_period(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("IMMUTABLE_PERIOD_MS", "600000")]).await;
    let id = create_tc(&app, booking(3, vec![doctor(DOC), patient(PAT)])).await;
    app.clock.set(start());

    assert_eq!(
        patch_tc(&app, &id, json!({"duration_in_seconds": 1800})).await,
        NO_BODY
    );
    assert_eq!(
        add_participant(&app, &id, patient(PAT2)).await,
        (201, Value::Null)
    );
    assert_eq!(
        members(&only_room(&app)),
        [(kid(DOC), true), (kid(PAT), false), (kid(PAT2), false)]
    );
    // Complete now, and inside the period: refused from now on.
    let answer = patch_tc(&app, &id, json!({"duration_in_seconds": 2400})).await;
    assert_error(&answer, 409, "Conflict", &["2030-01-02T09:50:00.000Z"]);
}

async fn empty_patch_changes_nothing(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    let room = only_room(&app);
    app.sim.clear_requests();
    assert_eq!(patch_tc(&app, &id, json!({})).await, NO_BODY);
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
    assert_eq!(only_room(&app), room);
}

async fn error_precedence(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("IMMUTABLE_PERIOD_MS", "600000")]).await;
    // 404 before 400.
    let unknown = "0123456789abcdef01234567";
    let bad = json!({"duration_in_seconds": "abc"});
    assert_unknown_id(&patch_tc(&app, unknown, bad.clone()).await, unknown);
    let raw = app
        .send_raw(
            reqwest::Method::PATCH,
            &format!("/teleconsultation/{unknown}"),
            "application/json",
            "{not json",
        )
        .await;
    assert_unknown_id(&raw, unknown);

    let id = create_tc(&app, pair()).await;
    app.clock.set(start());
    app.sim.clear_requests();
    // 400 (body) before 409 (immutable).
    assert_bad_request(&patch_tc(&app, &id, bad).await, &["duration_in_seconds"]);
    let both = json!({"end_date": "2030-01-02T11:00:00.000Z", "duration_in_seconds": 3600});
    assert_bad_request(&patch_tc(&app, &id, both).await, &[]);
    // 409 (immutable) before 400 (no plus user).
    let no_plus = json!({"participants": {"number": 2, "data": [patient(PAT), patient(PAT2)]}});
    let answer = patch_tc(&app, &id, no_plus).await;
    assert_error(&answer, 409, "Conflict", &["2030-01-02T09:50:00.000Z"]);
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

async fn kaleyra_failure_still_stores_the_change(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(3, vec![doctor(DOC), patient(PAT)])).await;
    app.sim.add_fault(Fault::status("/v2/users", 503));
    app.sim
        .add_fault(Fault::status("/v2/rooms", 500).method("POST"));

    let answer = patch_tc(
        &app,
        &id,
        json!({"participants": {"number": 3, "data": [doctor(DOC), patient(PAT), patient(PAT2)]}, "duration_in_seconds": 1800}),
    )
    .await;
    assert_eq!(answer, NO_BODY);
    assert!(app.sim.rooms().is_empty());

    app.clock.set(start());
    assert_eq!(
        get_tc(&app, &id, Some(PAT2), "").await,
        (
            200,
            json!({
                "bandyerUserId": kid(PAT2),
                "accessLinkURL": null,
                "participantsBandyerCall": call_list(&[DOC, PAT, PAT2]),
                "details": null
            })
        )
    );
}
