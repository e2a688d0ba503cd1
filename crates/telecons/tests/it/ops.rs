//! The operational routes (spec §4.10) and the common HTTP behaviour (§6).

use serde_json::json;

use crate::support::{TestApp, TestDatabase};

crate::on_both_backends!(ready_and_check_up_answer_ok_when_everything_is_reachable);

async fn ready_and_check_up_answer_ok_when_everything_is_reachable(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    assert_eq!(
        app.get("/-/healthz", &[]).await,
        (200, json!({"status": "OK"}))
    );
    assert_eq!(
        app.get("/-/ready", &[]).await,
        (200, json!({"status": "OK", "checks": {"storage": "OK"}}))
    );
    assert_eq!(
        app.get("/-/check-up", &[]).await,
        (
            200,
            json!({"status": "OK", "checks": {"storage": "OK", "kaleyra": "OK"}})
        )
    );
}
