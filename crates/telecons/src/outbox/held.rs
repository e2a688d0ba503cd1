//! The events of stored changes: what an event's row holds (its `webhook-id` and the body
//! signed on every attempt), and when it may be sent.
//!
//! A request's events are held until it has answered, so that the platform never hears of a
//! change before the caller that made it: they are stored due at the latest time the request
//! can answer ([`Outbox::hold`] after the change), and made due as soon as it has answered
//! (or given up: its client hung up) by the sender's next pass. Events the service makes on
//! its own (a room recorded by the background worker) are due at once; those that follow a
//! held one wait for it anyway (events go in order per teleconsultation).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio::sync::{Notify, oneshot};

use crate::domain::agenda;
use crate::domain::events::EventType;
use crate::domain::ids::new_teleconsultation_id;
use crate::domain::schedule::format_instant;
use crate::domain::teleconsultation::Teleconsultation;
use crate::store::NewEvent;
use crate::views::AgendaEntryBody;

/// Makes the events of stored changes when `EVENTS_WEBHOOK_URL` is set (none otherwise:
/// nothing is kept without a receiver), and tells the sender when there is work.
pub struct Outbox {
    enabled: bool,
    immutable_period_ms: u64,
    /// How long after its change a request may still answer (its budget and the HTTP
    /// timeout's margin): its held events are due then at the latest.
    hold: TimeDelta,
    /// Webhook ids of held events whose request has answered, for the sender's next pass.
    released: Mutex<Vec<String>>,
    work: Notify,
}

/// The body of every attempt at an event (spec §9).
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    data: AgendaEntryBody,
}

impl Outbox {
    pub fn new(enabled: bool, immutable_period_ms: u64, hold: TimeDelta) -> Self {
        Self {
            enabled,
            immutable_period_ms,
            hold,
            released: Mutex::new(Vec::new()),
            work: Notify::new(),
        }
    }

    /// An outbox that makes no events (no receiver configured).
    pub fn disabled() -> Self {
        Self::new(false, 0, TimeDelta::zero())
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The event `event_type` of `tc`, as stored by a change at `now`, due at once (none when
    /// events are off).
    pub fn event(
        &self,
        event_type: Option<EventType>,
        tc: &Teleconsultation,
        now: DateTime<Utc>,
    ) -> Vec<NewEvent> {
        self.event_due(event_type, tc, now, now)
    }

    /// [`Self::event`] of a request's change: held until the request answers
    /// ([`HeldEvents::release_when_answered`]), [`Self::hold`] at the latest.
    pub fn held_event(
        &self,
        event_type: EventType,
        tc: &Teleconsultation,
        now: DateTime<Utc>,
    ) -> Vec<NewEvent> {
        self.event_due(Some(event_type), tc, now, now + self.hold)
    }

    fn event_due(
        &self,
        event_type: Option<EventType>,
        tc: &Teleconsultation,
        now: DateTime<Utc>,
        due_at: DateTime<Utc>,
    ) -> Vec<NewEvent> {
        let Some(event_type) = event_type.filter(|_| self.enabled) else {
            return Vec::new();
        };
        let envelope = Envelope {
            event_type: event_type.as_str(),
            timestamp: format_instant(now),
            data: agenda::entry(tc, now, self.immutable_period_ms).into(),
        };
        vec![NewEvent {
            // Time-ordered and unguessable, as teleconsultation ids are.
            webhook_id: format!("msg_{}", new_teleconsultation_id(now)),
            teleconsultation_id: tc.id.clone(),
            event_type: event_type.as_str().to_owned(),
            // Strings, numbers and enums only: it cannot fail.
            body: serde_json::to_string(&envelope).expect("an event's body serializes"),
            due_at,
            created_at: now,
        }]
    }

    /// A hold on the events of a request's change: `Answering` lives as long as the
    /// request waits for its answer; the [`HeldEvents`] go with the change's work.
    pub fn hold_until_answered(self: &Arc<Self>) -> (Answering, HeldEvents) {
        let (answered, waiting) = oneshot::channel();
        (
            Answering {
                _answered: answered,
            },
            HeldEvents {
                outbox: Arc::clone(self),
                waiting,
            },
        )
    }

    /// The webhook ids of the held events released since the last call.
    pub fn take_released(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .released
                .lock()
                .expect("the released list is never poisoned"),
        )
    }

    /// Tells the sender that events are due (stored or released).
    pub fn wake(&self) {
        self.work.notify_one();
    }

    /// Waits until [`Self::wake`] is called (at once when it was since the last wait).
    pub async fn woken(&self) {
        self.work.notified().await;
    }
}

/// Held by a request until it answers: dropping it releases its change's held events.
pub struct Answering {
    _answered: oneshot::Sender<()>,
}

/// The other end of [`Answering`], for the change's work.
pub struct HeldEvents {
    outbox: Arc<Outbox>,
    waiting: oneshot::Receiver<()>,
}

impl HeldEvents {
    /// Once the request has answered (or given up), makes `events` due by the sender's next
    /// pass. Nothing to do for none.
    pub fn release_when_answered(self, events: &[NewEvent]) {
        if events.is_empty() {
            return;
        }
        let ids: Vec<String> = events.iter().map(|e| e.webhook_id.clone()).collect();
        tokio::spawn(async move {
            // Either way the request no longer waits: answered, or its client hung up.
            let _ = self.waiting.await;
            self.outbox
                .released
                .lock()
                .expect("the released list is never poisoned")
                .extend(ids);
            self.outbox.wake();
        });
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::domain::teleconsultation::tests::complete;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    #[test]
    fn an_event_carries_the_agenda_view_as_it_was() {
        let outbox = Outbox::new(true, 600_000, TimeDelta::seconds(30));
        let tc = complete();
        let [event] = <[NewEvent; 1]>::try_from(outbox.event(
            Some(EventType::Updated),
            &tc,
            at(1_900_000_000),
        ))
        .unwrap();
        assert!(event.webhook_id.starts_with("msg_"), "{}", event.webhook_id);
        assert_eq!(event.teleconsultation_id, tc.id);
        assert_eq!(event.event_type, "teleconsultation.updated");
        assert_eq!(event.due_at, at(1_900_000_000));
        let body: serde_json::Value = serde_json::from_str(&event.body).unwrap();
        let view = serde_json::to_value(AgendaEntryBody::from(agenda::entry(
            &tc,
            at(1_900_000_000),
            600_000,
        )))
        .unwrap();
        assert_eq!(
            body,
            json!({
                "type": "teleconsultation.updated",
                "timestamp": "2030-03-17T17:46:40.000Z",
                "data": view,
            })
        );
        assert_eq!(body["data"]["status"], "scheduled");
    }

    #[test]
    fn a_held_event_is_due_when_its_request_can_no_longer_answer() {
        let outbox = Outbox::new(true, 600_000, TimeDelta::seconds(30));
        let events = outbox.held_event(EventType::Created, &complete(), at(100));
        assert_eq!(events[0].due_at, at(130));
        assert_eq!(events[0].created_at, at(100));
    }

    #[test]
    fn no_event_is_made_without_a_receiver() {
        let outbox = Outbox::disabled();
        assert!(
            outbox
                .event(Some(EventType::Updated), &complete(), at(1))
                .is_empty()
        );
        assert!(
            outbox
                .held_event(EventType::Created, &complete(), at(1))
                .is_empty()
        );
        let enabled = Outbox::new(true, 0, TimeDelta::zero());
        assert!(enabled.event(None, &complete(), at(1)).is_empty());
    }

    #[tokio::test]
    async fn held_events_are_released_once_their_request_no_longer_waits() {
        let outbox = Arc::new(Outbox::new(true, 0, TimeDelta::seconds(30)));
        let (answering, held) = outbox.hold_until_answered();
        let events = outbox.held_event(EventType::Created, &complete(), at(1));
        held.release_when_answered(&events);
        tokio::task::yield_now().await;
        assert!(
            outbox.take_released().is_empty(),
            "released before the answer"
        );
        drop(answering);
        outbox.woken().await;
        assert_eq!(outbox.take_released(), vec![events[0].webhook_id.clone()]);
        assert!(outbox.take_released().is_empty());
    }
}
