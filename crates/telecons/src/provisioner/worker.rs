//! The background worker: due provisioning and due room deletions, several at once (at most
//! `PROVISIONING_CONCURRENCY`), claimed in batches with leases just before they are worked
//! on, so that several instances share the backlog; now and then a sweep for orphan rooms.
//!
//! How many at once adapts to Kaleyra (`AdaptiveLimit`): halved when Kaleyra is unavailable
//! (5xx, no answer), grown back by one on each success, so a storm is not made worse by our
//! retries; and kept under the rate Kaleyra allows once it refuses one for rate (`429`), so
//! that the requests, which share that rate and the pause a refusal brings (the client's
//! back-pressure gate pauses the operation for the whole instance), are not held up by the
//! backlog.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{ProvisionError, Provisioner};
use crate::store::{RoomDeletion, StoreError};
use crate::telemetry;

/// How often the background worker looks for due work once none is left.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Items claimed per pass at most: a pass ends even if work keeps coming due (the sweep
/// runs between passes).
const ITEMS_PER_PASS: usize = 100_000;
/// The background worker sweeps Kaleyra for orphans first after this many passes (about
/// 30 s after start-up), then every [`SWEEP_EVERY`] passes (about 5 minutes).
const FIRST_SWEEP: u32 = 15;
const SWEEP_EVERY: u32 = 150;

/// Failures within this long of a cut are taken as the same overload.
const CUT_AT_MOST_EVERY: TimeDelta = TimeDelta::seconds(1);
/// The ceiling learnt from Kaleyra's refusals for rate rises by one this often.
const CEILING_RAISED_EVERY: TimeDelta = TimeDelta::seconds(5);

/// How many items may be worked on at once, between 1 and the setting (`max`).
///
/// - Kaleyra unavailable (5xx, no answer): halved (additive increase, multiplicative
///   decrease), at most once per [`CUT_AT_MOST_EVERY`]: items failing together are one
///   signal, not thirty-two.
/// - Kaleyra refusing for rate (`429`): the limit and its ceiling fall to three quarters
///   (at most once per [`CUT_AT_MOST_EVERY`]). The ceiling then rises by one every
///   [`CEILING_RAISED_EVERY`]. Why so slowly: Kaleyra's allowance has a burst, so going a
///   little over its rate is refused only once the burst is spent, and each refusal pauses
///   every caller of the instance (requests included) for its `Retry-After`, a second at
///   least. Growing back by one per success would spend the burst again within seconds; one
///   step every few seconds spends it rarely, and the worker settles just under the rate
///   left by the requests.
/// - Success: one more, up to the ceiling.
///
/// Its time is the provisioner's clock (tests set it; within a test's pass it stands still).
#[derive(Debug)]
pub struct AdaptiveLimit {
    max: usize,
    cut_at_most_every: TimeDelta,
    ceiling_raised_every: TimeDelta,
    state: Mutex<LimitState>,
}

#[derive(Debug)]
struct LimitState {
    current: usize,
    /// The most the limit grows back to: `max` until Kaleyra refuses for rate.
    ceiling: usize,
    /// When the ceiling was last lowered or raised.
    ceiling_since: DateTime<Utc>,
    last_cut: Option<DateTime<Utc>>,
}

impl AdaptiveLimit {
    /// The worker's limit, reported as `worker_concurrency_limit`.
    pub fn new(max: usize) -> Self {
        let limit = Self::with_intervals(max, CUT_AT_MOST_EVERY, CEILING_RAISED_EVERY);
        metrics::gauge!(telemetry::WORKER_CONCURRENCY).set(limit.max as f64);
        limit
    }

    fn with_intervals(
        max: usize,
        cut_at_most_every: TimeDelta,
        ceiling_raised_every: TimeDelta,
    ) -> Self {
        let max = max.max(1);
        Self {
            max,
            cut_at_most_every,
            ceiling_raised_every,
            state: Mutex::new(LimitState {
                current: max,
                ceiling: max,
                ceiling_since: DateTime::<Utc>::MIN_UTC,
                last_cut: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LimitState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Items allowed at once now.
    pub fn current(&self) -> usize {
        self.state().current
    }

    /// Learns from one item's outcome, which ended at `now`.
    fn learn(&self, outcome: &Result<(), ProvisionError>, now: DateTime<Utc>) {
        let mut state = self.state();
        let before = state.current;
        match outcome {
            Err(ProvisionError::Kaleyra(err)) if err.status() == Some(429) => {
                if self.may_cut(&mut state, now) {
                    state.current = (state.current * 3 / 4).max(1);
                    state.ceiling = state.current;
                    state.ceiling_since = now;
                }
            }
            Err(ProvisionError::Kaleyra(err)) if err.is_retryable() => {
                if self.may_cut(&mut state, now) {
                    state.current = (state.current / 2).max(1);
                }
            }
            Err(_) => {}
            Ok(()) => {
                self.raise_ceiling(&mut state, now);
                state.current = (state.current + 1).min(state.ceiling);
            }
        }
        if state.current != before {
            metrics::gauge!(telemetry::WORKER_CONCURRENCY).set(state.current as f64);
        }
    }

    /// Whether a failure at `now` is a new overload (then noted as the last cut).
    fn may_cut(&self, state: &mut LimitState, now: DateTime<Utc>) -> bool {
        if state
            .last_cut
            .is_some_and(|at| now - at < self.cut_at_most_every)
        {
            return false;
        }
        state.last_cut = Some(now);
        true
    }

    /// One step for each [`CEILING_RAISED_EVERY`] gone by since the ceiling last changed.
    fn raise_ceiling(&self, state: &mut LimitState, now: DateTime<Utc>) {
        if state.ceiling >= self.max {
            return;
        }
        let since = (now - state.ceiling_since).max(TimeDelta::zero());
        let steps = match self.ceiling_raised_every.num_milliseconds() {
            every if every <= 0 => self.max,
            every => usize::try_from(since.num_milliseconds() / every).unwrap_or(usize::MAX),
        };
        if steps > 0 {
            state.ceiling = state.ceiling.saturating_add(steps).min(self.max);
            state.ceiling_since = now;
        }
    }
}

/// A piece of due work, leased to this instance.
enum Claimed {
    /// A teleconsultation to provision, leased to `owner`.
    Provisioning {
        id: String,
        owner: String,
    },
    Deletion(RoomDeletion),
}

impl Provisioner {
    /// One background pass: every due provisioning, then every due room deletion, as many at
    /// once as the limit allows, until none is due.
    pub async fn run_due(&self) -> Result<(), StoreError> {
        let limit = Arc::new(AdaptiveLimit::new(self.settings.concurrency));
        self.run_due_within(&limit, &CancellationToken::new()).await
    }

    /// [`Self::run_due`] with the worker's adaptive limit. Whenever an item ends (the limit
    /// learns from each, so it also grows back after a cut then), the places free under the
    /// limit are claimed at once, in one statement: under load several end while a claim
    /// runs, so claims come in batches. The pass ends when a claim finds nothing due
    /// and the items in hand are done, or once `shutdown` is asked for.
    async fn run_due_within(
        &self,
        limit: &Arc<AdaptiveLimit>,
        shutdown: &CancellationToken,
    ) -> Result<(), StoreError> {
        let mut working = JoinSet::new();
        let mut claimed_so_far = 0;
        let mut nothing_due = false;
        let mut first_error = None;
        loop {
            let free = limit.current().saturating_sub(working.len());
            if free > 0 && !nothing_due && first_error.is_none() && !shutdown.is_cancelled() {
                match self.claim_due(free).await {
                    Ok(batch) => {
                        claimed_so_far += batch.len();
                        nothing_due = batch.len() < free || claimed_so_far >= ITEMS_PER_PASS;
                        for item in batch {
                            let (provisioner, limit) = (self.clone(), Arc::clone(limit));
                            working.spawn(async move {
                                // Errors are logged and postponed inside.
                                let outcome = match item {
                                    Claimed::Provisioning { id, owner } => {
                                        provisioner.converge_leased(&id, &owner, None).await
                                    }
                                    Claimed::Deletion(entry) => provisioner
                                        .delete_room(&entry)
                                        .await
                                        .map_err(ProvisionError::Kaleyra),
                                };
                                limit.learn(&outcome, provisioner.clock.now());
                            });
                        }
                    }
                    Err(err) => first_error = Some(err),
                }
            }
            let ended = tokio::select! {
                ended = working.join_next() => ended,
                () = shutdown.cancelled(), if !nothing_due => {
                    nothing_due = true;
                    continue;
                }
            };
            match ended {
                None => break,
                Some(Ok(())) => {}
                Some(Err(panicked)) => {
                    tracing::error!(error = %panicked, "a provisioning task failed");
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

    /// Leases up to `places` due items: provisioning first (one statement for all), then
    /// room deletions.
    async fn claim_due(&self, places: usize) -> Result<Vec<Claimed>, StoreError> {
        let lease = self.lease();
        let limit = u32::try_from(places).unwrap_or(u32::MAX);
        let mut batch: Vec<Claimed> = self
            .store
            .claim_due_provisioning(self.clock.now(), &lease.owner, lease.until, limit)
            .await?
            .into_iter()
            .map(|id| Claimed::Provisioning {
                id,
                owner: lease.owner.clone(),
            })
            .collect();
        while batch.len() < places {
            let Some(entry) = self.claim_deletion(None).await? else {
                break;
            };
            batch.push(Claimed::Deletion(entry));
        }
        Ok(batch)
    }

    /// The background worker: a pass every [`POLL_INTERVAL`] until `shutdown`, and now and
    /// then a sweep for orphan rooms.
    pub async fn run_worker(self, shutdown: CancellationToken) {
        let limit = Arc::new(AdaptiveLimit::new(self.settings.concurrency));
        let mut passes: u32 = 0;
        // The first pass at once: work left by a stopped instance (a backlog after an outage)
        // waits for nothing.
        loop {
            if let Err(err) = self.run_due_within(&limit, &shutdown).await {
                tracing::warn!(error = %err, "provisioning pass failed");
            }
            passes = passes.wrapping_add(1);
            if passes >= FIRST_SWEEP && (passes - FIRST_SWEEP).is_multiple_of(SWEEP_EVERY) {
                if let Err(err) = self.sweep_orphans().await {
                    tracing::warn!(error = %err, "orphan sweep failed");
                }
                self.forget_old_tagged_rooms().await;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(POLL_INTERVAL) => {}
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

    fn refused_for_rate() -> Result<(), ProvisionError> {
        Err(ProvisionError::Kaleyra(KaleyraError::new(
            Operation::CreateRoom,
            ErrorKind::Unavailable {
                status: 429,
                code: None,
                message: None,
                retry_after: Some(Duration::from_secs(1)),
            },
        )))
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).expect("a valid time")
    }

    #[test]
    fn the_limit_halves_when_kaleyra_is_unavailable_and_grows_back_one_by_one() {
        let limit = AdaptiveLimit::with_intervals(32, TimeDelta::zero(), TimeDelta::seconds(5));
        assert_eq!(limit.current(), 32);
        limit.learn(&unavailable(), t0());
        assert_eq!(limit.current(), 16);
        for _ in 0..10 {
            limit.learn(&unavailable(), t0());
        }
        assert_eq!(limit.current(), 1, "never below one");
        limit.learn(&Ok(()), t0());
        limit.learn(&Ok(()), t0());
        assert_eq!(limit.current(), 3);
        for _ in 0..100 {
            limit.learn(&Ok(()), t0());
        }
        assert_eq!(limit.current(), 32, "never above the ceiling");
        assert_eq!(AdaptiveLimit::new(0).current(), 1);
    }

    #[test]
    fn failures_together_are_one_cut() {
        let limit = AdaptiveLimit::with_intervals(32, TimeDelta::hours(1), TimeDelta::zero());
        for _ in 0..32 {
            limit.learn(&unavailable(), t0());
        }
        assert_eq!(limit.current(), 16);
        for _ in 0..32 {
            limit.learn(&refused_for_rate(), t0());
        }
        assert_eq!(
            limit.current(),
            16,
            "a refusal within the same second is the same cut"
        );
    }

    #[test]
    fn a_refusal_for_rate_lowers_the_ceiling_which_rises_by_one_per_interval() {
        let step = TimeDelta::seconds(5);
        let limit = AdaptiveLimit::with_intervals(32, TimeDelta::seconds(1), step);
        let t0 = t0();
        limit.learn(&refused_for_rate(), t0);
        assert_eq!(limit.current(), 24, "three quarters");
        for _ in 0..100 {
            limit.learn(&Ok(()), t0 + step / 2);
        }
        assert_eq!(
            limit.current(),
            24,
            "successes grow it back to the ceiling only"
        );
        limit.learn(&Ok(()), t0 + step);
        assert_eq!(limit.current(), 25, "one step after an interval");
        limit.learn(&Ok(()), t0 + step + step / 2);
        assert_eq!(limit.current(), 25);
        limit.learn(&refused_for_rate(), t0 + step * 2);
        assert_eq!(limit.current(), 18, "lowered again from where it was");
        limit.learn(&unavailable(), t0 + step * 3);
        assert_eq!(limit.current(), 9, "unavailability halves it");
        for _ in 0..100 {
            limit.learn(&Ok(()), t0 + step * 3);
        }
        assert_eq!(
            limit.current(),
            19,
            "back to the ceiling, which rose meanwhile"
        );
        for _ in 0..100 {
            limit.learn(&Ok(()), t0 + step * 100);
        }
        assert_eq!(limit.current(), 32, "the ceiling never above the setting");
    }
}
