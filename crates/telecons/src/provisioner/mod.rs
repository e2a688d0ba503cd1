//! Rooms by reconciliation. Each teleconsultation stores the room it should have (a
//! [`RoomSpec`], or none) and the room it has; [`Provisioner::converge`] makes the second
//! match the first: it creates the Kaleyra users, creates the room, switches the record to
//! it and retires the old one. Retired rooms sit in a stored queue until Kaleyra confirms
//! their deletion (`deletions`).
//!
//! Requests run `converge` inline, so normally the room exists when they answer. Whatever
//! fails stays marked in the store and the background worker (`worker`) retries it, across
//! restarts, until it succeeds. Rooms whose creation answer was lost are found again by
//! their tag (`recovery`).

mod audit;
mod deletions;
mod recovery;
mod users;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use kaleyra_client::{CreateRoom, KaleyraClient, KaleyraError, NewParticipant, Operation};

pub use audit::{AuditReport, compare};
pub use recovery::ORPHAN_GRACE;
pub use users::UserMap;
pub use worker::POLL_INTERVAL;

use crate::clock::Clock;
use crate::domain::events;
use crate::domain::roles::{Tool, Tools};
use crate::domain::room_spec::{Recording, RoomAttempt, RoomSpec};
use crate::domain::teleconsultation::Teleconsultation;
use crate::outbox::Outbox;
use crate::store::{KeyClaim, Lease, NewEvent, Store, StoreError};
use crate::telemetry;

/// A failed provisioning is retried after this, doubling with each failure up to
/// [`MAX_PROVISION_RETRY`].
pub const PROVISION_RETRY: TimeDelta = TimeDelta::seconds(10);
/// A room creation whose answer was lost is retried after this, however often the
/// teleconsultation failed before (a backlog from a storm has failed many times): the room is
/// probably made, one listing away (`recovery`), and the lost answers that come due within a
/// few seconds of each other share that listing. What an outage costs Kaleyra is bounded by
/// how many items the worker takes on at once (one while calls fail), not by this delay.
pub const LOST_ANSWER_RETRY: TimeDelta = TimeDelta::seconds(5);
/// At most a minute between tries while Kaleyra is unavailable, so that every booking has
/// its room within two minutes of Kaleyra answering again (spec §7). Kaleyra is not
/// hammered meanwhile: the worker takes on one item at a time while calls fail, and
/// Kaleyra's own `Retry-After` pauses the operation for the whole instance.
const MAX_PROVISION_RETRY: TimeDelta = TimeDelta::minutes(1);
/// When Kaleyra refuses the request itself (a 4xx: our data, not its health), retrying soon
/// would only repeat the refusal: wait longer, and say so loudly.
const REFUSED_RETRY: TimeDelta = TimeDelta::minutes(5);
/// The first and the longest delay before work that failed with `err` is tried again: as
/// long as Kaleyra asked when it asked to slow down (`429`, `503` with `Retry-After`: the
/// work goes on as soon as Kaleyra is ready, its backoff does not grow); long when Kaleyra
/// refuses the request itself; [`LOST_ANSWER_RETRY`] when a room creation's answer was lost;
/// else [`PROVISION_RETRY`] doubling up to [`MAX_PROVISION_RETRY`].
fn retry_delays(err: &ProvisionError) -> (TimeDelta, TimeDelta) {
    match err {
        ProvisionError::Kaleyra(e) if e.is_rejected() => (REFUSED_RETRY, REFUSED_RETRY),
        ProvisionError::Kaleyra(e) => match back_pressure_wait(e) {
            Some(wait) => (wait, wait),
            None if e.operation() == Operation::CreateRoom && e.may_have_taken_effect() => {
                (LOST_ANSWER_RETRY, LOST_ANSWER_RETRY)
            }
            None => (PROVISION_RETRY, MAX_PROVISION_RETRY),
        },
        ProvisionError::Store(_) => (PROVISION_RETRY, MAX_PROVISION_RETRY),
    }
}

/// How long Kaleyra asked us to wait, when `err` is its back-pressure: a `429` (its
/// `Retry-After`, else a second) or a `503` with `Retry-After`; at least a second.
pub(super) fn back_pressure_wait(err: &KaleyraError) -> Option<TimeDelta> {
    let wait = match (err.status(), err.retry_after()) {
        (Some(429), wait) => wait.unwrap_or(Duration::from_secs(1)),
        (Some(503), Some(wait)) => wait,
        _ => return None,
    };
    let wait = TimeDelta::from_std(wait).unwrap_or(MAX_PROVISION_RETRY);
    Some(wait.clamp(TimeDelta::seconds(1), MAX_PROVISION_RETRY))
}

/// How long a request waits for the provisioning after its commit before answering anyway (the
/// work stays marked; the worker finishes it). Well under the request timeout.
pub const INLINE_BUDGET: Duration = Duration::from_secs(8);
/// A record that keeps changing under the provisioner is left to the next pass.
const MAX_ROUNDS: usize = 3;
/// A request waits this long, at most, for another's work on the same teleconsultation to
/// end (as long as its inline budget allows), so that its answer comes with the room made.
const LEASE_WAIT_ATTEMPTS: usize = 160;
const LEASE_WAIT: Duration = Duration::from_millis(50);

/// What provisioning needs besides its dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionerSettings {
    /// This database's installation id: in every room tag; clean-up acts on these rooms only.
    pub installation_id: String,
    /// How long an instance may work on one teleconsultation before another may take over;
    /// it should exceed the slowest provisioning (user creations with retries, then a room).
    pub lease: TimeDelta,
    /// `IMMUTABLE_PERIOD_MS`: from `start − period` on, a missing room is reported.
    pub immutable_period_ms: u64,
    /// `PROVISIONING_CONCURRENCY`: at most this many due items worked at once by the
    /// background worker of this instance.
    pub concurrency: usize,
}

/// Provisioning failed: Kaleyra or the store. The work stays marked and is retried.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Kaleyra(#[from] KaleyraError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Converges stored teleconsultations with Kaleyra. Cheap to clone.
#[derive(Clone)]
pub struct Provisioner {
    store: Arc<dyn Store>,
    kaleyra: KaleyraClient,
    clock: Arc<dyn Clock>,
    settings: ProvisionerSettings,
    /// This instance's name in leases (several instances share one database).
    instance_id: Arc<str>,
    /// Where the last orphan sweep stopped.
    sweep_cursor: Arc<tokio::sync::Mutex<Option<recovery::SweepKey>>>,
    /// The last listing of this installation's rooms, shared by the clean-up of one pass.
    tagged_rooms: Arc<tokio::sync::Mutex<Option<Arc<recovery::TaggedRooms>>>>,
    /// The events of the rooms it records (spec §9).
    outbox: Arc<Outbox>,
}

impl Provisioner {
    pub fn new(
        store: Arc<dyn Store>,
        kaleyra: KaleyraClient,
        clock: Arc<dyn Clock>,
        settings: ProvisionerSettings,
        outbox: Arc<Outbox>,
    ) -> Self {
        Self {
            outbox,
            store,
            kaleyra,
            clock,
            settings,
            instance_id: format!("{:016x}", rand::random::<u64>()).into(),
            sweep_cursor: Arc::default(),
            tagged_rooms: Arc::default(),
        }
    }

    /// The events of stored changes (spec §9), shared with the use cases.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// This database's installation id (in every room tag).
    pub fn installation_id(&self) -> &str {
        &self.settings.installation_id
    }

    /// Brings teleconsultation `id` to its desired state. On failure the work stays marked
    /// (postponed by [`PROVISION_RETRY`]) and the error is returned for logging. While
    /// someone else (another request, another instance) holds the lease on `id`, this waits
    /// a moment for it, then leaves the work to the lease holder and the background worker.
    pub async fn converge(&self, id: &str) -> Result<(), ProvisionError> {
        let owner = self.lease().owner;
        for attempt in 0..LEASE_WAIT_ATTEMPTS {
            let now = self.clock.now();
            if self
                .store
                .try_lease(id, &owner, now, now + self.settings.lease)
                .await?
            {
                return self.converge_leased(id, &owner, None).await;
            }
            if attempt + 1 < LEASE_WAIT_ATTEMPTS {
                tokio::time::sleep(LEASE_WAIT).await;
            }
        }
        tracing::debug!(teleconsultation = id, "someone else is provisioning it");
        Ok(())
    }

    /// Stores the new teleconsultation `tc` with its lease held and, when it wants a room,
    /// the creation of that room marked: provisioning it next ([`Self::converge_held`]
    /// with the returned work) takes neither write of its own, nor a read of the user map
    /// (`users`: the map of `tc`'s participants, as read to resolve them). `Conflict` when
    /// the id exists. With `key`, the booking is that idempotency key's answer, stored in
    /// the same transaction, as are `events`.
    pub async fn store_new(
        &self,
        tc: &Teleconsultation,
        users: UserMap,
        key: Option<&KeyClaim>,
        events: &[NewEvent],
    ) -> Result<Held, StoreError> {
        let lease = self.lease();
        let spec = tc.desired_room.as_ref().filter(|_| tc.needs_room());
        let attempt = spec.map(|spec| RoomAttempt::new(spec, self.clock.now()));
        self.store
            .insert_teleconsultation(tc, Some(&lease), attempt.as_ref(), key, events)
            .await?;
        let mut stored = tc.clone();
        stored.creating_fingerprint = attempt.as_ref().map(|a| a.fingerprint.clone());
        Ok(Held {
            lease,
            stored: Stored {
                tc: stored,
                users,
                attempt,
            },
        })
    }

    /// [`Self::converge`] of the new teleconsultation `id` under the work its request holds
    /// from [`Self::store_new`]: neither a lease to take nor a record to read. Errors are
    /// logged and postponed inside.
    pub async fn converge_held(&self, id: &str, held: Held) {
        let _ = self
            .converge_leased(id, &held.lease.owner, Some(held.stored))
            .await;
    }

    /// The lease as a duration of real time.
    fn lease_duration(&self) -> Duration {
        self.settings
            .lease
            .to_std()
            .unwrap_or(Duration::from_secs(60))
    }

    /// A new lease from now, for one piece of work: its owner's name excludes other
    /// requests of this instance as well as other instances.
    pub fn lease(&self) -> Lease {
        Lease {
            owner: format!("{}/{:016x}", self.instance_id, rand::random::<u64>()),
            until: self.clock.now() + self.settings.lease,
        }
    }

    /// [`Self::converge`] under a lease `owner` already holds; releases it at the end.
    /// `stored`: the record as the request that holds the lease has just stored it
    /// ([`Self::store_new`]), which saves reading it; its creation mark, if any, was made
    /// with the insert (no creation was tried under it).
    async fn converge_leased(
        &self,
        id: &str,
        owner: &str,
        stored: Option<Stored>,
    ) -> Result<(), ProvisionError> {
        // Work stops taking new steps when its lease is nearly over (another holder could then
        // work on the same record); it is never cut mid-step (a database transaction must not
        // be left half done). What is left is resumed like the work of a crashed instance.
        let stop_by = tokio::time::Instant::now() + self.lease_duration().mul_f32(0.8);
        let result = self.converge_once(id, owner, stored, stop_by).await;
        // Postponed while still leased: released first, the work would still look due, and
        // the worker would take it up again at once.
        if let Err(err) = &result {
            self.postpone(id, err).await;
        }
        if !matches!(result, Ok(LeaseAfter::Released))
            && let Err(err) = self.store.release_lease(id, owner).await
        {
            tracing::warn!(teleconsultation = id, error = %err, "cannot release the lease; it expires");
        }
        result.map(|_| ())
    }

    /// Marks failed work for a later try, backing off.
    async fn postpone(&self, id: &str, err: &ProvisionError) {
        metrics::counter!(telemetry::PROVISIONING_FAILURES).increment(1);
        let refused = matches!(err, ProvisionError::Kaleyra(e) if e.is_rejected());
        let (first, max) = retry_delays(err);
        let postponed = self
            .store
            .postpone_provisioning(id, self.clock.now(), first, max)
            .await;
        let retry_at = match &postponed {
            Ok(Some(at)) => crate::domain::schedule::format_instant(*at),
            _ => "never (no such teleconsultation)".to_owned(),
        };
        match postponed {
            Ok(_) if refused => {
                tracing::error!(teleconsultation = id, error = %err, retry_at, "Kaleyra refuses this provisioning; will retry")
            }
            Ok(_) => {
                tracing::warn!(teleconsultation = id, error = %err, retry_at, "provisioning failed; will retry")
            }
            Err(store_err) => {
                tracing::error!(teleconsultation = id, error = %err, store_error = %store_err, "provisioning failed and cannot be postponed")
            }
        }
    }

    /// The work of [`Self::converge_leased`] under `owner`'s lease.
    async fn converge_once(
        &self,
        id: &str,
        owner: &str,
        mut stored: Option<Stored>,
        stop_by: tokio::time::Instant,
    ) -> Result<LeaseAfter, ProvisionError> {
        for _ in 0..MAX_ROUNDS {
            // Its own creation mark, only in the first round on the record as stored.
            let creation_marked = stored.is_some();
            let (tc, users, inserted_attempt) = match stored.take() {
                Some(Stored { tc, users, attempt }) => (tc, Some(users), attempt),
                None => match self.store.get_teleconsultation(id).await? {
                    Some(tc) => (tc, None, None),
                    None => return Ok(LeaseAfter::Held),
                },
            };
            if lease_nearly_over(id, stop_by) {
                return Ok(LeaseAfter::Held);
            }
            if tc.is_live()
                && let Err(err) = self.ensure_users(&tc.participants, users).await
            {
                // Nothing was tried under the insert's mark: retries need not look for a
                // lost room.
                if creation_marked
                    && let Err(clear_err) = self.store.mark_room_creation(id, None).await
                {
                    tracing::warn!(teleconsultation = id, error = %clear_err, "cannot clear the creation mark");
                }
                return Err(err);
            }
            // A previous attempt may have created a room whose answer was lost (not when the
            // mark is the insert's own: nothing was tried under it).
            let recovered = match &tc.creating_fingerprint {
                Some(_) if !creation_marked => self.recover_lost_rooms(&tc).await?,
                _ => None,
            };
            let spec = match &tc.desired_room {
                Some(spec) if tc.needs_room() => spec.clone(),
                _ => {
                    if tc.creating_fingerprint.is_some() {
                        self.store.mark_room_creation(id, None).await?;
                    }
                    self.store.clear_provisioning(id, tc.version).await?;
                    return Ok(LeaseAfter::Held);
                }
            };
            // Users can take long: a room is made only while the lease surely holds (after
            // it, another holder may make one), and then the insert's mark is still its own.
            if lease_nearly_over(id, stop_by) {
                return Ok(LeaseAfter::Held);
            }
            // The insert's attempt, recorded with its mark, when it is still for this spec.
            let marked = inserted_attempt.filter(|attempt| {
                creation_marked
                    && tc.creating_fingerprint.as_deref() == Some(spec.fingerprint())
                    && attempt.fingerprint == spec.fingerprint()
            });
            let room = match recovered {
                Some(room) => room,
                None => match self.create_room(id, &spec, marked).await {
                    // A user we mapped is gone on Kaleyra's side (deleted there, or a fresh
                    // Kaleyra behind an old database): make them again under the same ids,
                    // then try once more, so that one lost user never blocks a room.
                    Err(ProvisionError::Kaleyra(err)) if err.code() == Some("user_not_found") => {
                        tracing::warn!(teleconsultation = id, error = %err, "Kaleyra no longer knows a user of this room; creating the users again");
                        self.recreate_users(&tc.participants).await?;
                        // Marked again: the refusal cleared the mark.
                        self.create_room(id, &spec, None).await?
                    }
                    created => created?,
                },
            };
            if self.switch_to(tc, &spec, &room, owner).await? {
                return Ok(LeaseAfter::Released);
            }
            // The teleconsultation changed and no longer wants this room: retire it (unless
            // someone else recorded it meanwhile, e.g. after our lease expired), look again.
            if !self.store.is_room_known(&room.id).await? {
                self.store
                    .retire_room(&room.id, Some(id), self.clock.now())
                    .await?;
                self.delete_rooms(std::slice::from_ref(&room.id)).await;
            }
            self.store.mark_room_creation(id, None).await?;
        }
        Ok(LeaseAfter::Held)
    }

    /// Records `room` (made for `spec`) as the room of `tc` and retires its old room; the
    /// same transaction ends the creation and `owner`'s lease. When `tc` changed meanwhile,
    /// tries again on the fresh record as long as it still wants a room for this very spec
    /// (a change of the start date alone, say). False when it no longer does.
    async fn switch_to(
        &self,
        mut tc: Teleconsultation,
        spec: &RoomSpec,
        room: &kaleyra_client::Room,
        owner: &str,
    ) -> Result<bool, ProvisionError> {
        let fingerprint = spec.fingerprint();
        let links: Vec<(&str, &str)> = room
            .participants
            .iter()
            .map(|p| (p.user_id.as_str(), p.link.as_str()))
            .collect();
        loop {
            if !tc.wants_room(fingerprint) {
                return Ok(false);
            }
            let (switched, retired) = tc.switched_to(&room.id, fingerprint, &links);
            let events = self.outbox.event(
                events::of_recorded_room(&switched),
                &switched,
                self.clock.now(),
            );
            match self
                .store
                .record_room(&switched, &retired, owner, &events)
                .await
            {
                Ok(_) => {
                    self.outbox.wake();
                    tracing::info!(teleconsultation = %tc.id, room = %room.id, "room created");
                    self.delete_rooms(&retired).await;
                    return Ok(true);
                }
                Err(StoreError::StaleVersion) => {
                    match self.store.get_teleconsultation(&tc.id).await? {
                        Some(fresh) => tc = fresh,
                        None => return Ok(false),
                    }
                }
                Err(err) => {
                    // Not recorded: never leave the room behind unknown.
                    if let Err(retire_err) = self
                        .store
                        .retire_room(&room.id, Some(&tc.id), self.clock.now())
                        .await
                    {
                        tracing::error!(room = %room.id, error = %retire_err, "room created but not recorded");
                    }
                    return Err(err.into());
                }
            }
        }
    }

    /// Creates the room for `spec`, marking and recording the attempt first (unless it is
    /// `marked` already, by the insert): if the answer is lost (crash, timeout, dropped
    /// connection) the next attempt finds the room by its tag instead of making a second
    /// one, and clean-up acts on the room only because its attempt is recorded here.
    async fn create_room(
        &self,
        id: &str,
        spec: &RoomSpec,
        marked: Option<RoomAttempt>,
    ) -> Result<kaleyra_client::Room, ProvisionError> {
        let attempt = match marked {
            Some(attempt) => attempt,
            None => {
                let attempt = RoomAttempt::new(spec, self.clock.now());
                self.store.mark_room_creation(id, Some(&attempt)).await?;
                attempt
            }
        };
        let request = create_room_request(spec, &self.settings.installation_id, &attempt.id, id);
        let answer = self.kaleyra.create_room(&request).await;
        self.room_created(id, &attempt, answer).await
    }

    /// Kaleyra's answer to `attempt`, a room creation for `id`, marked: a creation that
    /// surely did not happen clears the mark (a retry need not look for its room); one that
    /// may have happened records when its call ended (its recovery need not wait out the
    /// longest a call can take).
    async fn room_created(
        &self,
        id: &str,
        attempt: &RoomAttempt,
        answer: Result<kaleyra_client::Room, KaleyraError>,
    ) -> Result<kaleyra_client::Room, ProvisionError> {
        match answer {
            Ok(room) => {
                metrics::counter!(telemetry::ROOMS_CREATED).increment(1);
                Ok(room)
            }
            Err(err) if err.may_have_taken_effect() => {
                let ended = self
                    .store
                    .attempt_call_ended(&attempt.id, self.clock.now())
                    .await;
                if let Err(store_err) = ended {
                    tracing::warn!(teleconsultation = id, error = %store_err, "cannot record the end of a room creation call; its recovery waits longer");
                }
                Err(err.into())
            }
            Err(err) => {
                self.store.mark_room_creation(id, None).await?;
                Err(err.into())
            }
        }
    }
}

/// Whether work under a lease must stop taking steps (`stop_by`, before the lease ends).
fn lease_nearly_over(id: &str, stop_by: tokio::time::Instant) -> bool {
    let over = tokio::time::Instant::now() >= stop_by;
    if over {
        tracing::warn!(
            teleconsultation = id,
            "provisioning outlasted its lease; resumed later"
        );
    }
    over
}

/// Work a request holds from the insert of a new teleconsultation on
/// ([`Provisioner::store_new`]): its lease, and what the first round starts from.
#[derive(Debug)]
pub struct Held {
    lease: Lease,
    stored: Stored,
}

/// The record as stored (its room creation marked when it wants one, with the attempt
/// recorded), and the user map of its participants as read to resolve them.
#[derive(Debug)]
struct Stored {
    tc: Teleconsultation,
    users: UserMap,
    attempt: Option<RoomAttempt>,
}

/// Whether a provisioning pass ended with its lease still held (to release) or already
/// released (with the room recorded, in the same transaction).
enum LeaseAfter {
    Held,
    Released,
}

/// The Kaleyra request for `spec`. The description is our tag (installation, creation
/// attempt, teleconsultation id and spec fingerprint), so a room whose creation answer was
/// lost can be found again, and clean-up knows the rooms this database made.
pub fn create_room_request(
    spec: &RoomSpec,
    installation_id: &str,
    attempt_id: &str,
    teleconsultation_id: &str,
) -> CreateRoom {
    CreateRoom {
        participants: spec
            .participants()
            .iter()
            .map(|p| NewParticipant {
                user_id: p.kaleyra_user_id.clone(),
                is_admin: p.is_admin,
                tools: p.tools.as_ref().map(wire_tools),
            })
            .collect(),
        duration: spec
            .duration_secs()
            .and_then(|secs| u64::try_from(secs).ok()),
        live: Some(spec.live()),
        recording: Some(match spec.recording() {
            Recording::None => kaleyra_client::Recording::None,
            Recording::Manual => kaleyra_client::Recording::Manual,
            Recording::Automatic => kaleyra_client::Recording::Automatic,
        }),
        call_type: None,
        description: Some(
            spec.tag(installation_id, attempt_id, teleconsultation_id)
                .to_string(),
        ),
    }
}

/// Kaleyra's `tools` object: every tool listed, on or off, so that it means the same
/// whatever Kaleyra assumes for a tool left out. The match is exhaustive: a new tool cannot
/// be forgotten (and never turns every tool on).
fn wire_tools(tools: &Tools) -> kaleyra_client::Tools {
    let mut wire = kaleyra_client::Tools::default();
    for tool in Tool::ALL {
        let on = Some(tools.is_enabled(tool));
        let field = match tool {
            Tool::Chat => &mut wire.chat,
            Tool::ScreenSharing => &mut wire.screen_sharing,
            Tool::FileUpload => &mut wire.file_upload,
            Tool::Whiteboard => &mut wire.whiteboard,
            Tool::Snapshot => &mut wire.snapshot,
            Tool::LiveEdit => &mut wire.live_edit,
            Tool::LivePointer => &mut wire.live_pointer,
            Tool::PresentToEveryone => &mut wire.present_to_everyone,
        };
        *field = on;
    }
    wire
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::roles::{Privileges, Role};
    use crate::domain::room_spec::{RoomRules, RoomSettings};

    #[test]
    fn restricted_tools_list_every_tool_on_the_wire() {
        let wire = wire_tools(&Tools::new([Tool::Chat, Tool::PresentToEveryone]));
        assert_eq!(
            serde_json::to_value(wire).unwrap(),
            serde_json::json!({
                "chat": true, "screen_sharing": false, "file_upload": false,
                "whiteboard": false, "snapshot": false, "live_edit": false,
                "live_pointer": false, "present_to_everyone": true
            })
        );
        let none = wire_tools(&Tools::default());
        assert_eq!(
            serde_json::to_value(none)
                .unwrap()
                .as_object()
                .unwrap()
                .len(),
            8,
            "no tool on is not 'all tools on'"
        );
    }

    #[test]
    fn the_room_request_follows_the_spec() {
        let mut privileges = Privileges::default();
        privileges.basic.tools = Some(Tools::new([Tool::Chat]));
        let rules = RoomRules {
            privileges,
            settings: RoomSettings {
                unlimited: false,
                live: false,
                recording: Recording::Manual,
            },
        };
        let spec = RoomSpec::new(
            &[
                ("tc_doc".to_owned(), Role::Plus),
                ("tc_pat".to_owned(), Role::Basic),
            ],
            900,
            &rules,
        );
        let request = create_room_request(
            &spec,
            "0123456789abcdef",
            "fedcba9876543210",
            "64b000000000000000000001",
        );
        assert_eq!(request.duration, Some(900));
        assert_eq!(request.live, Some(false));
        assert_eq!(request.recording, Some(kaleyra_client::Recording::Manual));
        assert!(request.participants[0].is_admin);
        assert_eq!(request.participants[0].tools, None, "all tools on");
        assert_eq!(request.participants[1].tools.unwrap().chat, Some(true));
        assert_eq!(
            request.description.as_deref(),
            Some(
                format!(
                    "telecons:0123456789abcdef:fedcba9876543210:64b000000000000000000001:{}",
                    spec.fingerprint()
                )
                .as_str()
            )
        );
    }

    #[test]
    fn back_pressure_is_waited_out_without_backoff_and_other_failures_back_off() {
        use kaleyra_client::{ErrorKind, KaleyraError, Operation};
        let unavailable = |status, retry_after: Option<u64>| {
            ProvisionError::Kaleyra(KaleyraError::new(
                Operation::CreateRoom,
                ErrorKind::Unavailable {
                    status,
                    code: None,
                    message: None,
                    retry_after: retry_after.map(Duration::from_secs),
                },
            ))
        };
        let secs = |n| (TimeDelta::seconds(n), TimeDelta::seconds(n));
        assert_eq!(retry_delays(&unavailable(429, Some(3))), secs(3));
        assert_eq!(retry_delays(&unavailable(429, None)), secs(1));
        assert_eq!(retry_delays(&unavailable(429, Some(0))), secs(1));
        assert_eq!(retry_delays(&unavailable(503, Some(2))), secs(2));
        assert_eq!(retry_delays(&unavailable(429, Some(3600))), secs(60));
        assert_eq!(
            retry_delays(&unavailable(503, None)),
            (LOST_ANSWER_RETRY, LOST_ANSWER_RETRY),
            "a 5xx may come after the room was made"
        );
        assert_eq!(
            retry_delays(&unavailable(502, Some(2))),
            (LOST_ANSWER_RETRY, LOST_ANSWER_RETRY),
            "a room creation's answer lost: soon, whatever failed before"
        );
        let user_lost =
            ProvisionError::Kaleyra(KaleyraError::new(Operation::CreateUser, ErrorKind::Timeout));
        assert_eq!(
            retry_delays(&user_lost),
            (PROVISION_RETRY, MAX_PROVISION_RETRY)
        );
    }
}
