//! Injected faults: refusals, answers lost after the effect, dropped connections, delays,
//! gathers, rates, the control API, and the background upload as a target.

use std::time::{Duration, Instant};

use kaleyra_sim::{Fault, FaultAction};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{Ctx, assert_error, doc_and_pat_room, into_parts, jpeg_part};

#[tokio::test]
async fn status_fault_for_the_next_n_calls_has_no_effect() {
    let ctx = Ctx::new().await;
    ctx.doc_and_pat().await;
    ctx.sim.add_fault(
        Fault::status("/v2/rooms", 503)
            .method("post")
            .times(2)
            .retry_after(7),
    );
    let body = doc_and_pat_room();

    for _ in 0..2 {
        let resp = ctx
            .keyed(Method::POST, "/v2/rooms")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers().get("retry-after").unwrap(), "7");
        assert_error(
            &into_parts(resp).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "simulated_fault",
        );
    }
    assert!(ctx.sim.rooms().is_empty(), "a refused call has no effect");
    // Other methods and routes are untouched meanwhile; and the rule is now used up.
    assert_eq!(ctx.get("/v2/rooms").await.0, StatusCode::OK);
    assert!(ctx.sim.faults().is_empty());
    assert_eq!(ctx.post("/v2/rooms", body).await.0, StatusCode::CREATED);
    assert_eq!(ctx.sim.rooms().len(), 1);

    let faults: Vec<Option<String>> = ctx
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v2/rooms")
        .map(|r| r.fault)
        .collect();
    assert_eq!(
        faults,
        vec![
            Some("status:503".into()),
            Some("status:503".into()),
            None,
            None
        ]
    );
}

#[tokio::test]
async fn fault_route_and_method_matching() {
    let ctx = Ctx::new().await;
    let room = ctx.room().await;
    let id = room["id"].as_str().unwrap();
    ctx.sim
        .add_fault(Fault::status("/v2/rooms/{id}", 500).method("DELETE"));
    assert_eq!(ctx.get(&format!("/v2/rooms/{id}")).await.0, StatusCode::OK);
    assert_eq!(ctx.get("/v2/rooms").await.0, StatusCode::OK);
    for _ in 0..2 {
        assert_error(
            &ctx.delete(&format!("/v2/rooms/{id}")).await,
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulated_fault",
        );
    }
    assert_eq!(ctx.sim.rooms().len(), 1);
    // No Retry-After unless asked for.
    let resp = ctx
        .keyed(Method::DELETE, &format!("/v2/rooms/{id}"))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("retry-after").is_none());
    ctx.sim.clear_faults();
    assert_eq!(
        ctx.delete(&format!("/v2/rooms/{id}")).await.0,
        StatusCode::NO_CONTENT
    );

    // A rule without route or method hits every /v2 call but not the control API.
    ctx.sim
        .add_fault(Fault::new(FaultAction::Status(429)).times(1));
    assert_error(
        &ctx.get("/v2/company").await,
        StatusCode::TOO_MANY_REQUESTS,
        "simulated_fault",
    );
    assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK);
    ctx.sim.add_fault(Fault::new(FaultAction::Status(429)));
    assert_eq!(ctx.get("/_sim/rooms").await.0, StatusCode::OK);
}

#[tokio::test]
async fn status_after_effect_creates_the_room_but_fails_the_answer() {
    let ctx = Ctx::new().await;
    ctx.doc_and_pat().await;
    ctx.sim
        .add_fault(Fault::status_after_effect("/v2/rooms", 502).times(1));
    let got = ctx
        .post(
            "/v2/rooms",
            json!({"participants": [{"user_id": "doc"}, {"user_id": "pat"}], "description": "tag"}),
        )
        .await;
    assert_error(&got, StatusCode::BAD_GATEWAY, "simulated_fault");
    let rooms = ctx.sim.rooms();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].description.as_deref(), Some("tag"));
    // The lost room can be found again.
    assert_eq!(ctx.get("/v2/rooms").await.1[0]["description"], "tag");
    let faults: Vec<_> = ctx.sim.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        faults,
        vec![None, None, Some("status_after_effect:502".to_owned()), None]
    );
}

#[tokio::test]
async fn drop_after_effect_creates_the_room_and_drops_the_connection() {
    let ctx = Ctx::new().await;
    ctx.doc_and_pat().await;
    ctx.sim.add_fault(
        Fault::drop_after_effect("/v2/rooms")
            .method("POST")
            .times(1),
    );
    let result = ctx
        .keyed(Method::POST, "/v2/rooms")
        .json(&doc_and_pat_room())
        .send()
        .await;
    let err = result.expect_err("the connection must drop without an answer");
    assert!(err.is_request() && !err.is_timeout(), "{err:?}");
    assert_eq!(
        ctx.sim.rooms().len(),
        1,
        "the call took effect, exactly once"
    );
    // The next call works normally (on a new connection).
    assert_eq!(ctx.get("/v2/rooms").await.1.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn delay_fault_delays_then_answers() {
    let ctx = Ctx::new().await;
    ctx.sim
        .add_fault(Fault::delay("/v2/company", Duration::from_millis(300)).times(1));
    let start = Instant::now();
    let (status, _) = ctx.get("/v2/company").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(ctx.sim.requests()[0].fault.as_deref(), Some("delay_ms:300"));
    // And a client timeout shorter than the delay sees a timeout.
    ctx.sim
        .add_fault(Fault::delay("/v2/company", Duration::from_secs(5)).times(1));
    let err = ctx
        .keyed(Method::GET, "/v2/company")
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn gather_holds_calls_until_enough_are_held_at_once() {
    let ctx = Ctx::new().await;
    // Alone, a call is never let through: its client gives up.
    ctx.sim.add_fault(Fault::gather("/v2/company", 2));
    let err = ctx
        .keyed(Method::GET, "/v2/company")
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    ctx.sim.clear_faults();
    ctx.sim.clear_requests();

    ctx.sim
        .add_fault(Fault::gather("/v2/company", 3).method("GET").times(3));
    let (a, b, c) = tokio::join!(
        ctx.get("/v2/company"),
        ctx.get("/v2/company"),
        ctx.get("/v2/company")
    );
    for (status, body) in [a, b, c] {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body["company"]["name"], "Simulated Company",
            "handled normally"
        );
    }
    assert!(ctx.sim.faults().is_empty(), "used up");
    assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK, "not held");
    let faults: Vec<Option<String>> = ctx.sim.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        faults,
        [
            Some("gather:3".to_owned()),
            Some("gather:3".to_owned()),
            Some("gather:3".to_owned()),
            None
        ]
    );
    // Each call is logged with the calls being answered as it arrived, itself included.
    let in_flight: Vec<usize> = ctx
        .sim
        .requests()
        .into_iter()
        .map(|r| r.in_flight)
        .collect();
    assert_eq!(in_flight, [1, 2, 3, 1]);
}

#[tokio::test]
async fn rate_faults() {
    let ctx = Ctx::new().await;
    ctx.sim
        .add_fault(Fault::status("/v2/company", 503).rate(1.0).times(3));
    for _ in 0..3 {
        assert_eq!(
            ctx.get("/v2/company").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK);
    ctx.sim
        .add_fault(Fault::status("/v2/company", 503).rate(0.0));
    for _ in 0..5 {
        assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn faults_over_the_control_api() {
    let ctx = Ctx::new().await;
    let rule = json!({"method": "get", "route": "/v2/company", "action": {"status": 503}, "times": 2, "retry_after": 1});
    let (status, body) = ctx.post("/_sim/faults", rule).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body,
        json!({"method": "GET", "route": "/v2/company", "action": {"status": 503}, "times": 2, "rate": null, "retry_after": 1})
    );
    let resp = ctx.keyed(Method::GET, "/v2/company").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    let (_, list) = ctx.get("/_sim/faults").await;
    assert_eq!(list[0]["times"], 1, "one left");

    for (action, want) in [
        (json!({"delay_ms": 10}), json!({"delay_ms": 10})),
        (
            json!({"status_after_effect": 502}),
            json!({"status_after_effect": 502}),
        ),
        (
            json!({"drop_after_effect": true}),
            json!({"drop_after_effect": true}),
        ),
        (json!({"gather": 8}), json!({"gather": 8})),
    ] {
        let (status, body) = ctx
            .post(
                "/_sim/faults",
                json!({"route": "/v2/rooms", "action": action}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body["action"], want);
    }
    assert_eq!(ctx.get("/_sim/faults").await.1.as_array().unwrap().len(), 5);

    ctx.assert_invalid(
        Method::POST,
        "/_sim/faults",
        [
            json!({"route": "/v2/rooms/:id", "action": {"status": 503}}),
            json!({"route": "/v2/rooms", "action": {}}),
            json!({"route": "/v2/rooms", "action": {"status": 503, "delay_ms": 1}}),
            json!({"route": "/v2/rooms", "action": {"gather": 0}}),
            json!({"route": "/v2/rooms", "action": {"status": 503}, "rate": 2.0}),
            json!({"route": "/v2/rooms", "action": {"status": 503}, "times": 0}),
            json!({"route": "/v2/rooms", "action": {"status": 503}, "tiems": 1}),
        ],
    )
    .await;
    assert_eq!(ctx.delete("/_sim/faults").await.0, StatusCode::NO_CONTENT);
    assert_eq!(ctx.get("/_sim/faults").await.1, json!([]));
    assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK);
}

#[tokio::test]
async fn faults_target_the_background_upload() {
    let ctx = Ctx::new().await;
    ctx.sim.add_fault(
        Fault::status("/v2/company/virtual-background", 503)
            .method("POST")
            .times(1),
    );
    assert_error(
        &ctx.upload_background(jpeg_part(10)).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "simulated_fault",
    );
    assert!(
        ctx.sim.backgrounds().is_empty(),
        "a refusing fault has no effect"
    );

    ctx.sim
        .add_fault(Fault::status_after_effect("/v2/company/virtual-background", 502).times(1));
    assert_error(
        &ctx.upload_background(jpeg_part(10)).await,
        StatusCode::BAD_GATEWAY,
        "simulated_fault",
    );
    assert_eq!(ctx.sim.backgrounds().len(), 1, "stored, answer lost");

    ctx.sim.add_fault(
        Fault::delay("/v2/company/virtual-background", Duration::from_millis(300)).times(1),
    );
    let started = Instant::now();
    assert_eq!(
        ctx.upload_background(jpeg_part(10)).await.0,
        StatusCode::CREATED
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    let faults: Vec<Option<String>> = ctx.sim.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        faults,
        [
            Some("status:503".to_owned()),
            Some("status_after_effect:502".to_owned()),
            Some("delay_ms:300".to_owned())
        ]
    );
    // Over the control API too.
    assert_eq!(
        ctx.post(
            "/_sim/faults",
            json!({"route": "/v2/company/virtual-background", "action": {"status": 500}})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        ctx.upload_background(jpeg_part(10)).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}
