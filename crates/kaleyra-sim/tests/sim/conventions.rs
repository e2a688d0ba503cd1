//! What every call shares: the API key, JSON bodies, unknown fields and routes.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{Ctx, KEY, assert_error, send};

#[tokio::test]
async fn every_v2_call_needs_the_api_key() {
    let ctx = Ctx::new().await;
    let company = || ctx.http.get(ctx.url("/v2/company"));
    assert_error(
        &send(company()).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &send(company().header("apikey", "ak_wrong")).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    // An unauthorised call has no effect.
    let resp = ctx
        .http
        .post(ctx.url("/v2/users"))
        .json(&json!({"id": "x", "role": "plus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(ctx.sim.users().is_empty());
    // The header name is case-insensitive; the control API needs no key.
    let ok = company().header("ApiKey", KEY).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let ctl = ctx.http.get(ctx.url("/_sim/users")).send().await.unwrap();
    assert_eq!(ctl.status(), StatusCode::OK);
}

#[tokio::test]
async fn json_bodies_need_the_json_content_type() {
    let ctx = Ctx::new().await;
    let user = r#"{"id":"a","role":"plus"}"#;
    assert_error(
        &send(ctx.keyed(Method::POST, "/v2/users").body(user)).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let text_plain = ctx
        .keyed(Method::POST, "/v2/users")
        .header("content-type", "text/plain")
        .body(user);
    assert_eq!(send(text_plain).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(ctx.sim.users().is_empty());
    // Malformed JSON is a 400.
    let malformed = ctx
        .keyed(Method::POST, "/v2/users")
        .header("content-type", "application/json")
        .body("{");
    assert_error(
        &send(malformed).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

#[tokio::test]
async fn unknown_fields_are_refused_by_name() {
    let ctx = Ctx::new().await;
    let got = ctx
        .post("/v2/users", json!({"role": "plus", "nmae": "Ada"}))
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        got.1["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `nmae`"),
        "{}",
        got.1
    );

    ctx.doc_and_pat().await;
    let got = ctx
        .post(
            "/v2/rooms",
            json!({"participants": [{"user_id": "doc", "tool": {}}, {"user_id": "pat"}]}),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        got.1["message"].as_str().unwrap().contains("`tool`"),
        "{}",
        got.1
    );

    let got = ctx.put("/v2/company", json!({"name": "Other"})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        got.1["message"].as_str().unwrap().contains("`name`"),
        "{}",
        got.1
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let ctx = Ctx::new().await;
    assert_error(
        &ctx.get("/v2/nothing").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &ctx.delete("/v2/users").await.clone(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}
