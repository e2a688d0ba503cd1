//! Kaleyra's webhooks (spec §4.11): verified by their `bandyer-signature` (HMAC-SHA256 keyed
//! with the API key, timestamp within 5 minutes), then acted on. `on_room_deleted` for a room
//! a live teleconsultation still points to makes that room again; anything else is
//! acknowledged and left alone.
//!
//! The route needs no identity, so anyone can send to it (spec §10): what a request will be
//! refused for is found as cheaply as possible — a body declared too large, then the header,
//! then its timestamp, all before the body is read ([`KaleyraWebhooks::admit`]); then one
//! HMAC over the body ([`KaleyraWebhooks::receive`]). Refusals are logged at most once a
//! second, so a flood of them cannot flood the logs either.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use kaleyra_client::webhook::{self, Signature, WebhookError};
use secrecy::{ExposeSecret, SecretString};

use crate::clock::Clock;
use crate::services::teleconsultations::Teleconsultations;

/// The largest webhook body accepted (Kaleyra's envelopes are well under 1 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a webhook is not taken.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Its signature (401): nothing done.
    #[error(transparent)]
    Signature(#[from] WebhookError),
    /// Its body is over [`MAX_BODY_BYTES`] (413): nothing done, the rest left unread.
    #[error("the webhook body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// What it asks could not be stored now (503): Kaleyra sends it again. Why is logged,
    /// never answered (spec §6: an answer does not echo the service's internals).
    #[error("the webhook could not be acted on now: the service logged why; send it again")]
    NotNow,
}

pub struct KaleyraWebhooks {
    /// The company API key, the signatures' key.
    api_key: SecretString,
    clock: Arc<dyn Clock>,
    teleconsultations: Arc<Teleconsultations>,
    refusals: RefusalLog,
}

impl KaleyraWebhooks {
    pub fn new(
        api_key: SecretString,
        clock: Arc<dyn Clock>,
        teleconsultations: Arc<Teleconsultations>,
    ) -> Self {
        Self {
            api_key,
            clock,
            teleconsultations,
            refusals: RefusalLog::default(),
        }
    }

    /// What can be checked before the body is read: its declared length (`Content-Length`,
    /// when given), then the `bandyer-signature` header (`None` when absent), then its
    /// timestamp. `Ok` = the body may be read (at most [`MAX_BODY_BYTES`]) and handed to
    /// [`Self::receive`] with the signature.
    pub fn admit(
        &self,
        declared_length: Option<u64>,
        header: Option<&str>,
    ) -> Result<Signature, Refusal> {
        if declared_length.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
            return Err(self.refused(Refusal::TooLarge));
        }
        let signature = Signature::parse(header)
            .and_then(|signature| {
                signature.check_timestamp(self.clock.now(), webhook::DEFAULT_TOLERANCE)?;
                Ok(signature)
            })
            .map_err(|err| self.refused(err.into()))?;
        Ok(signature)
    }

    /// The body turned out larger than [`MAX_BODY_BYTES`] while it was read (no length was
    /// declared): refused like one declared so.
    pub fn body_too_large(&self) -> Refusal {
        self.refused(Refusal::TooLarge)
    }

    /// Verifies the body of an admitted webhook (one HMAC) and handles it. `Err` = refused
    /// (nothing done, or not yet); `Ok` = acknowledged (whatever it was about).
    pub async fn receive(&self, signature: Signature, raw_body: &[u8]) -> Result<(), Refusal> {
        signature
            .verify_body(raw_body, self.api_key.expose_secret())
            .map_err(|err| self.refused(err.into()))?;
        let event = match webhook::parse_event(raw_body) {
            Ok(event) => event,
            // Signed by Kaleyra but not an envelope we read: acknowledged, nothing to do.
            Err(err) => {
                tracing::warn!(error = %err, "an unreadable Kaleyra webhook was ignored");
                return Ok(());
            }
        };
        let Some(room_id) = event.room_deleted_id() else {
            tracing::debug!(event = %event.event, "a Kaleyra webhook that needs nothing done");
            return Ok(());
        };
        match self.teleconsultations.room_lost(room_id).await {
            Ok(Some(id)) => {
                tracing::warn!(teleconsultation = %id, room = room_id, "Kaleyra deleted this room; it is made again")
            }
            Ok(None) => {} // a room we retired ourselves, or another deployment's
            // Not acknowledged, so that Kaleyra sends it again.
            Err(err) => {
                tracing::warn!(room = room_id, error = %err, "a room Kaleyra deleted is not replaced yet");
                return Err(Refusal::NotNow);
            }
        }
        Ok(())
    }

    /// Notes a refusal in the log, rate-limited, and hands it back.
    fn refused(&self, refusal: Refusal) -> Refusal {
        if let Some(refusals) = self.refusals.note(self.clock.now()) {
            tracing::warn!(
                error = %refusal,
                refusals_since_last_line = refusals,
                "Kaleyra webhook refused (refusals are logged at most once a second; the count includes this one)"
            );
        }
        refusal
    }
}

/// Refusals are logged at most once per [`RefusalLog::INTERVAL`]: a line stands for every
/// refusal since the previous line.
#[derive(Debug, Default)]
struct RefusalLog(Mutex<RefusalLogState>);

#[derive(Debug, Default)]
struct RefusalLogState {
    last_line: Option<DateTime<Utc>>,
    /// Refusals not yet in a line.
    unlogged: u64,
}

impl RefusalLog {
    const INTERVAL: TimeDelta = TimeDelta::seconds(1);

    /// Notes one refusal at `now`. `Some(n)` when a line is due: it stands for `n` refusals
    /// (this one and those not logged since the previous line).
    fn note(&self, now: DateTime<Utc>) -> Option<u64> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.unlogged += 1;
        // A clock set back counts as due, so that the log cannot stay silent.
        let due = state
            .last_line
            .is_none_or(|last| now - last >= Self::INTERVAL || now < last);
        if !due {
            return None;
        }
        state.last_line = Some(now);
        Some(std::mem::take(&mut state.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_at_most_once_a_second_with_a_count() {
        let log = RefusalLog::default();
        let start = DateTime::parse_from_rfc3339("2030-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |ms: i64| start + TimeDelta::milliseconds(ms);
        // The first refusal is logged at once.
        assert_eq!(log.note(at(0)), Some(1));
        // Within the second: counted, not logged.
        for ms in [1, 10, 500, 999] {
            assert_eq!(log.note(at(ms)), None, "{ms} ms");
        }
        // A second after the last line: one line for those four and this one.
        assert_eq!(log.note(at(1000)), Some(5));
        assert_eq!(log.note(at(1999)), None);
        // A long quiet time: the next refusal is logged at once, with the one before it.
        assert_eq!(log.note(at(60_000)), Some(2));
        assert_eq!(log.note(at(60_001)), None);
        // A clock set back does not silence the log.
        assert_eq!(log.note(at(0)), Some(2));
    }
}
