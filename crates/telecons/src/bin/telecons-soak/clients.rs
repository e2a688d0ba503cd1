//! The soak's clients: each books its own teleconsultations and changes them, remembering
//! what every 2xx answer promised, which changes were stored and when each was answered
//! (what the events must then say, and not before).
//!
//! The clients of the instance the soak kills (`--kill`) outlive its death: a booking is
//! sent again with its `Idempotency-Key` until answered; a change whose request the kill cut
//! has an unknown outcome, so the client looks in the database whether it was stored, once
//! the instance is back (by then whatever the dead process committed is committed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use telecons::domain::teleconsultation::{Teleconsultation, TeleconsultationState};

use crate::child::KillWatch;

/// What the soak believes about one teleconsultation, from the answers it got.
#[derive(Debug, Clone)]
pub struct Booking {
    pub id: String,
    pub number: usize,
    pub participants: Vec<String>,
    pub start: String,
    pub duration: i64,
    pub deleted: bool,
    /// Its stored changes in order, the booking first: one event each.
    pub changes: Vec<Change>,
}

impl Booking {
    /// Live with every participant known: it must have its room, and have been told ready.
    pub fn is_complete(&self) -> bool {
        !self.deleted && self.participants.len() == self.number
    }
}

/// A stored change of a teleconsultation, as its client knows it.
#[derive(Debug, Clone)]
pub struct Change {
    pub kind: ChangeKind,
    /// When the client had its answer (or stopped waiting for it: a booking cut off);
    /// `None` when the kill cut its request and the client learned from the database that
    /// it was stored.
    pub answered_at: Option<Instant>,
    /// The request, as a failed check names it.
    pub request: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 3] = [
        ChangeKind::Created,
        ChangeKind::Updated,
        ChangeKind::Deleted,
    ];

    /// The event the change makes.
    pub fn event_type(self) -> &'static str {
        match self {
            ChangeKind::Created => "teleconsultation.created",
            ChangeKind::Updated => "teleconsultation.updated",
            ChangeKind::Deleted => "teleconsultation.deleted",
        }
    }
}

#[derive(Default)]
pub struct Tally {
    pub sent: AtomicU64,
    /// Lifecycle operations begun (the faults are timed by them).
    pub operations: AtomicU64,
    pub unexpected: AtomicU64,
    /// Bookings whose first answer was cut off, and the answers to their retries that were
    /// the kept one (`Idempotency-Replayed`) or a 409 (the first still running).
    pub cut_off: AtomicU64,
    pub replayed: AtomicU64,
    pub still_running: AtomicU64,
    /// Requests to the killed instance that got no answer (cut, or refused while it was
    /// down); changes among them whose outcome was learned from the database, and of those
    /// the ones that had been stored.
    pub connection_errors: AtomicU64,
    pub unanswered_changes: AtomicU64,
    pub unanswered_stored: AtomicU64,
}

/// The clients of the killed instance: how they learn of the restart, and where they look
/// up what a cut request did.
#[derive(Clone)]
pub struct Killed {
    pub watch: KillWatch,
    pub database_url: String,
}

/// One client: its own teleconsultations, so that it knows exactly what each should be.
pub struct Client {
    pub number: u64,
    pub base: String,
    pub http: reqwest::Client,
    pub tally: Arc<Tally>,
    /// The share of bookings whose first answer is cut off.
    pub cut_off: f64,
    /// Set for the clients of the instance the soak kills.
    pub killed: Option<Killed>,
}

/// A request's fate.
enum Sent {
    Answered(Answer),
    /// No answer (the killed instance): when the client stopped waiting, and whether the
    /// request may have reached the service (not when the connection was refused).
    Unanswered {
        at: Instant,
        may_have_arrived: bool,
    },
}

struct Answer {
    status: u16,
    /// Right after the answer's head arrived.
    at: Instant,
    replayed: bool,
    retry_after: Option<u64>,
    body: String,
}

/// What became of a change.
enum Outcome {
    /// Stored: answered 2xx then (`Some`), or learned from the database (`None`).
    Stored(Option<Instant>),
    NotStored,
}

impl Client {
    /// Sends `operations` lifecycle operations; the teleconsultations it was answered for.
    pub async fn run(mut self, operations: u64) -> anyhow::Result<Vec<Booking>> {
        let mut bookings: Vec<Booking> = Vec::new();
        let mut next_key = 0_u64;
        let mut next_user = 0_u64;
        let client = self.number;
        let mut new_patient = || {
            next_user += 1;
            format!("c{client}-patient-{next_user}")
        };
        for _ in 0..operations {
            self.tally.operations.fetch_add(1, Ordering::SeqCst);
            let live: Vec<usize> = (0..bookings.len())
                .filter(|i| !bookings[*i].deleted)
                .collect();
            let roll = rand::rng().random_range(0..100);
            let pick = |live: &[usize]| live[rand::rng().random_range(0..live.len())];
            if live.is_empty() || roll < 30 {
                // Create: a doctor shared by many bookings, new patients; some left incomplete.
                let number = rand::rng().random_range(2..=4);
                let known = if rand::rng().random_bool(0.7) {
                    number
                } else {
                    number - 1
                };
                let mut participants = vec![format!("doctor-{}", rand::rng().random_range(0..20))];
                while participants.len() < known {
                    participants.push(new_patient());
                }
                let start = format!("2031-0{}-1{}T10:00:00.000Z", 1 + client % 9, client % 10);
                let body = json!({
                    "participants": {"number": number, "data": data(&participants)},
                    "start_date": start,
                    "duration_in_seconds": 1800,
                });
                next_key += 1;
                let key = format!("soak-c{client}-b{next_key}");
                let cut = rand::rng().random_bool(self.cut_off);
                if let Some((answer, answered_at)) = self.book(&key, &body, cut).await? {
                    bookings.push(Booking {
                        id: answer["roomId"].as_str().unwrap_or_default().to_owned(),
                        number,
                        participants,
                        start,
                        duration: 1800,
                        deleted: false,
                        changes: vec![Change {
                            kind: ChangeKind::Created,
                            answered_at: Some(answered_at),
                            request: format!("POST {key}"),
                        }],
                    });
                }
            } else if roll < 45 {
                let booking = &mut bookings[pick(&live)];
                let url = format!("{}/teleconsultation/{}", self.base, booking.id);
                if booking.participants.len() < booking.number {
                    let user = new_patient();
                    let body = data(std::slice::from_ref(&user)).pop();
                    let url = format!("{url}/participants/data");
                    let outcome = self
                        .change(&booking.id, Method::POST, &url, body, 201, |tc| {
                            tc.participants.iter().any(|p| p.external_id == user)
                        })
                        .await?;
                    if let Outcome::Stored(at) = outcome {
                        booking
                            .changes
                            .push(Change::updated(at, format!("add {user}")));
                        booking.participants.push(user);
                    }
                } else if rand::rng().random_bool(0.5) {
                    // Now and then the same duration: a change of nothing, which stores
                    // nothing and tells nothing.
                    let duration = 600 + 60 * rand::rng().random_range(0..30);
                    let body = Some(json!({"duration_in_seconds": duration}));
                    let outcome = self
                        .change(&booking.id, Method::PATCH, &url, body, 204, |tc| {
                            tc.duration_secs == duration
                        })
                        .await?;
                    if let Outcome::Stored(at) = outcome
                        && duration != booking.duration
                    {
                        booking.duration = duration;
                        booking
                            .changes
                            .push(Change::updated(at, format!("duration {duration}")));
                    }
                } else {
                    // Replace a patient: a new room.
                    let mut participants = booking.participants.clone();
                    if let Some(last) = participants.last_mut() {
                        *last = new_patient();
                    }
                    let body = json!({"participants": {"number": booking.number, "data": data(&participants)}});
                    let outcome = self
                        .change(&booking.id, Method::PATCH, &url, Some(body), 204, |tc| {
                            tc.participants
                                .iter()
                                .map(|p| &p.external_id)
                                .eq(participants.iter())
                        })
                        .await?;
                    if let Outcome::Stored(at) = outcome {
                        let replaced = format!(
                            "replace by {}",
                            participants.last().map_or("", String::as_str)
                        );
                        booking.participants = participants;
                        booking.changes.push(Change::updated(at, replaced));
                    }
                }
            } else if roll < 85 {
                let booking = &bookings[pick(&live)];
                let url = format!("{}/teleconsultation/{}", self.base, booking.id);
                let request = self
                    .http
                    .get(&url)
                    .header("miauserid", &booking.participants[0]);
                if let Sent::Answered(answer) = self.send(request).await?
                    && answer.status != 200
                {
                    report_unexpected(&self.tally, "GET", &url, answer.status, &answer.body);
                }
            } else {
                let booking = &mut bookings[pick(&live)];
                let url = format!("{}/teleconsultation/{}", self.base, booking.id);
                let outcome = self
                    .change(&booking.id, Method::DELETE, &url, None, 204, |tc| {
                        tc.state == TeleconsultationState::Deleted
                    })
                    .await?;
                if let Outcome::Stored(at) = outcome {
                    booking.deleted = true;
                    booking.changes.push(Change {
                        kind: ChangeKind::Deleted,
                        answered_at: at,
                        request: "DELETE".to_owned(),
                    });
                }
            }
        }
        Ok(bookings)
    }

    /// Sends one request. Without an answer from the killed instance, waits until it is
    /// back; any other failure is the soak's.
    async fn send(&mut self, request: RequestBuilder) -> anyhow::Result<Sent> {
        self.tally.sent.fetch_add(1, Ordering::SeqCst);
        let failed = match request.send().await {
            Ok(response) => {
                let at = Instant::now();
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let replayed = header("idempotency-replayed").is_some();
                let retry_after = header("retry-after").and_then(|v| v.parse().ok());
                let status = response.status().as_u16();
                match response.text().await {
                    Ok(body) => {
                        return Ok(Sent::Answered(Answer {
                            status,
                            at,
                            replayed,
                            retry_after,
                            body,
                        }));
                    }
                    Err(err) => err,
                }
            }
            Err(err) => err,
        };
        let at = Instant::now();
        let Some(killed) = &mut self.killed else {
            return Err(failed.into());
        };
        self.tally.connection_errors.fetch_add(1, Ordering::SeqCst);
        killed.watch.restarted().await?;
        Ok(Sent::Unanswered {
            at,
            // A refused connection sent nothing.
            may_have_arrived: !failed.is_connect(),
        })
    }

    /// A change of teleconsultation `id` by `method` on `url`: stored when answered
    /// `expected`; when unanswered, stored if the record read from the database is `stored`.
    async fn change(
        &mut self,
        id: &str,
        method: Method,
        url: &str,
        body: Option<Value>,
        expected: u16,
        stored: impl FnOnce(&Teleconsultation) -> bool,
    ) -> anyhow::Result<Outcome> {
        let mut request = self.http.request(method.clone(), url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        match self.send(request).await? {
            Sent::Answered(answer) if answer.status == expected => {
                Ok(Outcome::Stored(Some(answer.at)))
            }
            Sent::Answered(answer) => {
                report_unexpected(
                    &self.tally,
                    method.as_str(),
                    url,
                    answer.status,
                    &answer.body,
                );
                Ok(Outcome::NotStored)
            }
            Sent::Unanswered { .. } => {
                let Some(killed) = &self.killed else {
                    unreachable!("only the killed instance's clients go unanswered")
                };
                // A store of its own: another's cache may not have heard of the dead
                // process's last writes.
                let store = telecons::store::connect(&killed.database_url).await?;
                let record = store.get_teleconsultation(id).await?;
                let was_stored = record.as_ref().is_some_and(stored);
                self.tally.unanswered_changes.fetch_add(1, Ordering::SeqCst);
                if was_stored {
                    self.tally.unanswered_stored.fetch_add(1, Ordering::SeqCst);
                    Ok(Outcome::Stored(None))
                } else {
                    Ok(Outcome::NotStored)
                }
            }
        }
    }

    /// Books `body` under `key`: when `cut`, the first request is abandoned within a few
    /// milliseconds (its answer lost, wherever the service was in it), then sent again with
    /// the same key until answered — after a 409 (the first still running), once its hold
    /// ends; so is a request the kill left unanswered. The 201's body, and when the client
    /// first had an answer or stopped waiting for one (its events may go from then on).
    async fn book(
        &mut self,
        key: &str,
        body: &Value,
        cut: bool,
    ) -> anyhow::Result<Option<(Value, Instant)>> {
        let url = format!("{}/teleconsultation", self.base);
        let request =
            |http: &reqwest::Client| http.post(&url).header("Idempotency-Key", key).json(body);
        let mut gave_up_at = None;
        if cut {
            self.tally.cut_off.fetch_add(1, Ordering::SeqCst);
            self.tally.sent.fetch_add(1, Ordering::SeqCst);
            let within = Duration::from_micros(rand::rng().random_range(0..5_000));
            let answered = tokio::time::timeout(within, request(&self.http).send()).await;
            gave_up_at = Some(Instant::now());
            if let Ok(Ok(answer)) = answered {
                // Answered before the cut: the answer is read, then dropped as if lost.
                drop(answer.bytes().await);
            }
        }
        loop {
            let answer = match self.send(request(&self.http)).await? {
                Sent::Answered(answer) => answer,
                Sent::Unanswered {
                    at,
                    may_have_arrived,
                } => {
                    if may_have_arrived {
                        gave_up_at.get_or_insert(at);
                    }
                    continue;
                }
            };
            match answer.status {
                201 => {
                    if answer.replayed {
                        self.tally.replayed.fetch_add(1, Ordering::SeqCst);
                    }
                    let answered_at = gave_up_at.map_or(answer.at, |at: Instant| at.min(answer.at));
                    let body = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
                    return Ok(Some((body, answered_at)));
                }
                409 if gave_up_at.is_some() => {
                    self.tally.still_running.fetch_add(1, Ordering::SeqCst);
                    // Retry-After is when a dead request's hold would end; a live one
                    // answers sooner, so look again shortly.
                    let wait = Duration::from_millis(50)
                        .min(Duration::from_secs(answer.retry_after.unwrap_or(1)));
                    tokio::time::sleep(wait).await;
                }
                status => {
                    report_unexpected(&self.tally, "POST", &url, status, &answer.body);
                    return Ok(None);
                }
            }
        }
    }
}

impl Change {
    fn updated(answered_at: Option<Instant>, request: String) -> Change {
        Change {
            kind: ChangeKind::Updated,
            answered_at,
            request,
        }
    }
}

fn data(participants: &[String]) -> Vec<Value> {
    participants
        .iter()
        .map(|id| {
            let group = if id.starts_with("doctor-") {
                "doctor"
            } else {
                "patient"
            };
            json!({"userId": id, "groups": [group], "fullName": format!("Name of {id}")})
        })
        .collect()
}

fn report_unexpected(tally: &Tally, method: &str, url: &str, status: u16, body: &str) {
    // Show the first few; count them all.
    if tally.unexpected.fetch_add(1, Ordering::SeqCst) < 5 {
        eprintln!("  unexpected: {method} {url} -> {status} {body}");
    }
}
