//! Kaleyra's webhooks (spec §4.11): verified by their `bandyer-signature` (HMAC-SHA256 keyed
//! with the API key, timestamp within 5 minutes), then acted on. `on_room_deleted` for a room
//! a live teleconsultation still points to makes that room again; anything else is
//! acknowledged and left alone.

use std::sync::Arc;

use kaleyra_client::webhook::{self, WebhookError};
use secrecy::{ExposeSecret, SecretString};

use crate::clock::Clock;
use crate::services::teleconsultations::Teleconsultations;

/// Why a webhook is not taken.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Its signature (401): nothing done.
    #[error(transparent)]
    Signature(#[from] WebhookError),
    /// What it asks could not be stored now (503): Kaleyra sends it again.
    #[error("the webhook could not be acted on now: {0}")]
    NotNow(String),
}

pub struct KaleyraWebhooks {
    /// The company API key, the signatures' key.
    api_key: SecretString,
    clock: Arc<dyn Clock>,
    teleconsultations: Arc<Teleconsultations>,
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
        }
    }

    /// Verifies and handles one webhook. `Err` = refused (nothing done, or not yet);
    /// `Ok` = acknowledged (whatever it was about).
    pub async fn receive(&self, signature: Option<&str>, raw_body: &[u8]) -> Result<(), Refusal> {
        webhook::verify(
            signature,
            raw_body,
            self.api_key.expose_secret(),
            self.clock.now(),
            webhook::DEFAULT_TOLERANCE,
        )?;
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
                return Err(Refusal::NotNow(err.to_string()));
            }
        }
        Ok(())
    }
}
