//! The user directory (spec §5): with `AUTH_SERVICE` set, participants may be given as plain
//! user ids, and groups and names come from the Auth0 Management API. A small stand-in for
//! Auth0 (token by client credentials, `GET /api/v2/users/{id}`) runs on loopback.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, TestDatabase};

crate::on_both_backends!(
    participants_given_as_ids_are_resolved_through_the_directory,
    the_directory_decides_groups_and_names_over_the_body,
    a_user_the_directory_does_not_know_is_refused_and_nothing_is_stored,
    a_directory_that_is_down_answers_503_and_nothing_is_stored,
    any_token_lifetime_auth0_gives_is_survived,
    dot_ids_are_refused_before_the_directory_is_asked,
);

#[derive(Default)]
pub(crate) struct FakeAuth0 {
    users: BTreeMap<String, Value>,
    token_requests: AtomicUsize,
    user_requests: AtomicUsize,
    pub(crate) down: AtomicBool,
    /// The `expires_in` of its tokens; 86400 when unset.
    expires_in: std::sync::Mutex<Option<Value>>,
    /// A pause before each user answer.
    pub(crate) user_delay_ms: std::sync::atomic::AtomicU64,
}

const TOKEN: &str = "management-token";

async fn token(State(auth0): State<Arc<FakeAuth0>>, Json(body): Json<Value>) -> Response {
    auth0.token_requests.fetch_add(1, Ordering::SeqCst);
    let valid = body["grant_type"] == "client_credentials"
        && body["client_id"] == "telecons"
        && body["client_secret"] == "s3cret";
    if !valid {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let expires_in = auth0
        .expires_in
        .lock()
        .unwrap()
        .clone()
        .unwrap_or(json!(86400));
    Json(json!({"access_token": TOKEN, "expires_in": expires_in, "token_type": "Bearer"}))
        .into_response()
}

async fn user(
    State(auth0): State<Arc<FakeAuth0>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    auth0.user_requests.fetch_add(1, Ordering::SeqCst);
    let delay = auth0.user_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    if auth0.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match auth0.users.get(&id) {
        Some(user) => Json(user.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The stand-in, knowing `users` as (id, group, name).
pub(crate) async fn spawn_auth0(users: &[(&str, &str, &str)]) -> (String, Arc<FakeAuth0>) {
    let mut auth0 = FakeAuth0::default();
    for (id, group, name) in users {
        auth0.users.insert(
            (*id).to_owned(),
            json!({"user_id": id, "name": name, "app_metadata": {"groups": [group]}}),
        );
    }
    let auth0 = Arc::new(auth0);
    let app = axum::Router::new()
        .route("/oauth/token", axum::routing::post(token))
        .route("/api/v2/users/{id}", axum::routing::get(user))
        .with_state(Arc::clone(&auth0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, auth0)
}

/// The app with the directory on, backed by the stand-in knowing `users`.
pub(crate) async fn app_with_directory_of(
    db: TestDatabase,
    users: &[(&str, &str, &str)],
) -> (TestApp, Arc<FakeAuth0>) {
    let (url, auth0) = spawn_auth0(users).await;
    let app = TestApp::spawn_with(db, &directory_env(&url)).await;
    (app, auth0)
}

/// The variables that point the service's directory at the stand-in at `url`.
pub(crate) fn directory_env(url: &str) -> [(&'static str, &str); 4] {
    [
        ("AUTH_SERVICE", "auth0-client"),
        ("AUTH0_DOMAIN", url),
        ("AUTH0_CLIENT_ID", "telecons"),
        ("AUTH0_CLIENT_SECRET", "s3cret"),
    ]
}

/// A doctor and a patient, ids in Auth0's `provider|id` form.
pub(crate) const DOCTOR_AND_PATIENT: &[(&str, &str, &str)] = &[
    ("auth0|doctor", "doctor", "Dr. Maria Rossi"),
    ("auth0|patient", "patient", "Luca Bianchi"),
];

/// The directory knows [`DOCTOR_AND_PATIENT`].
async fn app_with_directory(db: TestDatabase) -> (TestApp, Arc<FakeAuth0>) {
    app_with_directory_of(db, DOCTOR_AND_PATIENT).await
}

/// `POST /teleconsultation` with the participants given as plain ids (resolved through the
/// directory).
pub(crate) async fn book_by_ids(app: &TestApp, ids: &[&str]) -> (u16, Value) {
    let body = json!({
        "participants": ids,
        "start_date": "2030-01-01T10:00:00.000Z",
        "duration_in_seconds": 1800,
    });
    app.send(Method::POST, "/teleconsultation", &[], Some(body))
        .await
}

async fn participants_given_as_ids_are_resolved_through_the_directory(db: TestDatabase) {
    let (app, auth0) = app_with_directory(db).await;
    let (status, body) = book_by_ids(&app, &["auth0|doctor", "auth0|patient"]).await;
    assert_eq!(status, 201, "{body}");
    let id = body["roomId"].as_str().unwrap();

    // All known at once: the room exists, the doctor is its admin.
    let rooms = app.sim.rooms();
    assert_eq!(rooms.len(), 1);
    let doctor = kaleyra_client::kaleyra_user_id("auth0|doctor");
    let patient = kaleyra_client::kaleyra_user_id("auth0|patient");
    let admins: Vec<(String, bool)> = rooms[0]
        .participants
        .iter()
        .map(|p| (p.user_id.clone(), p.is_admin))
        .collect();
    assert_eq!(
        admins,
        vec![(doctor.clone(), true), (patient.clone(), false)]
    );

    // Names come from the directory.
    let (status, body) = app
        .get(
            &format!("/teleconsultation/{id}"),
            &[("miauserid", "auth0|patient")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["participantsBandyerCall"],
        json!([
            {"bandyerUserId": doctor, "fullName": "Dr. Maria Rossi"},
            {"bandyerUserId": patient, "fullName": "Luca Bianchi"},
        ])
    );

    // The Management API token is fetched once and reused.
    let (status, _) = book_by_ids(&app, &["auth0|doctor", "auth0|patient"]).await;
    assert_eq!(status, 201);
    assert_eq!(auth0.token_requests.load(Ordering::SeqCst), 1);
}

async fn the_directory_decides_groups_and_names_over_the_body(db: TestDatabase) {
    let (app, _) = app_with_directory(db).await;
    // The body claims the doctor is a patient named otherwise: the directory wins.
    let body = json!({
        "participants": {"number": 2, "data": [
            {"userExternalId": "auth0|doctor", "groups": ["patient"], "fullName": "Someone", "language": "it"},
            {"userExternalId": "auth0|patient", "language": "it"},
        ]},
        "start_date": "2030-01-01T10:00:00.000Z",
        "duration_in_seconds": 1800,
    });
    let (status, body) = app
        .send(Method::POST, "/teleconsultation", &[], Some(body))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["roomId"].as_str().unwrap();
    let tc = app.stored(id).await;
    assert_eq!(tc.participants[0].groups, vec!["doctor".to_owned()]);
    assert_eq!(
        tc.participants[0].full_name.as_deref(),
        Some("Dr. Maria Rossi")
    );
    assert_eq!(tc.participants[0].language.as_deref(), Some("it"));
    assert!(app.sim.rooms()[0].participants[0].is_admin);
}

async fn a_user_the_directory_does_not_know_is_refused_and_nothing_is_stored(db: TestDatabase) {
    let (app, _) = app_with_directory(db).await;
    let (status, body) = book_by_ids(&app, &["auth0|doctor", "auth0|ghost"]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "Bad Request");
    assert!(
        body["message"].as_str().unwrap().contains("auth0|ghost"),
        "{body}"
    );
    assert!(
        app.kaleyra_calls().is_empty(),
        "no Kaleyra call: {:?}",
        app.kaleyra_calls()
    );
    let stored = app
        .services
        .store
        .list_live_teleconsultations("", 10)
        .await
        .unwrap();
    assert!(stored.is_empty());
}

async fn a_directory_that_is_down_answers_503_and_nothing_is_stored(db: TestDatabase) {
    let (app, auth0) = app_with_directory(db).await;
    auth0.down.store(true, Ordering::SeqCst);
    let (status, body) = book_by_ids(&app, &["auth0|doctor", "auth0|patient"]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "Service Unavailable");
    assert!(app.kaleyra_calls().is_empty());
    assert!(
        app.services
            .store
            .list_live_teleconsultations("", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The secret never reaches an answer.
    assert!(!body.to_string().contains("s3cret"));
}

/// Auth0 decides its tokens' lifetime: a huge, fractional or negative `expires_in` must
/// neither panic (a 500) nor stop the directory from answering.
async fn any_token_lifetime_auth0_gives_is_survived(db: TestDatabase) {
    let (app, auth0) = app_with_directory(db).await;
    // Those that are not kept come first, so that each is fetched (the last one is kept).
    for expires_in in [json!(-5), json!("3600"), json!(0.5), json!(u64::MAX)] {
        *auth0.expires_in.lock().unwrap() = Some(expires_in.clone());
        let (status, body) = book_by_ids(&app, &["auth0|doctor", "auth0|patient"]).await;
        assert_eq!(status, 201, "expires_in {expires_in}: {body}");
    }
    // Two lookups per booking: a token each for the three not kept, one for the last.
    assert_eq!(auth0.token_requests.load(Ordering::SeqCst), 3 * 2 + 1);
}

/// `.` and `..` would be read as path steps by the directory's URL (`/users/..` is the user
/// list): refused as ids, before anyone is asked.
async fn dot_ids_are_refused_before_the_directory_is_asked(db: TestDatabase) {
    let (app, auth0) = app_with_directory(db).await;
    for id in [".", ".."] {
        let (status, body) = book_by_ids(&app, &["auth0|doctor", id]).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("participants.data[1].userId"),
            "{body}"
        );
    }
    assert_eq!(auth0.user_requests.load(Ordering::SeqCst), 0);
}
