//! Idempotency keys of `POST /teleconsultation` (spec §4.13): a request with a key claims it
//! before it books; the booking is the key's answer in the booking's own transaction, a 4xx
//! is kept after it, a 5xx frees the key. The rules are `domain::idempotency`'s; the keys are
//! the store's, so they hold across restarts and instances. Expired keys are swept now and
//! then ([`IdempotencyKeys::sweep_until`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio_util::sync::CancellationToken;

use super::ServiceError;
use crate::clock::Clock;
use crate::domain::idempotency::{self, IdempotencyKey, KEPT_FOR, KeyReuse};
use crate::store::{KeyClaim, Store};

/// How often expired keys are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// A key claimed by a request: held by it, or already kept for another.
#[derive(Debug)]
pub enum Claimed {
    /// The request goes on; its answer becomes the key's.
    Held(KeyClaim),
    /// The same body was answered before: that answer, again.
    Replay(idempotency::KeptAnswer),
}

pub struct IdempotencyKeys {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// How long a request holds its key at most: a request that dies with its instance
    /// leaves the key held this long. The request budget: a request has answered by then
    /// (or its booking is refused: `KeyLost`).
    hold: TimeDelta,
}

impl IdempotencyKeys {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, hold: Duration) -> Self {
        Self {
            store,
            clock,
            hold: TimeDelta::from_std(hold).unwrap_or(TimeDelta::MAX),
        }
    }

    /// Claims `key` for a request of `caller_id` whose body has `fingerprint`. A key kept
    /// for another body is a 422; one whose request is still running, a 409.
    pub async fn claim(
        &self,
        caller_id: Option<&str>,
        key: &IdempotencyKey,
        fingerprint: String,
    ) -> Result<Claimed, ServiceError> {
        let at = self.clock.now();
        let claim = KeyClaim {
            scope: idempotency::scope(caller_id),
            key: key.as_str().to_owned(),
            fingerprint,
            owner: format!("{:016x}", rand::random::<u64>()),
            at,
            until: at + self.hold,
        };
        let Some(kept) = self.store.claim_idempotency_key(&claim).await? else {
            return Ok(Claimed::Held(claim));
        };
        match idempotency::reuse(&kept, &claim.fingerprint) {
            KeyReuse::Replay(answer) => Ok(Claimed::Replay(answer)),
            KeyReuse::OtherBody => Err(ServiceError::KeyReused),
            KeyReuse::Running => Err(ServiceError::KeyInUse),
        }
    }

    /// Keeps a 4xx as the key's answer. When it cannot be kept, the key is freed instead
    /// (better a retry decided again than one held until the hold ends).
    pub async fn keep_refusal(&self, claim: &KeyClaim, status: u16, body: &str) {
        if let Err(err) = self.store.keep_refusal(claim, status, body).await {
            tracing::warn!(error = %err, "cannot keep a refusal for its idempotency key");
            self.release(claim).await;
        }
    }

    /// Frees the key: the request failed (5xx) and keeps nothing.
    pub async fn release(&self, claim: &KeyClaim) {
        if let Err(err) = self.store.release_idempotency_key(claim).await {
            tracing::warn!(error = %err, "cannot free an idempotency key; it is free when its hold ends");
        }
    }

    /// Deletes the keys kept longer than [`KEPT_FOR`], at once and then every
    /// [`SWEEP_EVERY`], until `shutdown`. (A key past it is free already: the sweep only
    /// bounds the table.)
    pub async fn sweep_until(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(err) = self.sweep().await {
                tracing::warn!(error = %err, "cannot delete expired idempotency keys");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(SWEEP_EVERY) => {}
            }
        }
    }

    /// Deletes the keys kept longer than [`KEPT_FOR`].
    pub async fn sweep(&self) -> Result<(), ServiceError> {
        Ok(self
            .store
            .prune_idempotency_keys(self.clock.now() - KEPT_FOR)
            .await?)
    }
}
