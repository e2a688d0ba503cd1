//! `POST /teleconsultation/:roomId/participants/data` (spec §4.3).

use kaleyra_sim::Fault;
use serde_json::{Value, json};

use super::*;
use crate::support::{TestApp, TestDatabase};

crate::on_both_backends!(
    adding_creates_the_user_at_once_and_no_room_while_incomplete,
    completing_creates_the_room,
    aliases_are_accepted,
    already_complete_is_409,
    user_already_present_is_409_naming_the_user,
    unknown_malformed_or_deleted_id_is_404,
    completing_without_plus_user_is_refused_and_adds_nothing,
    entry_is_validated_as_in_post,
    error_precedence,
    kaleyra_failure_still_stores_the_participant,
    known_basic_user_added_as_plus_is_upgraded_before_the_room,
);

const CREATED: (u16, Value) = (201, Value::Null);

async fn adding_creates_the_user_at_once_and_no_room_while_incomplete(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(3, vec![doctor(DOC)])).await;
    app.sim.clear_requests();

    assert_eq!(add_participant(&app, &id, patient(PAT)).await, CREATED);
    assert_eq!(app.kaleyra_calls(), ["POST /v2/users"]);
    assert_eq!(user_creations(&app), [kid(PAT)]);
    assert!(app.sim.rooms().is_empty());

    app.clock.set(start());
    assert_eq!(
        get_tc(&app, &id, Some(PAT), "").await,
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
}

async fn completing_creates_the_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(3, vec![patient(PAT), doctor(DOC)])).await;
    app.sim.clear_requests();

    assert_eq!(add_participant(&app, &id, patient(PAT2)).await, CREATED);
    assert_eq!(app.kaleyra_calls(), ["POST /v2/users", "POST /v2/rooms"]);
    let room = only_room(&app);
    assert_eq!(
        members(&room),
        [(kid(PAT), false), (kid(DOC), true), (kid(PAT2), false)],
        "in the order they were given"
    );

    app.clock.set(start());
    let (status, body) = get_tc(&app, &id, Some(PAT2), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["participantsBandyerCall"],
        call_list(&[PAT, DOC, PAT2])
    );
    assert_link(
        &body["accessLinkURL"],
        &link_of(&room, PAT2),
        &["language=it"],
    );
}

async fn aliases_are_accepted(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(2, vec![patient(PAT)])).await;
    let entry = json!({"userExternalId": DOC, "group": "doctor", "fullName": name_of(DOC)});
    assert_eq!(add_participant(&app, &id, entry).await, CREATED);
    assert_eq!(
        members(&only_room(&app)),
        [(kid(PAT), false), (kid(DOC), true)]
    );
}

async fn already_complete_is_409(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    let room = only_room(&app);
    app.sim.clear_requests();
    let answer = add_participant(&app, &id, patient(PAT2)).await;
    assert_error(&answer, 409, "Conflict", &[]);
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
    assert_eq!(only_room(&app), room);
}

async fn user_already_present_is_409_naming_the_user(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(3, vec![doctor(DOC), patient(PAT)])).await;
    app.sim.clear_requests();
    let answer = add_participant(&app, &id, patient(PAT)).await;
    assert_error(&answer, 409, "Conflict", &[PAT]);
    // Under the other spelling and another role: still the same user.
    let again = json!({"userExternalId": PAT, "groups": ["doctor"], "fullName": "X"});
    let answer = add_participant(&app, &id, again).await;
    assert_error(&answer, 409, "Conflict", &[PAT]);
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
    assert!(app.sim.rooms().is_empty());
}

async fn unknown_malformed_or_deleted_id_is_404(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    for id in ["0123456789abcdef01234567", "room_xyz"] {
        assert_unknown_id(&add_participant(&app, id, patient(PAT)).await, id);
    }
    let id = create_tc(&app, booking(3, vec![doctor(DOC)])).await;
    assert_eq!(delete_tc(&app, &id).await, (204, Value::Null));
    app.sim.clear_requests();
    assert_unknown_id(&add_participant(&app, &id, patient(PAT)).await, &id);
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

async fn completing_without_plus_user_is_refused_and_adds_nothing(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(2, vec![patient(PAT)])).await;
    app.sim.clear_requests();

    let answer = add_participant(&app, &id, patient(PAT2)).await;
    assert_eq!(answer, (400, documented(400, &no_plus_participants(&id))));
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new(), "no Kaleyra call");
    assert!(app.sim.users().iter().all(|u| u.id != kid(PAT2)));

    // PAT2 was not added: the list still has room for the doctor.
    assert_eq!(add_participant(&app, &id, doctor(DOC)).await, CREATED);
    assert_eq!(
        members(&only_room(&app)),
        [(kid(PAT), false), (kid(DOC), true)]
    );
}

async fn entry_is_validated_as_in_post(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(3, vec![doctor(DOC)])).await;
    app.sim.clear_requests();
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (person("nurse-7", "nurse"), vec!["nurse-7"]),
        (
            json!({"userId": PAT, "groups": ["patient"]}),
            vec!["fullName"],
        ),
        (json!({"userId": PAT, "fullName": "P"}), vec!["groups"]),
        (
            json!({"groups": ["patient"], "fullName": "P"}),
            vec!["userId"],
        ),
        (
            json!({"userId": PAT, "groups": ["patient"], "fullName": "P", "nickname": "p"}),
            vec!["nickname"],
        ),
        (
            json!({"userId": 42, "groups": ["patient"], "fullName": "P"}),
            vec!["userId"],
        ),
    ];
    for (body, words) in cases {
        let answer = add_participant(&app, &id, body.clone()).await;
        assert_bad_request(&answer, &words);
    }
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
    app.clock.set(start());
    let (status, body) = get_tc(&app, &id, Some(DOC), "").await;
    assert_eq!(status, 200);
    assert_eq!(body["participantsBandyerCall"], call_list(&[DOC]));
}

async fn error_precedence(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("IMMUTABLE_PERIOD_MS", "600000")]).await;
    // 404 before 400.
    let unknown = "0123456789abcdef01234567";
    let answer = add_participant(&app, unknown, json!({"userId": 42})).await;
    assert_unknown_id(&answer, unknown);

    // 400 (body) before 409 (complete).
    let id = create_tc(&app, pair()).await;
    let answer = add_participant(&app, &id, json!({"userId": PAT2, "groups": "x"})).await;
    assert_bad_request(&answer, &[]);

    // 409 (duplicate) before 400 (no plus user): adding PAT again would complete a list
    // without a plus user.
    let other = create_tc(&app, booking(2, vec![patient(PAT)])).await;
    let answer = add_participant(&app, &other, patient(PAT)).await;
    assert_error(&answer, 409, "Conflict", &[PAT]);
}

async fn kaleyra_failure_still_stores_the_participant(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(2, vec![doctor(DOC)])).await;
    app.sim.add_fault(Fault::status("/v2/users", 503));
    app.sim
        .add_fault(Fault::status("/v2/rooms", 500).method("POST"));
    assert_eq!(add_participant(&app, &id, patient(PAT)).await, CREATED);
    assert!(app.sim.rooms().is_empty());

    app.clock.set(start());
    assert_eq!(
        get_tc(&app, &id, Some(PAT), "").await,
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
    // Stored: the list is complete now.
    assert_error(
        &add_participant(&app, &id, patient(PAT2)).await,
        409,
        "Conflict",
        &[],
    );
}

async fn known_basic_user_added_as_plus_is_upgraded_before_the_room(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    create_tc(&app, booking(3, vec![patient(DOC)])).await;
    let id = create_tc(&app, booking(2, vec![patient(PAT)])).await;
    app.sim.clear_requests();

    assert_eq!(add_participant(&app, &id, doctor(DOC)).await, CREATED);
    assert_eq!(
        app.kaleyra_calls(),
        [
            format!("PUT /v2/users/{}", kid(DOC)),
            "POST /v2/rooms".to_owned()
        ],
        "upgraded (not created again), then the room"
    );
    assert_eq!(app.sim.requests()[0].body, Some(json!({"role": "plus"})));
    assert_eq!(
        members(&only_room(&app)),
        [(kid(PAT), false), (kid(DOC), true)]
    );
}
