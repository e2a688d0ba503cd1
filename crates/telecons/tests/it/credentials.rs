//! `POST /credentials` (spec §4.7): a Kaleyra SDK token for the identified caller, whose
//! Kaleyra user is created on first use (one user, never two) with the role its groups give.

use std::sync::atomic::Ordering;

use chrono::Utc;
use kaleyra_sim::Fault;
use reqwest::Method;
use serde_json::{Value, json};

use crate::directory::app_with_directory_of;
use crate::support::{SIM_API_KEY, TestApp, TestDatabase};
use crate::teleconsultations::kid;

crate::on_both_backends!(
    a_caller_with_a_role_gets_a_token_and_its_user_once,
    no_caller_is_401_and_no_role_is_403,
    expires_in_outside_the_bounds_or_not_an_integer_is_400,
    concurrent_first_requests_create_one_user,
    with_the_directory_the_groups_come_from_it,
    kaleyra_failing_is_502_naming_the_operation,
);

async fn credentials(app: &TestApp, headers: &[(&str, &str)], body: Option<Value>) -> (u16, Value) {
    app.send(Method::POST, "/credentials", headers, body).await
}

fn user_creations(app: &TestApp) -> usize {
    app.kaleyra_calls()
        .iter()
        .filter(|c| *c == "POST /v2/users")
        .count()
}

async fn a_caller_with_a_role_gets_a_token_and_its_user_once(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let doctor = [("miauserid", "doc-9"), ("miausergroups", "doctor")];
    let (status, body) = credentials(&app, &doctor, Some(json!({"expiresIn": 600}))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["accessToken", "bandyerUserId", "expiresAt"]
    );
    assert!(body["accessToken"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(body["bandyerUserId"], kid("doc-9"));
    let expires_at = chrono::DateTime::parse_from_rfc3339(body["expiresAt"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    let expected = Utc::now() + chrono::Duration::seconds(600);
    assert!(
        (expires_at - expected).num_seconds().abs() < 120,
        "{expires_at} is not about 600 s from now"
    );
    assert!(!body.to_string().contains(SIM_API_KEY));
    let user = app
        .sim
        .users()
        .into_iter()
        .find(|u| u.id == kid("doc-9"))
        .unwrap();
    assert_eq!(user.role, "plus");
    // Again, with the default lifetime and no body: no second user.
    let (status, body) = credentials(&app, &doctor, None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(user_creations(&app), 1);
    // The same user booked later keeps its id.
    let id = crate::teleconsultations::create_tc(
        &app,
        crate::teleconsultations::booking(
            2,
            vec![
                crate::teleconsultations::doctor("doc-9"),
                crate::teleconsultations::patient("pat-9"),
            ],
        ),
    )
    .await;
    let tc = app.stored(&id).await;
    assert_eq!(tc.participants[0].kaleyra_user_id, kid("doc-9"));
    assert_eq!(user_creations(&app), 2, "only the patient is new");
}

async fn no_caller_is_401_and_no_role_is_403(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let (status, body) = credentials(&app, &[], None).await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"statusCode": 401, "error": "Unauthorized user", "message": "Unauthorized user"})
        )
    );
    for headers in [
        vec![("miauserid", "n-1"), ("miausergroups", "nurse")],
        vec![("miauserid", "n-1")],
    ] {
        let (status, body) = credentials(&app, &headers, None).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("user n-1"),
            "{body}"
        );
    }
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

async fn expires_in_outside_the_bounds_or_not_an_integer_is_400(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let patient = [("miauserid", "p-1"), ("miausergroups", "patient")];
    for body in [
        json!({"expiresIn": 359}),
        json!({"expiresIn": 86_401}),
        json!({"expiresIn": 3600.5}),
        json!({"expiresIn": "3600"}),
        json!({"expiresIn": 3600, "scope": "all"}),
    ] {
        let (status, answer) = credentials(&app, &patient, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("expiresIn") || message.contains("scope"),
            "{message}"
        );
    }
    assert_eq!(
        app.kaleyra_calls(),
        Vec::<String>::new(),
        "refused before Kaleyra"
    );
    for edge in [360, 86_400] {
        let (status, answer) = credentials(&app, &patient, Some(json!({"expiresIn": edge}))).await;
        assert_eq!(status, 201, "{edge}: {answer}");
    }
}

async fn concurrent_first_requests_create_one_user(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = app
            .http
            .post(app.url("/credentials"))
            .header("miauserid", "new-1")
            .header("miausergroups", "patient");
        tasks.spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        });
    }
    while let Some(answer) = tasks.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["bandyerUserId"], kid("new-1"));
    }
    let users: Vec<_> = app
        .sim
        .users()
        .into_iter()
        .filter(|u| u.id == kid("new-1"))
        .collect();
    assert_eq!(users.len(), 1);
    assert!(
        app.services
            .store
            .get_kaleyra_user("new-1")
            .await
            .unwrap()
            .is_some()
    );
}

async fn with_the_directory_the_groups_come_from_it(db: TestDatabase) {
    let (app, auth0) = app_with_directory_of(db, &[("auth0|doc", "doctor", "Dr. Who")]).await;
    // The request says patient; the directory says doctor: plus.
    let (status, body) = credentials(
        &app,
        &[("miauserid", "auth0|doc"), ("miausergroups", "patient")],
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let user = app
        .sim
        .users()
        .into_iter()
        .find(|u| u.id == kid("auth0|doc"))
        .unwrap();
    assert_eq!(user.role, "plus");
    let (status, body) = credentials(
        &app,
        &[("miauserid", "auth0|stranger"), ("miausergroups", "doctor")],
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("auth0|stranger"),
        "{body}"
    );
    auth0.down.store(true, Ordering::SeqCst);
    app.sim.clear_requests();
    let (status, body) = credentials(&app, &[("miauserid", "auth0|doc")], None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new(), "nothing created");
}

async fn kaleyra_failing_is_502_naming_the_operation(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    app.sim.add_fault(Fault::status("/v2/sdk/credentials", 500));
    let (status, body) = credentials(
        &app,
        &[("miauserid", "doc-1"), ("miausergroups", "doctor")],
        None,
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("create_sdk_credentials"),
        "{body}"
    );
    assert!(!body.to_string().contains(SIM_API_KEY));
}
