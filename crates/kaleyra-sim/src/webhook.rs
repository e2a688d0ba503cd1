//! The webhooks Kaleyra sends (kaleyra.md, "Webhooks"): where to, how they are signed, and
//! the record of every delivery.
//!
//! The signature is [`kaleyra_client::webhook::signature_header`]: the same implementation the
//! service uses to verify it. `t` in the header is in **seconds**; the envelope's `timestamp`
//! is in milliseconds.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kaleyra_client::webhook::{SIGNATURE_HEADER, signature_header};
use serde::{Deserialize, Serialize};

use crate::{
    state::{format_date, now},
    wire::{RoomDeletedData, WebhookEnvelope},
};

/// How long a delivery may take by default (connect, send, answer) before it counts as failed.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest delivery timeout accepted.
pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// How old a [`WebhookTamper::StaleTimestamp`] webhook claims to be (one hour).
pub const STALE_BY: Duration = Duration::from_secs(3600);

/// A deliberate flaw in the webhooks sent, to test the receiver's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookTamper {
    /// Signed with another key: a well-formed header whose `v0` does not match.
    WrongSignature,
    /// Correctly signed, but the header's `t` and the envelope's `timestamp` are
    /// [`STALE_BY`] in the past (a replayed message).
    StaleTimestamp,
    /// No `bandyer-signature` header at all.
    MissingSignature,
}

/// Where webhooks go and how. JSON of `GET`/`PUT /_sim/webhook`:
/// `{"url": "http://…" | null, "tamper": "wrong_signature" | … | null, "timeout_ms": 5000}`.
/// In a `PUT`, an absent field takes its default (no URL, no tamper, 5000 ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// The receiver (the service's `POST /webhooks/kaleyra`); `None` = send nothing.
    #[serde(default)]
    pub url: Option<String>,
    /// A deliberate flaw; `None` = correctly signed webhooks.
    #[serde(default)]
    pub tamper: Option<WebhookTamper>,
    /// How long one delivery may take, 1–60000 ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    DEFAULT_WEBHOOK_TIMEOUT.as_millis() as u64
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            url: None,
            tamper: None,
            timeout_ms: default_timeout_ms(),
        }
    }
}

impl WebhookSettings {
    /// Checks the URL (absolute `http`/`https`, no credentials) and the timeout.
    pub fn validated(self) -> Result<Self, String> {
        if let Some(url) = &self.url {
            check_url(url)?;
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_WEBHOOK_TIMEOUT.as_millis() as u64 {
            return Err(format!(
                "timeout_ms must be 1 to {}, got {}",
                MAX_WEBHOOK_TIMEOUT.as_millis(),
                self.timeout_ms
            ));
        }
        Ok(self)
    }
}

/// Checks a webhook URL: absolute `http` or `https`, with a host, without credentials.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("invalid webhook url `{url}`: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(format!(
            "invalid webhook url `{url}`: an http or https URL with a host is needed"
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "invalid webhook url `{url}`: credentials in the URL are not allowed"
        ));
    }
    Ok(())
}

/// One webhook the simulator sent (or tried to): `GET /_sim/webhook/deliveries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// E.g. `on_room_deleted`.
    pub event: String,
    pub url: String,
    /// The body exactly as sent (what the signature covers).
    pub body: String,
    /// The `bandyer-signature` header as sent; `None` when tampered away.
    pub signature: Option<String>,
    pub tamper: Option<WebhookTamper>,
    /// When it was sent (ISO 8601, ms).
    pub sent_at: String,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Whether the receiver answered 2xx.
    pub delivered: bool,
    /// Why it was not delivered: `HTTP 401`, a timeout, a refused connection…
    pub error: Option<String>,
    /// How long the attempt took.
    pub elapsed_ms: u64,
}

/// The signed `on_room_deleted` webhook, ready to send.
pub(crate) struct Outgoing {
    pub event: &'static str,
    pub body: String,
    pub signature: Option<String>,
}

/// Builds the `on_room_deleted` webhook for `room_id`, signed with `api_key` (or flawed as
/// `tamper` says), as sent at `sent`.
pub(crate) fn room_deleted(
    api_key: &str,
    room_id: &str,
    sent: DateTime<Utc>,
    tamper: Option<WebhookTamper>,
) -> Outgoing {
    let sent = match tamper {
        Some(WebhookTamper::StaleTimestamp) => {
            sent - chrono::TimeDelta::from_std(STALE_BY).unwrap_or_default()
        }
        _ => sent,
    };
    let envelope = WebhookEnvelope {
        event: "on_room_deleted",
        event_version: "1.0",
        namespace: "room",
        timestamp: sent.timestamp_millis(),
        data: RoomDeletedData {
            room_id: room_id.to_owned(),
        },
    };
    let body = serde_json::to_string(&envelope).unwrap_or_default();
    let t = sent.timestamp();
    let signature = match tamper {
        Some(WebhookTamper::MissingSignature) => None,
        Some(WebhookTamper::WrongSignature) => Some(signature_header(
            "not-the-company-api-key",
            t,
            body.as_bytes(),
        )),
        _ => Some(signature_header(api_key, t, body.as_bytes())),
    };
    Outgoing {
        event: envelope.event,
        body,
        signature,
    }
}

/// POSTs `outgoing` to `url` within `timeout`; never fails, the outcome is in the record.
pub(crate) async fn deliver(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
    tamper: Option<WebhookTamper>,
    outgoing: Outgoing,
) -> WebhookDelivery {
    let started = Instant::now();
    let sent_at = format_date(now());
    let mut request = http
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(outgoing.body.clone());
    if let Some(signature) = &outgoing.signature {
        request = request.header(SIGNATURE_HEADER, signature);
    }
    // The timeout of the request covers everything; this one guards against a body that
    // never ends, which reqwest's timeout also covers, but a simulator must never hang.
    let result = tokio::time::timeout(timeout + Duration::from_secs(1), async {
        let response = request.send().await?;
        let status = response.status();
        // Read (and drop) the answer, so that the connection can be reused.
        let _ = response.bytes().await;
        Ok::<_, reqwest::Error>(status)
    })
    .await;
    let (status, error) = match result {
        Ok(Ok(status)) if status.is_success() => (Some(status.as_u16()), None),
        Ok(Ok(status)) => (
            Some(status.as_u16()),
            Some(format!("HTTP {}", status.as_u16())),
        ),
        Ok(Err(e)) if e.is_timeout() => (
            None,
            Some(format!(
                "no answer within {} ms (timeout)",
                timeout.as_millis()
            )),
        ),
        Ok(Err(e)) => (None, Some(describe(&e))),
        Err(_) => (
            None,
            Some(format!(
                "no answer within {} ms (timeout)",
                timeout.as_millis()
            )),
        ),
    };
    let delivery = WebhookDelivery {
        event: outgoing.event.to_owned(),
        url: url.to_owned(),
        body: outgoing.body,
        signature: outgoing.signature,
        tamper,
        sent_at,
        status,
        delivered: error.is_none(),
        error,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    if delivery.delivered {
        tracing::info!(target: "kaleyra_sim", event = %delivery.event, url, status, "webhook delivered");
    } else {
        tracing::warn!(
            target: "kaleyra_sim",
            event = %delivery.event,
            url,
            error = delivery.error.as_deref().unwrap_or(""),
            "webhook not delivered"
        );
    }
    delivery
}

/// The error and its causes, e.g. "error sending request: … Connection refused".
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use kaleyra_client::webhook::{DEFAULT_TOLERANCE, WebhookError, verify};

    use super::*;

    const KEY: &str = "ak_test_key";

    fn check(out: &Outgoing, at: DateTime<Utc>) -> Result<(), WebhookError> {
        verify(
            out.signature.as_deref(),
            out.body.as_bytes(),
            KEY,
            at,
            DEFAULT_TOLERANCE,
        )
    }

    #[test]
    fn room_deleted_is_signed_in_seconds() {
        let sent = DateTime::from_timestamp_millis(1_554_193_902_123).unwrap();
        let out = room_deleted(KEY, "room_5beecf8c0f29", sent, None);
        assert_eq!(
            out.body,
            r#"{"event":"on_room_deleted","event_version":"1.0","namespace":"room","timestamp":1554193902123,"data":{"room_id":"room_5beecf8c0f29"}}"#
        );
        let header = out.signature.as_deref().unwrap();
        assert!(header.starts_with("t=1554193902,v0="), "{header}");
        assert_eq!(check(&out, sent), Ok(()));
    }

    #[test]
    fn tampered_webhooks_fail_as_intended() {
        let sent = now();
        let wrong = room_deleted(KEY, "room_1", sent, Some(WebhookTamper::WrongSignature));
        assert_eq!(check(&wrong, sent), Err(WebhookError::BadSignature));
        let stale = room_deleted(KEY, "room_1", sent, Some(WebhookTamper::StaleTimestamp));
        assert!(matches!(
            check(&stale, sent),
            Err(WebhookError::StaleTimestamp { .. })
        ));
        let missing = room_deleted(KEY, "room_1", sent, Some(WebhookTamper::MissingSignature));
        assert_eq!(check(&missing, sent), Err(WebhookError::MissingSignature));
    }

    #[test]
    fn settings_validation() {
        let ok = |url: &str| {
            WebhookSettings {
                url: Some(url.to_owned()),
                ..WebhookSettings::default()
            }
            .validated()
        };
        assert!(ok("http://127.0.0.1:8080/webhooks/kaleyra").is_ok());
        assert!(ok("https://example.org/hook").is_ok());
        for bad in [
            "ftp://x/y",
            "not a url",
            "/webhooks/kaleyra",
            "http://u:p@h/x",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        for timeout_ms in [0, 60_001] {
            assert!(
                WebhookSettings {
                    timeout_ms,
                    ..WebhookSettings::default()
                }
                .validated()
                .is_err()
            );
        }
    }
}
