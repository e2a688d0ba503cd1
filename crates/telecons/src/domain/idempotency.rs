//! `Idempotency-Key` on `POST /teleconsultation` (spec §4.13): the key's form, what a body
//! is compared by, and what a request with a key already seen is answered. Pure: the store
//! keeps the keys, the API reads and writes the headers.
//!
//! As in Stripe's idempotent requests and the IETF `Idempotency-Key` draft: the first
//! request's answer is kept (2xx and 4xx; a 5xx keeps nothing, so the key may be used
//! again), per caller and key, for [`KEPT_FOR`].

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The request header.
pub const HEADER: &str = "Idempotency-Key";
/// Sent (`true`) with an answer that is the one kept for the key, not a new one.
pub const REPLAYED_HEADER: &str = "Idempotency-Replayed";
/// How long an answer is kept for its key; after, the key is free again (and swept).
pub const KEPT_FOR: TimeDelta = TimeDelta::hours(24);
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// The `Retry-After` of a 409 (the first request still running): a live request answers
/// well within it; a dead one's hold ends within the request budget, a few dozen of them.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A key as sent: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The header's value cannot be a key (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    #[error("the Idempotency-Key header was sent {0} times; a request carries one key")]
    Repeated(usize),
    #[error("the Idempotency-Key header must be 1 to 255 visible ASCII characters (! to ~)")]
    Malformed,
}

/// The request's key, from the header's values as sent (none: no key).
pub fn parse_key<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<IdempotencyKey>, InvalidKey> {
    let values: Vec<&[u8]> = values.into_iter().collect();
    match values.as_slice() {
        [] => Ok(None),
        [value] => {
            let visible = (1..=MAX_KEY_LEN).contains(&value.len())
                && value.iter().all(|b| (b'!'..=b'~').contains(b));
            if !visible {
                return Err(InvalidKey::Malformed);
            }
            // Visible ASCII is UTF-8.
            Ok(Some(IdempotencyKey(
                String::from_utf8_lossy(value).into_owned(),
            )))
        }
        many => Err(InvalidKey::Repeated(many.len())),
    }
}

/// Whose keys a key is looked up among: a caller's own, or those of requests without a
/// caller id (which share one scope). A caller id never collides with the shared scope.
pub fn scope(caller_id: Option<&str>) -> String {
    match caller_id {
        Some(id) => format!("user:{id}"),
        None => "anonymous".to_owned(),
    }
}

/// What two bodies are compared by: a digest of the body as parsed JSON (objects' keys in
/// order, no insignificant whitespace), so that the same booking sent again by another JSON
/// encoder is the same body. A body that is not JSON is compared byte for byte.
pub fn body_fingerprint(body: &[u8]) -> String {
    let mut digest = Sha256::new();
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            digest.update(b"json:");
            digest.update(canonical(&value).to_string().as_bytes());
        }
        Err(_) => {
            digest.update(b"bytes:");
            digest.update(body);
        }
    }
    hex::encode(digest.finalize())
}

/// `value` with every object's keys in order, whatever order serde_json keeps them in.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The answer kept for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptAnswer {
    /// `201 {"roomId"}`: the teleconsultation booked (kept in the booking's transaction).
    Booked { room_id: String },
    /// A 4xx, as it was sent.
    Refused { status: u16, body: String },
}

/// A key as stored, found when another request claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptKey {
    pub fingerprint: String,
    /// `None` while its first request is running.
    pub answer: Option<KeptAnswer>,
    /// When a running request's hold on the key ends (it may have died with its instance).
    pub lease_until: Option<DateTime<Utc>>,
}

/// What a request whose key is already kept gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyReuse {
    /// The same body: the kept answer, again.
    Replay(KeptAnswer),
    /// Another body under the same key (422).
    OtherBody,
    /// The first request is still running (409): retry in [`RETRY_AFTER_SECS`].
    Running,
}

/// What `kept` answers to a request with body `fingerprint`.
pub fn reuse(kept: &KeptKey, fingerprint: &str) -> KeyReuse {
    if kept.fingerprint != fingerprint {
        return KeyReuse::OtherBody;
    }
    match &kept.answer {
        Some(answer) => KeyReuse::Replay(answer.clone()),
        None => KeyReuse::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(value: &str) -> Result<Option<IdempotencyKey>, InvalidKey> {
        parse_key([value.as_bytes()])
    }

    #[test]
    fn a_key_is_1_to_255_visible_ascii_characters() {
        assert_eq!(parse_key([]), Ok(None));
        assert_eq!(key("a").unwrap().unwrap().as_str(), "a");
        let longest = "~".repeat(255);
        assert_eq!(key(&longest).unwrap().unwrap().as_str(), longest);
        assert_eq!(
            key("0b6e1c7a-3f7e-4c3e-9d0a-2b1f!#$%&'()*+,-./:;<=>?@[]^_`{|}")
                .unwrap()
                .map(|k| k.0.len()),
            Some(57)
        );
        for bad in ["", " ", "a b", "tab\there", "é", &"k".repeat(256), "\u{7f}"] {
            assert_eq!(key(bad), Err(InvalidKey::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse_key([b"a".as_slice(), b"a".as_slice()]),
            Err(InvalidKey::Repeated(2))
        );
    }

    #[test]
    fn the_error_names_the_header() {
        assert!(
            InvalidKey::Malformed
                .to_string()
                .contains("Idempotency-Key")
        );
        assert!(
            InvalidKey::Repeated(2)
                .to_string()
                .contains("Idempotency-Key")
        );
    }

    #[test]
    fn callers_and_requests_without_one_have_scopes_of_their_own() {
        assert_ne!(scope(Some("anonymous")), scope(None));
        assert_ne!(scope(Some("a")), scope(Some("b")));
        assert_eq!(scope(None), scope(None));
    }

    #[test]
    fn bodies_are_compared_as_parsed_json() {
        let a = br#"{"start_date":"2030-01-01T10:00:00Z","participants":{"list":[1,2],"count":2}}"#;
        let b = br#"  { "participants" : { "count" : 2, "list" : [1, 2] },
                        "start_date" : "2030-01-01T10:00:00Z" }"#;
        assert_eq!(body_fingerprint(a), body_fingerprint(b));
        // Order inside an array matters; so does every value.
        let c = br#"{"start_date":"2030-01-01T10:00:00Z","participants":{"list":[2,1],"count":2}}"#;
        assert_ne!(body_fingerprint(a), body_fingerprint(c));
        let d = br#"{"start_date":"2030-01-01T10:00:01Z","participants":{"list":[1,2],"count":2}}"#;
        assert_ne!(body_fingerprint(a), body_fingerprint(d));
    }

    #[test]
    fn bodies_that_are_not_json_are_compared_byte_for_byte() {
        assert_eq!(body_fingerprint(b"{oops"), body_fingerprint(b"{oops"));
        assert_ne!(body_fingerprint(b"{oops"), body_fingerprint(b"{oops "));
        // Never equal to a JSON body, whatever its bytes.
        assert_ne!(body_fingerprint(b"\"x\""), body_fingerprint(b"x"));
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_kept_answer_is_replayed_to_the_same_body_only() {
        let answer = KeptAnswer::Booked {
            room_id: "r1".into(),
        };
        let kept = KeptKey {
            fingerprint: "f".into(),
            answer: Some(answer.clone()),
            lease_until: None,
        };
        assert_eq!(reuse(&kept, "f"), KeyReuse::Replay(answer));
        assert_eq!(reuse(&kept, "g"), KeyReuse::OtherBody);
    }

    #[test]
    fn a_running_key_is_running_to_the_same_body_only() {
        let running = KeptKey {
            fingerprint: "f".into(),
            answer: None,
            lease_until: Some(at(30)),
        };
        assert_eq!(reuse(&running, "f"), KeyReuse::Running);
        // Another body is refused as such, running or not.
        assert_eq!(reuse(&running, "g"), KeyReuse::OtherBody);
    }
}
