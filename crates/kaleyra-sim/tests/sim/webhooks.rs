//! Webhooks: the signed `on_room_deleted` sent on a console deletion, tampering for the
//! receiver's tests, failed deliveries, and the settings.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kaleyra_client::webhook::WebhookError;
use kaleyra_sim::{WebhookDelivery, WebhookSettings, WebhookTamper};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{Ctx, KEY, assert_error};

/// What a test receiver got: the `bandyer-signature` header, the content type and the raw body.
#[derive(Debug, Clone)]
struct Received {
    signature: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// A webhook receiver on 127.0.0.1 answering `status` after `delay`; returns its URL and what
/// it received.
async fn receiver(status: u16, delay: Duration) -> (String, Arc<Mutex<Vec<Received>>>) {
    use axum::{body::Bytes, http::HeaderMap, routing::post};
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = got.clone();
    let app = axum::Router::new().route(
        "/webhooks/kaleyra",
        post(move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
                store.lock().unwrap().push(Received {
                    signature: header("bandyer-signature"),
                    content_type: header("content-type"),
                    body: body.to_vec(),
                });
                tokio::time::sleep(delay).await;
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/kaleyra", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// The receiver's check, with the client crate's function (as the service does).
fn verify(r: &Received) -> Result<(), WebhookError> {
    kaleyra_client::webhook::verify(
        r.signature.as_deref(),
        &r.body,
        KEY,
        chrono::Utc::now(),
        kaleyra_client::webhook::DEFAULT_TOLERANCE,
    )
}

/// Creates a room for `doc` and `pat` and deletes it as the console would; the delivery, if
/// a webhook URL is set.
async fn console_delete_new_room(ctx: &Ctx) -> Option<WebhookDelivery> {
    let id = ctx.room_id().await;
    ctx.sim.delete_room_from_console(&id).await.unwrap()
}

#[tokio::test]
async fn console_deletion_sends_the_signed_on_room_deleted_webhook() {
    let ctx = Ctx::new().await;
    let (url, got) = receiver(204, Duration::ZERO).await;
    assert_eq!(
        ctx.put("/_sim/webhook", json!({"url": url})).await,
        (
            StatusCode::OK,
            json!({"url": url, "tamper": null, "timeout_ms": 5000})
        )
    );
    assert_eq!(ctx.get("/_sim/webhook").await.1["url"], url);
    let room = ctx.room().await;
    let id = room["id"].as_str().unwrap();
    ctx.sim.clear_requests();

    let before_ms = chrono::Utc::now().timestamp_millis();
    let (status, answer) = ctx.delete(&format!("/_sim/rooms/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["room_id"], id);
    assert_eq!(answer["webhook"]["delivered"], true, "{answer}");
    assert_eq!(answer["webhook"]["status"], 204);
    assert_eq!(answer["webhook"]["error"], Value::Null);
    assert!(ctx.sim.rooms().is_empty(), "the room is gone");
    assert_error(
        &ctx.get(&format!("/v2/rooms/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let received = got.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let hook = &received[0];
    assert_eq!(hook.content_type.as_deref(), Some("application/json"));
    verify(hook).expect("signed with the API key, t within 5 minutes");
    let body: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 5, "{body}");
    assert_eq!(body["event"], "on_room_deleted");
    assert_eq!(body["event_version"], "1.0");
    assert_eq!(body["namespace"], "room");
    assert_eq!(body["data"], json!({"room_id": id}));
    let timestamp_ms = body["timestamp"].as_i64().expect("epoch ms");
    assert!(timestamp_ms >= before_ms && timestamp_ms <= chrono::Utc::now().timestamp_millis());
    // `t` is the same instant in seconds.
    let signature = hook.signature.as_deref().unwrap();
    assert!(
        signature.starts_with(&format!("t={},v0=", timestamp_ms / 1000)),
        "{signature}"
    );
    // The webhook is what the client crate decodes.
    let event = kaleyra_client::webhook::parse_event(&hook.body).unwrap();
    assert_eq!(event.room_deleted_id(), Some(id));

    // The delivery is recorded, with the body exactly as sent.
    let deliveries = ctx.sim.webhook_deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].body.as_bytes(), hook.body.as_slice());
    assert_eq!(deliveries[0].signature, hook.signature);
    assert_eq!(deliveries[0].url, url);
    assert_eq!(
        ctx.get("/_sim/webhook/deliveries").await.1[0]["event"],
        "on_room_deleted"
    );
    // A console deletion is not a /v2 call: the log has only the GET above.
    let log = ctx.sim.requests();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].path, format!("/v2/rooms/{id}"));

    // An unknown room: 404, nothing sent.
    assert_error(
        &ctx.delete(&format!("/_sim/rooms/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // The service's own deletion sends nothing.
    ctx.delete(&format!("/v2/rooms/{}", ctx.room_id().await))
        .await;
    assert_eq!(got.lock().unwrap().len(), 1);
    assert_eq!(ctx.sim.webhook_deliveries().len(), 1);

    assert_eq!(
        ctx.delete("/_sim/webhook/deliveries").await.0,
        StatusCode::NO_CONTENT
    );
    assert!(ctx.sim.webhook_deliveries().is_empty());
}

#[tokio::test]
async fn console_deletion_from_rust_and_without_a_url() {
    let ctx = Ctx::new().await;
    let room = ctx.room().await;
    let id = room["id"].as_str().unwrap();
    // No URL: the room goes, nothing is sent.
    assert_eq!(ctx.sim.delete_room_from_console(id).await, Ok(None));
    assert!(ctx.sim.rooms().is_empty());
    assert!(matches!(
        ctx.sim.delete_room_from_console(id).await,
        Err(kaleyra_sim::SimError::NotFound(_))
    ));

    let (url, got) = receiver(200, Duration::ZERO).await;
    ctx.sim.set_webhook_url(&url);
    let delivery = console_delete_new_room(&ctx).await.expect("a URL is set");
    assert!(delivery.delivered && delivery.status == Some(200));
    verify(&got.lock().unwrap()[0]).unwrap();
    ctx.sim.clear_webhook_url();
    assert_eq!(ctx.sim.webhook().url, None);
}

#[tokio::test]
async fn tampered_webhooks_for_the_receivers_tests() {
    let ctx = Ctx::new().await;
    let (url, got) = receiver(401, Duration::ZERO).await;
    ctx.sim.set_webhook_url(&url);
    ctx.doc_and_pat().await;

    ctx.sim
        .set_webhook_tamper(Some(WebhookTamper::WrongSignature));
    let d = console_delete_new_room(&ctx).await.unwrap();
    assert_eq!(d.tamper, Some(WebhookTamper::WrongSignature));
    assert!(!d.delivered && d.status == Some(401) && d.error.as_deref() == Some("HTTP 401"));
    assert_eq!(
        verify(&got.lock().unwrap()[0]),
        Err(WebhookError::BadSignature)
    );

    ctx.sim
        .set_webhook_tamper(Some(WebhookTamper::StaleTimestamp));
    console_delete_new_room(&ctx).await;
    let stale = got.lock().unwrap()[1].clone();
    assert!(matches!(
        verify(&stale),
        Err(WebhookError::StaleTimestamp { .. })
    ));
    let body: Value = serde_json::from_slice(&stale.body).unwrap();
    let age_ms = chrono::Utc::now().timestamp_millis() - body["timestamp"].as_i64().unwrap();
    assert!((3_600_000..3_660_000).contains(&age_ms), "{age_ms}");

    // Over the control API, as a string.
    assert_eq!(
        ctx.put(
            "/_sim/webhook",
            json!({"url": url, "tamper": "missing_signature"})
        )
        .await
        .1["tamper"],
        "missing_signature"
    );
    ctx.delete(&format!("/_sim/rooms/{}", ctx.room_id().await))
        .await;
    assert_eq!(
        verify(&got.lock().unwrap()[2]),
        Err(WebhookError::MissingSignature)
    );

    // Back to correct signatures.
    ctx.sim.set_webhook_tamper(None);
    console_delete_new_room(&ctx).await;
    verify(&got.lock().unwrap()[3]).unwrap();
}

#[tokio::test]
async fn failed_deliveries_are_recorded_and_never_block() {
    let ctx = Ctx::new().await;
    ctx.doc_and_pat().await;

    // The receiver fails.
    let (url, _) = receiver(500, Duration::ZERO).await;
    ctx.sim.set_webhook_url(&url);
    let d = console_delete_new_room(&ctx).await.unwrap();
    assert!(!d.delivered);
    assert_eq!(
        (d.status, d.error.as_deref()),
        (Some(500), Some("HTTP 500"))
    );

    // Nobody listens.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    ctx.sim
        .set_webhook_url(format!("http://{closed}/webhooks/kaleyra"));
    let d = console_delete_new_room(&ctx).await.unwrap();
    assert!(!d.delivered && d.status.is_none());
    assert!(d.error.is_some());

    // The receiver hangs: the control route answers after the timeout, not never.
    let (url, _) = receiver(204, Duration::from_secs(30)).await;
    assert_eq!(
        ctx.put("/_sim/webhook", json!({"url": url, "timeout_ms": 300}))
            .await
            .0,
        StatusCode::OK
    );
    let room = ctx.room_id().await;
    let started = Instant::now();
    let (status, answer) = ctx.delete(&format!("/_sim/rooms/{room}")).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["webhook"]["delivered"], false);
    assert!(
        answer["webhook"]["error"]
            .as_str()
            .unwrap()
            .contains("timeout"),
        "{answer}"
    );
    assert!(
        ctx.sim.rooms().is_empty(),
        "the room is deleted all the same"
    );

    // All three are in the list, in order.
    let deliveries = ctx.get("/_sim/webhook/deliveries").await.1;
    let delivered: Vec<&Value> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["delivered"])
        .collect();
    assert_eq!(delivered, [&json!(false), &json!(false), &json!(false)]);
}

#[tokio::test]
async fn webhook_settings_are_checked_and_reset() {
    let (url, _) = receiver(204, Duration::ZERO).await;
    let options = kaleyra_sim::SimOptions::default().webhook_url(&url);
    let ctx = Ctx::with_options(options).await;
    assert_eq!(ctx.sim.webhook().url.as_deref(), Some(url.as_str()));
    ctx.assert_invalid(
        Method::PUT,
        "/_sim/webhook",
        [
            json!({"url": "ftp://example.org/x"}),
            json!({"url": "/webhooks/kaleyra"}),
            json!({"url": url, "timeout_ms": 0}),
            json!({"url": url, "tamper": "late"}),
            json!({"url": url, "secret": "x"}),
        ],
    )
    .await;
    assert_eq!(
        ctx.sim.webhook().url.as_deref(),
        Some(url.as_str()),
        "unchanged"
    );
    // A PUT replaces every setting.
    assert_eq!(
        ctx.put("/_sim/webhook", json!({})).await.1,
        json!({"url": null, "tamper": null, "timeout_ms": 5000})
    );
    ctx.sim
        .set_webhook_tamper(Some(WebhookTamper::StaleTimestamp));
    ctx.room().await;
    let id = ctx.sim.rooms()[0].id.clone();
    ctx.sim.set_webhook_url(&url);
    ctx.sim.delete_room_from_console(&id).await.unwrap();
    assert_eq!(ctx.sim.webhook_deliveries().len(), 1);

    ctx.sim.reset();
    assert_eq!(
        ctx.sim.webhook(),
        WebhookSettings {
            url: Some(url.clone()),
            tamper: None,
            timeout_ms: 5000
        },
        "back to the start settings"
    );
    assert!(ctx.sim.webhook_deliveries().is_empty());
}
