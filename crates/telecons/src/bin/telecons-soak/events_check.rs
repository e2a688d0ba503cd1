//! What the receiver got, checked against the outbox and the clients' answers (spec §9):
//! every stored event arrived (a 2xx), none given up; per teleconsultation, none was sent
//! before the one stored before it was delivered; the stored events are those the answered
//! changes imply; and none arrived before the client that made its change had the answer.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use telecons::store::{EventState, StoredEvent};

use crate::clients::{Booking, ChangeKind};
use crate::receiver::Arrival;

/// How many examples a failure names.
const NAMED: usize = 5;

const ROOM_READY: &str = "teleconsultation.room_ready";

/// What the soak saw of the events.
pub struct Observed<'a> {
    pub stored: &'a [StoredEvent],
    pub arrivals: &'a [Arrival],
    pub bookings: &'a [Booking],
    /// Requests the receiver refused (bad signature, timestamp or body).
    pub rejected: u64,
    pub receiver_away: Duration,
    /// How far ahead of its answer an event may be read without counting as sent before it
    /// (see `--answer-slack-ms`).
    pub answer_slack: Duration,
    /// How long after the faults stopped nothing was pending any more (`None`: not in time).
    pub drained_after: Option<Duration>,
}

/// The summary lines, and what is broken (nothing: the events hold).
pub struct EventsReport {
    pub lines: Vec<String>,
    pub failures: Vec<String>,
}

/// The arrivals of one webhook id.
struct Seen {
    first: Instant,
    first_delivered: Option<Instant>,
    delivered: u64,
}

pub fn check(observed: &Observed<'_>) -> EventsReport {
    let mut failures = Vec::new();
    let seen = arrivals_by_webhook_id(observed.arrivals);
    let stored_by_id: HashMap<&str, &StoredEvent> = observed
        .stored
        .iter()
        .map(|e| (e.webhook_id.as_str(), e))
        .collect();

    // a. Every stored event delivered, none given up; nothing arrived that was not stored.
    let missing: Vec<&str> = observed
        .stored
        .iter()
        .filter(|e| {
            e.state != EventState::Delivered
                || seen
                    .get(e.webhook_id.as_str())
                    .is_none_or(|s| s.delivered == 0)
        })
        .map(|e| e.webhook_id.as_str())
        .collect();
    let given_up = count(observed.stored, |e| e.state == EventState::GivenUp);
    let pending = count(observed.stored, |e| e.state == EventState::Pending);
    if !missing.is_empty() {
        failures.push(format!(
            "{} stored events not delivered to the receiver ({given_up} given up, {pending} pending; e.g. {})",
            missing.len(),
            first_few(&missing)
        ));
    }
    let strangers: Vec<&str> = observed
        .arrivals
        .iter()
        .filter(|a| {
            stored_by_id
                .get(a.webhook_id.as_str())
                .is_none_or(|e| e.event_type != a.event_type || e.teleconsultation_id != a.room_id)
        })
        .map(|a| a.webhook_id.as_str())
        .collect();
    if !strangers.is_empty() {
        failures.push(format!(
            "{} arrivals unlike any stored event (webhook id, type or roomId; e.g. {})",
            strangers.len(),
            first_few(&strangers)
        ));
    }
    let before_their_time: Vec<&str> = observed
        .arrivals
        .iter()
        .filter(|a| a.timestamp.is_none_or(|t| t > a.at_utc))
        .map(|a| a.webhook_id.as_str())
        .collect();
    if !before_their_time.is_empty() {
        failures.push(format!(
            "{} arrivals without a timestamp or timestamped after they arrived (e.g. {})",
            before_their_time.len(),
            first_few(&before_their_time)
        ));
    }
    if observed.rejected > 0 {
        failures.push(format!(
            "{} requests refused by the receiver (signature, timestamp or body)",
            observed.rejected
        ));
    }

    // b. In order per teleconsultation: each one's first attempt after the delivery of the
    // one stored before it (so the first arrivals come in the stored order).
    let mut by_teleconsultation: BTreeMap<&str, Vec<&StoredEvent>> = BTreeMap::new();
    for event in observed.stored {
        by_teleconsultation
            .entry(&event.teleconsultation_id)
            .or_default()
            .push(event);
    }
    let mut out_of_order = Vec::new();
    for events in by_teleconsultation.values() {
        for pair in events.windows(2) {
            let (Some(before), Some(after)) = (
                seen.get(pair[0].webhook_id.as_str()),
                seen.get(pair[1].webhook_id.as_str()),
            ) else {
                continue;
            };
            if before.first_delivered.is_none_or(|d| after.first <= d) {
                out_of_order.push(pair[1].webhook_id.as_str());
            }
        }
    }
    if !out_of_order.is_empty() {
        failures.push(format!(
            "{} events sent before the one stored before them was delivered (e.g. {})",
            out_of_order.len(),
            first_few(&out_of_order)
        ));
    }

    // c. The stored events are what the answered changes imply; d. none arrived before its
    // change was answered.
    let booked: HashMap<&str, &Booking> = observed
        .bookings
        .iter()
        .map(|b| (b.id.as_str(), b))
        .collect();
    let nameless: Vec<&str> = by_teleconsultation
        .keys()
        .filter(|id| !booked.contains_key(*id))
        .copied()
        .collect();
    if !nameless.is_empty() {
        failures.push(format!(
            "events of {} teleconsultations no answer named (e.g. {})",
            nameless.len(),
            first_few(&nameless)
        ));
    }
    let mut unlike_changes = Vec::new();
    let mut never_ready = Vec::new();
    let mut early = Vec::new();
    let mut largest_lead = Duration::ZERO;
    // Read ahead of their answers, but within the slack: this process's own order of reading.
    let mut within_slack = 0;
    let mut largest_slack_lead = Duration::ZERO;
    let mut smallest_margin: Option<Duration> = None;
    let no_events = Vec::new();
    for booking in observed.bookings {
        let events = by_teleconsultation
            .get(booking.id.as_str())
            .unwrap_or(&no_events);
        let of_changes: Vec<&StoredEvent> = events
            .iter()
            .filter(|e| {
                ChangeKind::ALL
                    .iter()
                    .any(|k| k.event_type() == e.event_type)
            })
            .copied()
            .collect();
        let told: Vec<&str> = of_changes.iter().map(|e| e.event_type.as_str()).collect();
        let done: Vec<&str> = booking
            .changes
            .iter()
            .map(|c| c.kind.event_type())
            .collect();
        let created_first = events
            .first()
            .is_some_and(|e| e.event_type == ChangeKind::Created.event_type());
        if told != done || !created_first {
            unlike_changes.push(format!(
                "{}: stored {:?}, answered {:?}",
                booking.id,
                events
                    .iter()
                    .map(|e| short(&e.event_type))
                    .collect::<Vec<_>>(),
                booking
                    .changes
                    .iter()
                    .map(|c| format!(
                        "{} ({}{})",
                        short(c.kind.event_type()),
                        c.request,
                        if c.answered_at.is_none() {
                            ", unanswered"
                        } else {
                            ""
                        }
                    ))
                    .collect::<Vec<_>>()
            ));
            continue;
        }
        if booking.is_complete() && !events.iter().any(|e| e.event_type == ROOM_READY) {
            never_ready.push(booking.id.as_str());
        }
        for (event, change) in of_changes.iter().zip(&booking.changes) {
            let (Some(answered), Some(seen)) =
                (change.answered_at, seen.get(event.webhook_id.as_str()))
            else {
                continue;
            };
            let lead = answered.saturating_duration_since(seen.first);
            if seen.first > answered {
                let margin = seen.first - answered;
                smallest_margin = Some(smallest_margin.map_or(margin, |m| m.min(margin)));
            } else if lead <= observed.answer_slack {
                within_slack += 1;
                largest_slack_lead = largest_slack_lead.max(lead);
            } else {
                largest_lead = largest_lead.max(lead);
                early.push(format!(
                    "{} of {} ({}, {:.1} ms early)",
                    short(&event.event_type),
                    booking.id,
                    change.request,
                    lead.as_secs_f64() * 1000.0
                ));
            }
        }
    }
    if !unlike_changes.is_empty() {
        failures.push(format!(
            "{} teleconsultations whose events are not their answered changes (e.g. {})",
            unlike_changes.len(),
            unlike_changes
                .iter()
                .take(NAMED)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    if !never_ready.is_empty() {
        failures.push(format!(
            "{} live complete teleconsultations never told room_ready (e.g. {})",
            never_ready.len(),
            first_few(&never_ready)
        ));
    }
    if !early.is_empty() {
        failures.push(format!(
            "{} events arrived over {} ms before their change was answered (largest lead {:.1} ms; e.g. {})",
            early.len(),
            observed.answer_slack.as_millis(),
            largest_lead.as_secs_f64() * 1000.0,
            early
                .iter()
                .take(NAMED)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }

    let delivered: Vec<&StoredEvent> = observed
        .stored
        .iter()
        .filter(|e| {
            e.state == EventState::Delivered
                && seen
                    .get(e.webhook_id.as_str())
                    .is_some_and(|s| s.delivered > 0)
        })
        .collect();
    let first_try = count(&delivered, |e| e.attempts == 1);
    let retried = count(&delivered, |e| e.attempts > 1);
    let duplicates: u64 = seen.values().map(|s| s.delivered.saturating_sub(1)).sum();
    let drained = match observed.drained_after {
        Some(after) => format!("drained in {:.1} s", after.as_secs_f64()),
        None => "not drained".to_owned(),
    };
    let order = if out_of_order.is_empty() {
        "order ok".to_owned()
    } else {
        format!("{} out of order", out_of_order.len())
    };
    let mut timing = match (early.len(), smallest_margin) {
        (0, Some(margin)) => format!(
            "none before its answer (smallest margin {:.1} ms)",
            margin.as_secs_f64() * 1000.0
        ),
        (0, None) => "none before its answer".to_owned(),
        (n, _) => format!(
            "{n} before their answer by over {} ms (largest lead {:.1} ms)",
            observed.answer_slack.as_millis(),
            largest_lead.as_secs_f64() * 1000.0
        ),
    };
    if within_slack > 0 {
        timing += &format!(
            "; {within_slack} read up to {:.1} ms ahead of their answer, within the {} ms slack",
            largest_slack_lead.as_secs_f64() * 1000.0,
            observed.answer_slack.as_millis()
        );
    }
    let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
    for event in observed.stored {
        *by_type.entry(short(&event.event_type)).or_default() += 1;
    }
    let lines = vec![
        format!(
            "events: stored {}, delivered {} (first try {:.1}%), retried {retried}, duplicates {duplicates}, receiver away {:.1} s, {drained} after the faults stopped; {order}, {timing}",
            observed.stored.len(),
            delivered.len(),
            100.0 * first_try as f64 / delivered.len().max(1) as f64,
            observed.receiver_away.as_secs_f64(),
        ),
        format!(
            "  by type: {}; the receiver got {} requests ({} answered 503)",
            by_type
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            observed.arrivals.len(),
            observed.arrivals.iter().filter(|a| a.status == 503).count()
        ),
    ];
    EventsReport { lines, failures }
}

fn arrivals_by_webhook_id(arrivals: &[Arrival]) -> HashMap<&str, Seen> {
    let mut seen: HashMap<&str, Seen> = HashMap::new();
    for arrival in arrivals {
        let delivered = arrival.delivered().then_some(arrival.at);
        let entry = seen.entry(&arrival.webhook_id).or_insert(Seen {
            first: arrival.at,
            first_delivered: None,
            delivered: 0,
        });
        entry.first = entry.first.min(arrival.at);
        if let Some(at) = delivered {
            entry.delivered += 1;
            entry.first_delivered = Some(entry.first_delivered.map_or(at, |d| d.min(at)));
        }
    }
    seen
}

fn count<T>(items: &[T], keep: impl Fn(&T) -> bool) -> u64 {
    items.iter().filter(|item| keep(item)).count() as u64
}

fn first_few(ids: &[&str]) -> String {
    ids.iter()
        .take(NAMED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

/// `teleconsultation.created` → `created`.
fn short(event_type: &str) -> &str {
    event_type
        .strip_prefix("teleconsultation.")
        .unwrap_or(event_type)
}
