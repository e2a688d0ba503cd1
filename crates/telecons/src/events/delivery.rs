//! The delivery worker: each pass leases the due events (of each teleconsultation only the
//! head of its chain: the store hands out nothing else, so events arrive in order and
//! different teleconsultations never wait for each other), sends up to [`CONCURRENCY`] at
//! once as Standard Webhooks, and records each answer: delivered, retried later on
//! `EVENTS_RETRY_SCHEDULE`, or given up. Several instances share the work through the
//! leases, so no event is sent twice at once.
//!
//! A `410 Gone` stops every delivery of this process until it restarts (spec §9): the event
//! is released as it was, and later passes send nothing.
//!
//! Every [`PRUNE_EVERY`] the worker also deletes the events delivered over [`RETENTION`]
//! ago; given-up events are kept until redelivered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::header::CONTENT_TYPE;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{EventsConfig, WebhookUrl};
use crate::domain::events::answer::{Answer, Verdict, verdict};
use crate::domain::events::retry::RetrySchedule;
use crate::domain::events::signature::SigningSecrets;
use crate::outbox::Outbox;
use crate::store::{ClaimedEvent, Store, StoreError, StoreResult};
use crate::telemetry;

/// How long the receiver has to answer an attempt (spec §9: a 2xx within 10 seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many events one instance sends at once. A claim leases half of them at least, and the
/// answers of half are recorded together, so the more at once, the fewer writes per event.
pub const CONCURRENCY: usize = 64;
/// How long an answered attempt may wait for others to be recorded with it (see
/// [`EventDelivery::gather_answers`]): the delay it adds to its teleconsultation's next event.
const GATHER_ANSWERS_FOR: Duration = Duration::from_millis(20);
/// How often the worker looks for due events when nobody wakes it.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The least time between two passes (events stored meanwhile wait for the next one).
const PASS_GAP: Duration = Duration::from_millis(50);
/// How often delivered events are pruned.
pub const PRUNE_EVERY: TimeDelta = TimeDelta::minutes(10);
/// How long a delivered event is kept (for an operator looking into what the platform got),
/// then deleted. Given-up events are kept whatever their age.
pub const RETENTION: TimeDelta = TimeDelta::days(7);
/// A lease outlasts the attempt's timeout by this much: time to record the answer, even on a
/// slow database, before another instance may take the event over.
const LEASE_MARGIN: Duration = Duration::from_secs(20);
/// How much of a receiver's answer is read (and ignored), to keep its connection.
const ANSWER_READ_AT_MOST: usize = 64 * 1024;
/// Events leased per pass at most: a pass ends even if events keep coming due.
const EVENTS_PER_PASS: usize = 10_000;

/// The delivery worker of this instance. Cheap to clone.
#[derive(Clone)]
pub struct EventDelivery(Arc<Inner>);

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    url: WebhookUrl,
    secrets: SigningSecrets,
    retry_schedule: RetrySchedule,
    timeout: Duration,
    /// This instance's name in the events' leases.
    instance_id: String,
    /// Set by a `410 Gone`: nothing more is sent until the process restarts.
    stopped: AtomicBool,
    /// Wakes the worker for a pass now (events were stored or released), and holds the
    /// released events of requests that have answered.
    outbox: Arc<Outbox>,
    /// When delivered events are pruned next (the injected clock); `None`: at the next pass.
    next_prune_at: Mutex<Option<DateTime<Utc>>>,
}

/// What an attempt did to its teleconsultation's chain.
enum Settled {
    /// Delivered or given up: the chain's next event may be due now.
    ChainMovedOn,
    /// Retried later, released after a `410 Gone`, or not recorded.
    ChainWaits,
}

impl EventDelivery {
    /// Sends to `config`'s URL, signed with its secrets, retried on its schedule; each
    /// attempt has `timeout` to be answered ([`DEFAULT_TIMEOUT`] in production).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: &EventsConfig,
        timeout: Duration,
        outbox: Arc<Outbox>,
    ) -> Result<EventDelivery, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("telecons/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            // The signed event goes to the configured URL or nowhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(EventDelivery(Arc::new(Inner {
            store,
            clock,
            http,
            url: config.url.clone(),
            secrets: config.secrets.clone(),
            retry_schedule: config.retry_schedule.clone(),
            timeout,
            instance_id: format!("{:016x}", rand::random::<u64>()),
            stopped: AtomicBool::new(false),
            outbox,
            next_prune_at: Mutex::new(None),
        })))
    }

    /// Asks the worker for a pass now: call it once a change has stored events. A wake
    /// during a pass brings another pass right after it.
    pub fn wake(&self) {
        self.0.outbox.wake();
    }

    /// Whether a `410 Gone` stopped the deliveries of this process.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Relaxed)
    }

    /// One pass at the clock's time: prunes when due, then sends every due event (as many at
    /// once as [`CONCURRENCY`]), also those that come due in it as earlier ones of their
    /// teleconsultation are settled, until none is due. Attempt failures are recorded and
    /// logged, not returned; the error is the store's, when it could not claim.
    pub async fn run_pass(&self) -> Result<(), StoreError> {
        self.run_pass_until(&CancellationToken::new()).await
    }

    /// The worker: a pass every [`POLL_INTERVAL`], or at once when woken, until `shutdown`;
    /// the sends in flight then finish (each bounded by the timeout) and are recorded.
    pub async fn run_worker(self, shutdown: CancellationToken) {
        loop {
            if let Err(err) = self.run_pass_until(&shutdown).await {
                tracing::warn!(error = %err, "event delivery pass failed");
            }
            // A short gap between passes lets the events of a busy moment gather, so that a
            // pass leases and records many at once (a wake meanwhile is kept for after it).
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(PASS_GAP) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.0.outbox.woken() => {}
                () = tokio::time::sleep(POLL_INTERVAL.saturating_sub(PASS_GAP)) => {}
            }
        }
    }

    async fn run_pass_until(&self, shutdown: &CancellationToken) -> Result<(), StoreError> {
        self.prune_when_due().await;
        self.release_answered().await;
        let owner = format!("{}/{:016x}", self.0.instance_id, rand::random::<u64>());
        let mut sending = JoinSet::new();
        let mut claimed_so_far = 0;
        let mut may_be_due = true;
        let mut claim_error = None;
        loop {
            let free = CONCURRENCY.saturating_sub(sending.len());
            // Claimed when half the places are free (or none is busy): under load one write
            // leases many events, instead of one for each event settled.
            if (sending.is_empty() || free >= CONCURRENCY / 2)
                && may_be_due
                && claimed_so_far < EVENTS_PER_PASS
                && claim_error.is_none()
                && !self.is_stopped()
                && !shutdown.is_cancelled()
            {
                match self.claim(&owner, free).await {
                    Ok(batch) => {
                        claimed_so_far += batch.len();
                        may_be_due = batch.len() == free;
                        for event in batch {
                            let this = self.clone();
                            sending.spawn(async move {
                                let answer = this.send(&event).await;
                                (event, answer)
                            });
                        }
                    }
                    Err(err) => claim_error = Some(err),
                }
            }
            let Some(answered) = Self::gather_answers(&mut sending).await else {
                break;
            };
            if let Settled::ChainMovedOn = self.settle(answered, &owner).await {
                may_be_due = true;
            }
        }
        claim_error.map_or(Ok(()), Err)
    }

    /// Waits for the next answered attempt, then gathers those answered with it: until half
    /// the places are answered, none is in flight, or [`GATHER_ANSWERS_FOR`] has passed
    /// (under load one write then records many; one slow receiver holds nobody back for
    /// longer). `None` when nothing is in flight.
    async fn gather_answers(
        sending: &mut JoinSet<(ClaimedEvent, Answer)>,
    ) -> Option<Vec<(ClaimedEvent, Answer)>> {
        let first = sending.join_next().await?;
        let until = tokio::time::Instant::now() + GATHER_ANSWERS_FOR;
        let mut answered = vec![first];
        while answered.len() < CONCURRENCY / 2 {
            match tokio::time::timeout_at(until, sending.join_next()).await {
                Ok(Some(more)) => answered.push(more),
                Ok(None) | Err(_) => break,
            }
        }
        Some(
            answered
                .into_iter()
                .filter_map(|attempt| {
                    attempt
                        .inspect_err(|panicked| {
                            tracing::error!(error = %panicked, "an event delivery task failed");
                        })
                        .ok()
                })
                .collect(),
        )
    }

    /// Makes due now the held events whose requests have answered since the last pass (see
    /// `outbox`). Should the store fail, they go when their hold ends instead.
    async fn release_answered(&self) {
        let released = self.0.outbox.take_released();
        if released.is_empty() {
            return;
        }
        let now = self.0.clock.now();
        if let Err(err) = self.0.store.make_events_due(&released, now).await {
            tracing::warn!(error = %err, events = released.len(), "answered requests' events go when their hold ends");
        }
    }

    /// Leases up to `places` due events to `owner`.
    async fn claim(&self, owner: &str, places: usize) -> StoreResult<Vec<ClaimedEvent>> {
        let now = self.0.clock.now();
        let lease = TimeDelta::from_std(self.0.timeout + LEASE_MARGIN).unwrap_or(TimeDelta::MAX);
        let limit = u32::try_from(places).unwrap_or(u32::MAX);
        self.0
            .store
            .claim_events(now, owner, now + lease, limit)
            .await
    }

    /// Records the answers of attempts at events leased to `owner`: the delivered ones in
    /// one write, the others each in its own. Whether a chain moved on (an event delivered or
    /// given up: its teleconsultation's next one may be due now).
    async fn settle(&self, answered: Vec<(ClaimedEvent, Answer)>, owner: &str) -> Settled {
        let now = self.0.clock.now();
        let mut moved_on = false;
        let mut delivered: Vec<(ClaimedEvent, String)> = Vec::new();
        for (event, answer) in answered {
            let recorded_as = answer.to_string();
            match verdict(
                answer,
                event.attempts,
                &self.0.retry_schedule,
                rand::random(),
            ) {
                Verdict::Delivered => delivered.push((event, recorded_as)),
                verdict => {
                    let moves_chain = matches!(verdict, Verdict::GiveUp);
                    let recorded = self
                        .settle_failed(&event, verdict, &recorded_as, owner, now)
                        .await;
                    if let Settled::ChainMovedOn = after_record(&event, moves_chain, recorded) {
                        moved_on = true;
                    }
                }
            }
        }
        // By answer ("HTTP 204", "HTTP 200"…): one write each, usually one in all.
        delivered.sort_by(|a, b| a.1.cmp(&b.1));
        for group in delivered.chunk_by(|a, b| a.1 == b.1) {
            let ids: Vec<i64> = group.iter().map(|(event, _)| event.id).collect();
            match self
                .0
                .store
                .events_delivered(&ids, owner, now, &group[0].1)
                .await
            {
                Ok(recorded) => {
                    for (event, answer) in group {
                        let was = recorded.contains(&event.id);
                        if was {
                            metrics::counter!(telemetry::EVENTS_DELIVERED).increment(1);
                            let latency = (now - event.created_at).num_milliseconds().max(0) as f64;
                            metrics::histogram!(telemetry::EVENT_DELIVERY_LATENCY)
                                .record(latency / 1000.0);
                            tracing::debug!(
                                webhook_id = %event.webhook_id,
                                r#type = %event.event_type,
                                answer = %answer,
                                "event delivered"
                            );
                        }
                        if let Settled::ChainMovedOn = after_record(event, true, Ok(was)) {
                            moved_on = true;
                        }
                    }
                }
                Err(err) => {
                    // Their leases expire and they are sent again.
                    tracing::warn!(
                        error = %err,
                        events = group.len(),
                        "cannot record delivered events"
                    );
                }
            }
        }
        if moved_on {
            Settled::ChainMovedOn
        } else {
            Settled::ChainWaits
        }
    }

    /// Records an attempt at `event` as its `verdict` says (one not delivered, usually).
    async fn settle_failed(
        &self,
        event: &ClaimedEvent,
        verdict: Verdict,
        recorded_as: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let store = &self.0.store;
        match verdict {
            // `settle` records the delivered ones together; alone, it is the same write.
            Verdict::Delivered => {
                store
                    .event_delivered(event.id, owner, now, recorded_as)
                    .await
            }
            Verdict::Stop => {
                self.stop();
                store.release_event(event.id, owner).await
            }
            Verdict::RetryIn(wait) => {
                metrics::counter!(telemetry::EVENTS_RETRIED).increment(1);
                let next_due = now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
                tracing::info!(
                    webhook_id = %event.webhook_id,
                    r#type = %event.event_type,
                    answer = %recorded_as,
                    attempt = event.attempts.saturating_add(1),
                    next_attempt_at = %next_due.to_rfc3339(),
                    "event delivery failed; it is tried again later"
                );
                store
                    .event_failed(event.id, owner, Some(next_due), now, recorded_as)
                    .await
            }
            Verdict::GiveUp => {
                metrics::counter!(telemetry::EVENTS_GIVEN_UP).increment(1);
                tracing::warn!(
                    webhook_id = %event.webhook_id,
                    r#type = %event.event_type,
                    teleconsultation = %event.teleconsultation_id,
                    answer = %recorded_as,
                    attempts = event.attempts.saturating_add(1),
                    "event given up after its last attempt: `telecons events --redeliver` \
                     sends it again"
                );
                store
                    .event_failed(event.id, owner, None, now, recorded_as)
                    .await
            }
        }
    }
    /// Sends `event` once: `POST` of its stored body, signed for this attempt's timestamp.
    async fn send(&self, event: &ClaimedEvent) -> Answer {
        let timestamp = self.0.clock.now().timestamp();
        let signature =
            self.0
                .secrets
                .signature_header(&event.webhook_id, timestamp, event.body.as_bytes());
        let sent = self
            .0
            .http
            // A user and password in the URL go as basic authentication.
            .post(self.0.url.url().clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &event.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(event.body.clone())
            .send()
            .await;
        match sent {
            Ok(mut response) => {
                let status = response.status().as_u16();
                // A short answer is read to its end, so that its connection serves the next
                // event (the timeout bounds this too); a long one is left and its connection
                // closed.
                let mut left = ANSWER_READ_AT_MOST;
                while let Ok(Some(chunk)) = response.chunk().await {
                    let Some(rest) = left.checked_sub(chunk.len()) else {
                        break;
                    };
                    left = rest;
                }
                Answer::Status(status)
            }
            Err(err) if err.is_timeout() => Answer::Timeout,
            Err(err) if err.is_connect() => Answer::ConnectionFailed,
            Err(_) => Answer::NoAnswer,
        }
    }

    /// After a `410 Gone`: no more deliveries from this process; said once.
    fn stop(&self) {
        if !self.0.stopped.swap(true, Ordering::Relaxed) {
            tracing::error!(
                url = %self.0.url,
                "the events' receiver answered 410 Gone: no more events are sent until the \
                 service restarts (with EVENTS_WEBHOOK_URL set again); they are kept"
            );
        }
    }

    /// Deletes the events delivered over [`RETENTION`] ago, once every [`PRUNE_EVERY`].
    async fn prune_when_due(&self) {
        let now = self.0.clock.now();
        {
            let mut next = self
                .0
                .next_prune_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if next.is_some_and(|at| now < at) {
                return;
            }
            *next = Some(now + PRUNE_EVERY);
        }
        if let Err(err) = self.0.store.prune_delivered_events(now - RETENTION).await {
            tracing::warn!(error = %err, "cannot prune the delivered events");
        }
    }
}

/// What recording an attempt at `event` did to its chain: moved on when recorded and
/// `moves_chain` (delivered or given up).
fn after_record(event: &ClaimedEvent, moves_chain: bool, recorded: StoreResult<bool>) -> Settled {
    match recorded {
        Ok(true) if moves_chain => Settled::ChainMovedOn,
        Ok(true) => Settled::ChainWaits,
        Ok(false) => {
            // Another instance took it over: it may be sent again (at least once).
            tracing::warn!(
                webhook_id = %event.webhook_id,
                "the event's lease expired before its attempt was recorded"
            );
            Settled::ChainWaits
        }
        Err(err) => {
            // Its lease expires and it is sent again.
            tracing::warn!(
                webhook_id = %event.webhook_id,
                error = %err,
                "cannot record an event's delivery attempt"
            );
            Settled::ChainWaits
        }
    }
}
