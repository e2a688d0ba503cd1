//! A test issuer: RSA and EC keys generated in the test process, the tokens they sign, and a
//! JWKS endpoint on loopback that publishes them.
//!
//! The bearer verifier's unit tests and the integration tests both use this one file: the
//! unit tests as a `#[cfg(test)]` module, the integration tests through `#[path]`, since
//! they cannot see the library's test code. So it names no `crate::` item.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use axum::extract::State;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A private key, its kid and the public JWK the issuer publishes for it.
pub struct Signer {
    pub key: EncodingKey,
    pub alg: Algorithm,
    pub kid: &'static str,
    pub jwk: Value,
}

impl Signer {
    pub fn sign(&self, claims: &Value) -> String {
        sign(self.alg, Some(self.kid), &self.key, claims)
    }
}

pub struct TestKeys {
    pub rsa: Signer,
    pub ec: Signer,
    /// Published only by the rotation tests.
    pub rotated: Signer,
    /// Never published; the same kid as `rsa`.
    pub outsider: Signer,
    /// `rsa`'s public key, as the secret of algorithm-confusion attempts.
    pub rsa_public_der: Vec<u8>,
}

/// Generated once per test process (RSA generation is the slow part).
pub fn keys() -> &'static TestKeys {
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

/// `der` as PEM text under `label` (`PRIVATE KEY`, `PUBLIC KEY`).
pub fn pem(label: &str, der: &[u8]) -> String {
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

/// A token whose header says `alg` and `kid`, signed with `key` whatever they say.
pub fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// A token with any header and an empty signature.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    let part = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
    format!("{}.{}.", part(header), part(claims))
}

/// An issuer's JWKS endpoint on loopback: its document can change, it can fail (503), and it
/// counts the requests it gets.
pub struct JwksEndpoint {
    pub url: String,
    served: Arc<Served>,
}

#[derive(Default)]
struct Served {
    document: Mutex<Value>,
    requests: AtomicUsize,
    failing: AtomicBool,
}

impl JwksEndpoint {
    /// Publishing `keys`.
    pub async fn spawn(keys: &[&Value]) -> Self {
        let served = Arc::new(Served::default());
        let app = axum::Router::new()
            .route("/.well-known/jwks.json", axum::routing::get(serve_jwks))
            .with_state(Arc::clone(&served));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let endpoint = Self { url, served };
        endpoint.publish(keys);
        endpoint
    }

    pub fn publish(&self, keys: &[&Value]) {
        self.set_document(json!({ "keys": keys }));
    }

    pub fn set_document(&self, document: Value) {
        *self.served.document.lock().unwrap() = document;
    }

    pub fn set_failing(&self, failing: bool) {
        self.served.failing.store(failing, Ordering::SeqCst);
    }

    pub fn requests(&self) -> usize {
        self.served.requests.load(Ordering::SeqCst)
    }
}

async fn serve_jwks(
    State(served): State<Arc<Served>>,
) -> Result<axum::Json<Value>, axum::http::StatusCode> {
    served.requests.fetch_add(1, Ordering::SeqCst);
    if served.failing.load(Ordering::SeqCst) {
        return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }
    Ok(axum::Json(served.document.lock().unwrap().clone()))
}
