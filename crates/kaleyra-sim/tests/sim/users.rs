//! Users: create, get, update, and creation under concurrency.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{Ctx, assert_error, is_lower_hex};

#[tokio::test]
async fn users_create_get_update() {
    let ctx = Ctx::new().await;
    let (status, body) = ctx
        .post(
            "/v2/users",
            json!({"id": "tc_9f2c.A-b", "role": "plus", "language": "it"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body,
        json!({"id": "tc_9f2c.A-b", "role": "plus", "active": true, "language": "it"})
    );

    let dup = ctx
        .post("/v2/users", json!({"id": "tc_9f2c.A-b", "role": "basic"}))
        .await;
    assert_error(&dup, StatusCode::CONFLICT, "user_already_exists");

    // Optional fields may be null; a missing id is generated; language defaults to the company's.
    let (status, body) = ctx
        .post(
            "/v2/users",
            json!({"id": null, "role": "basic", "language": null}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let generated = body["id"].as_str().unwrap();
    assert!(
        generated.starts_with("usr_") && is_lower_hex(&generated[4..]),
        "{generated}"
    );
    assert_eq!(body["language"], "en");
    assert_eq!(body["role"], "basic");

    ctx.assert_invalid(
        Method::POST,
        "/v2/users",
        [
            json!({"id": "a b", "role": "plus"}),
            json!({"id": "", "role": "plus"}),
            json!({"id": "a".repeat(129), "role": "plus"}),
            json!({"id": "ok", "role": "admin"}),
            json!({"id": "ok"}),
        ],
    )
    .await;
    let (status, _) = ctx
        .post("/v2/users", json!({"id": "a".repeat(128), "role": "plus"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, body) = ctx.get("/v2/users/tc_9f2c.A-b").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": "tc_9f2c.A-b", "role": "plus", "active": true, "language": "it"})
    );
    assert_error(
        &ctx.get("/v2/users/ghost").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let (status, body) = ctx
        .put(
            "/v2/users/tc_9f2c.A-b",
            json!({"active": false, "language": "de", "role": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": "tc_9f2c.A-b", "role": "plus", "active": false, "language": "de"})
    );
    let (_, body) = ctx
        .put("/v2/users/tc_9f2c.A-b", json!({"role": "basic"}))
        .await;
    assert_eq!(body["role"], "basic");
    assert_eq!(ctx.get("/v2/users/tc_9f2c.A-b").await.1, body);
    assert_error(
        &ctx.put("/v2/users/ghost", json!({"active": true})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let users = ctx.sim.users();
    assert_eq!(users.len(), 3);
    let u = users.iter().find(|u| u.id == "tc_9f2c.A-b").unwrap();
    assert_eq!(
        (u.role.as_str(), u.active, u.language.as_str()),
        ("basic", false, "de")
    );
}

/// The statuses of `n` `POST /v2/users` sent at once, the `i`th with body `body(i)`.
async fn create_at_once(
    ctx: &Ctx,
    n: usize,
    body: impl Fn(usize) -> serde_json::Value,
) -> Vec<StatusCode> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let req = ctx.keyed(Method::POST, "/v2/users").json(&body(i));
            tokio::spawn(async move { req.send().await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_user_creation() {
    let ctx = Ctx::new().await;
    let distinct = create_at_once(
        &ctx,
        50,
        |i| json!({"id": format!("u{i}"), "role": "basic"}),
    )
    .await;
    for status in distinct {
        assert_eq!(status, StatusCode::CREATED);
    }
    assert_eq!(ctx.sim.users().len(), 50);

    let statuses = create_at_once(&ctx, 20, |_| json!({"id": "same", "role": "plus"})).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        19
    );
    assert_eq!(ctx.sim.users().len(), 51);
    assert_eq!(ctx.sim.requests().len(), 70);
}
