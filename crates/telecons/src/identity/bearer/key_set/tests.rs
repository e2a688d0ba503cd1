use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use super::bit_length;
use crate::identity::bearer::test_harness::{
    AUDIENCE, ISSUER, claims, claims_with, harness, seconds, start, verifier,
};
use crate::identity::bearer::test_issuer::{Signer, keys, sign};
use crate::identity::bearer::{BearerError, BearerSettings};

#[tokio::test]
async fn rotated_in_key_is_accepted_after_a_refetch() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
    assert_eq!(h.issuer.requests(), 1);

    h.issuer.publish(&[&k.rsa.jwk, &k.rotated.jwk]);
    h.clock.advance(seconds(60));
    let caller = h.verifier.verify(&k.rotated.sign(&claims())).await.unwrap();
    assert_eq!(caller.id, "user-1");
    assert_eq!(h.issuer.requests(), 2);
    // Both keys are cached now.
    h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
    h.verifier.verify(&k.rotated.sign(&claims())).await.unwrap();
    assert_eq!(h.issuer.requests(), 2);
}

#[tokio::test]
async fn unknown_keys_refetch_at_most_once_per_cooldown() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
    assert_eq!(h.issuer.requests(), 1);

    h.clock.advance(seconds(10));
    let ghost = |kid: &str| sign(Algorithm::RS256, Some(kid), &k.outsider.key, &claims());
    assert_eq!(
        h.verifier.verify(&ghost("ghost-1")).await,
        Err(BearerError::UnknownKey {
            kid: "ghost-1".into()
        })
    );
    assert_eq!(h.issuer.requests(), 2, "an unknown kid refetches");

    // Within the cooldown: another unknown kid, and a flood of them, fetch nothing.
    h.clock.advance(seconds(1));
    assert_eq!(
        h.verifier.verify(&ghost("ghost-2")).await,
        Err(BearerError::UnknownKey {
            kid: "ghost-2".into()
        })
    );
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..50 {
        let verifier = h.verifier.clone();
        let token = ghost(&format!("flood-{i}"));
        flood.spawn(async move { verifier.verify(&token).await });
    }
    while let Some(refusal) = flood.join_next().await {
        assert!(matches!(
            refusal.unwrap(),
            Err(BearerError::UnknownKey { .. })
        ));
    }
    assert_eq!(h.issuer.requests(), 2);

    // A key rotated in during the cooldown waits for its end: seconds, not minutes.
    h.issuer.publish(&[&k.rsa.jwk, &k.rotated.jwk]);
    h.clock.advance(seconds(3));
    assert!(h.verifier.verify(&k.rotated.sign(&claims())).await.is_err());
    assert_eq!(h.issuer.requests(), 2);
    h.clock.advance(seconds(1));
    h.verifier
        .verify(&k.rotated.sign(&claims()))
        .await
        .expect("accepted once the cooldown is over");
    assert_eq!(h.issuer.requests(), 3);
    // Known keys never waited for any of this.
    h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
    assert_eq!(h.issuer.requests(), 3);
}

#[tokio::test]
async fn unusable_keys_in_the_set_are_ignored() {
    let k = keys();
    let with = |jwk: &Value, changes: Value| {
        let mut jwk = jwk.clone();
        for (name, value) in changes.as_object().unwrap() {
            jwk[name] = value.clone();
        }
        jwk
    };
    let rs512 = with(&k.rsa.jwk, json!({"kid": "rsa-512", "alg": "RS512"}));
    let encryption = with(&k.rsa.jwk, json!({"kid": "rsa-enc", "use": "enc"}));
    let sign_only = with(&k.rsa.jwk, json!({"kid": "rsa-sign", "key_ops": ["sign"]}));
    let small = with(
        &k.rsa.jwk,
        json!({"kid": "rsa-1024", "n": URL_SAFE_NO_PAD.encode([0xc5u8; 128])}),
    );
    let p384 = with(&k.ec.jwk, json!({"kid": "ec-384", "crv": "P-384"}));
    let short_point = with(
        &k.ec.jwk,
        json!({"kid": "ec-short", "x": URL_SAFE_NO_PAD.encode([7u8; 16])}),
    );
    let set = [
        &json!({"kty": "weird", "kid": "weird-1"}),
        &json!({"kty": "RSA", "kid": "no-modulus", "e": "AQAB"}),
        &json!({"kty": "EC", "kid": "bad-base64", "crv": "P-256", "x": "!!", "y": "!!"}),
        &json!({"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([1u8; 32])}),
        &json!("not even an object"),
        &with(&k.rsa.jwk, json!({"kid": null})),
        &with(&k.rsa.jwk, json!({"x5c": 42, "kid": "bad-x5c"})),
        &rs512,
        &encryption,
        &sign_only,
        &small,
        &p384,
        &short_point,
        &k.rsa.jwk,
        &k.ec.jwk,
    ];
    let h = harness(&set).await;
    h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
    h.verifier.verify(&k.ec.sign(&claims())).await.unwrap();
    for kid in [
        "weird-1",
        "no-modulus",
        "bad-base64",
        "rsa-512",
        "rsa-enc",
        "rsa-sign",
        "rsa-1024",
        "bad-x5c",
    ] {
        let token = sign(Algorithm::RS256, Some(kid), &k.rsa.key, &claims());
        assert!(
            matches!(
                h.verifier.verify(&token).await,
                Err(BearerError::UnknownKey { .. })
            ),
            "{kid}"
        );
    }
    for kid in ["ec-384", "ec-short", "ed-1"] {
        let token = sign(Algorithm::ES256, Some(kid), &k.ec.key, &claims());
        assert!(
            matches!(
                h.verifier.verify(&token).await,
                Err(BearerError::UnknownKey { .. })
            ),
            "{kid}"
        );
    }
    assert!(h.verifier.check_reachable().await);
}

#[tokio::test]
async fn jwks_endpoint_down_fails_fast() {
    let k = keys();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    drop(listener);
    let (verifier, clock) = verifier(BearerSettings::new(ISSUER, AUDIENCE, url));
    let began = Instant::now();
    let refusal = verifier.verify(&k.rsa.sign(&claims())).await.unwrap_err();
    assert!(
        matches!(&refusal, BearerError::KeySetUnavailable { kid, .. } if kid == "rsa-1"),
        "{refusal:?}"
    );
    assert!(!verifier.check_reachable().await);
    clock.advance(seconds(10));
    assert!(!verifier.check_reachable().await);
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn jwks_endpoint_that_never_answers_does_not_hang_verify() {
    let k = keys();
    let (url, _) = silent_jwks_url().await;
    let (verifier, _) = verifier(BearerSettings::new(ISSUER, AUDIENCE, url));
    let began = Instant::now();
    let refusal = verifier.verify(&k.rsa.sign(&claims())).await.unwrap_err();
    assert!(
        matches!(&refusal, BearerError::KeySetUnavailable { reason, .. } if reason == "timed out"),
        "{refusal:?}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn a_cancelled_verification_does_not_cancel_the_fetch_nor_the_cooldown() {
    let k = keys();
    let (url, connections) = silent_jwks_url().await;
    let (verifier, _) = verifier(BearerSettings::new(ISSUER, AUDIENCE, url));
    let token = k.rsa.sign(&claims());
    // The caller gives up while the key set is being fetched...
    let gave_up = tokio::time::timeout(Duration::from_millis(100), verifier.verify(&token)).await;
    assert!(gave_up.is_err());
    // ...and the next caller waits for that same fetch instead of starting another.
    let refusal = verifier.verify(&token).await.unwrap_err();
    assert!(
        matches!(&refusal, BearerError::KeySetUnavailable { reason, .. } if reason == "timed out"),
        "{refusal:?}"
    );
    assert!(!verifier.check_reachable().await);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn known_keys_keep_working_while_the_issuer_is_down() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    let token = k.rsa.sign(&claims_with(|c| {
        c.insert("exp".into(), json!(start().timestamp() + 3600));
    }));
    h.verifier.verify(&token).await.unwrap();
    h.issuer.set_failing(true);
    // Stale: the background refresh fails, the token still passes.
    h.clock.advance(seconds(11 * 60));
    h.verifier.verify(&token).await.unwrap();
    wait_until(|| h.issuer.requests() == 2).await;
    h.verifier.verify(&token).await.unwrap();
    // An unknown key, meanwhile, says why it cannot be checked.
    h.clock.advance(seconds(10));
    let refusal = h
        .verifier
        .verify(&k.rotated.sign(&claims_with(|c| {
            c.insert("exp".into(), json!(start().timestamp() + 3600));
        })))
        .await
        .unwrap_err();
    assert_eq!(
        refusal,
        BearerError::KeySetUnavailable {
            kid: "rsa-2".into(),
            reason: "the JWKS endpoint answered 503".into(),
        }
    );
    h.verifier.verify(&token).await.unwrap();
}

#[tokio::test]
async fn withdrawn_key_stops_being_accepted_after_the_max_age() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk, &k.ec.jwk]).await;
    let long_lived = |signer: &Signer| {
        signer.sign(&claims_with(|c| {
            c.insert("exp".into(), json!(start().timestamp() + 3600));
        }))
    };
    h.verifier.verify(&long_lived(&k.ec)).await.unwrap();
    h.issuer.publish(&[&k.rsa.jwk]);
    h.clock.advance(seconds(9 * 60));
    h.verifier.verify(&long_lived(&k.ec)).await.unwrap();
    assert_eq!(h.issuer.requests(), 1, "not stale yet");
    h.clock.advance(seconds(2 * 60));
    // Stale: this token passes on the known keys while they are fetched again.
    h.verifier.verify(&long_lived(&k.ec)).await.unwrap();
    let began = Instant::now();
    loop {
        match h.verifier.verify(&long_lived(&k.ec)).await {
            Ok(_) => assert!(began.elapsed() < Duration::from_secs(5), "never refreshed"),
            Err(refusal) => {
                assert_eq!(refusal, BearerError::UnknownKey { kid: "ec-1".into() });
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.issuer.requests(), 2);
    h.verifier.verify(&long_lived(&k.rsa)).await.unwrap();
}

#[tokio::test]
async fn check_reachable_follows_the_key_set() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    assert!(h.verifier.check_reachable().await);
    assert_eq!(h.issuer.requests(), 1);
    // The fetch filled the cache.
    h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
    assert_eq!(h.issuer.requests(), 1);

    h.issuer.set_failing(true);
    h.clock.advance(seconds(6));
    assert!(!h.verifier.check_reachable().await);
    // Within the cooldown the verdict is repeated, not fetched again.
    assert!(!h.verifier.check_reachable().await);
    assert_eq!(h.issuer.requests(), 2);

    h.issuer.set_failing(false);
    h.issuer.set_document(json!({"not": "a key set"}));
    h.clock.advance(seconds(6));
    assert!(!h.verifier.check_reachable().await);

    h.issuer
        .publish(&[&json!({"kty": "oct", "kid": "hmac-1", "k": "c2VjcmV0"})]);
    h.clock.advance(seconds(6));
    assert!(!h.verifier.check_reachable().await, "no usable key");

    h.issuer.publish(&[&k.rsa.jwk]);
    h.clock.advance(seconds(6));
    assert!(h.verifier.check_reachable().await);
}

#[test]
fn bit_length_counts_from_the_first_set_bit() {
    assert_eq!(bit_length(&[]), 0);
    assert_eq!(bit_length(&[0, 0]), 0);
    assert_eq!(bit_length(&[1]), 1);
    assert_eq!(bit_length(&[0, 0x80, 0]), 16);
    assert_eq!(bit_length(&[0x01, 0x00, 0x01]), 17);
}

/// A JWKS URL whose server accepts connections and never says a word, and the count of the
/// connections it accepted.
async fn silent_jwks_url() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, connections)
}

async fn wait_until(condition: impl Fn() -> bool) {
    let began = Instant::now();
    while !condition() {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "timed out waiting"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
