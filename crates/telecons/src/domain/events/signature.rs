//! Signing an event as Standard Webhooks asks (standardwebhooks.com; spec §9), so that the
//! platform verifies it with any of that specification's libraries.
//!
//! A secret is written `whsec_` + the standard base64 of its key bytes; the key signs, not the
//! text. The `webhook-signature` header holds one `v1,<base64 of HMAC-SHA256(key, id + "." +
//! timestamp + "." + body)>` per secret, separated by spaces: during a rotation both the new
//! secret and the old one sign, so the platform may switch whenever it likes.
//!
//! ```
//! use telecons::domain::events::signature::SigningSecrets;
//! let secrets = SigningSecrets::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! let header =
//!     secrets.signature_header("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
//! assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
//! ```

use std::ops::RangeInclusive;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

/// What a secret's text starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// How many key bytes a secret has (Standard Webhooks: 24 to 64).
pub const SECRET_BYTES: RangeInclusive<usize> = 24..=64;

/// Why one secret is refused. The texts never contain the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("does not start with whsec_")]
    Prefix,
    #[error("is not standard base64 after whsec_ (A-Z, a-z, 0-9, + and /, padded with =)")]
    Base64,
    #[error("holds {0} bytes; 24 to 64 random bytes are needed")]
    Length(usize),
}

/// Why the secrets are refused. The texts never contain a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "holds {0} secrets; give one, or two during a rotation (the new one first, then the \
         old one, separated by a space)"
    )]
    Count(usize),
    /// `which`: "the secret", or "the first secret" / "the second secret" when there are two.
    #[error("{which} {error}")]
    Secret {
        which: &'static str,
        error: SecretError,
    },
}

/// One secret's key bytes: never shown (`Debug` says `[REDACTED]`), zeroed when dropped.
#[derive(Debug, Clone)]
struct SigningKey(SecretSlice<u8>);

impl SigningKey {
    fn parse(text: &str) -> Result<SigningKey, SecretError> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::Prefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| SecretError::Base64)?;
        if !SECRET_BYTES.contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(SigningKey(key.into()))
    }

    /// `v1,<base64 of HMAC-SHA256(key, id.timestamp.body)>`.
    fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret())
            .expect("HMAC accepts keys of any length");
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The secrets that sign the events (`EVENTS_WEBHOOK_SECRET`): the new one, and during a
/// rotation the old one.
#[derive(Debug, Clone)]
pub struct SigningSecrets {
    new: SigningKey,
    old: Option<SigningKey>,
}

impl SigningSecrets {
    /// One or two secrets separated by white space, the new one first. Every problem is
    /// reported.
    pub fn parse(text: &str) -> Result<SigningSecrets, Vec<SecretsError>> {
        let texts: Vec<&str> = text.split_whitespace().collect();
        let names: &[&'static str] = match texts.len() {
            1 => &["the secret"],
            2 => &["the first secret", "the second secret"],
            n => return Err(vec![SecretsError::Count(n)]),
        };
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        for (text, which) in texts.into_iter().zip(names) {
            match SigningKey::parse(text) {
                Ok(key) => keys.push(key),
                Err(error) => errors.push(SecretsError::Secret { which, error }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut keys = keys.into_iter();
        Ok(SigningSecrets {
            new: keys.next().expect("one secret at least"),
            old: keys.next(),
        })
    }

    /// 1, or 2 during a rotation.
    pub fn count(&self) -> usize {
        1 + usize::from(self.old.is_some())
    }

    /// The `webhook-signature` header of the event `webhook_id` sent at `timestamp` (seconds
    /// since the epoch, as in `webhook-timestamp`) with `body`, the bytes sent: one signature
    /// per secret, the new one first.
    pub fn signature_header(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let new = self.new.sign(webhook_id, timestamp, body);
        match &self.old {
            None => new,
            Some(old) => format!("{new} {}", old.sign(webhook_id, timestamp, body)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard Webhooks' own test vectors (its Go and Python libraries' `TestWebhookSign`
    /// and `test_sign_function`; its Rust library's `test_sign`).
    struct Vector {
        secret: &'static str,
        id: &'static str,
        timestamp: i64,
        body: &'static [u8],
        signature: &'static str,
    }

    const A: Vector = Vector {
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp: 1_614_265_330,
        body: br#"{"test": 2432232314}"#,
        signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    };

    const B: Vector = Vector {
        secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        id: "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        timestamp: 1_649_367_553,
        body: br#"{"email":"test@example.com","username":"test_user"}"#,
        signature: "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    };

    fn secrets(text: &str) -> SigningSecrets {
        SigningSecrets::parse(text).unwrap()
    }

    fn header(secrets_text: &str, v: &Vector) -> String {
        secrets(secrets_text).signature_header(v.id, v.timestamp, v.body)
    }

    #[test]
    fn the_published_vectors() {
        for v in [A, B] {
            assert_eq!(header(v.secret, &v), v.signature);
        }
    }

    #[test]
    fn during_a_rotation_both_sign_the_new_one_first() {
        let rotating = format!("{} {}", B.secret, A.secret);
        assert_eq!(secrets(&rotating).count(), 2);
        assert_eq!(
            header(&rotating, &A),
            format!("{} {}", header(B.secret, &A), A.signature)
        );
        assert_eq!(
            header(&rotating, &B),
            format!("{} {}", B.signature, header(A.secret, &B))
        );
        assert_eq!(secrets(A.secret).count(), 1);
    }

    #[test]
    fn secrets_hold_24_to_64_bytes_of_standard_base64() {
        let of_length = |n: usize| format!("{SECRET_PREFIX}{}", STANDARD.encode(vec![7_u8; n]));
        for n in [24, 32, 64] {
            assert!(SigningSecrets::parse(&of_length(n)).is_ok(), "{n}");
        }
        for n in [0, 23, 65] {
            assert_eq!(
                SigningSecrets::parse(&of_length(n)).unwrap_err(),
                vec![SecretsError::Secret {
                    which: "the secret",
                    error: SecretError::Length(n)
                }],
                "{n}"
            );
        }
        let refused = |text: &str| SigningSecrets::parse(text).unwrap_err();
        let one = |error| {
            vec![SecretsError::Secret {
                which: "the secret",
                error,
            }]
        };
        // The bytes of vector A without the prefix, with another one, in URL-safe base64,
        // without padding.
        assert_eq!(
            refused("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            one(SecretError::Prefix)
        );
        assert_eq!(
            refused("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            one(SecretError::Prefix)
        );
        assert_eq!(
            refused("whsec_C2FVsBQIhrscChlQIMV-b5sSYspob7oD"),
            one(SecretError::Base64)
        );
        let unpadded = format!("{SECRET_PREFIX}{}", STANDARD.encode([7_u8; 25]));
        assert_eq!(
            refused(unpadded.trim_end_matches('=')),
            one(SecretError::Base64)
        );
    }

    #[test]
    fn one_or_two_secrets_every_problem_named() {
        let three = format!("{} {} {}", A.secret, B.secret, A.secret);
        assert_eq!(
            SigningSecrets::parse(&three).unwrap_err(),
            vec![SecretsError::Count(3)]
        );
        assert_eq!(
            SigningSecrets::parse(" ").unwrap_err(),
            vec![SecretsError::Count(0)]
        );
        assert_eq!(
            SigningSecrets::parse("whsec_x nope").unwrap_err(),
            vec![
                SecretsError::Secret {
                    which: "the first secret",
                    error: SecretError::Base64
                },
                SecretsError::Secret {
                    which: "the second secret",
                    error: SecretError::Prefix
                },
            ]
        );
        assert_eq!(
            SecretsError::Secret {
                which: "the second secret",
                error: SecretError::Length(16)
            }
            .to_string(),
            "the second secret holds 16 bytes; 24 to 64 random bytes are needed"
        );
    }

    #[test]
    fn never_shown() {
        let rotating = secrets(&format!("{} {}", A.secret, B.secret));
        let debug = format!("{rotating:?}");
        for secret in [A.secret, B.secret] {
            let encoded = secret.trim_start_matches(SECRET_PREFIX);
            assert!(!debug.contains(encoded), "{debug}");
        }
        assert!(debug.contains("REDACTED"), "{debug}");
    }

    /// The reference library of Standard Webhooks (it shares no code with ours: another HMAC
    /// and SHA-256) signs exactly as we do, and verifies what we sign.
    #[test]
    fn the_reference_library_verifies_our_signatures() {
        use standardwebhooks::Webhook;

        let body = r#"{"type":"teleconsultation.created","data":{"title":"Visite, à 9 h"}}"#;
        let id = "evt_0123456789abcdef0123456789abcdef";
        for secret in [A.secret, B.secret] {
            let reference = Webhook::new(secret).unwrap();
            for timestamp in [0, A.timestamp, 4_102_444_800] {
                assert_eq!(
                    secrets(secret).signature_header(id, timestamp, body.as_bytes()),
                    reference.sign(id, timestamp, body.as_bytes()).unwrap()
                );
            }
        }

        // Its verification reads the real clock (±5 min): sign as of now.
        let now = chrono::Utc::now().timestamp();
        let rotating = secrets(&format!("{} {}", A.secret, B.secret));
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert(
            "webhook-signature",
            rotating
                .signature_header(id, now, body.as_bytes())
                .parse()
                .unwrap(),
        );
        for secret in [A.secret, B.secret] {
            Webhook::new(secret)
                .unwrap()
                .verify(body.as_bytes(), &headers)
                .unwrap_or_else(|e| panic!("{secret}: {e}"));
        }
        let other = format!("{SECRET_PREFIX}{}", STANDARD.encode([1_u8; 32]));
        assert!(
            Webhook::new(&other)
                .unwrap()
                .verify(body.as_bytes(), &headers)
                .is_err()
        );
        let tampered = body.replace("9 h", "10 h");
        assert!(
            Webhook::new(A.secret)
                .unwrap()
                .verify(tampered.as_bytes(), &headers)
                .is_err()
        );
    }
}
