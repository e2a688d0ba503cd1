//! What the unit tests of the bearer verifier share: test keys, tokens, claims, a fake
//! issuer serving its JWKS on loopback, and a verifier on a manual clock.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use axum::extract::State;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::{BearerOptions, BearerSettings, BearerVerifier};
use crate::clock::{Clock, ManualClock};

pub(super) const ISSUER: &str = "https://id.telecons.example/";
pub(super) const AUDIENCE: &str = "telecons-api";

pub(super) fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2030-01-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A private key, its kid and the public JWK the issuer publishes for it.
pub(super) struct Signer {
    pub(super) key: EncodingKey,
    pub(super) alg: Algorithm,
    pub(super) kid: &'static str,
    pub(super) jwk: Value,
}

impl Signer {
    pub(super) fn sign(&self, claims: &Value) -> String {
        sign(self.alg, Some(self.kid), &self.key, claims)
    }
}

pub(super) struct TestKeys {
    pub(super) rsa: Signer,
    pub(super) ec: Signer,
    /// Published only by the rotation tests.
    pub(super) rotated: Signer,
    /// Never published.
    pub(super) outsider: Signer,
    /// `rsa`'s public key, as the secret of algorithm-confusion attempts.
    pub(super) rsa_public_der: Vec<u8>,
}

/// Generated once per test process (RSA generation is the slow part).
pub(super) fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let (rsa, rsa_public_der) = rsa_signer("rsa-1");
        TestKeys {
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
    let key = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes()).unwrap();
    let public_der = AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
        .unwrap()
        .as_ref()
        .to_vec();
    let jwk = public_jwk(&key, Algorithm::RS256, kid);
    let signer = Signer {
        key,
        alg: Algorithm::RS256,
        kid,
        jwk,
    };
    (signer, public_der)
}

fn ec_signer(kid: &'static str) -> Signer {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let key = EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref());
    let mut jwk = public_jwk(&key, Algorithm::ES256, kid);
    // Many issuers leave `alg` out: the key type and curve say ES256.
    jwk.as_object_mut().unwrap().remove("alg");
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

pub(super) fn with_kid(jwk: &Value, kid: &str) -> Value {
    let mut jwk = jwk.clone();
    jwk["kid"] = json!(kid);
    jwk
}

pub(super) fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

pub(super) fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// A token with any header and an empty signature.
pub(super) fn unsigned(header: &Value, claims: &Value) -> String {
    let part = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
    format!("{}.{}.", part(header), part(claims))
}

/// Valid claims at [`start`]; `tweak` edits them.
pub(super) fn claims_with(tweak: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let now = start().timestamp();
    let mut claims = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "groups": ["doctor", "staff"],
        "iat": now,
        "nbf": now - 1,
        "exp": now + 300,
    });
    tweak(claims.as_object_mut().unwrap());
    claims
}

pub(super) fn claims() -> Value {
    claims_with(|_| {})
}

/// The issuer's JWKS endpoint, counting requests.
#[derive(Default)]
pub(super) struct FakeIssuer {
    document: std::sync::Mutex<Value>,
    requests: AtomicUsize,
    failing: AtomicBool,
}

impl FakeIssuer {
    pub(super) fn publish(&self, keys: &[&Value]) {
        self.set_document(json!({ "keys": keys }));
    }

    pub(super) fn set_document(&self, document: Value) {
        *self.document.lock().unwrap() = document;
    }

    pub(super) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    pub(super) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn serve_jwks(
    State(issuer): State<Arc<FakeIssuer>>,
) -> Result<axum::Json<Value>, axum::http::StatusCode> {
    issuer.requests.fetch_add(1, Ordering::SeqCst);
    if issuer.failing.load(Ordering::SeqCst) {
        return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }
    Ok(axum::Json(issuer.document.lock().unwrap().clone()))
}

pub(super) async fn spawn_issuer(keys: &[&Value]) -> (String, Arc<FakeIssuer>) {
    let issuer = Arc::new(FakeIssuer::default());
    issuer.publish(keys);
    let app = axum::Router::new()
        .route("/.well-known/jwks.json", axum::routing::get(serve_jwks))
        .with_state(Arc::clone(&issuer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, issuer)
}

pub(super) fn verifier(settings: BearerSettings, clock: &Arc<ManualClock>) -> BearerVerifier {
    let options = BearerOptions {
        clock: Arc::clone(clock) as Arc<dyn Clock>,
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        ..BearerOptions::default()
    };
    BearerVerifier::with_options(settings, options).unwrap()
}

pub(super) struct Harness {
    pub(super) verifier: BearerVerifier,
    pub(super) clock: Arc<ManualClock>,
    pub(super) issuer: Arc<FakeIssuer>,
}

/// A verifier with the default claim names, an issuer publishing `keys`.
pub(super) async fn harness(keys: &[&Value]) -> Harness {
    harness_with(keys, |_| {}).await
}

pub(super) async fn harness_with(
    keys: &[&Value],
    tweak: impl FnOnce(&mut BearerSettings),
) -> Harness {
    let (url, issuer) = spawn_issuer(keys).await;
    let mut settings = BearerSettings::new(ISSUER, AUDIENCE, url);
    tweak(&mut settings);
    let clock = Arc::new(ManualClock::new(start()));
    Harness {
        verifier: verifier(settings, &clock),
        clock,
        issuer,
    }
}

pub(super) fn seconds(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}
