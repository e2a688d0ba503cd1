//! The timed events (spec §9): at a teleconsultation's `linksOpenAt`, `links_open` when its
//! room is ready, else `room_missing` (the alarm of spec §7) and `links_open` once the room
//! is ready. Told once per start date, whichever instance gets there first: the store moves
//! the moment and stores the event in one transaction, only from the state this pass read.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::held::Outbox;
use crate::clock::Clock;
use crate::domain::events::links_moment;
use crate::store::{Store, StoreResult};

/// How often the moments are looked at: the events come at most this late.
const PASS_EVERY: Duration = Duration::from_secs(1);
/// Teleconsultations read per page of a pass.
const PAGE: u32 = 200;

/// Tells the links moments when they come.
pub struct LinksMoments {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    outbox: Arc<Outbox>,
    immutable_period_ms: u64,
}

impl LinksMoments {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        outbox: Arc<Outbox>,
        immutable_period_ms: u64,
    ) -> Self {
        Self {
            store,
            clock,
            outbox,
            immutable_period_ms,
        }
    }

    /// Tells every moment that has come (and clears those of deleted or ended
    /// teleconsultations); returns how many events it stored.
    pub async fn run_pass(&self) -> StoreResult<usize> {
        let now = self.clock.now();
        let mut after = None;
        let mut told = 0;
        loop {
            let page = self
                .store
                .links_moments(now, self.immutable_period_ms, after.as_ref(), PAGE)
                .await?;
            for due in &page {
                let Some(tc) = self.store.get_teleconsultation(&due.id).await? else {
                    continue;
                };
                let Some(step) = links_moment(&tc, due.moment, now, self.immutable_period_ms)
                else {
                    continue;
                };
                let events = self.outbox.event(step.event, &tc, now);
                // False: changed meanwhile, or told by another instance; the next pass sees.
                if self
                    .store
                    .settle_links_moment(&tc.id, tc.version, due.moment, step.next, &events)
                    .await?
                {
                    told += events.len();
                }
            }
            if page.len() < PAGE as usize {
                break;
            }
            after = page.last().cloned();
        }
        if told > 0 {
            self.outbox.wake();
        }
        Ok(told)
    }

    /// Runs a pass every [`PASS_EVERY`] until `shutdown`.
    pub async fn run_until(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(PASS_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(err) = self.run_pass().await {
                tracing::warn!(error = %err, "the links moments could not be told; next pass retries");
            }
        }
    }
}
