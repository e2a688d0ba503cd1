use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::MAX_TOKEN_BYTES;
use crate::identity::bearer::test_harness::{
    AUDIENCE, claims, claims_with, harness, harness_with, seconds, start, with_kid,
};
use crate::identity::bearer::test_issuer::{JwksEndpoint, keys, pem, sign, unsigned};
use crate::identity::bearer::{BearerError, QUOTE_MAX_CHARS, VerifiedCaller};

#[tokio::test]
async fn valid_rs256_token_names_the_caller_and_groups() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk, &k.ec.jwk]).await;
    let caller = h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
    assert_eq!(
        caller,
        VerifiedCaller {
            id: "user-1".into(),
            groups: vec!["doctor".into(), "staff".into()],
        }
    );
    // Cached: the next tokens need no fetch.
    h.verifier.verify(&k.rsa.sign(&claims())).await.unwrap();
    h.verifier.verify(&k.ec.sign(&claims())).await.unwrap();
    assert_eq!(h.issuer.requests(), 1);
}

#[tokio::test]
async fn valid_es256_token_with_custom_claim_names_and_a_single_group() {
    let k = keys();
    let h = harness_with(&[&k.rsa.jwk, &k.ec.jwk], |settings| {
        settings.user_id_claim = "https://telecons.example/uid".into();
        settings.groups_claim = "https://telecons.example/roles".into();
    })
    .await;
    let token = k.ec.sign(&claims_with(|c| {
        c.insert("https://telecons.example/uid".into(), json!("patient-7"));
        c.insert("https://telecons.example/roles".into(), json!("patient"));
    }));
    let caller = h.verifier.verify(&token).await.unwrap();
    assert_eq!(
        caller,
        VerifiedCaller {
            id: "patient-7".into(),
            groups: vec!["patient".into()],
        }
    );
}

#[tokio::test]
async fn numeric_caller_id_is_its_decimal_text_and_no_groups_claim_is_no_groups() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    let token = k.rsa.sign(&claims_with(|c| {
        c.insert("sub".into(), json!(12345));
        c.remove("groups");
    }));
    let caller = h.verifier.verify(&token).await.unwrap();
    assert_eq!(caller.id, "12345");
    assert!(caller.groups.is_empty());
}

#[tokio::test]
async fn the_scope_claims_entries_count_as_groups() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    // A machine client's token (client-credentials grant): no groups, a scope.
    let token = k.rsa.sign(&claims_with(|c| {
        c.insert("sub".into(), json!("booking-backend@clients"));
        c.remove("groups");
        c.insert("scope".into(), json!("booking  read:agenda"));
    }));
    let caller = h.verifier.verify(&token).await.unwrap();
    assert_eq!(caller.groups, vec!["booking", "read:agenda"]);
    // Both claims: the groups first, then the scopes not already there.
    let token = k.rsa.sign(&claims_with(|c| {
        c.insert("scope".into(), json!("staff booking"));
    }));
    let caller = h.verifier.verify(&token).await.unwrap();
    assert_eq!(caller.groups, vec!["doctor", "staff", "booking"]);
    // A scope that is not a string is not a scope.
    let token = k.rsa.sign(&claims_with(|c| {
        c.insert("scope".into(), json!(["booking"]));
    }));
    let caller = h.verifier.verify(&token).await.unwrap();
    assert_eq!(caller.groups, vec!["doctor", "staff"]);
}

#[tokio::test]
async fn alg_none_is_refused_without_fetching_keys() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    for alg in ["none", "None", "NONE", ""] {
        let token = unsigned(
            &json!({"alg": alg, "kid": "rsa-1", "typ": "JWT"}),
            &claims(),
        );
        assert_eq!(
            h.verifier.verify(&token).await,
            Err(BearerError::AlgorithmNotAccepted(alg.into())),
            "alg {alg:?}"
        );
    }
    // A valid signature glued to a `none` header does not help either.
    let valid = k.rsa.sign(&claims());
    let signature = valid.rsplit('.').next().unwrap();
    let token = format!(
        "{}{signature}",
        unsigned(&json!({"alg": "none", "kid": "rsa-1"}), &claims())
    );
    assert!(matches!(
        h.verifier.verify(&token).await,
        Err(BearerError::AlgorithmNotAccepted(_))
    ));
    assert_eq!(h.issuer.requests(), 0);
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let k = keys();
    // An `oct` key in the set is ignored too: HMAC is never accepted.
    let oct = json!({"kty": "oct", "kid": "hmac-1", "k": URL_SAFE_NO_PAD.encode(b"shared secret"), "alg": "HS256"});
    let h = harness(&[&k.rsa.jwk, &oct]).await;
    let public_pem = pem("PUBLIC KEY", &k.rsa_public_der);
    let modulus = k.rsa.jwk["n"].as_str().unwrap().to_owned();
    for secret in [
        k.rsa_public_der.as_slice(),
        public_pem.as_bytes(),
        modulus.as_bytes(),
    ] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let key = EncodingKey::from_secret(secret).unwrap();
            let token = sign(alg, Some("rsa-1"), &key, &claims());
            assert!(
                matches!(
                    h.verifier.verify(&token).await,
                    Err(BearerError::AlgorithmNotAccepted(_))
                ),
                "{alg:?}"
            );
        }
    }
    let key = EncodingKey::from_secret(b"shared secret").unwrap();
    let token = sign(Algorithm::HS256, Some("hmac-1"), &key, &claims());
    assert_eq!(
        h.verifier.verify(&token).await,
        Err(BearerError::AlgorithmNotAccepted("HS256".into()))
    );
    // Nor is the `oct` key a key for RS256.
    let token = sign(Algorithm::RS256, Some("hmac-1"), &k.rsa.key, &claims());
    assert_eq!(
        h.verifier.verify(&token).await,
        Err(BearerError::UnknownKey {
            kid: "hmac-1".into()
        })
    );
}

#[tokio::test]
async fn header_alg_that_does_not_match_the_key_is_refused() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk, &k.ec.jwk]).await;
    let es256_on_rsa_key = sign(Algorithm::ES256, Some("rsa-1"), &k.ec.key, &claims());
    assert_eq!(
        h.verifier.verify(&es256_on_rsa_key).await,
        Err(BearerError::AlgorithmMismatch {
            kid: "rsa-1".into(),
            token_alg: "ES256",
            key_alg: "RS256",
        })
    );
    let rs256_on_ec_key = sign(Algorithm::RS256, Some("ec-1"), &k.rsa.key, &claims());
    assert_eq!(
        h.verifier.verify(&rs256_on_ec_key).await,
        Err(BearerError::AlgorithmMismatch {
            kid: "ec-1".into(),
            token_alg: "RS256",
            key_alg: "ES256",
        })
    );
    // Other algorithms of the RSA family are not accepted, even with the right key.
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        let token = sign(alg, Some("rsa-1"), &k.rsa.key, &claims());
        assert!(
            matches!(
                h.verifier.verify(&token).await,
                Err(BearerError::AlgorithmNotAccepted(_))
            ),
            "{alg:?}"
        );
    }
}

#[tokio::test]
async fn token_signed_by_a_key_outside_the_set_is_refused() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    // The outsider claims the published key's kid.
    assert_eq!(k.outsider.kid, k.rsa.kid);
    assert_eq!(
        h.verifier.verify(&k.outsider.sign(&claims())).await,
        Err(BearerError::BadSignature)
    );
    // A payload changed after signing.
    let valid = k.rsa.sign(&claims());
    let mut parts: Vec<&str> = valid.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&claims_with(|c| {
            c.insert("sub".into(), json!("admin"));
        }))
        .unwrap(),
    );
    parts[1] = &forged;
    assert_eq!(
        h.verifier.verify(&parts.join(".")).await,
        Err(BearerError::BadSignature)
    );
    // A token pointing at its own key set, or carrying its own key, gets nowhere.
    let outsider_jwk = with_kid(&k.outsider.jwk, "attacker-1");
    let attacker = JwksEndpoint::spawn(&[&outsider_jwk]).await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("attacker-1".into());
    header.jku = Some(attacker.url.clone());
    header.jwk = Some(serde_json::from_value(outsider_jwk.clone()).unwrap());
    let token = jsonwebtoken::encode(&header, &claims(), &k.outsider.key).unwrap();
    assert_eq!(
        h.verifier.verify(&token).await,
        Err(BearerError::UnknownKey {
            kid: "attacker-1".into()
        })
    );
    assert_eq!(attacker.requests(), 0);
}

#[tokio::test]
async fn expired_token_is_refused_beyond_the_leeway() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    let now = start().timestamp();
    let expired = k.rsa.sign(&claims_with(|c| {
        c.insert("exp".into(), json!(now - 31));
    }));
    assert_eq!(h.verifier.verify(&expired).await, Err(BearerError::Expired));
    let within_leeway = k.rsa.sign(&claims_with(|c| {
        c.insert("exp".into(), json!(now - 29));
    }));
    h.verifier.verify(&within_leeway).await.unwrap();
    // The injected clock decides: the same token expires when the clock moves on.
    h.clock.advance(seconds(2));
    assert_eq!(
        h.verifier.verify(&within_leeway).await,
        Err(BearerError::Expired)
    );
}

#[tokio::test]
async fn token_not_valid_yet_is_refused_beyond_the_leeway() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    let now = start().timestamp();
    let early = k.rsa.sign(&claims_with(|c| {
        c.insert("nbf".into(), json!(now + 31));
    }));
    assert_eq!(
        h.verifier.verify(&early).await,
        Err(BearerError::NotYetValid)
    );
    let within_leeway = k.rsa.sign(&claims_with(|c| {
        c.insert("nbf".into(), json!(now + 29));
    }));
    h.verifier.verify(&within_leeway).await.unwrap();
    h.clock.advance(seconds(2));
    h.verifier.verify(&early).await.unwrap();
}

#[tokio::test]
async fn exp_is_required_and_time_claims_must_be_numbers() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    let no_exp = k.rsa.sign(&claims_with(|c| {
        c.remove("exp");
    }));
    assert_eq!(
        h.verifier.verify(&no_exp).await,
        Err(BearerError::MissingClaim("exp".into()))
    );
    let text_nbf = k.rsa.sign(&claims_with(|c| {
        c.insert("nbf".into(), json!("yesterday"));
    }));
    assert_eq!(
        h.verifier.verify(&text_nbf).await,
        Err(BearerError::MalformedClaim("nbf".into()))
    );
}

#[tokio::test]
async fn wrong_or_missing_issuer_is_refused() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    for issuer in [
        json!("https://evil.example/"),
        json!("https://id.telecons.example"),
    ] {
        let token = k.rsa.sign(&claims_with(|c| {
            c.insert("iss".into(), issuer.clone());
        }));
        assert_eq!(
            h.verifier.verify(&token).await,
            Err(BearerError::WrongIssuer),
            "{issuer}"
        );
    }
    let token = k.rsa.sign(&claims_with(|c| {
        c.remove("iss");
    }));
    assert_eq!(
        h.verifier.verify(&token).await,
        Err(BearerError::MissingClaim("iss".into()))
    );
}

#[tokio::test]
async fn wrong_audience_is_refused_and_an_audience_list_holding_ours_is_accepted() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    for audience in [json!("another-api"), json!(["another-api", "a-third-api"])] {
        let token = k.rsa.sign(&claims_with(|c| {
            c.insert("aud".into(), audience.clone());
        }));
        assert_eq!(
            h.verifier.verify(&token).await,
            Err(BearerError::WrongAudience),
            "{audience}"
        );
    }
    let token = k.rsa.sign(&claims_with(|c| {
        c.remove("aud");
    }));
    assert_eq!(
        h.verifier.verify(&token).await,
        Err(BearerError::MissingClaim("aud".into()))
    );
    let token = k.rsa.sign(&claims_with(|c| {
        c.insert("aud".into(), json!(["another-api", AUDIENCE]));
    }));
    h.verifier.verify(&token).await.unwrap();
}

#[tokio::test]
async fn missing_or_empty_caller_id_is_refused() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    let refused = Err(BearerError::MissingCallerId {
        claim: "sub".into(),
    });
    let token = k.rsa.sign(&claims_with(|c| {
        c.remove("sub");
    }));
    assert_eq!(h.verifier.verify(&token).await, refused);
    for id in [json!(""), json!("  "), json!(null), json!(1.5), json!(true)] {
        let token = k.rsa.sign(&claims_with(|c| {
            c.insert("sub".into(), id.clone());
        }));
        assert_eq!(h.verifier.verify(&token).await, refused, "{id}");
    }
    // jsonwebtoken itself rejects a `sub` that is an object or an array as malformed.
    for id in [json!({"id": "x"}), json!(["x"])] {
        let token = k.rsa.sign(&claims_with(|c| {
            c.insert("sub".into(), id.clone());
        }));
        assert!(h.verifier.verify(&token).await.is_err(), "{id}");
    }
    // A claim of our own is ours to judge.
    let h = harness_with(&[&k.rsa.jwk], |settings| {
        settings.user_id_claim = "uid".into()
    })
    .await;
    for id in [json!({"id": "x"}), json!(["x"]), json!(""), json!(null)] {
        let token = k.rsa.sign(&claims_with(|c| {
            c.insert("uid".into(), id.clone());
        }));
        assert_eq!(
            h.verifier.verify(&token).await,
            Err(BearerError::MissingCallerId {
                claim: "uid".into()
            }),
            "{id}"
        );
    }
}

#[tokio::test]
async fn malformed_groups_are_refused() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    for groups in [json!(42), json!(["doctor", 7]), json!({"doctor": true})] {
        let token = k.rsa.sign(&claims_with(|c| {
            c.insert("groups".into(), groups.clone());
        }));
        assert_eq!(
            h.verifier.verify(&token).await,
            Err(BearerError::MalformedGroups {
                claim: "groups".into()
            }),
            "{groups}"
        );
    }
}

#[tokio::test]
async fn garbage_is_refused_without_fetching_keys() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    let b64 = |text: &str| URL_SAFE_NO_PAD.encode(text);
    let valid = k.rsa.sign(&claims());
    let garbage = [
        String::new(),
        "garbage".into(),
        "a.b".into(),
        "a.b.c".into(),
        "...".into(),
        format!("{valid}.extra"),
        format!("{}.{}.", b64("not json"), b64("{}")),
        format!("{}.{}.", b64(r#"{"kid":"rsa-1"}"#), b64("{}")),
        format!("{}.{}.", b64(r#"{"alg":256,"kid":"rsa-1"}"#), b64("{}")),
        format!("{}.{}.", b64(r#"{"alg":"RS256","kid":7}"#), b64("{}")),
        format!("{valid}{}", "A".repeat(MAX_TOKEN_BYTES)),
    ];
    for token in &garbage {
        assert!(
            matches!(
                h.verifier.verify(token).await,
                Err(BearerError::Malformed(_))
            ),
            "{token:.40}"
        );
    }
    let no_kid = sign(Algorithm::RS256, None, &k.rsa.key, &claims());
    assert_eq!(
        h.verifier.verify(&no_kid).await,
        Err(BearerError::MissingKeyId)
    );
    assert_eq!(h.issuer.requests(), 0);
    // Signed, but the payload is not a claims object.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let array = jsonwebtoken::encode(&header, &json!(["not", "claims"]), &k.rsa.key).unwrap();
    assert!(matches!(
        h.verifier.verify(&array).await,
        Err(BearerError::Malformed(_))
    ));
}

#[tokio::test]
async fn refusals_quote_little_of_the_token() {
    let k = keys();
    let h = harness(&[&k.rsa.jwk]).await;
    let kid = format!("{}\n\u{1b}[31m", "k".repeat(500));
    let token = sign(Algorithm::RS256, Some(&kid), &k.outsider.key, &claims());
    let refusal = h.verifier.verify(&token).await.unwrap_err();
    let BearerError::UnknownKey { kid: quoted } = &refusal else {
        panic!("{refusal:?}");
    };
    assert_eq!(quoted.chars().count(), QUOTE_MAX_CHARS + 1);
    assert!(!quoted.chars().any(char::is_control));
    let text = refusal.to_string();
    assert!(text.len() < 200, "{text}");
    for part in token.split('.') {
        assert!(!text.contains(part), "{text}");
    }
}
