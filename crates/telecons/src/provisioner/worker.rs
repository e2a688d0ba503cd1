//! The background worker: due provisioning and due room deletions, worked by several lanes
//! at once (at most `PROVISIONING_CONCURRENCY`), each item leased just before it is worked
//! on, so that several instances share the backlog; now and then a sweep for orphan rooms.
//!
//! The number of lanes adapts to Kaleyra: halved when Kaleyra is unavailable (429, 5xx, no
//! answer), grown back by one on each success, so a storm is not made worse by our retries
//! (Kaleyra's own `Retry-After` pauses the operation for the whole instance: the client's
//! back-pressure gate).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
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

/// How many lanes may work: cut in half when Kaleyra is unavailable (at most once per
/// [`CUT_AT_MOST_EVERY`]: lanes failing together are one signal, not thirty-two), one more
/// on success (additive increase, multiplicative decrease), between 1 and the ceiling.
#[derive(Debug)]
pub struct AdaptiveLimit {
    current: AtomicUsize,
    max: usize,
    cut_at_most_every: Duration,
    last_cut: Mutex<Option<Instant>>,
    /// Told when the limit grows, so that lanes are started again at once (not only when a
    /// lane ends: after a cut, the lanes left run until the pass is over).
    grown: Notify,
}

/// Failures within this long of a cut are taken as the same overload.
const CUT_AT_MOST_EVERY: Duration = Duration::from_secs(1);

impl AdaptiveLimit {
    pub fn new(max: usize) -> Self {
        Self::with_cut_interval(max, CUT_AT_MOST_EVERY)
    }

    fn with_cut_interval(max: usize, cut_at_most_every: Duration) -> Self {
        let max = max.max(1);
        Self {
            current: AtomicUsize::new(max),
            max,
            cut_at_most_every,
            last_cut: Mutex::new(None),
            grown: Notify::new(),
        }
    }

    /// Lanes allowed now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    fn succeeded(&self) {
        let grew = self
            .current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            });
        if grew.is_ok() {
            self.grown.notify_one();
        }
    }

    fn overloaded(&self) {
        let mut last_cut = self.last_cut.lock().unwrap_or_else(PoisonError::into_inner);
        if last_cut.is_some_and(|at| at.elapsed() < self.cut_at_most_every) {
            return;
        }
        *last_cut = Some(Instant::now());
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

/// Why a lane stopped.
enum LaneEnd {
    /// Nothing is due, or the lane did its share of the pass: no new lane is started, the
    /// pass is over once the others stop.
    PassOver,
    /// More lanes ran than the limit allows now: this one made room.
    Surplus,
}

impl Provisioner {
    /// One background pass: every due provisioning, then every due room deletion, by as many
    /// lanes as the limit allows, until none is due.
    pub async fn run_due(&self) -> Result<(), StoreError> {
        self.run_due_within(&Arc::new(AdaptiveLimit::new(self.settings.concurrency)))
            .await
    }

    /// [`Self::run_due`] with the worker's adaptive limit. Lanes are started whenever fewer
    /// run than the limit allows (it grows back after a cut), until one finds nothing due.
    async fn run_due_within(&self, limit: &Arc<AdaptiveLimit>) -> Result<(), StoreError> {
        let running = Arc::new(AtomicUsize::new(0));
        let mut lanes = JoinSet::new();
        let mut pass_over = false;
        let mut first_error = None;
        loop {
            while !pass_over && first_error.is_none() && lanes.len() < limit.current() {
                let provisioner = self.clone();
                let (limit, running) = (Arc::clone(limit), Arc::clone(&running));
                running.fetch_add(1, Ordering::Relaxed);
                lanes.spawn(async move {
                    let end = provisioner.work_lane(&limit, &running).await;
                    running.fetch_sub(1, Ordering::Relaxed);
                    end
                });
            }
            let joined = tokio::select! {
                joined = lanes.join_next() => joined,
                () = limit.grown.notified() => continue,
            };
            let Some(joined) = joined else {
                break;
            };
            match joined {
                Ok(Ok(LaneEnd::PassOver)) => pass_over = true,
                Ok(Ok(LaneEnd::Surplus)) => {}
                Ok(Err(err)) => first_error = first_error.or(Some(err)),
                Err(panicked) => {
                    tracing::error!(error = %panicked, "a provisioning lane failed");
                }
            }
        }
        self.forget_old_tagged_rooms().await;
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
    /// until none is due, or more lanes run than the limit allows now.
    async fn work_lane(
        &self,
        limit: &AdaptiveLimit,
        running: &AtomicUsize,
    ) -> Result<LaneEnd, StoreError> {
        for _ in 0..LANE_ITEMS_PER_PASS {
            if running.load(Ordering::Relaxed) > limit.current() {
                return Ok(LaneEnd::Surplus);
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
                return Ok(LaneEnd::PassOver);
            };
            let outcome = self.delete_room(&entry).await;
            limit.learn(&outcome.map_err(ProvisionError::Kaleyra));
        }
        Ok(LaneEnd::PassOver)
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
                        self.forget_old_tagged_rooms().await;
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
        let limit = AdaptiveLimit::with_cut_interval(32, Duration::ZERO);
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

    /// Whether the limit told of growth: a stored notification completes at once (a
    /// zero timeout polls the future before looking at the time).
    async fn told_of_growth(limit: &AdaptiveLimit) -> bool {
        tokio::time::timeout(Duration::ZERO, limit.grown.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn growth_is_told_so_that_lanes_start_again_before_the_pass_ends() {
        let limit = AdaptiveLimit::with_cut_interval(4, Duration::ZERO);
        limit.learn(&Ok(()));
        assert!(!told_of_growth(&limit).await, "at the ceiling: no growth");
        limit.learn(&unavailable());
        assert!(!told_of_growth(&limit).await, "a cut is not growth");
        limit.learn(&Ok(()));
        assert!(told_of_growth(&limit).await);
        assert_eq!(limit.current(), 3);
    }

    #[test]
    fn failures_together_are_one_cut() {
        let limit = AdaptiveLimit::with_cut_interval(32, Duration::from_secs(3600));
        for _ in 0..32 {
            limit.learn(&unavailable());
        }
        assert_eq!(limit.current(), 16);
    }
}
