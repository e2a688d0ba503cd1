//! Bearer tokens (spec §5): with `JWT_ISSUER`, `JWT_AUDIENCE` and `JWT_JWKS_URL` set, the
//! caller is the verified `Authorization: Bearer` token and identity headers are ignored.
//! Keys are generated in the test process (RSA and EC) and served by a local JWKS endpoint.

use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::{Value, json};
use telecons::clock::Clock as _;

use crate::support::{TestApp, TestDatabase, test_epoch};
use crate::teleconsultations::{config_file, pair};
use crate::test_issuer::{JwksEndpoint, keys, sign, unsigned};

crate::on_both_backends!(
    a_valid_token_identifies_the_caller_and_headers_are_ignored,
    forged_expired_or_misdirected_tokens_are_401,
    a_rotated_in_key_is_accepted,
    claims_are_mapped_as_configured,
    check_up_reports_the_key_set_and_the_document_names_the_scheme,
);

pub(crate) const ISSUER: &str = "https://id.telecons.test/";
pub(crate) const AUDIENCE: &str = "telecons-api";

/// Claims valid at the test epoch for `sub`.
pub(crate) fn claims(sub: &str) -> Value {
    let now = test_epoch().timestamp();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600, "groups": ["patient"]})
}

/// The groups of the service file bearer-mode apps get: who books, who changes settings.
pub(crate) const BOOKING_GROUP: &str = "booking";
pub(crate) const SETTINGS_GROUP: &str = "admin";

/// The token of the booking backend: a machine client (client-credentials grant), whose
/// rights are in its `scope`.
pub(crate) fn booking_token() -> String {
    let now = test_epoch().timestamp();
    let token = keys().rsa.sign(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "booking-backend@clients",
        "iat": now, "exp": now + 600, "scope": format!("read:agenda {BOOKING_GROUP}"),
    }));
    format!("Bearer {token}")
}

/// Books `body` as the booking backend; returns the new id.
pub(crate) async fn book(app: &TestApp, body: Value) -> String {
    let token = booking_token();
    let (status, answer) = app
        .send(
            Method::POST,
            "/teleconsultation",
            &[("authorization", &token)],
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    answer["roomId"].as_str().expect("roomId").to_owned()
}

/// The app in bearer mode, with a service file listing [`BOOKING_GROUP`] and
/// [`SETTINGS_GROUP`] (bearer mode requires both lists) unless `extra` names another.
pub(crate) async fn app_in_bearer_mode(
    db: TestDatabase,
    extra: &[(&str, &str)],
) -> (TestApp, JwksEndpoint) {
    let issuer = JwksEndpoint::spawn(&[&keys().rsa.jwk, &keys().ec.jwk]).await;
    let service_file = config_file(json!({
        "privileges": {"basic": {"groups": ["patient"]}, "plus": {"groups": ["doctor"]}},
        "bookingGroups": [BOOKING_GROUP],
        "settingsGroups": [SETTINGS_GROUP],
    }));
    let mut env: Vec<(&str, String)> = vec![
        ("JWT_ISSUER", ISSUER.to_owned()),
        ("JWT_AUDIENCE", AUDIENCE.to_owned()),
        ("JWT_JWKS_URL", issuer.url.clone()),
        (
            "TELECONSULTATION_SERVICE_CONFIG_PATH",
            service_file
                .path()
                .to_str()
                .expect("a UTF-8 path")
                .to_owned(),
        ),
    ];
    env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn_with(db, &env).await;
    (app, issuer)
}

async fn get_as(
    app: &TestApp,
    id: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(bearer) = &bearer {
        all.push(("authorization", bearer));
    }
    app.get(&format!("/teleconsultation/{id}"), &all).await
}

fn unauthorized() -> Value {
    json!({"statusCode": 401, "error": "Unauthorized user", "message": "Unauthorized user"})
}

async fn a_valid_token_identifies_the_caller_and_headers_are_ignored(db: TestDatabase) {
    let (app, _issuer) =
        app_in_bearer_mode(db, &[("TELECONSULTATION_DELETE_UPLOADS", "true")]).await;
    let id = book(&app, pair()).await;
    let patient = crate::teleconsultations::PAT;
    let doc = crate::teleconsultations::DOC;
    let (status, body) = get_as(&app, &id, Some(&keys().rsa.sign(&claims(patient))), &[]).await;
    assert_eq!(status, 200, "RS256: {body}");
    assert_eq!(
        body["bandyerUserId"],
        crate::teleconsultations::kid(patient)
    );
    let (status, body) = get_as(&app, &id, Some(&keys().ec.sign(&claims(doc))), &[]).await;
    assert_eq!(status, 200, "ES256: {body}");
    assert_eq!(body["bandyerUserId"], crate::teleconsultations::kid(doc));
    // Identity headers alone identify nobody.
    let (status, body) = get_as(&app, &id, None, &[("miauserid", patient)]).await;
    assert_eq!((status, body), (401, unauthorized()));
    let (status, body) = app
        .send(
            Method::DELETE,
            &format!("/teleconsultation/{id}/uploads"),
            &[("miauserid", patient)],
            None,
        )
        .await;
    assert_eq!((status, body), (401, unauthorized()));
    let token = format!("Bearer {}", keys().rsa.sign(&claims(patient)));
    let (status, body) = app
        .send(
            Method::DELETE,
            &format!("/teleconsultation/{id}/uploads"),
            &[("authorization", &token)],
            None,
        )
        .await;
    assert_eq!((status, body), (200, json!({"total": 0, "deleted": 0})));
    let (status, body) = app
        .send(
            Method::POST,
            "/credentials",
            &[("authorization", &token)],
            None,
        )
        .await;
    assert_eq!(status, 201, "a bearer caller gets credentials: {body}");
    let (status, body) = app
        .send(
            Method::POST,
            "/credentials",
            &[("miauserid", patient), ("miausergroups", "patient")],
            None,
        )
        .await;
    assert_eq!((status, body), (401, unauthorized()));
    // …and a token wins over them.
    let (status, body) = get_as(
        &app,
        &id,
        Some(&keys().rsa.sign(&claims(patient))),
        &[("miauserid", doc)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["bandyerUserId"],
        crate::teleconsultations::kid(patient)
    );
}

async fn forged_expired_or_misdirected_tokens_are_401(db: TestDatabase) {
    let (app, _issuer) = app_in_bearer_mode(db, &[]).await;
    let id = book(&app, pair()).await;
    let patient = crate::teleconsultations::PAT;
    let now = test_epoch().timestamp();
    let with = |key: &str, value: Value| {
        let mut c = claims(patient);
        c[key] = value;
        c
    };
    let alg_none = unsigned(
        &json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"}),
        &claims(patient),
    );
    let hs256_with_public_key = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(&keys().rsa_public_der).unwrap(),
        &claims(patient),
    );
    let unknown_kid = sign(
        Algorithm::RS256,
        Some("nobody"),
        &keys().outsider.key,
        &claims(patient),
    );
    let cases: Vec<(&str, String)> = vec![
        ("alg none", alg_none),
        ("HS256 keyed with the public key", hs256_with_public_key),
        ("unknown kid", unknown_kid),
        ("wrong key", keys().outsider.sign(&claims(patient))),
        ("expired", keys().rsa.sign(&with("exp", json!(now - 3600)))),
        (
            "not yet valid",
            keys().rsa.sign(&with("nbf", json!(now + 3600))),
        ),
        (
            "wrong issuer",
            keys().rsa.sign(&with("iss", json!("https://evil.test/"))),
        ),
        (
            "wrong audience",
            keys().rsa.sign(&with("aud", json!("someone-else"))),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in cases {
        let answer = get_as(&app, &id, Some(&token), &[]).await;
        assert_eq!(answer, (401, unauthorized()), "{what}");
    }
}

async fn a_rotated_in_key_is_accepted(db: TestDatabase) {
    let (app, issuer) = app_in_bearer_mode(db, &[]).await;
    let id = book(&app, pair()).await;
    let patient = crate::teleconsultations::PAT;
    let token = keys().rotated.sign(&claims(patient));
    assert_eq!(
        get_as(&app, &id, Some(&token), &[]).await.0,
        401,
        "not published yet"
    );
    issuer.publish(&[&keys().rsa.jwk, &keys().rotated.jwk]);
    // Refetches of unknown keys are spaced by a cooldown on the service's clock.
    app.clock.advance(chrono::Duration::seconds(10));
    let token = keys().rotated.sign(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": patient,
        "exp": app.clock.now().timestamp() + 600,
    }));
    let (status, body) = get_as(&app, &id, Some(&token), &[]).await;
    assert_eq!(status, 200, "{body}");
}

async fn claims_are_mapped_as_configured(db: TestDatabase) {
    let (app, _issuer) = app_in_bearer_mode(
        db,
        &[("JWT_USER_ID_CLAIM", "uid"), ("JWT_GROUPS_CLAIM", "roles")],
    )
    .await;
    let now = test_epoch().timestamp();
    let token = keys().ec.sign(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "ignored", "uid": "dr-who",
        "roles": "doctor", "exp": now + 600,
    }));
    let (status, body) = app
        .send(
            Method::POST,
            "/credentials",
            &[("authorization", &format!("Bearer {token}"))],
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["bandyerUserId"],
        crate::teleconsultations::kid("dr-who")
    );
    let user = app
        .sim
        .users()
        .into_iter()
        .find(|u| u.id == crate::teleconsultations::kid("dr-who"))
        .expect("created");
    assert_eq!(
        user.role, "plus",
        "the groups claim (one string) made it plus"
    );
}

async fn check_up_reports_the_key_set_and_the_document_names_the_scheme(db: TestDatabase) {
    let (app, issuer) = app_in_bearer_mode(db, &[]).await;
    let (status, body) = app.get("/-/check-up", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["identity"], "OK");
    issuer.set_failing(true);
    app.clock.advance(chrono::Duration::seconds(10));
    let (status, body) = app.get("/-/check-up", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["identity"], "KO");
    let (_, doc) = app.get("/documentation/json", &[]).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Only the bearer token: the gateway's headers are ignored, every route guarded.
    for (path, method) in [
        ("/credentials", "post"),
        ("/teleconsultation", "post"),
        ("/teleconsultation/{roomId}", "get"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["security"],
            json!([{"bearer": []}]),
            "{method} {path}"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]
            .as_object()
            .map(|schemes| schemes.keys().map(String::as_str).collect::<Vec<_>>()),
        Some(vec!["bearer"])
    );
}
