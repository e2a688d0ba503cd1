//! Bearer tokens (spec §5): with `JWT_ISSUER`, `JWT_AUDIENCE` and `JWT_JWKS_URL` set, the
//! caller is the verified `Authorization: Bearer` token and identity headers are ignored.
//! Keys are generated in the test process (RSA and EC) and served by a local JWKS endpoint.

use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use axum::response::IntoResponse as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use telecons::clock::Clock as _;

use crate::support::{TestApp, TestDatabase, test_epoch};
use crate::teleconsultations::{create_tc, pair};

crate::on_both_backends!(
    a_valid_token_identifies_the_caller_and_headers_are_ignored,
    forged_expired_or_misdirected_tokens_are_401,
    a_rotated_in_key_is_accepted,
    claims_are_mapped_as_configured,
    check_up_reports_the_key_set_and_the_document_names_the_scheme,
);

pub(crate) const ISSUER: &str = "https://id.telecons.test/";
pub(crate) const AUDIENCE: &str = "telecons-api";

/// A private key, its kid and the public JWK the issuer publishes for it.
pub(crate) struct Signer {
    key: EncodingKey,
    alg: Algorithm,
    kid: &'static str,
    pub(crate) jwk: Value,
}

impl Signer {
    pub(crate) fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

pub(crate) struct Keys {
    pub(crate) rsa: Signer,
    pub(crate) ec: Signer,
    /// Published only once rotated in.
    pub(crate) rotated: Signer,
    /// Never published; same kid as `rsa`.
    pub(crate) outsider: Signer,
    rsa_public_der: Vec<u8>,
}

/// Generated once per test process (RSA generation is the slow part).
pub(crate) fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let (rsa, rsa_public_der) = rsa_signer("rsa-1");
        Keys {
            rsa,
            ec: ec_signer("ec-1"),
            rotated: rsa_signer("rsa-2").0,
            outsider: rsa_signer("rsa-1").0,
            rsa_public_der,
        }
    })
}

fn rsa_signer(kid: &'static str) -> (Signer, Vec<u8>) {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(pkcs8.as_ref())
    );
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let public_der = AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
        .unwrap()
        .as_ref()
        .to_vec();
    let jwk = public_jwk(&key, Algorithm::RS256, kid);
    (
        Signer {
            key,
            alg: Algorithm::RS256,
            kid,
            jwk,
        },
        public_der,
    )
}

fn ec_signer(kid: &'static str) -> Signer {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let key = EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref());
    let jwk = public_jwk(&key, Algorithm::ES256, kid);
    Signer {
        key,
        alg: Algorithm::ES256,
        kid,
        jwk,
    }
}

fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(key, alg).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    jwk
}

/// The issuer's JWKS endpoint on loopback; its keys can change, and it can go down.
pub(crate) struct Issuer {
    pub(crate) url: String,
    keys: Arc<Mutex<Option<Vec<Value>>>>,
}

impl Issuer {
    pub(crate) async fn spawn(published: Vec<Value>) -> Issuer {
        let keys = Arc::new(Mutex::new(Some(published)));
        let served = Arc::clone(&keys);
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let served = Arc::clone(&served);
                async move {
                    match served.lock().unwrap().clone() {
                        Some(keys) => axum::Json(json!({"keys": keys})).into_response(),
                        None => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Issuer { url, keys }
    }

    pub(crate) fn publish(&self, keys: Vec<Value>) {
        *self.keys.lock().unwrap() = Some(keys);
    }

    pub(crate) fn go_down(&self) {
        *self.keys.lock().unwrap() = None;
    }

    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("JWT_ISSUER", ISSUER.to_owned()),
            ("JWT_AUDIENCE", AUDIENCE.to_owned()),
            ("JWT_JWKS_URL", self.url.clone()),
        ]
    }
}

/// Claims valid at the test epoch for `sub`.
pub(crate) fn claims(sub: &str) -> Value {
    let now = test_epoch().timestamp();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600, "groups": ["patient"]})
}

pub(crate) async fn app_in_bearer_mode(
    db: TestDatabase,
    extra: &[(&str, &str)],
) -> (TestApp, Issuer) {
    let issuer = Issuer::spawn(vec![keys().rsa.jwk.clone(), keys().ec.jwk.clone()]).await;
    let mut env: Vec<(&str, String)> = issuer.env();
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
    let id = create_tc(&app, pair()).await;
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
    let id = create_tc(&app, pair()).await;
    let patient = crate::teleconsultations::PAT;
    let now = test_epoch().timestamp();
    let with = |key: &str, value: Value| {
        let mut c = claims(patient);
        c[key] = value;
        c
    };
    let part = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
    let alg_none = format!(
        "{}.{}.",
        part(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})),
        part(&claims(patient))
    );
    let mut confused = Header::new(Algorithm::HS256);
    confused.kid = Some("rsa-1".into());
    let hs256_with_public_key = jsonwebtoken::encode(
        &confused,
        &claims(patient),
        &EncodingKey::from_secret(&keys().rsa_public_der).unwrap(),
    )
    .unwrap();
    let mut unknown_kid = Header::new(Algorithm::RS256);
    unknown_kid.kid = Some("nobody".into());
    let unknown_kid =
        jsonwebtoken::encode(&unknown_kid, &claims(patient), &keys().outsider.key).unwrap();
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
    let id = create_tc(&app, pair()).await;
    let patient = crate::teleconsultations::PAT;
    let token = keys().rotated.sign(&claims(patient));
    assert_eq!(
        get_as(&app, &id, Some(&token), &[]).await.0,
        401,
        "not published yet"
    );
    issuer.publish(vec![keys().rsa.jwk.clone(), keys().rotated.jwk.clone()]);
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
    issuer.go_down();
    app.clock.advance(chrono::Duration::seconds(10));
    let (status, body) = app.get("/-/check-up", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["identity"], "KO");
    let (_, doc) = app.get("/documentation/json", &[]).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["paths"]["/credentials"]["post"]["security"],
        json!([{"bearer": []}])
    );
}
