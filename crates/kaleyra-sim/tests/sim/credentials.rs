//! SDK credentials: the token, its lifetime and the answer's shape.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{Ctx, KEY, assert_error, is_iso_millis};

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

/// The token's claims if it is an HS256 JWT signed with `key`.
fn claims(token: &str, key: &[u8]) -> jsonwebtoken::errors::Result<Claims> {
    let key = jsonwebtoken::DecodingKey::from_secret(key)?;
    let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::decode::<Claims>(token, &key, &validation).map(|data| data.claims)
}

#[tokio::test]
async fn sdk_credentials() {
    let ctx = Ctx::new().await;
    ctx.user("doc", "plus").await;

    let (status, body) = ctx
        .post(
            "/v2/sdk/credentials",
            json!({"user_id": "doc", "expires_in": 7200}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "doc");
    let token = body["access_token"].as_str().unwrap();
    let signed = claims(token, KEY.as_bytes()).expect("valid JWT");
    assert_eq!(signed.sub, "doc");
    assert_eq!(signed.exp - signed.iat, 7200);
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert!(is_iso_millis(body["expires_at"].as_str().unwrap()));
    assert_eq!(expires_at.timestamp(), signed.exp);
    // Signed with the API key, not anything else.
    assert!(claims(token, b"another key").is_err());

    let (_, body) = ctx
        .post(
            "/v2/sdk/credentials",
            json!({"user_id": "doc", "expires_in": null}),
        )
        .await;
    let signed = claims(body["access_token"].as_str().unwrap(), KEY.as_bytes()).unwrap();
    assert_eq!(signed.exp - signed.iat, 3600, "default lifetime");
    for ok in [360, 86_400] {
        assert_eq!(
            ctx.post(
                "/v2/sdk/credentials",
                json!({"user_id": "doc", "expires_in": ok})
            )
            .await
            .0,
            StatusCode::OK
        );
    }
    ctx.assert_invalid(
        Method::POST,
        "/v2/sdk/credentials",
        [359, 86_401, 0, -1].map(|bad| json!({"user_id": "doc", "expires_in": bad})),
    )
    .await;
    assert_error(
        &ctx.post("/v2/sdk/credentials", json!({"user_id": "ghost"}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn sdk_credentials_answer_shape() {
    let ctx = Ctx::new().await;
    ctx.user("doc", "plus").await;
    // `expires_in` is optional.
    let (status, body) = ctx
        .post("/v2/sdk/credentials", json!({"user_id": "doc"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["access_token", "expires_at", "user_id"]);
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let lifetime = expires_at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        (3590..=3600).contains(&lifetime.num_seconds()),
        "{lifetime}"
    );
    // `user_id` is required; a lifetime must be a whole number of seconds.
    ctx.assert_invalid(
        Method::POST,
        "/v2/sdk/credentials",
        [
            json!({}),
            json!({"user_id": "doc", "expires_in": "3600"}),
            json!({"user_id": "doc", "expires_in": 3600.5}),
            json!({"user_id": "doc", "ttl": 3600}),
        ],
    )
    .await;
    // The range is checked before the user.
    ctx.assert_invalid(
        Method::POST,
        "/v2/sdk/credentials",
        [json!({"user_id": "ghost", "expires_in": 10})],
    )
    .await;
}
