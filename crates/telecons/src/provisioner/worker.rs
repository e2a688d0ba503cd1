//! The background worker: due provisioning and due room deletions, worked by several lanes
//! at once (at most `PROVISIONING_CONCURRENCY`), each item leased just before it is worked
//! on, so that several instances share the backlog; now and then a sweep for orphan rooms.
//!
//! The number of lanes adapts to Kaleyra: halved when Kaleyra is unavailable (429, 5xx, no
//! answer), grown back by one on each success, so a storm is not made worse by our retries
//! (Kaleyra's own `Retry-After` pauses the operation for the whole instance: the client's
//! back-pressure gate).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{ProvisionError, Provisioner};
use crate::store::StoreError;

/// How often the background worker looks for due work once none is left.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Items one lane works per pass at most: a pass ends even if work keeps coming due.
const LANE_ITEMS_PER_PASS: u32 = 10_000;
/// The background worker sweeps Kaleyra for orphans first after this many passes (about
/// 30 s after start-up), then every [`SWEEP_EVERY`] passes (about 5 minutes).
const FIRST_SWEEP: u32 = 15;
const SWEEP_EVERY: u32 = 150;

/// How many lanes may work: cut in half when Kaleyra is unavailable, one more on success
/// (additive increase, multiplicative decrease), between 1 and the configured ceiling.
#[derive(Debug)]
pub struct AdaptiveLimit {
    current: AtomicUsize,
    max: usize,
}

impl AdaptiveLimit {
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            current: AtomicUsize::new(max),
            max,
        }
    }

    /// Lanes allowed now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    fn succeeded(&self) {
        let _ = self
            .current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some((n + 1).min(self.max))
            });
    }

    fn overloaded(&self) {
        let _ = self
            .current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some((n / 2).max(1))
            });
    }

    /// Learns from one item's outcome.
    fn learn(&self, outcome: &Result<(), ProvisionError>) {
        match outcome {
            Err(ProvisionError::Kaleyra(err)) if err.is_retryable() => self.overloaded(),
            Err(_) => {}
            Ok(()) => self.succeeded(),
        }
    }
}

impl Provisioner {
    /// One background pass: every due provisioning, then every due room deletion, by as many
    /// lanes as the limit allows, until none is due.
    pub async fn run_due(&self) -> Result<(), StoreError> {
        self.run_due_within(&Arc::new(AdaptiveLimit::new(self.settings.concurrency)))
            .await
    }

    /// [`Self::run_due`] with the worker's adaptive limit.
    async fn run_due_within(&self, limit: &Arc<AdaptiveLimit>) -> Result<(), StoreError> {
        let mut lanes = JoinSet::new();
        for lane in 0..limit.current() {
            let provisioner = self.clone();
            let limit = Arc::clone(limit);
            lanes.spawn(async move { provisioner.work_lane(lane, &limit).await });
        }
        let mut first_error = None;
        while let Some(joined) = lanes.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(err)) => first_error = first_error.or(Some(err)),
                Err(panicked) => {
                    tracing::error!(error = %panicked, "a provisioning lane failed");
                }
            }
        }
        self.forget_tagged_rooms().await;
        if let Some(err) = first_error {
            return Err(err);
        }
        let backlog = self
            .store
            .backlog(self.clock.now(), self.settings.immutable_period_ms)
            .await?;
        if backlog.rooms_missing_at_start > 0 {
            tracing::warn!(
                rooms_missing_at_start = backlog.rooms_missing_at_start,
                "teleconsultations whose links are due have no room yet"
            );
        }
        Ok(())
    }

    /// One lane: due items one after the other, each leased just before it is worked on,
    /// until none is due or the limit no longer counts this lane.
    async fn work_lane(&self, lane: usize, limit: &AdaptiveLimit) -> Result<(), StoreError> {
        for _ in 0..LANE_ITEMS_PER_PASS {
            if lane >= limit.current() {
                return Ok(());
            }
            let lease = self.lease();
            let claimed = self
                .store
                .claim_due_provisioning(self.clock.now(), &lease.owner, lease.until, 1)
                .await?;
            if let Some(id) = claimed.first() {
                // Errors are logged and postponed inside.
                let outcome = self.converge_leased(id, &lease.owner, None).await;
                limit.learn(&outcome);
                continue;
            }
            let Some(entry) = self.claim_deletion(None).await? else {
                return Ok(());
            };
            let outcome = self.delete_room(&entry).await;
            limit.learn(&outcome.map_err(ProvisionError::Kaleyra));
        }
        Ok(())
    }

    /// The background worker: a pass every [`POLL_INTERVAL`] until `shutdown`, and now and
    /// then a sweep for orphan rooms.
    pub async fn run_worker(self, shutdown: CancellationToken) {
        let limit = Arc::new(AdaptiveLimit::new(self.settings.concurrency));
        let mut passes: u32 = 0;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(POLL_INTERVAL) => {
                    if let Err(err) = self.run_due_within(&limit).await {
                        tracing::warn!(error = %err, "provisioning pass failed");
                    }
                    passes = passes.wrapping_add(1);
                    if passes >= FIRST_SWEEP
                        && (passes - FIRST_SWEEP).is_multiple_of(SWEEP_EVERY)
                    {
                        if let Err(err) = self.sweep_orphans().await {
                            tracing::warn!(error = %err, "orphan sweep failed");
                        }
                        self.forget_tagged_rooms().await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kaleyra_client::{ErrorKind, KaleyraError, Operation};

    use super::*;

    fn unavailable() -> Result<(), ProvisionError> {
        Err(ProvisionError::Kaleyra(KaleyraError::new(
            Operation::CreateRoom,
            ErrorKind::Timeout,
        )))
    }

    #[test]
    fn the_limit_halves_when_kaleyra_is_unavailable_and_grows_back_one_by_one() {
        let limit = AdaptiveLimit::new(32);
        assert_eq!(limit.current(), 32);
        limit.learn(&unavailable());
        assert_eq!(limit.current(), 16);
        for _ in 0..10 {
            limit.learn(&unavailable());
        }
        assert_eq!(limit.current(), 1, "never below one lane");
        limit.learn(&Ok(()));
        limit.learn(&Ok(()));
        assert_eq!(limit.current(), 3);
        for _ in 0..100 {
            limit.learn(&Ok(()));
        }
        assert_eq!(limit.current(), 32, "never above the ceiling");
        assert_eq!(AdaptiveLimit::new(0).current(), 1);
    }
}
