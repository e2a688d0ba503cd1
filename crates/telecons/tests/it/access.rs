//! Who may book and change teleconsultations (spec §3 `bookingGroups`, §5): in bearer mode
//! the service guards those routes itself; in gateway mode `bookingGroups`, when set, is
//! enforced the same way. Refusals come in the documented order (404 → 401 → 403 → 400) and
//! change nothing, on Kaleyra or in storage.

use reqwest::Method;
use serde_json::{Value, json};

use crate::bearer::{BOOKING_GROUP, app_in_bearer_mode, book, booking_token, claims};
use crate::directory::{DOCTOR_AND_PATIENT, directory_env, spawn_auth0};
use crate::support::{TestApp, TestDatabase};
use crate::teleconsultations::{
    DOC, PAT, PAT2, booking, config_file, create_tc, doctor, pair, patient, unauthorized,
};
use crate::test_issuer::keys;

crate::on_both_backends!(
    bearer_mode_guards_every_route_that_changes_teleconsultations,
    booking_groups_guard_the_changing_routes_in_gateway_mode,
    a_booking_backend_unknown_to_the_directory_books_by_its_gateway_groups,
);

fn forbidden(user: &str) -> Value {
    json!({
        "statusCode": 403,
        "error": "Forbidden",
        "message": format!("user {user} may not book or change teleconsultations"),
    })
}

/// Each route that changes a teleconsultation, on `id`, with a valid body.
fn changing_routes(id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::PATCH,
            format!("/teleconsultation/{id}"),
            Some(json!({"start_date": "2030-01-02T11:00:00.000Z"})),
        ),
        (
            Method::POST,
            format!("/teleconsultation/{id}/participants/data"),
            Some(patient(PAT2)),
        ),
        (Method::DELETE, format!("/teleconsultation/{id}"), None),
    ]
}

async fn bearer_mode_guards_every_route_that_changes_teleconsultations(db: TestDatabase) {
    let (app, _issuer) = app_in_bearer_mode(db, &[]).await;
    let participant = format!("Bearer {}", keys().rsa.sign(&claims(PAT)));

    // Booking: no token, the gateway's headers (meaningless here), a participant's token.
    let refusals = [
        (vec![], 401, unauthorized()),
        (
            vec![("miauserid", DOC), ("miausergroups", BOOKING_GROUP)],
            401,
            unauthorized(),
        ),
        (
            vec![("authorization", participant.as_str())],
            403,
            forbidden(PAT),
        ),
    ];
    for (headers, status, body) in &refusals {
        let answer = app
            .send(Method::POST, "/teleconsultation", headers, Some(pair()))
            .await;
        assert_eq!(answer, (*status, body.clone()), "{headers:?}");
    }
    // 403 comes before the body's 400.
    let answer = app
        .send(
            Method::POST,
            "/teleconsultation",
            &[("authorization", &participant)],
            Some(json!({"start_date": "not a date"})),
        )
        .await;
    assert_eq!(answer, (403, forbidden(PAT)));
    assert!(
        app.kaleyra_calls().is_empty(),
        "a refused booking creates no Kaleyra user and no room: {:?}",
        app.kaleyra_calls()
    );

    // The booking backend (a machine client, its rights in `scope`) books (a place left).
    let id = book(&app, booking(3, vec![doctor(DOC), patient(PAT)])).await;
    let stored = app.stored(&id).await;
    assert_eq!(
        stored.created_by.as_deref(),
        Some("booking-backend@clients")
    );

    // A participant who knows the id cannot change it; nobody without a token can.
    for (method, path, body) in changing_routes(&id) {
        let answer = app
            .send(
                method.clone(),
                &path,
                &[("authorization", &participant)],
                body.clone(),
            )
            .await;
        assert_eq!(answer, (403, forbidden(PAT)), "{method} {path}");
        let answer = app.send(method.clone(), &path, &[], body.clone()).await;
        assert_eq!(answer, (401, unauthorized()), "{method} {path}");
        // An unknown id is a 404 first, token or not.
        let unknown = path.replace(&id, "64b0000000000000000000ff");
        let (status, _) = app.send(method.clone(), &unknown, &[], body).await;
        assert_eq!(status, 404, "{method} {unknown}");
    }
    assert_eq!(app.stored(&id).await, stored, "refusals change nothing");

    // The booking backend may.
    let booking = booking_token();
    let mut answers = Vec::new();
    for (method, path, body) in changing_routes(&id) {
        let (status, _) = app
            .send(method, &path, &[("authorization", &booking)], body)
            .await;
        answers.push(status);
    }
    assert_eq!(answers, vec![204, 201, 204]);
}

async fn booking_groups_guard_the_changing_routes_in_gateway_mode(db: TestDatabase) {
    let service_file = config_file(json!({
        "privileges": {"basic": {"groups": ["patient"]}, "plus": {"groups": ["doctor"]}},
        "bookingGroups": ["back-office", BOOKING_GROUP],
    }));
    let path = service_file.path().to_str().unwrap().to_owned();
    let app = TestApp::spawn_with(db, &[("TELECONSULTATION_SERVICE_CONFIG_PATH", &path)]).await;
    let doctor = [("miauserid", DOC), ("miausergroups", "doctor")];
    let backend = [
        ("miauserid", "booking-1"),
        ("miausergroups", "staff, booking"),
    ];

    assert_eq!(post(&app, &[]).await, (401, unauthorized()));
    assert_eq!(post(&app, &doctor).await, (403, forbidden(DOC)));
    let (status, body) = post(&app, &backend).await;
    assert_eq!(status, 201, "{body}");
    let id = body["roomId"].as_str().unwrap().to_owned();
    for (method, path, body) in changing_routes(&id) {
        let answer = app.send(method.clone(), &path, &doctor, body).await;
        assert_eq!(answer, (403, forbidden(DOC)), "{method} {path}");
    }
    let (status, _) = app
        .send(
            Method::DELETE,
            &format!("/teleconsultation/{id}"),
            &backend,
            None,
        )
        .await;
    assert_eq!(status, 204);
}

/// With a user directory, participants' roles come from it; who may book is what the
/// gateway says of the caller (the booking backend is a machine client no directory
/// knows). Without the gateway's groups header, the directory decides.
async fn a_booking_backend_unknown_to_the_directory_books_by_its_gateway_groups(db: TestDatabase) {
    let (url, _auth0) = spawn_auth0(DOCTOR_AND_PATIENT).await;
    let service_file = config_file(json!({
        "privileges": {"basic": {"groups": ["patient"]}, "plus": {"groups": ["doctor"]}},
        "bookingGroups": [BOOKING_GROUP],
    }));
    let path = service_file.path().to_str().unwrap().to_owned();
    let mut env = directory_env(&url).to_vec();
    env.push(("TELECONSULTATION_SERVICE_CONFIG_PATH", &path));
    let app = TestApp::spawn_with(db, &env).await;
    let body = json!({
        "participants": ["auth0|doctor", "auth0|patient"],
        "start_date": "2030-01-01T10:00:00.000Z",
        "duration_in_seconds": 1800,
    });
    let backend = [("miauserid", "booking-1"), ("miausergroups", BOOKING_GROUP)];
    let (status, answer) = app
        .send(
            Method::POST,
            "/teleconsultation",
            &backend,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    // The directory's doctor, without the gateway's groups: the directory says doctor.
    let answer = app
        .send(
            Method::POST,
            "/teleconsultation",
            &[("miauserid", "auth0|doctor")],
            Some(body),
        )
        .await;
    assert_eq!(answer, (403, forbidden("auth0|doctor")));
}

async fn post(app: &TestApp, headers: &[(&str, &str)]) -> (u16, Value) {
    app.send(Method::POST, "/teleconsultation", headers, Some(pair()))
        .await
}

/// Without `bookingGroups` (gateway mode), the gateway guards the routes, as in the
/// original: a booking needs no caller.
#[tokio::test]
async fn without_booking_groups_the_gateway_guards_the_routes() {
    let app = TestApp::spawn(TestDatabase::sqlite().await).await;
    create_tc(&app, pair()).await;
}
