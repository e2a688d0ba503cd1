//! Kaleyra's back-pressure, obeyed by the whole instance: a `429`, or a `503` with
//! `Retry-After`, pauses that operation for every caller sharing the client (its clones
//! included) until the time Kaleyra asked for. Without one gate, every call in flight would
//! wait on its own and then all retry at once, making the storm worse.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{ErrorKind, KaleyraError, Operation};

/// The longest `Retry-After` the client will wait for before its next attempt. A longer value
/// is shortened to this (the answer is still a failure if the attempts run out).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long a `429` without `Retry-After` pauses its operation.
pub(crate) const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// The pauses in force, by operation.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    paused_until: Mutex<HashMap<Operation, Instant>>,
}

impl Gate {
    /// Waits while `op` is paused (a pause may be extended meanwhile).
    pub(crate) async fn pass(&self, op: Operation) {
        while let Some(until) = self.paused_until(op) {
            tokio::time::sleep_until(until).await;
        }
    }

    /// When `op`'s pause ends, if it is paused now.
    pub(crate) fn paused_until(&self, op: Operation) -> Option<Instant> {
        let paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        paused
            .get(&op)
            .copied()
            .filter(|until| *until > Instant::now())
    }

    /// Pauses `op` as `error` asks, if it is back-pressure (never longer than
    /// [`MAX_RETRY_AFTER`]).
    pub(crate) fn obey(&self, op: Operation, error: &KaleyraError) {
        let Some(pause) = pause_asked(error) else {
            return;
        };
        let until = Instant::now() + pause.min(MAX_RETRY_AFTER);
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = paused.entry(op).or_insert(until);
        if *entry < until {
            *entry = until;
        }
        drop(paused);
        metrics::counter!("kaleyra_pauses_total", "operation" => op.as_str()).increment(1);
        tracing::warn!(
            operation = op.as_str(),
            pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
            "Kaleyra asks to slow down; this operation is paused for every caller"
        );
    }
}

/// The pause a failure asks for: a `429` (for its `Retry-After`, else [`DEFAULT_PAUSE`]), a
/// `503` with `Retry-After`. Other failures pause nothing (retries back off on their own).
fn pause_asked(error: &KaleyraError) -> Option<Duration> {
    match error.kind() {
        ErrorKind::Unavailable {
            status: 429,
            retry_after,
            ..
        } => Some(retry_after.unwrap_or(DEFAULT_PAUSE)),
        ErrorKind::Unavailable {
            status: 503,
            retry_after: Some(wait),
            ..
        } => Some(*wait),
        _ => None,
    }
}
