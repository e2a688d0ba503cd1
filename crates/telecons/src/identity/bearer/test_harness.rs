//! What the bearer verifier's unit tests share besides the test issuer: its claims, and a
//! verifier on a manual clock trusting a JWKS endpoint.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::test_issuer::JwksEndpoint;
use super::{BearerOptions, BearerSettings, BearerVerifier};
use crate::clock::{Clock, ManualClock};

pub(super) const ISSUER: &str = "https://id.telecons.example/";
pub(super) const AUDIENCE: &str = "telecons-api";

pub(super) fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2030-01-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
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

pub(super) fn with_kid(jwk: &Value, kid: &str) -> Value {
    let mut jwk = jwk.clone();
    jwk["kid"] = json!(kid);
    jwk
}

/// A verifier on a manual clock at [`start`], with short fetch timeouts.
pub(super) fn verifier(settings: BearerSettings) -> (BearerVerifier, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(start()));
    let options = BearerOptions {
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        ..BearerOptions::default()
    };
    let verifier = BearerVerifier::with_options(settings, options).unwrap();
    (verifier, clock)
}

pub(super) struct Harness {
    pub(super) verifier: BearerVerifier,
    pub(super) clock: Arc<ManualClock>,
    pub(super) issuer: JwksEndpoint,
}

/// A verifier with the default claim names, an issuer publishing `keys`.
pub(super) async fn harness(keys: &[&Value]) -> Harness {
    harness_with(keys, |_| {}).await
}

pub(super) async fn harness_with(
    keys: &[&Value],
    tweak: impl FnOnce(&mut BearerSettings),
) -> Harness {
    let issuer = JwksEndpoint::spawn(keys).await;
    let mut settings = BearerSettings::new(ISSUER, AUDIENCE, issuer.url.clone());
    tweak(&mut settings);
    let (verifier, clock) = verifier(settings);
    Harness {
        verifier,
        clock,
        issuer,
    }
}

pub(super) fn seconds(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}
