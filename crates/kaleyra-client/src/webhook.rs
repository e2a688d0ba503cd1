//! The signature of the webhooks Kaleyra sends (`shared/spec/kaleyra.md`, "Webhooks"), shared
//! by the sender (the project's simulator) and the receiver (the service's
//! `POST /webhooks/kaleyra`), so that both follow one implementation.
//!
//! Kaleyra signs each webhook in the header
//! `bandyer-signature: t=<timestamp>,v0=<hex HMAC-SHA256(key = api key, message = t + "." + raw body)>`.
//!
//! **`t` is in seconds since the Unix epoch.** kaleyra.md's published test vector uses
//! `t=1554193902` (seconds), while the envelope's own `timestamp` field is in milliseconds;
//! the header follows the test vector. The MAC covers `t` exactly as it is written in the
//! header, a `.`, and the body byte for byte as received: verify the raw body, before any
//! JSON parsing.
//!
//! ```
//! use kaleyra_client::webhook;
//! let body = br#"{"event":"on_room_deleted","event_version":"1.0","namespace":"room","timestamp":1554193902000,"data":{"room_id":"room_5beecf8c0f29"}}"#;
//! let header = webhook::signature_header("ak_live_123456", 1_554_193_902, body);
//! let now = chrono::DateTime::from_timestamp(1_554_193_950, 0).unwrap();
//! webhook::verify(Some(&header), body, "ak_live_123456", now, webhook::DEFAULT_TOLERANCE)
//!     .unwrap();
//! let event = webhook::parse_event(body).unwrap();
//! assert_eq!(event.room_deleted_id(), Some("room_5beecf8c0f29"));
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::digest::CtOutput;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::wire::{ON_ROOM_DELETED, RoomDeletedData, WebhookEvent};

type HmacSha256 = Hmac<Sha256>;

/// The header carrying the signature (HTTP header names are case-insensitive).
pub const SIGNATURE_HEADER: &str = "bandyer-signature";

/// How far `t` may be from the receiver's clock, either way (5 minutes, as the service's
/// spec asks).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// A header longer than this is refused unread (a header is about 80 characters).
pub const MAX_HEADER_LEN: usize = 4096;

/// Why a webhook was refused. The receiver answers `401` to every one of them and does
/// nothing. The texts never contain the key, the expected signature or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// No `bandyer-signature` header.
    #[error("the bandyer-signature header is missing")]
    MissingSignature,
    /// The header is not `t=<seconds>,v0=<64 hex>`.
    #[error("the bandyer-signature header is malformed: {0}")]
    MalformedSignature(&'static str),
    /// No `v0` signature matches the body and the timestamp.
    #[error("the webhook signature does not match")]
    BadSignature,
    /// The signature matches, but `t` is further from now than the tolerance
    /// (an old message replayed, or a clock far off).
    #[error(
        "the webhook timestamp {timestamp} is {distance_secs} s away from now; at most {tolerance_secs} s are allowed"
    )]
    StaleTimestamp {
        /// `t` from the header, in seconds.
        timestamp: i64,
        /// How far it is from now, in seconds.
        distance_secs: u64,
        /// The tolerance, in seconds.
        tolerance_secs: u64,
    },
    /// The body is not a webhook envelope (see [`parse_event`]).
    #[error("the webhook body is not a Kaleyra event: {0}")]
    InvalidBody(String),
}

/// The hex `v0` signature of `raw_body` sent at `timestamp` (seconds since the epoch):
/// HMAC-SHA256 keyed with `api_key` over `"<timestamp>.<raw body>"`.
pub fn sign(api_key: &str, timestamp: i64, raw_body: &[u8]) -> String {
    hex::encode(
        mac(api_key, timestamp.to_string().as_bytes(), raw_body)
            .finalize()
            .into_bytes(),
    )
}

/// The whole header value: `t=<timestamp>,v0=<sign(…)>`.
pub fn signature_header(api_key: &str, timestamp: i64, raw_body: &[u8]) -> String {
    format!("t={timestamp},v0={}", sign(api_key, timestamp, raw_body))
}

/// Checks a webhook: `header` is the `bandyer-signature` value (`None` when absent; pass a
/// value that is not visible ASCII as `Some("")`, which is malformed), `raw_body` the body
/// exactly as received.
///
/// Accepts when one of the header's `v0` signatures is the HMAC of `t + "." + raw_body`
/// keyed with `api_key` — compared in constant time — and `t` is within `tolerance` of `now`
/// (in either direction). Elements other than `t` and `v0` (future schemes) are ignored;
/// `t` must appear exactly once and at least one `v0` must be present.
///
/// The checks run cheapest first (see [`Signature`]): a receiver that must not read the body
/// of a request it will refuse calls [`Signature::parse`] and [`Signature::check_timestamp`]
/// before reading it, then [`Signature::verify_body`].
pub fn verify(
    header: Option<&str>,
    raw_body: &[u8],
    api_key: &str,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    let signature = Signature::parse(header)?;
    signature.check_timestamp(now, tolerance)?;
    signature.verify_body(raw_body, api_key)
}

/// A `bandyer-signature` header, read but not yet checked against a body. Its checks cost
/// little to much: reading the header, comparing `t` with the clock, then one HMAC over the
/// body — so that a request that will be refused costs no HMAC, and a header holding many
/// `v0` entries costs one HMAC like any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    timestamp: i64,
    /// `t` as written, which is what was signed.
    timestamp_text: String,
    signatures: Vec<[u8; 32]>,
}

impl Signature {
    /// Reads the header (`None` when absent): `t` exactly once, at least one `v0` of 64 hex
    /// digits, at most [`MAX_HEADER_LEN`] characters.
    pub fn parse(header: Option<&str>) -> Result<Self, WebhookError> {
        parse_header(header.ok_or(WebhookError::MissingSignature)?)
    }

    /// `t`, in seconds since the epoch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Whether `t` is within `tolerance` of `now`, either way (no HMAC computed).
    pub fn check_timestamp(
        &self,
        now: DateTime<Utc>,
        tolerance: Duration,
    ) -> Result<(), WebhookError> {
        let distance_secs = now.timestamp().abs_diff(self.timestamp);
        if distance_secs > tolerance.as_secs() {
            return Err(WebhookError::StaleTimestamp {
                timestamp: self.timestamp,
                distance_secs,
                tolerance_secs: tolerance.as_secs(),
            });
        }
        Ok(())
    }

    /// Whether one of the `v0` signatures is the HMAC of `t + "." + raw_body` keyed with
    /// `api_key`. The HMAC is computed once and compared with every entry in constant time
    /// (every entry is compared, a match or not, so the time says nothing about which).
    pub fn verify_body(&self, raw_body: &[u8], api_key: &str) -> Result<(), WebhookError> {
        let expected = mac(api_key, self.timestamp_text.as_bytes(), raw_body).finalize();
        let matches = self.signatures.iter().fold(false, |found, signature| {
            let candidate = CtOutput::<HmacSha256>::new((*signature).into());
            // `CtOutput`'s equality is constant-time; `|` does not short-circuit.
            found | (candidate == expected)
        });
        if matches {
            Ok(())
        } else {
            Err(WebhookError::BadSignature)
        }
    }
}

/// Decodes a (verified) body into its envelope.
pub fn parse_event(raw_body: &[u8]) -> Result<WebhookEvent, WebhookError> {
    serde_json::from_slice(raw_body).map_err(|e| WebhookError::InvalidBody(e.to_string()))
}

fn mac(api_key: &str, timestamp: &[u8], raw_body: &[u8]) -> HmacSha256 {
    #[cfg(test)]
    tests::MACS_COMPUTED.with(|n| n.set(n.get() + 1));
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(api_key.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(timestamp);
    mac.update(b".");
    mac.update(raw_body);
    mac
}

fn parse_header(header: &str) -> Result<Signature, WebhookError> {
    use WebhookError::MalformedSignature as Malformed;
    if header.len() > MAX_HEADER_LEN {
        return Err(Malformed("longer than 4096 characters"));
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for element in header.split(',') {
        let (key, value) = element
            .trim()
            .split_once('=')
            .ok_or(Malformed("expected `t=<seconds>,v0=<hex>`"))?;
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(Malformed("`t` given twice"));
                }
                if value.is_empty()
                    || value.len() > 18
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(Malformed("`t` must be seconds since the epoch"));
                }
                let t: i64 = value
                    .parse()
                    .map_err(|_| Malformed("`t` must be seconds since the epoch"))?;
                timestamp = Some((t, value));
            }
            "v0" => {
                let mut sig = [0u8; 32];
                hex::decode_to_slice(value, &mut sig)
                    .map_err(|_| Malformed("`v0` must be 64 hex digits"))?;
                signatures.push(sig);
            }
            _ => {} // another scheme: not ours to check
        }
    }
    let (timestamp, timestamp_text) = timestamp.ok_or(Malformed("no `t`"))?;
    if signatures.is_empty() {
        return Err(Malformed("no `v0` signature"));
    }
    Ok(Signature {
        timestamp,
        timestamp_text: timestamp_text.to_owned(),
        signatures,
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// How many HMACs this thread computed (a seam for the cost tests).
        pub(super) static MACS_COMPUTED: Cell<usize> = const { Cell::new(0) };
    }

    /// The HMACs `f` computes.
    fn macs_computed_by<R>(f: impl FnOnce() -> R) -> (R, usize) {
        MACS_COMPUTED.with(|n| n.set(0));
        let result = f();
        (result, MACS_COMPUTED.with(Cell::get))
    }

    const KEY: &str = "ak_live_123456";
    const BODY: &[u8] = br#"{"event":"test"}"#;
    const T: i64 = 1_554_193_902;
    const VECTOR: &str = "6841e55cb12f2d9d1216c47097c75fd737a22a3a00c8d8f8d3d35fb2b613ce5b";

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn check(header: &str, now: i64) -> Result<(), WebhookError> {
        verify(Some(header), BODY, KEY, at(now), DEFAULT_TOLERANCE)
    }

    #[test]
    fn published_test_vector() {
        // kaleyra.md: key `ak_live_123456`, message `1554193902.{"event":"test"}`.
        assert_eq!(sign(KEY, T, BODY), VECTOR);
        assert_eq!(signature_header(KEY, T, BODY), format!("t={T},v0={VECTOR}"));
        assert_eq!(check(&format!("t={T},v0={VECTOR}"), T), Ok(()));
    }

    #[test]
    fn accepts_within_the_tolerance_either_way() {
        let header = signature_header(KEY, T, BODY);
        assert_eq!(check(&header, T + 300), Ok(()));
        assert_eq!(check(&header, T - 300), Ok(()));
        assert_eq!(
            check(&header, T + 301),
            Err(WebhookError::StaleTimestamp {
                timestamp: T,
                distance_secs: 301,
                tolerance_secs: 300
            })
        );
        assert!(matches!(
            check(&header, T - 3600),
            Err(WebhookError::StaleTimestamp { .. })
        ));
    }

    #[test]
    fn refuses_a_wrong_key_body_or_timestamp() {
        let header = signature_header(KEY, T, BODY);
        assert_eq!(
            verify(
                Some(&header),
                BODY,
                "ak_live_other",
                at(T),
                DEFAULT_TOLERANCE
            ),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(
                Some(&header),
                br#"{"event":"test" }"#,
                KEY,
                at(T),
                DEFAULT_TOLERANCE
            ),
            Err(WebhookError::BadSignature)
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = format!("t={},v0={VECTOR}", T + 1);
        assert_eq!(check(&moved, T), Err(WebhookError::BadSignature));
        // Upper-case hex is the same bytes.
        assert_eq!(
            check(&format!("t={T},v0={}", VECTOR.to_uppercase()), T),
            Ok(())
        );
    }

    #[test]
    fn refuses_missing_and_malformed_headers() {
        assert_eq!(
            verify(None, BODY, KEY, at(T), DEFAULT_TOLERANCE),
            Err(WebhookError::MissingSignature)
        );
        for bad in [
            "",
            "garbage",
            &format!("v0={VECTOR}"),
            &format!("t={T}"),
            &format!("t=,v0={VECTOR}"),
            &format!("t=-5,v0={VECTOR}"),
            &format!("t=1.5,v0={VECTOR}"),
            &format!("t={T}000000000000,v0={VECTOR}"),
            &format!("t={T},t={T},v0={VECTOR}"),
            &format!("t={T},v0=xyz"),
            &format!("t={T},v0={}", &VECTOR[..62]),
            &format!("t={T},v0={VECTOR}00"),
            &format!("t={T};v0={VECTOR}"),
            &format!("t={T},v0={VECTOR},{}", "x".repeat(MAX_HEADER_LEN)),
        ] {
            assert!(
                matches!(check(bad, T), Err(WebhookError::MalformedSignature(_))),
                "{bad:?}: {:?}",
                check(bad, T)
            );
        }
    }

    #[test]
    fn tolerates_spaces_other_schemes_and_several_signatures() {
        let wrong = "0".repeat(64);
        assert_eq!(check(&format!("t={T}, v0={VECTOR}"), T), Ok(()));
        assert_eq!(
            check(&format!("v1=abc,t={T},v0={wrong},v0={VECTOR}"), T),
            Ok(())
        );
        assert_eq!(
            check(&format!("t={T},v0={wrong}"), T),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn errors_never_show_the_signature_or_key() {
        let header = signature_header(KEY, T, BODY);
        for e in [
            verify(Some(&header), BODY, "other", at(T), DEFAULT_TOLERANCE).unwrap_err(),
            check(&header, T + 10_000).unwrap_err(),
        ] {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(VECTOR) && !text.contains(KEY), "{text}");
        }
    }

    #[test]
    fn room_deleted_events() {
        let event = parse_event(
            br#"{"event":"on_room_deleted","event_version":"1.0","namespace":"room","timestamp":1554193902000,"data":{"room_id":"room_5beecf8c0f29"}}"#,
        )
        .unwrap();
        assert_eq!(event.event, ON_ROOM_DELETED);
        assert_eq!(event.timestamp, Some(1_554_193_902_000));
        assert_eq!(event.room_deleted_id(), Some("room_5beecf8c0f29"));
        let other =
            parse_event(br#"{"event":"on_call_ended","data":{"room_id":"room_1"}}"#).unwrap();
        assert_eq!(other.room_deleted_id(), None);
        assert!(matches!(
            parse_event(b"[1]"),
            Err(WebhookError::InvalidBody(_))
        ));
    }

    #[test]
    fn many_signatures_cost_one_hmac() {
        let wrong = "0".repeat(64);
        // As many entries as the header's length allows.
        let many_wrong = vec![format!("v0={wrong}"); 58].join(",");
        assert!(many_wrong.len() < MAX_HEADER_LEN);
        let (result, macs) = macs_computed_by(|| check(&format!("t={T},{many_wrong}"), T));
        assert_eq!((result, macs), (Err(WebhookError::BadSignature), 1));
        let (result, macs) =
            macs_computed_by(|| check(&format!("t={T},{many_wrong},v0={VECTOR}"), T));
        assert_eq!((result, macs), (Ok(()), 1));
    }

    #[test]
    fn the_timestamp_is_checked_before_any_hmac() {
        let wrong = "0".repeat(64);
        let many_wrong = vec![format!("v0={wrong}"); 58].join(",");
        // Stale and wrong: refused as stale, without computing anything.
        let (result, macs) = macs_computed_by(|| check(&format!("t={T},{many_wrong}"), T + 301));
        assert!(
            matches!(result, Err(WebhookError::StaleTimestamp { .. })),
            "{result:?}"
        );
        assert_eq!(macs, 0);
        // Parsing and the timestamp alone never compute one either.
        let (signature, macs) = macs_computed_by(|| {
            let signature = Signature::parse(Some(&format!("t={T},{many_wrong}"))).unwrap();
            signature.check_timestamp(at(T), DEFAULT_TOLERANCE).unwrap();
            signature
        });
        assert_eq!((signature.timestamp(), macs), (T, 0));
        assert_eq!(Signature::parse(None), Err(WebhookError::MissingSignature));
    }
}
