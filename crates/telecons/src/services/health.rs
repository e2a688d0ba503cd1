//! Whether the service can serve (spec §4.10): storage, Kaleyra, and rooms that should
//! exist by now. Also keeps the backlog gauges current.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kaleyra_client::KaleyraClient;

use crate::clock::Clock;
use crate::identity::bearer::BearerVerifier;
use crate::store::Store;
use crate::telemetry;

/// Kaleyra counts as reachable when `GET /v2/company` answers 2xx within this time.
const KALEYRA_CHECK_BUDGET: Duration = Duration::from_secs(2);

/// A check-up verdict is served to every probe for this long (spec §10): probes, however
/// many, never spend the company's Kaleyra rate limit faster than one call per period.
pub const CHECK_UP_REUSE: chrono::TimeDelta = chrono::TimeDelta::seconds(2);

/// A due provisioning or room deletion waiting longer than this makes the check-up's
/// `backlog` KO (spec §7): the worker is not keeping up, or Kaleyra still refuses.
pub const BACKLOG_LATE_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// The verdict of each check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckUp {
    pub storage: bool,
    pub kaleyra: bool,
    /// No teleconsultation whose links are due is without its room.
    pub rooms: bool,
    /// No due provisioning or room deletion has waited longer than [`BACKLOG_LATE_AFTER`].
    pub backlog: bool,
    /// In bearer mode: the issuer's key set can be read (`None` otherwise).
    pub identity: Option<bool>,
}

pub struct Health {
    store: Arc<dyn Store>,
    kaleyra: KaleyraClient,
    clock: Arc<dyn Clock>,
    /// `IMMUTABLE_PERIOD_MS`: links are due from `start − period` on.
    immutable_period_ms: u64,
    /// In bearer mode, whose key set must be readable.
    bearer: Option<BearerVerifier>,
    /// Whether events are sent (`EVENTS_WEBHOOK_URL`): their gauges are kept then.
    events: bool,
    /// The last verdict and when (the injected clock) it was computed. Held while a
    /// verdict is computed, so that concurrent probes wait for that one instead of
    /// computing their own.
    last_check_up: tokio::sync::Mutex<Option<(DateTime<Utc>, CheckUp)>>,
}

impl Health {
    pub fn new(
        store: Arc<dyn Store>,
        kaleyra: KaleyraClient,
        clock: Arc<dyn Clock>,
        immutable_period_ms: u64,
        bearer: Option<BearerVerifier>,
        events: bool,
    ) -> Self {
        Self {
            store,
            kaleyra,
            clock,
            immutable_period_ms,
            bearer,
            events,
            last_check_up: tokio::sync::Mutex::new(None),
        }
    }

    /// The storage answers: the instance can serve requests.
    pub async fn ready(&self) -> bool {
        match self.store.ping().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "readiness: storage unreachable");
                false
            }
        }
    }

    /// Storage, Kaleyra, and the rooms whose links are due: computed at most once per
    /// [`CHECK_UP_REUSE`], shared by the probes that ask meanwhile or at the same time.
    pub async fn check_up(&self) -> CheckUp {
        let mut last = self.last_check_up.lock().await;
        let now = self.clock.now();
        if let Some((at, verdict)) = *last {
            let age = now - at;
            // A clock set back makes the verdict stale too.
            if age >= chrono::TimeDelta::zero() && age < CHECK_UP_REUSE {
                return verdict;
            }
        }
        let verdict = self.compute_check_up(now).await;
        // Stamped when finished, not when begun: a check-up that took its whole Kaleyra
        // budget (2 s) still serves the probes that queued behind it.
        *last = Some((self.clock.now(), verdict));
        verdict
    }

    async fn compute_check_up(&self, now: DateTime<Utc>) -> CheckUp {
        let identity = async {
            match &self.bearer {
                Some(verifier) => Some(verifier.check_reachable().await),
                None => None,
            }
        };
        let (backlog, kaleyra, identity) = tokio::join!(
            self.store.backlog(now, self.immutable_period_ms),
            tokio::time::timeout(KALEYRA_CHECK_BUDGET, self.kaleyra.check_reachable()),
            identity,
        );
        if identity == Some(false) {
            tracing::warn!("check-up: the issuer's key set (JWT_JWKS_URL) cannot be read");
        }
        let (storage, rooms, late) = match &backlog {
            Ok(backlog) => {
                if backlog.rooms_missing_at_start > 0 {
                    tracing::warn!(
                        rooms_missing_at_start = backlog.rooms_missing_at_start,
                        "check-up: teleconsultations whose links are due have no room"
                    );
                }
                let late = backlog
                    .oldest_due_at
                    .is_some_and(|due| now - due > BACKLOG_LATE_AFTER);
                if late {
                    tracing::warn!(
                        due = backlog.due,
                        being_worked = backlog.being_worked,
                        "check-up: due provisioning or room deletions have waited over a minute"
                    );
                }
                (true, backlog.rooms_missing_at_start == 0, late)
            }
            Err(e) => {
                tracing::warn!(error = %e, "check-up: storage unreachable");
                (false, false, true) // unverifiable: not OK
            }
        };
        let kaleyra = match kaleyra {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "check-up: Kaleyra unreachable");
                false
            }
            Err(_) => {
                tracing::warn!("check-up: Kaleyra did not answer within 2 s");
                false
            }
        };
        CheckUp {
            storage,
            kaleyra,
            rooms,
            backlog: !late,
            identity,
        }
    }

    /// Reads the provisioning backlog and, when events are sent, the outbox (they live in the
    /// store, shared by every instance) into their gauges.
    pub async fn refresh_gauges(&self) {
        match self
            .store
            .backlog(self.clock.now(), self.immutable_period_ms)
            .await
        {
            Ok(backlog) => {
                metrics::gauge!(telemetry::AWAITING_PROVISIONING)
                    .set(backlog.teleconsultations as f64);
                metrics::gauge!(telemetry::ROOMS_MISSING_AT_START)
                    .set(backlog.rooms_missing_at_start as f64);
                metrics::gauge!(telemetry::ROOMS_AWAITING_DELETION)
                    .set(backlog.room_deletions as f64);
                metrics::gauge!(telemetry::BACKLOG_DUE).set(backlog.due as f64);
                metrics::gauge!(telemetry::BACKLOG_BEING_WORKED).set(backlog.being_worked as f64);
                let oldest_due_age = backlog.oldest_due_at.map_or(0.0, |due| {
                    (self.clock.now() - due).num_milliseconds().max(0) as f64 / 1000.0
                });
                metrics::gauge!(telemetry::BACKLOG_OLDEST_DUE_SECONDS).set(oldest_due_age);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the provisioning backlog"),
        }
        if !self.events {
            return;
        }
        match self.store.event_counts().await {
            Ok(counts) => {
                metrics::gauge!(telemetry::EVENTS_PENDING).set(counts.pending as f64);
                metrics::gauge!(telemetry::EVENTS_FAILED).set(counts.given_up as f64);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the events' outbox"),
        }
    }
}
