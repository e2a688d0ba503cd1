//! `DELETE /teleconsultation/:roomId/uploads` (spec §4.6).

use kaleyra_sim::Fault;
use reqwest::Method;
use serde_json::{Value, json};

use super::*;
use crate::support::{TestApp, TestDatabase};

crate::on_both_backends!(
    flag_off_answers_204_and_does_nothing,
    deletes_every_upload_of_the_room,
    failed_deletions_are_counted_and_the_request_can_be_repeated,
    no_room_yet_is_zero_of_zero,
    only_participants_may_ask,
    unknown_or_deleted_id_is_404,
    kaleyra_failure_is_502,
);

const FLAG_ON: (&str, &str) = ("TELECONSULTATION_DELETE_UPLOADS", "true");

/// The upload keys the simulator holds for a room (read directly from the simulator).
async fn upload_keys(app: &TestApp, room_id: &str) -> Vec<String> {
    let (status, body) =
        sim_call(app, Method::GET, &format!("/v2/uploads?room_id={room_id}")).await;
    assert_eq!(status, 200);
    body.as_array()
        .unwrap()
        .iter()
        .map(|u| u["key"].as_str().unwrap().to_owned())
        .collect()
}

async fn flag_off_answers_204_and_does_nothing(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    let room = only_room(&app);
    let key = app.sim.seed_upload(&room.id, "report.pdf", 1234).unwrap();
    app.sim.clear_requests();

    assert_eq!(
        delete_uploads(&app, &id, Some(DOC)).await,
        (204, Value::Null)
    );
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
    assert_eq!(upload_keys(&app, &room.id).await, [key]);
}

async fn deletes_every_upload_of_the_room(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[FLAG_ON]).await;
    let id = create_tc(&app, pair()).await;
    let room = only_room(&app);
    create_tc(&app, booking(2, vec![doctor("doc-2"), patient("pat-3")])).await;
    let other = app
        .sim
        .rooms()
        .into_iter()
        .find(|r| r.id != room.id)
        .unwrap();
    let k1 = app.sim.seed_upload(&room.id, "report.pdf", 1234).unwrap();
    let k2 = app.sim.seed_upload(&room.id, "scan.jpg", 99).unwrap();
    let kept = app.sim.seed_upload(&other.id, "other.pdf", 1).unwrap();
    app.sim.clear_requests();

    assert_eq!(
        delete_uploads(&app, &id, Some(PAT)).await,
        (200, json!({"total": 2, "deleted": 2}))
    );
    let requests = app.sim.requests();
    let list = requests
        .iter()
        .find(|r| r.method == "GET" && r.path == "/v2/uploads")
        .expect("the uploads are listed");
    assert_eq!(
        list.query.as_deref(),
        Some(format!("room_id={}", room.id).as_str())
    );
    let mut deleted: Vec<String> = app
        .kaleyra_calls()
        .into_iter()
        .filter(|c| c.starts_with("DELETE /v2/uploads/"))
        .collect();
    deleted.sort();
    let mut expected = vec![
        format!("DELETE /v2/uploads/{k1}"),
        format!("DELETE /v2/uploads/{k2}"),
    ];
    expected.sort();
    assert_eq!(deleted, expected);
    assert_eq!(upload_keys(&app, &room.id).await, Vec::<String>::new());
    assert_eq!(upload_keys(&app, &other.id).await, [kept]);

    assert_eq!(
        delete_uploads(&app, &id, Some(DOC)).await,
        (200, json!({"total": 0, "deleted": 0}))
    );
}

async fn failed_deletions_are_counted_and_the_request_can_be_repeated(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[FLAG_ON]).await;
    let id = create_tc(&app, pair()).await;
    let room = only_room(&app);
    app.sim.seed_upload(&room.id, "report.pdf", 1234).unwrap();
    app.sim.seed_upload(&room.id, "scan.jpg", 99).unwrap();
    // 500 is not retried by the client: exactly one deletion fails.
    app.sim.add_fault(
        Fault::status("/v2/uploads/{key}", 500)
            .method("DELETE")
            .times(1),
    );

    assert_eq!(
        delete_uploads(&app, &id, Some(DOC)).await,
        (200, json!({"total": 2, "deleted": 1}))
    );
    assert_eq!(upload_keys(&app, &room.id).await.len(), 1);
    assert_eq!(
        delete_uploads(&app, &id, Some(DOC)).await,
        (200, json!({"total": 1, "deleted": 1}))
    );
    assert_eq!(upload_keys(&app, &room.id).await, Vec::<String>::new());
}

async fn no_room_yet_is_zero_of_zero(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[FLAG_ON]).await;
    let id = create_tc(&app, booking(3, vec![doctor(DOC), patient(PAT)])).await;
    app.sim.clear_requests();
    assert_eq!(
        delete_uploads(&app, &id, Some(PAT)).await,
        (200, json!({"total": 0, "deleted": 0}))
    );
    assert_eq!(writes(&app), Vec::<String>::new());
}

async fn only_participants_may_ask(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[FLAG_ON]).await;
    let id = create_tc(&app, pair()).await;
    let room = only_room(&app);
    let key = app.sim.seed_upload(&room.id, "report.pdf", 1234).unwrap();
    app.sim.clear_requests();

    assert_eq!(delete_uploads(&app, &id, None).await, (401, unauthorized()));
    assert_eq!(
        delete_uploads(&app, &id, Some("stranger")).await,
        (401, unauthorized())
    );
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
    assert_eq!(upload_keys(&app, &room.id).await, [key]);
}

async fn unknown_or_deleted_id_is_404(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[FLAG_ON]).await;
    for id in ["0123456789abcdef01234567", "room_xyz"] {
        assert_unknown_id(&delete_uploads(&app, id, Some(DOC)).await, id);
        // 404 before 401.
        assert_unknown_id(&delete_uploads(&app, id, None).await, id);
    }
    let id = create_tc(&app, pair()).await;
    assert_eq!(delete_tc(&app, &id).await, (204, Value::Null));
    assert_unknown_id(&delete_uploads(&app, &id, Some(DOC)).await, &id);
}

async fn kaleyra_failure_is_502(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[FLAG_ON]).await;
    let id = create_tc(&app, pair()).await;
    app.sim
        .add_fault(Fault::status("/v2/uploads", 500).method("GET"));
    let answer = delete_uploads(&app, &id, Some(DOC)).await;
    assert_error(&answer, 502, "Bad Gateway", &[]);
}
