//! `DELETE /teleconsultation/:roomId` (spec §4.5).

use kaleyra_sim::Fault;
use reqwest::Method;
use serde_json::{Value, json};

use super::*;
use crate::support::{TestApp, TestDatabase};

crate::on_both_backends!(
    deletes_the_room_and_then_the_id_is_gone_everywhere,
    deleting_without_a_room_calls_no_kaleyra,
    room_already_gone_on_kaleyra_counts_as_deleted,
    unknown_or_malformed_id_is_404,
    allowed_inside_the_immutable_period,
    kaleyra_failure_still_deletes,
    other_teleconsultations_are_untouched,
);

const NO_BODY: (u16, Value) = (204, Value::Null);

async fn deletes_the_room_and_then_the_id_is_gone_everywhere(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("TELECONSULTATION_DELETE_UPLOADS", "true")]).await;
    let id = create_tc(&app, pair()).await;
    let room = only_room(&app);
    app.sim.clear_requests();

    assert_eq!(delete_tc(&app, &id).await, NO_BODY);
    assert!(app.sim.rooms().is_empty(), "the room is deleted on Kaleyra");
    assert_eq!(writes(&app), [format!("DELETE /v2/rooms/{}", room.id)]);

    app.sim.clear_requests();
    app.clock.set(start());
    assert_eq!(
        get_tc(&app, &id, Some(DOC), "").await,
        (404, not_found_on_crud(&id))
    );
    assert_unknown_id(
        &patch_tc(&app, &id, json!({"duration_in_seconds": 1800})).await,
        &id,
    );
    assert_unknown_id(&add_participant(&app, &id, patient(PAT2)).await, &id);
    assert_unknown_id(&delete_uploads(&app, &id, Some(DOC)).await, &id);
    assert_unknown_id(&delete_tc(&app, &id).await, &id);
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

async fn deleting_without_a_room_calls_no_kaleyra(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, booking(3, vec![doctor(DOC)])).await;
    app.sim.clear_requests();
    assert_eq!(delete_tc(&app, &id).await, NO_BODY);
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
    assert_unknown_id(&delete_tc(&app, &id).await, &id);
}

async fn room_already_gone_on_kaleyra_counts_as_deleted(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    let room = only_room(&app);
    let (status, _) = sim_call(&app, Method::DELETE, &format!("/v2/rooms/{}", room.id)).await;
    assert_eq!(status, 204);
    assert_eq!(delete_tc(&app, &id).await, NO_BODY);
    assert_eq!(
        get_tc(&app, &id, Some(DOC), "").await,
        (404, not_found_on_crud(&id))
    );
}

async fn unknown_or_malformed_id_is_404(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    for id in ["0123456789abcdef01234567", "room_xyz", "-"] {
        assert_unknown_id(&delete_tc(&app, id).await, id);
    }
    assert_eq!(app.kaleyra_calls(), Vec::<String>::new());
}

async fn allowed_inside_the_immutable_period(db: TestDatabase) {
    let app = TestApp::spawn_with(db, &[("IMMUTABLE_PERIOD_MS", "600000")]).await;
    let id = create_tc(&app, pair()).await;
    app.clock.set(start() + chrono::Duration::minutes(1));
    assert_eq!(delete_tc(&app, &id).await, NO_BODY);
    assert!(app.sim.rooms().is_empty());
}

async fn kaleyra_failure_still_deletes(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let id = create_tc(&app, pair()).await;
    app.sim
        .add_fault(Fault::status("/v2/rooms/{id}", 503).method("DELETE"));
    assert_eq!(delete_tc(&app, &id).await, NO_BODY);
    assert_eq!(
        get_tc(&app, &id, Some(DOC), "").await,
        (404, not_found_on_crud(&id))
    );
    assert_unknown_id(&delete_tc(&app, &id).await, &id);
}

async fn other_teleconsultations_are_untouched(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let first = create_tc(&app, pair()).await;
    let second = create_tc(&app, pair()).await;
    let rooms = app.sim.rooms();
    assert_eq!(delete_tc(&app, &first).await, NO_BODY);
    let left = only_room(&app);
    assert!(rooms.contains(&left));

    app.clock.set(start());
    let (status, body) = get_tc(&app, &second, Some(PAT), "").await;
    assert_eq!(status, 200);
    assert_link(
        &body["accessLinkURL"],
        &link_of(&left, PAT),
        &["language=it"],
    );
}
