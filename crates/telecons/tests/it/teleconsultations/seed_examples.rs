//! Every request example of the original's documentation (`shared/seed/000_…txt`) for the
//! lifecycle routes, mended as the spec says (valid JSON, sent as `application/json`, dates
//! moved from 2022 into the future, `room_xyz` replaced by a real id where the example means
//! an existing teleconsultation), with the documented outcome.
//!
//! The examples marked "with auth0 dependency" give participants as Auth0 ids, or as entries
//! without `groups`/`fullName`: they need the user directory (`AUTH_SERVICE`). No directory is
//! configured here, so the documented outcome for them is this service's 400 — the array
//! format "only accepted if the service is configured to interact with auth0", and the
//! entries lack what "without auth0 dependency" requires. `auth0_examples_with_the_directory`
//! sends the same examples to a service with the directory on (a stand-in for Auth0 knowing
//! the three users): they get the documented 201/204.

use serde_json::{Value, json};

use super::*;
use crate::support::{TestApp, TestDatabase};

crate::on_both_backends!(
    post_examples,
    patch_examples,
    participants_data_examples,
    get_examples,
    delete_examples,
    delete_uploads_example_with_the_flag_on,
    auth0_examples_with_the_directory,
);

const EX_START: &str = "2030-02-22T15:30:00.000Z";
const EX_END: &str = "2030-02-22T16:30:00.000Z";

fn auth0_ids() -> Value {
    json!(["user1_auth0_id", "user2_auth0_id", "user3_auth0_id"])
}

fn auth0_entries(ids: &[&str]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| json!({"userExternalId": id, "language": "it"}))
            .collect(),
    )
}

fn joe() -> Value {
    json!({"userExternalId": "user1_external_id", "groups": ["doctor"], "fullName": "Joe Smith", "language": "it"})
}

fn jane() -> Value {
    json!({"userExternalId": "user3_external_id", "groups": ["patient"], "fullName": "Jane Doe", "language": "it"})
}

/// "Without auth0 dependency and some a priori unknown participants".
fn without_auth0_body() -> Value {
    json!({
        "participants": {"number": 3, "data": [joe(), jane()]},
        "start_date": EX_START,
        "end_date": EX_END
    })
}

/// The auth0-only bodies of the POST/PATCH examples, each with the words its 400 names.
fn auth0_bodies() -> Vec<(Value, Vec<&'static str>)> {
    vec![
        // With auth0 dependency and all a priori known participants (ids).
        (
            json!({"participants": auth0_ids(), "start_date": EX_START, "end_date": EX_END}),
            vec!["AUTH_SERVICE"],
        ),
        // With auth0 dependency and all a priori known participants (entries).
        (
            json!({
                "participants": {"number": 3, "data": auth0_entries(&["user1_auth0_id", "user2_auth0_id", "user3_auth0_id"])},
                "start_date": EX_START,
                "end_date": EX_END
            }),
            vec![],
        ),
        // With auth0 dependency and some a priori unknown participants.
        (
            json!({
                "participants": {"number": 3, "data": auth0_entries(&["user1_auth0_id", "user2_auth0_id"])},
                "start_date": EX_START,
                "end_date": EX_END
            }),
            vec![],
        ),
        // With duration_in_seconds field.
        (
            json!({"participants": auth0_ids(), "start_date": EX_START, "duration_in_seconds": 3600}),
            vec!["AUTH_SERVICE"],
        ),
    ]
}

/// A 400 for an auth0-only example: it names AUTH_SERVICE, or the missing groups/fullName.
#[track_caller]
fn assert_needs_directory(answer: &(u16, Value), words: &[&str]) {
    assert_bad_request(answer, words);
    let message = answer.1["message"].as_str().unwrap();
    assert!(
        message.contains("AUTH_SERVICE")
            || message.contains("groups")
            || message.contains("fullName"),
        "the message says what is missing: {message}"
    );
}

async fn post_examples(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    for (body, words) in auth0_bodies() {
        let answer = post_tc(&app, body).await;
        assert_needs_directory(&answer, &words);
    }
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());

    // Without auth0 dependency and some a priori unknown participants: 201 {roomId}; the
    // users are created at once, the room only when all are known.
    create_tc(&app, without_auth0_body()).await;
    assert_eq!(
        user_creations(&app),
        [kid("user1_external_id"), kid("user3_external_id")]
    );
    assert!(app.sim.rooms().is_empty());

    // "If no one of the participants is a plus user".
    let answer = post_tc(
        &app,
        json!({
            "participants": {"number": 2, "data": [jane(), {"userExternalId": "user2_external_id", "groups": ["patient"], "fullName": "John Doe", "language": "it"}]},
            "start_date": EX_START,
            "end_date": EX_END
        }),
    )
    .await;
    assert_eq!(answer, (400, documented(400, NO_PLUS_POST)));
}

async fn patch_examples(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, without_auth0_body()).await;
    app.sim.clear_requests();

    // The last PATCH example's URL lacks the id; mended to `/teleconsultation/:roomId`.
    for (body, words) in auth0_bodies() {
        let answer = patch_tc(&app, &id, body).await;
        assert_needs_directory(&answer, &words);
    }
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());

    assert_eq!(
        patch_tc(&app, &id, without_auth0_body()).await,
        (204, Value::Null)
    );
    assert!(app.sim.rooms().is_empty());

    // "If no one of the participants is a plus user".
    let answer = patch_tc(
        &app,
        &id,
        json!({"participants": {"number": 2, "data": [jane(), {"userExternalId": "user2_external_id", "groups": ["patient"], "fullName": "John Doe"}]}}),
    )
    .await;
    assert_eq!(answer, (400, documented(400, NO_PLUS_PATCH)));
}

async fn participants_data_examples(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let booking = json!({
        "participants": {"number": 2, "data": [jane()]},
        "start_date": EX_START,
        "end_date": EX_END
    });
    let id = create_tc(&app, booking.clone()).await;

    // With auth0 dependency: needs the directory.
    let answer = add_participant(
        &app,
        &id,
        json!({"userExternalId": "user3_auth0_id", "language": "it"}),
    )
    .await;
    assert_needs_directory(&answer, &[]);

    // Without auth0 dependency: 201, empty body; it completes the list, so the room is made.
    assert_eq!(add_participant(&app, &id, joe()).await, (201, Value::Null));
    assert_eq!(
        members(&only_room(&app)),
        [
            (kid("user3_external_id"), false),
            (kid("user1_external_id"), true)
        ]
    );

    // "If you are requesting to add the last participant and no one … is a plus user".
    let other = create_tc(&app, booking).await;
    let answer = add_participant(
        &app,
        &other,
        json!({"userExternalId": "user2_external_id", "groups": ["patient"], "fullName": "John Doe", "language": "it"}),
    )
    .await;
    assert_eq!(
        answer,
        (400, documented(400, &no_plus_participants(&other)))
    );
}

async fn get_examples(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    // `curl -X GET ".../teleconsultation/room_xyz"`: no such teleconsultation.
    assert_eq!(
        get_tc(&app, "room_xyz", None, "").await,
        (404, not_found_on_crud("room_xyz"))
    );

    let id = create_tc(
        &app,
        json!({
            "participants": {"number": 2, "data": [joe(), jane()]},
            "start_date": EX_START,
            "end_date": EX_END
        }),
    )
    .await;
    let room = only_room(&app);
    // "a user not involved in the teleconsultation".
    assert_eq!(
        get_tc(&app, &id, Some("user2_external_id"), "").await,
        (401, unauthorized())
    );

    app.clock.set(at(EX_START));
    let (status, body) = get_tc(&app, &id, Some("user1_external_id"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "bandyerUserId": kid("user1_external_id"),
            "accessLinkURL": body["accessLinkURL"],
            "participantsBandyerCall": [
                {"bandyerUserId": kid("user1_external_id"), "fullName": "Joe Smith"},
                {"bandyerUserId": kid("user3_external_id"), "fullName": "Jane Doe"}
            ],
            "details": details_of(&room)
        })
    );
    assert_link(
        &body["accessLinkURL"],
        &link_of(&room, "user1_external_id"),
        &["language=it"],
    );
    // With both query parameters.
    let (_, body) = get_tc(
        &app,
        &id,
        Some("user3_external_id"),
        "?useBackground=true&language=en",
    )
    .await;
    assert_link(
        &body["accessLinkURL"],
        &link_of(&room, "user3_external_id"),
        &["language=en", "virtual_background=image"],
    );
}

async fn delete_examples(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(
        &app,
        json!({
            "participants": {"number": 2, "data": [joe(), jane()]},
            "start_date": EX_START,
            "end_date": EX_END
        }),
    )
    .await;
    let room = only_room(&app);
    app.sim.seed_upload(&room.id, "report.pdf", 10).unwrap();
    // TELECONSULTATION_DELETE_UPLOADS is false: 204.
    assert_eq!(
        delete_uploads(&app, &id, Some("user1_external_id")).await,
        (204, Value::Null)
    );
    assert_eq!(delete_tc(&app, &id).await, (204, Value::Null));
    assert!(app.sim.rooms().is_empty());
}

async fn delete_uploads_example_with_the_flag_on(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("TELECONSULTATION_DELETE_UPLOADS", "true")]).await;
    let id = create_tc(
        &app,
        json!({
            "participants": {"number": 2, "data": [joe(), jane()]},
            "start_date": EX_START,
            "end_date": EX_END
        }),
    )
    .await;
    let room = only_room(&app);
    app.sim.seed_upload(&room.id, "report.pdf", 10).unwrap();
    app.sim.seed_upload(&room.id, "scan.jpg", 20).unwrap();
    assert_eq!(
        delete_uploads(&app, &id, Some("user3_external_id")).await,
        (200, json!({"total": 2, "deleted": 2}))
    );
}

async fn auth0_examples_with_the_directory(db: TestDatabase) {
    let users = [
        ("user1_auth0_id", "doctor", "Joe Smith"),
        ("user2_auth0_id", "patient", "Jane Doe"),
        ("user3_auth0_id", "patient", "John Roe"),
    ];
    let (app, _) = crate::directory::app_with_directory_of(db, &users).await;
    let mut ids = Vec::new();
    for (body, _) in auth0_bodies() {
        let answer = post_tc(&app, body).await;
        assert_eq!(answer.0, 201, "{}", answer.1);
        assert_eq!(
            answer.1.as_object().unwrap().len(),
            1,
            "only roomId: {}",
            answer.1
        );
        ids.push(answer.1["roomId"].as_str().unwrap().to_owned());
    }
    // Three of the four examples know every participant: a room each.
    assert_eq!(app.sim.rooms().len(), 3);

    // PATCH examples (the same bodies) on the incomplete one: 204, no body.
    for (body, _) in auth0_bodies() {
        let answer = patch_tc(&app, &ids[2], body).await;
        assert_eq!(answer, (204, Value::Null));
    }
    // participants/data "with auth0 dependency": completes a two-of-three list.
    let partial = create_tc(
        &app,
        json!({
            "participants": {"number": 3, "data": auth0_entries(&["user1_auth0_id", "user2_auth0_id"])},
            "start_date": EX_START,
            "end_date": EX_END
        }),
    )
    .await;
    let answer = add_participant(
        &app,
        &partial,
        json!({"userExternalId": "user3_auth0_id", "language": "it"}),
    )
    .await;
    assert_eq!(answer, (201, Value::Null));
    let (status, body) = get_tc(&app, &partial, Some("user3_auth0_id"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["participantsBandyerCall"][2]["fullName"], "John Roe");
}
