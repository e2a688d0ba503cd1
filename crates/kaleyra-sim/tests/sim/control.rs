//! The control API's request log, reset, artificial latency and rate limit.

use std::time::{Duration, Instant};

use kaleyra_sim::Fault;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{Ctx, assert_error, jpeg_part};

#[tokio::test]
async fn request_log() {
    let ctx = Ctx::new().await;
    ctx.post("/v2/users", json!({"id": "doc", "role": "plus"}))
        .await;
    ctx.get("/v2/uploads?room_id=room_abc").await;
    ctx.delete("/v2/rooms/room_abc").await;
    ctx.http.get(ctx.url("/v2/company")).send().await.unwrap(); // no key: still logged
    ctx.get("/_sim/users").await; // control calls are not logged
    ctx.upload_background(jpeg_part(10)).await;

    let log = ctx.sim.requests();
    let summary: Vec<(&str, &str, Option<&str>)> = log
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.query.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("POST", "/v2/users", None),
            ("GET", "/v2/uploads", Some("room_id=room_abc")),
            ("DELETE", "/v2/rooms/room_abc", None),
            ("GET", "/v2/company", None),
            ("POST", "/v2/company/virtual-background", None),
        ]
    );
    assert_eq!(log[0].body, Some(json!({"id": "doc", "role": "plus"})));
    assert!(
        log[1..]
            .iter()
            .all(|r| r.body.is_none() && r.fault.is_none())
    );

    let (status, over_http) = ctx.get("/_sim/requests").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        over_http[0],
        json!({"method": "POST", "path": "/v2/users", "query": null, "body": {"id": "doc", "role": "plus"}, "fault": null, "in_flight": 1})
    );
    assert_eq!(over_http.as_array().unwrap().len(), 5);

    assert_eq!(ctx.delete("/_sim/requests").await.0, StatusCode::NO_CONTENT);
    assert!(ctx.sim.requests().is_empty());
    ctx.get("/v2/company").await;
    ctx.sim.clear_requests();
    assert!(ctx.sim.requests().is_empty());
}

#[tokio::test]
async fn reset_clears_everything() {
    let ctx = Ctx::new().await;
    let room = ctx.room().await;
    ctx.sim
        .seed_upload(room["id"].as_str().unwrap(), "f", 1)
        .unwrap();
    let (_, bg) = ctx.upload_background(jpeg_part(10)).await;
    ctx.put("/v2/company", json!({"background_alias": bg["virtual_background"]["background_alias"], "default_language": "it"})).await;
    ctx.sim.add_fault(Fault::status("/v2/users", 503));

    assert_eq!(
        ctx.post("/_sim/reset", json!({})).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(ctx.sim.rooms().is_empty() && ctx.sim.users().is_empty());
    assert!(ctx.sim.faults().is_empty() && ctx.sim.requests().is_empty());
    let (_, company) = ctx.get("/v2/company").await;
    assert_eq!(company["company"]["default_language"], "en");
    assert_eq!(company["company"]["default_background"], Value::Null);
    assert_eq!(
        ctx.get(&format!(
            "/v2/uploads?room_id={}",
            room["id"].as_str().unwrap()
        ))
        .await
        .1,
        json!([])
    );
    // Backgrounds are gone too: ten fit again, and the old alias is unknown.
    assert_error(
        &ctx.put(
            "/v2/company",
            json!({"background_alias": bg["virtual_background"]["background_alias"]}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    ctx.user("doc", "plus").await; // no leftover 409 or fault

    ctx.sim.reset();
    assert!(ctx.sim.users().is_empty());
}

#[tokio::test]
async fn latency_delays_every_v2_answer_and_no_control_answer() {
    let ctx = Ctx::new().await;
    assert_eq!(ctx.sim.latency(), Duration::ZERO);
    assert_eq!(
        ctx.get("/_sim/latency").await,
        (StatusCode::OK, json!({"ms": 0}))
    );

    assert_eq!(
        ctx.put("/_sim/latency", json!({"ms": 400})).await,
        (StatusCode::OK, json!({"ms": 400}))
    );
    assert_eq!(ctx.sim.latency(), Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Refusals wait too (every answer of the API), control calls do not.
    let started = Instant::now();
    let wrong_key = ctx.http.get(ctx.url("/v2/company")).send().await.unwrap();
    assert_eq!(wrong_key.status(), StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(ctx.get("/_sim/users").await.0, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(400));

    ctx.sim.set_latency(Duration::ZERO);
    assert_eq!(ctx.get("/_sim/latency").await.1, json!({"ms": 0}));

    assert_error(
        &ctx.put("/_sim/latency", json!({"ms": 60_001})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        &ctx.put("/_sim/latency", json!({"ms": -1})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        &ctx.put("/_sim/latency", json!({"latency": 5})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

#[tokio::test]
async fn latency_given_at_start_survives_a_reset() {
    let options = kaleyra_sim::SimOptions::default().latency(Duration::from_millis(300));
    let ctx = Ctx::with_options(options).await;
    let started = Instant::now();
    assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    ctx.sim.set_latency(Duration::from_millis(5));
    ctx.sim.reset();
    assert_eq!(
        ctx.sim.latency(),
        Duration::from_millis(300),
        "back to the start value"
    );
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_beyond_the_allowance() {
    let ctx = Ctx::new().await;
    assert_eq!(
        ctx.get("/_sim/rate-limit").await,
        (StatusCode::OK, json!({"per_second": null}))
    );
    assert_eq!(
        ctx.put("/_sim/rate-limit", json!({"per_second": 1})).await,
        (StatusCode::OK, json!({"per_second": 1}))
    );
    // A request a fault answers uses none of the allowance.
    ctx.sim
        .add_fault(Fault::status("/v2/company", 503).times(1));
    assert_eq!(
        ctx.get("/v2/company").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK);
    // The allowance (1) is used: the next one waits, told for how long.
    let over = ctx
        .http
        .get(ctx.url("/v2/company"))
        .header("apikey", crate::KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(over.headers()["retry-after"], "1");
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    let faults: Vec<Option<String>> = ctx.sim.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        faults,
        vec![
            Some("status:503".to_owned()),
            None,
            Some("rate_limited".to_owned())
        ]
    );

    // 0 is no limit at all: refused; null lifts it.
    assert_error(
        &ctx.put("/_sim/rate-limit", json!({"per_second": 0})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_eq!(
        ctx.put("/_sim/rate-limit", json!({"per_second": null}))
            .await,
        (StatusCode::OK, json!({"per_second": null}))
    );
    for _ in 0..5 {
        assert_eq!(ctx.get("/v2/company").await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn the_rate_limit_given_at_start_survives_a_reset() {
    let per_second = std::num::NonZeroU32::new(500).unwrap();
    let ctx = Ctx::with_options(kaleyra_sim::SimOptions::default().rate_limit(per_second)).await;
    assert_eq!(ctx.sim.rate_limit(), Some(per_second));
    ctx.sim.set_rate_limit(None);
    ctx.sim.reset();
    assert_eq!(ctx.sim.rate_limit(), Some(per_second));
}
