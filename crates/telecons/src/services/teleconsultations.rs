//! The teleconsultation lifecycle (spec §4.1–§4.6): decide (domain rules), store, then
//! converge (the provisioner); and the agenda (§4.12: the view of one, the list), from the
//! store only.
//! HTTP-free: handlers translate requests into these calls and errors into responses.
//!
//! Every change is a read–modify–write on a versioned record ([`Teleconsultations::change`]). When
//! another request changed the record in between, the change is re-decided on the fresh
//! record (up to a few times): concurrent changes never both apply on stale data, and
//! callers rarely see a conflict.

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kaleyra_client::{DeleteOutcome, KaleyraClient, Room};
use tokio::time::Instant;

use super::guard::GroupGuard;
use super::room_details::{Details, RoomDetailsCache};
use super::{AfterCommit, ServiceError, Unreadable, commit_then_finish};
use crate::clock::Clock;
use crate::domain::access;
use crate::domain::agenda::{self, AgendaEntry, AgendaView, Position};
use crate::domain::agenda_query::ListQuery;
use crate::domain::events::{self, EventType};
use crate::domain::ids::{is_well_formed, new_teleconsultation_id};
use crate::domain::join::{self, JoinRules, JoinView, LinkOptions};
use crate::domain::participants::{
    CheckedEntry, CheckedParticipants, InvalidParticipants, ParticipantEntry, ParticipantsInput,
    Profile, ProfileSource, check_entry, check_participants_input,
};
use crate::domain::room_spec::RoomRules;
use crate::domain::schedule::{self, DurationInput, Schedule, ScheduleError};
use crate::domain::teleconsultation::{
    AddParticipantError, Participant, Teleconsultation, keep_links,
};
use crate::identity::directory::{Auth0Directory, DirectoryError};
use crate::identity::{Caller, IdentityError};
use crate::outbox::HeldEvents;
use crate::provisioner::{Held, Provisioner, UserMap};
use crate::store::{AgendaPageQuery, KeyClaim, StatusAt, Store, StoreError};

/// How many times a change is re-decided after losing a race before answering 409. Each
/// stored change may be followed by the provisioner's own (the room switch), so a burst of
/// N concurrent changes needs up to about 2N attempts for the last one.
const MAX_ATTEMPTS: usize = 24;

/// The fields of a POST or PATCH body; `None` = not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BookingInput {
    pub participants: Option<ParticipantsInput>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub duration_secs: Option<i64>,
}

/// The change a refusal is about: the documented refusals name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Book,
    Change,
    AddParticipant { id: String },
}

impl From<InvalidParticipants> for ServiceError {
    fn from(err: InvalidParticipants) -> Self {
        Self::Invalid(err.0)
    }
}

impl From<ScheduleError> for ServiceError {
    fn from(err: ScheduleError) -> Self {
        Self::Invalid(err.to_string())
    }
}

impl From<AddParticipantError> for ServiceError {
    fn from(err: AddParticipantError) -> Self {
        Self::Conflict(err.to_string())
    }
}

type Result<T> = std::result::Result<T, ServiceError>;

/// The lifecycle's rules that come from the configuration.
#[derive(Debug, Clone)]
pub struct TeleconsultationSettings {
    pub rooms: RoomRules,
    pub join: JoinRules,
    /// `TELECONSULTATION_DELETE_UPLOADS`.
    pub delete_uploads: bool,
    /// How long one request's work may take, all of it. Lookups before the commit get the
    /// first half (past it: 503, nothing stored); after the commit, what does not fit in
    /// what is left (deleting retired rooms, provisioning) is left to the stored queue and
    /// the background worker, and the request answers as usual: a request that stored its
    /// effect never answers 5xx because Kaleyra is slow afterwards.
    pub request_budget: Duration,
}

/// `GET /teleconsultation/:id` for one caller: the view and the room's details.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub view: JoinView,
    /// As Kaleyra reports the room; `None` without a room or when Kaleyra cannot answer.
    pub details: Option<Arc<Room>>,
}

/// A page of the agenda list: its entries, and where the next page starts (`None`: this is
/// the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgendaList {
    pub entries: Vec<AgendaEntry>,
    pub next: Option<Position>,
}

/// The link the caller asks for (the join's query).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkRequest {
    /// With the company background on.
    pub use_background: bool,
    /// The link's language, if a known one.
    pub language: Option<String>,
}

/// `{total, deleted}` of `DELETE /teleconsultation/:id/uploads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadsDeleted {
    pub total: u64,
    pub deleted: u64,
}

/// What a decision on the current record leads to.
#[derive(Debug)]
enum Decision {
    /// Nothing to store: no write, no version bump.
    Unchanged,
    /// Store `next`, retiring these rooms in the same transaction.
    Store {
        next: Box<Teleconsultation>,
        retired: Vec<String>,
    },
}

/// The use cases of the teleconsultation API.
pub struct Teleconsultations {
    store: Arc<dyn Store>,
    provisioner: Provisioner,
    /// For uploads; provisioning goes through the provisioner.
    kaleyra: KaleyraClient,
    /// Room details for the join.
    details: RoomDetailsCache,
    /// The user directory, when `AUTH_SERVICE` is set.
    directory: Option<Arc<Auth0Directory>>,
    /// `bookingGroups`: who may book and change teleconsultations.
    booking: GroupGuard,
    clock: Arc<dyn Clock>,
    settings: TeleconsultationSettings,
}

/// Who asks for a change: a caller (admitted by `bookingGroups`), or the service itself
/// (a room Kaleyra lost is made again).
enum Requester {
    Caller(std::result::Result<Caller, IdentityError>),
    Service,
}

impl Teleconsultations {
    pub fn new(
        store: Arc<dyn Store>,
        provisioner: Provisioner,
        kaleyra: KaleyraClient,
        directory: Option<Arc<Auth0Directory>>,
        booking: GroupGuard,
        clock: Arc<dyn Clock>,
        settings: TeleconsultationSettings,
    ) -> Self {
        Self {
            store,
            provisioner,
            details: RoomDetailsCache::new(&kaleyra),
            kaleyra,
            directory,
            booking,
            clock,
            settings,
        }
    }

    /// Who may book (`POST /teleconsultation`): the caller's identity (400), then, with
    /// `bookingGroups`, 401 and 403.
    pub async fn admit_booking(
        &self,
        caller: std::result::Result<Caller, IdentityError>,
    ) -> Result<Caller> {
        let caller = caller?;
        self.booking.admit(&caller).await?;
        Ok(caller)
    }

    /// `POST /teleconsultation` by an admitted caller ([`Self::admit_booking`]): stores a
    /// new teleconsultation and provisions it. Returns its id. The body (400) first. With
    /// `key`, the booking is that idempotency key's answer, in the same transaction.
    pub async fn create(
        self: &Arc<Self>,
        caller: Caller,
        input: std::result::Result<BookingInput, Unreadable>,
        key: Option<KeyClaim>,
        arrived: Instant,
    ) -> Result<String> {
        let budget = Budget::from(arrived, self.settings.request_budget);
        let input = input?;
        let service = Arc::clone(self);
        // Its event goes once this request has answered.
        let (_answering, events) = self.provisioner.outbox().hold_until_answered();
        commit_then_finish(budget.deadline, async move {
            let (id, held) = service
                .store_booking(input, caller.id, key.as_ref(), &budget, events)
                .await?;
            let provisioner = service.provisioner.clone();
            let after: AfterCommit = Box::pin({
                let id = id.clone();
                async move { provisioner.converge_held(&id, held).await }
            });
            Ok((id, after))
        })
        .await
    }

    /// The booking decided and stored with its event, with the work on it the request
    /// holds.
    async fn store_booking(
        &self,
        input: BookingInput,
        caller: Option<String>,
        key: Option<&KeyClaim>,
        budget: &Budget,
        held_events: HeldEvents,
    ) -> Result<(String, Held)> {
        let participants = input
            .participants
            .ok_or_else(|| ServiceError::Invalid("participants is required".into()))?;
        let start = input
            .start
            .ok_or_else(|| ServiceError::Invalid("start_date is required".into()))?;
        let duration =
            DurationInput::from_fields(input.end, input.duration_secs)?.ok_or_else(|| {
                ServiceError::Invalid("one of end_date or duration_in_seconds is required".into())
            })?;
        let schedule = Schedule::new(start, duration)?;
        let checked = check_participants_input(
            participants,
            self.profile_source(),
            &self.settings.rooms.privileges,
        )?;
        let (participants, users) = budget
            .before_commit(self.resolve_all(checked.entries))
            .await?;
        let now = self.clock.now();
        let mut tc = Teleconsultation::new(
            new_teleconsultation_id(now),
            checked.number,
            schedule,
            participants,
            now,
            caller,
        );
        tc.plan_room(&self.settings.rooms, now)
            .map_err(|source| ServiceError::NoPlusUser {
                operation: Operation::Book,
                source,
            })?;
        // Stored with the work held: this request provisions it next.
        let outbox = self.provisioner.outbox();
        let mut events = outbox.held_event(EventType::Created, &tc, now);
        let held = match self
            .provisioner
            .store_new(&tc, users.clone(), key, &events)
            .await
        {
            // 64 random bits collided: another id, once.
            Err(StoreError::Conflict(_)) => {
                tc.id = new_teleconsultation_id(now);
                events = outbox.held_event(EventType::Created, &tc, now);
                self.provisioner.store_new(&tc, users, key, &events).await?
            }
            stored => stored?,
        };
        held_events.release_when_answered(&events);
        Ok((tc.id, held))
    }

    /// `PATCH /teleconsultation/:id`: applies the given fields, re-validates the result.
    pub async fn update(
        self: &Arc<Self>,
        id: String,
        caller: std::result::Result<Caller, IdentityError>,
        input: std::result::Result<BookingInput, Unreadable>,
        arrived: Instant,
    ) -> Result<()> {
        self.change(id, Requester::Caller(caller), arrived, move |service| {
            let input = input?;
            Ok(Update {
                duration: DurationInput::from_fields(input.end, input.duration_secs)?,
                start: input.start,
                participants: input.participants.map(|participants| {
                    check_participants_input(
                        participants,
                        service.profile_source(),
                        &service.settings.rooms.privileges,
                    )
                }),
                resolved: None,
            })
        })
        .await
    }

    /// `POST /teleconsultation/:id/participants/data`: adds one participant.
    pub async fn add_participant(
        self: &Arc<Self>,
        id: String,
        caller: std::result::Result<Caller, IdentityError>,
        entry: std::result::Result<ParticipantEntry, Unreadable>,
        arrived: Instant,
    ) -> Result<()> {
        let operation = Operation::AddParticipant { id: id.clone() };
        self.change(id, Requester::Caller(caller), arrived, move |service| {
            Ok(AddParticipant {
                entry: check_entry(
                    entry?,
                    "",
                    service.profile_source(),
                    &service.settings.rooms.privileges,
                ),
                resolved: None,
                operation,
            })
        })
        .await
    }

    /// `DELETE /teleconsultation/:id`: marks it deleted and deletes its room (now, or later
    /// if Kaleyra is down).
    pub async fn delete(
        self: &Arc<Self>,
        id: String,
        caller: std::result::Result<Caller, IdentityError>,
        arrived: Instant,
    ) -> Result<()> {
        self.change(id, Requester::Caller(caller), arrived, |_| Ok(Delete))
            .await
    }

    /// `GET /teleconsultation/:id` for `caller`: 404, then the caller (400, then 401), then
    /// the query (400).
    pub async fn join(
        self: &Arc<Self>,
        id: &str,
        caller: std::result::Result<Caller, IdentityError>,
        link: std::result::Result<LinkRequest, Unreadable>,
    ) -> Result<Join> {
        let tc = self.read_cached(id).await.map_err(|err| match err {
            ServiceError::NotFound(id) => ServiceError::RoomNotFound(id),
            other => other,
        })?;
        let caller = caller?;
        let participant = access::participant(&tc, caller.id.as_deref())?;
        let link = link?;
        let options = LinkOptions {
            use_background: link.use_background,
            language: link.language,
            caller_groups: caller.groups,
        };
        let mut view = join::view(
            &tc,
            participant,
            self.clock.now(),
            &options,
            &self.settings.join,
        );
        let details = match view.room_id.as_deref() {
            Some(room_id) => match self.details.get(room_id).await {
                Details::Known(room) => Some(room),
                Details::Unavailable => None,
                Details::Gone => {
                    // Deleted on Kaleyra's side: no link to it; it is made again in the
                    // background (the join never waits for Kaleyra).
                    self.details.forget(room_id).await;
                    self.replace_lost_room_later(room_id);
                    view.access_link = None;
                    None
                }
            },
            None => None,
        };
        Ok(Join { view, details })
    }

    /// `GET /teleconsultations/:id` for `caller`: the caller first (400, then 401: no id is
    /// looked up for an unidentified caller), then 404 — for an id that names no live
    /// teleconsultation and for one the caller may not see alike. Reads the store only.
    pub async fn view(
        &self,
        id: &str,
        caller: std::result::Result<Caller, IdentityError>,
    ) -> Result<AgendaView> {
        let caller = caller?;
        let user = access::identified(caller.id.as_deref())?;
        let tc = self.read_cached(id).await?;
        // The groups are looked up only for a caller who does not take part.
        let reads_all = tc.participant(user).is_none() && self.booking.lists(user, &caller).await?;
        let viewer = access::agenda_viewer(&tc, user, reads_all)
            .ok_or_else(|| ServiceError::NotFound(id.to_owned()))?;
        Ok(agenda::view(
            &tc,
            viewer,
            self.clock.now(),
            self.settings.join.immutable_period_ms,
        ))
    }

    /// `GET /teleconsultations` for `caller`: the caller first (400, then 401), then who may
    /// filter by participant (403), then the query (400). A participant's list holds its own
    /// teleconsultations, a `bookingGroups` caller's every one (or a participant's, when it
    /// asks); anyone else's is empty. One read of the store, never Kaleyra: `limit` + 1 are
    /// read, the one more only telling whether a next page exists.
    pub async fn list(
        &self,
        caller: std::result::Result<Caller, IdentityError>,
        query: std::result::Result<ListQuery, Unreadable>,
    ) -> Result<AgendaList> {
        let caller = caller?;
        let user = access::identified(caller.id.as_deref())?;
        let query = query?;
        let reads_all = self.booking.lists(user, &caller).await?;
        // Whether `participant` may be given is decided on its presence alone (403 before
        // 400); the scope is then that of the checked value.
        if query.names_participant {
            access::may_filter_by_participant(user, reads_all)?;
        }
        let filter = query.filter.map_err(|err| ServiceError::Invalid(err.0))?;
        let scope = access::agenda_scope(user, reads_all, filter.participant.as_deref())?;
        let now = self.clock.now();
        let immutable_period_ms = self.settings.join.immutable_period_ms;
        let mut page = self
            .store
            .agenda_page(&AgendaPageQuery {
                scope,
                from: filter.from,
                to: filter.to,
                status: filter.status.map(|status| StatusAt {
                    status,
                    now,
                    immutable_period_ms,
                }),
                after: filter.after.as_ref(),
                limit: filter.limit.saturating_add(1),
            })
            .await?;
        let more = page.len() > filter.limit as usize;
        page.truncate(filter.limit as usize);
        let next = more.then(|| page.last()).flatten().map(|last| Position {
            start: last.start,
            id: last.id.clone(),
        });
        Ok(AgendaList {
            entries: page
                .iter()
                .map(|tc| agenda::entry(tc, now, immutable_period_ms))
                .collect(),
            next,
        })
    }

    /// Kaleyra lost `room_id` (its `on_room_deleted` webhook, or a 404): the live
    /// teleconsultation whose room it was wants a new one, made now within the request's
    /// time (or by the worker). Returns that teleconsultation's id, if any.
    pub async fn room_lost(self: &Arc<Self>, room_id: &str) -> Result<Option<String>> {
        let Some(id) = self.store.teleconsultation_with_room(room_id).await? else {
            return Ok(None);
        };
        let room_id = room_id.to_owned();
        self.change(id.clone(), Requester::Service, Instant::now(), |_| {
            Ok(RoomLost { room_id })
        })
        .await?;
        Ok(Some(id))
    }

    /// [`Self::room_lost`], in a task of its own.
    fn replace_lost_room_later(self: &Arc<Self>, room_id: &str) {
        let service = Arc::clone(self);
        let room_id = room_id.to_owned();
        tokio::spawn(async move {
            match service.room_lost(&room_id).await {
                Ok(Some(id)) => {
                    tracing::warn!(teleconsultation = %id, room = %room_id, "Kaleyra no longer knows this room; it is made again")
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(room = %room_id, error = %err, "a room Kaleyra lost is not replaced yet")
                }
            }
        });
    }

    /// `DELETE /teleconsultation/:id/uploads`: deletes the files shared in the room; `None`
    /// when the route is disabled (`TELECONSULTATION_DELETE_UPLOADS`). Failures are
    /// counted, not fatal: the same request may be sent again.
    pub async fn delete_uploads(
        &self,
        id: &str,
        caller: std::result::Result<Caller, IdentityError>,
    ) -> Result<Option<UploadsDeleted>> {
        if !self.settings.delete_uploads {
            // Disabled: nothing is read, but an ambiguous identity still comes after a 404.
            if let Err(ambiguous) = caller {
                self.live(id).await?;
                return Err(ambiguous.into());
            }
            return Ok(None);
        }
        // Read from the database, not the read cache: it deletes.
        let tc = self.live(id).await?;
        let caller = caller?;
        access::participant(&tc, caller.id.as_deref())?;
        let Some(room_id) = &tc.room_id else {
            return Ok(Some(UploadsDeleted {
                total: 0,
                deleted: 0,
            }));
        };
        let uploads = match self.kaleyra.list_uploads(room_id).await {
            Ok(uploads) => uploads,
            // A room Kaleyra no longer knows has no files left.
            Err(err) if err.is_not_found() => Vec::new(),
            Err(err) => return Err(err.into()),
        };
        let mut deleted = 0;
        for upload in &uploads {
            match self.kaleyra.delete_upload(&upload.key).await {
                Ok(DeleteOutcome::Deleted | DeleteOutcome::AlreadyGone) => deleted += 1,
                Err(err) => {
                    tracing::warn!(upload = %upload.key, error = %err, "upload not deleted")
                }
            }
        }
        Ok(Some(UploadsDeleted {
            total: uploads.len() as u64,
            deleted,
        }))
    }

    /// The live teleconsultation `id` as GET shows it: from memory when it can
    /// (`store::read_cache`).
    async fn read_cached(&self, id: &str) -> Result<Arc<Teleconsultation>> {
        well_formed(id)?;
        only_live(id, self.store.get_teleconsultation_cached(id).await?)
    }

    /// The live teleconsultation `id`, read from the database.
    async fn live(&self, id: &str) -> Result<Teleconsultation> {
        well_formed(id)?;
        only_live(id, self.store.get_teleconsultation(id).await?)
    }

    /// Applies the change `make` builds to the live record `id`, in the documented order:
    /// 404, the caller's identity (400), `bookingGroups` (401, 403), then what `make`
    /// refuses (the body's 400s), then the change's own decision. Stores what it decides (retiring rooms in the same
    /// transaction), then deletes the retired rooms and provisions. When the record changed
    /// meanwhile, the change is decided again on the fresh one.
    async fn change<C: Change + 'static>(
        self: &Arc<Self>,
        id: String,
        requester: Requester,
        arrived: Instant,
        make: impl FnOnce(&Self) -> Result<C>,
    ) -> Result<()> {
        let budget = Budget::from(arrived, self.settings.request_budget);
        let current = self.live(&id).await?;
        let caller = match requester {
            Requester::Caller(caller) => {
                let caller = caller?;
                self.booking.admit(&caller).await?;
                caller.id
            }
            Requester::Service => None,
        };
        let change = make(self)?;
        let service = Arc::clone(self);
        // Its event goes once this request has answered.
        let (_answering, events) = self.provisioner.outbox().hold_until_answered();
        commit_then_finish(budget.deadline, async move {
            let after = service
                .store_change(current, change, caller, &budget, events)
                .await?;
            Ok(((), after))
        })
        .await
    }

    /// [`Self::change`] from the record as first read: decides and stores (with its
    /// event), again on the fresh record after losing a race. Returns the work after the
    /// commit.
    async fn store_change(
        self: &Arc<Self>,
        mut current: Teleconsultation,
        mut change: impl Change,
        caller: Option<String>,
        budget: &Budget,
        held_events: HeldEvents,
    ) -> Result<AfterCommit> {
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                current = self.live(&current.id).await?;
            }
            let decision = budget.before_commit(change.decide(self, &current)).await?;
            let Decision::Store { mut next, retired } = decision else {
                return Ok(Box::pin(async {}));
            };
            let now = self.clock.now();
            if change.by_caller() {
                next.updated_at = now;
                next.updated_by = caller.clone();
            }
            // A deletion is told with the teleconsultation as it last was: once deleted,
            // its view would say nothing true of it.
            let shown = if next.is_live() { &next } else { &current };
            let events = self
                .provisioner
                .outbox()
                .held_event(events::of_change(&next), shown, now);
            match self
                .store
                .update_teleconsultation(&next, &retired, &events)
                .await
            {
                Ok(_) => {
                    held_events.release_when_answered(&events);
                    let provisioner = self.provisioner.clone();
                    let provision = next.is_live().then(|| next.id.clone());
                    return Ok(Box::pin(async move {
                        provisioner.delete_rooms(&retired).await;
                        if let Some(id) = provision {
                            // Errors are logged and postponed inside.
                            let _ = provisioner.converge(&id).await;
                        }
                    }));
                }
                Err(StoreError::StaleVersion) => lost_a_race().await,
                Err(err) => return Err(err.into()),
            }
        }
        Err(ServiceError::Conflict(
            "the teleconsultation kept changing under concurrent requests; try again".into(),
        ))
    }

    fn profile_source(&self) -> ProfileSource {
        match self.directory {
            Some(_) => ProfileSource::Directory,
            None => ProfileSource::Body,
        }
    }

    /// The checked entries as participants, and the user map read for them (one read for
    /// the whole list).
    async fn resolve_all(&self, entries: Vec<CheckedEntry>) -> Result<(Vec<Participant>, UserMap)> {
        let mut profiles = Vec::with_capacity(entries.len());
        for entry in &entries {
            profiles.push(self.profile(entry).await?);
        }
        let external_ids: Vec<String> = entries.iter().map(|e| e.external_id.clone()).collect();
        let users = self.provisioner.user_map(&external_ids).await?;
        let participants = entries
            .into_iter()
            .zip(profiles)
            .map(|(entry, profile)| {
                let kaleyra_user_id = users.kaleyra_id(&entry.external_id);
                participant(entry, profile, kaleyra_user_id)
            })
            .collect();
        Ok((participants, users))
    }

    /// A checked entry as a participant: its profile (from the directory when configured),
    /// its Kaleyra user id.
    async fn resolve(&self, entry: CheckedEntry) -> Result<Participant> {
        let profile = self.profile(&entry).await?;
        let kaleyra_user_id = self.provisioner.kaleyra_id_for(&entry.external_id).await?;
        Ok(participant(entry, profile, kaleyra_user_id))
    }

    /// The entry's profile: as given, or from the directory when configured.
    async fn profile(&self, entry: &CheckedEntry) -> Result<Profile> {
        match (entry.profile.clone(), &self.directory) {
            (Some(profile), _) => Ok(profile),
            (None, Some(directory)) => {
                let known = directory
                    .user(&entry.external_id)
                    .await?
                    .ok_or_else(|| entry.unknown_to_directory())?;
                Ok(Profile::new(
                    &entry.external_id,
                    &entry.field,
                    known.groups,
                    known.full_name,
                    &self.settings.rooms.privileges,
                )?)
            }
            // Entries are checked against the configured source: cannot happen.
            (None, None) => Err(DirectoryError::Unavailable("it is not configured".into()).into()),
        }
    }
}

/// A change of one teleconsultation, decided on its current state — and again on the fresh
/// state when another request changed it first. Work that does not depend on the state
/// (directory lookups) is done once and kept.
trait Change: Send {
    fn decide(
        &mut self,
        service: &Teleconsultations,
        current: &Teleconsultation,
    ) -> impl Future<Output = Result<Decision>> + Send;

    /// Whether the change is the caller's (it then becomes the last updater); the service's
    /// own changes leave `updated_at`/`updated_by` as they are.
    fn by_caller(&self) -> bool {
        true
    }
}

/// PATCH: the given fields replace the stored ones.
struct Update {
    start: Option<DateTime<Utc>>,
    duration: Option<DurationInput>,
    /// The new list, checked (its error is reported after the schedule's).
    participants: Option<std::result::Result<CheckedParticipants, InvalidParticipants>>,
    resolved: Option<(u32, Vec<Participant>)>,
}

impl Change for Update {
    async fn decide(
        &mut self,
        service: &Teleconsultations,
        current: &Teleconsultation,
    ) -> Result<Decision> {
        let start = self.start.unwrap_or(current.start);
        let schedule = match self.duration {
            Some(duration) => Schedule::new(start, duration)?,
            // A new start alone keeps the duration; bounds were checked when it was set.
            None => Schedule {
                start,
                duration_secs: current.duration_secs,
            },
        };
        // Resolved (directory, user map) before the 409: a user the directory does not know
        // is the body's 400, which comes first. Once, then reused if the write is retried.
        if let (Some(checked), None) = (&self.participants, &self.resolved) {
            let checked = checked.clone()?;
            let (participants, _) = service.resolve_all(checked.entries).await?;
            self.resolved = Some((checked.number, participants));
        }
        refuse_if_immutable(current, service.clock.now(), &service.settings.join)?;
        let mut next = current.clone();
        next.start = schedule.start;
        next.duration_secs = schedule.duration_secs;
        if let Some((number, participants)) = &self.resolved {
            next.participant_count = *number;
            next.participants = keep_links(current, participants.clone());
        }
        plan(
            current,
            next,
            &service.settings.rooms,
            service.clock.now(),
            Operation::Change,
        )
    }
}

/// participants/data: one more participant.
struct AddParticipant {
    entry: std::result::Result<CheckedEntry, InvalidParticipants>,
    resolved: Option<Participant>,
    operation: Operation,
}

impl Change for AddParticipant {
    async fn decide(
        &mut self,
        service: &Teleconsultations,
        current: &Teleconsultation,
    ) -> Result<Decision> {
        // Resolved before the 409s (a user the directory does not know is a 400), once.
        let participant = match &self.resolved {
            Some(participant) => participant.clone(),
            None => {
                let entry = self.entry.clone()?;
                self.resolved.insert(service.resolve(entry).await?).clone()
            }
        };
        refuse_if_immutable(current, service.clock.now(), &service.settings.join)?;
        let next = current.with_participant(participant)?;
        plan(
            current,
            next,
            &service.settings.rooms,
            service.clock.now(),
            self.operation.clone(),
        )
    }
}

/// DELETE: allowed at any time.
struct Delete;

impl Change for Delete {
    async fn decide(
        &mut self,
        service: &Teleconsultations,
        current: &Teleconsultation,
    ) -> Result<Decision> {
        let (next, retired) = current.deleted(service.clock.now());
        Ok(Decision::Store {
            next: Box::new(next),
            retired,
        })
    }
}

/// One request's time ([`TeleconsultationSettings::request_budget`]), counted from its arrival.
#[derive(Clone, Copy)]
struct Budget {
    /// Lookups before the commit must be done by then.
    commit_by: Instant,
    /// Everything must be done by then.
    deadline: Instant,
}

impl Budget {
    /// The budget of a request that arrived at `arrived`.
    fn from(arrived: Instant, budget: Duration) -> Self {
        Budget {
            commit_by: arrived + budget / 2,
            deadline: arrived + budget,
        }
    }

    /// `work` before the commit, refused (503, nothing stored) if it overruns.
    async fn before_commit<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout_at(self.commit_by, work)
            .await
            .unwrap_or(Err(ServiceError::OutOfTime))
    }
}

/// Kaleyra lost the room: it is made again.
struct RoomLost {
    room_id: String,
}

impl Change for RoomLost {
    async fn decide(
        &mut self,
        service: &Teleconsultations,
        current: &Teleconsultation,
    ) -> Result<Decision> {
        Ok(
            match current.room_lost(&self.room_id, service.clock.now()) {
                Some((next, retired)) => Decision::Store {
                    next: Box::new(next),
                    retired,
                },
                None => Decision::Unchanged,
            },
        )
    }

    fn by_caller(&self) -> bool {
        false
    }
}

/// The decision for `next`, a change of `current` at `now`: its room planned (a complete list
/// without a plus user is refused even when nothing changes), or nothing to store when it
/// books the same as `current`.
fn plan(
    current: &Teleconsultation,
    mut next: Teleconsultation,
    rules: &RoomRules,
    now: DateTime<Utc>,
    operation: Operation,
) -> Result<Decision> {
    let unchanged = current.books_the_same_as(&next);
    let retired = next
        .plan_room(rules, now)
        .map_err(|source| ServiceError::NoPlusUser { operation, source })?;
    if unchanged {
        return Ok(Decision::Unchanged);
    }
    Ok(Decision::Store {
        next: Box::new(next),
        retired,
    })
}

/// Refuses a change of `tc` inside its immutable period (409), even one that would change
/// nothing.
fn refuse_if_immutable(tc: &Teleconsultation, now: DateTime<Utc>, rules: &JoinRules) -> Result<()> {
    let period = rules.immutable_period_ms;
    if schedule::is_immutable(now, tc.start, period, tc.is_complete()) {
        return Err(ServiceError::Immutable {
            id: tc.id.clone(),
            from: schedule::immutable_from(tc.start, period),
        });
    }
    Ok(())
}

/// A short random pause, so that requests that collided do not collide again in lockstep.
async fn lost_a_race() {
    let pause = rand::random_range(1..=10);
    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
}
/// The participant `entry` names, with its profile and Kaleyra user id.
fn participant(entry: CheckedEntry, profile: Profile, kaleyra_user_id: String) -> Participant {
    Participant {
        kaleyra_user_id,
        external_id: entry.external_id,
        role: profile.role,
        groups: profile.groups,
        full_name: profile.full_name,
        language: entry.language,
        link: None,
    }
}

/// An id of another shape is unknown without a look-up.
fn well_formed(id: &str) -> Result<()> {
    if is_well_formed(id) {
        Ok(())
    } else {
        Err(ServiceError::NotFound(id.to_owned()))
    }
}

/// `read`, the teleconsultation `id`, if it is live: a deleted one is as unknown as a
/// missing one.
fn only_live<T: Borrow<Teleconsultation>>(id: &str, read: Option<T>) -> Result<T> {
    match read {
        Some(tc) if tc.borrow().is_live() => Ok(tc),
        _ => Err(ServiceError::NotFound(id.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::roles::Role;
    use crate::domain::teleconsultation::tests::{person, rules};

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, hour, 0, 0).unwrap()
    }

    /// A complete booking starting at 12:00, planned at 10:00.
    fn booking(roles: [Role; 2]) -> Teleconsultation {
        let schedule = Schedule {
            start: at(12),
            duration_secs: 900,
        };
        let participants = vec![person("doc", roles[0]), person("pat", roles[1])];
        let mut tc = Teleconsultation::new("t".into(), 2, schedule, participants, at(10), None);
        let _ = tc.plan_room(&rules(), at(10));
        tc
    }

    #[test]
    fn a_change_that_books_the_same_stores_nothing() {
        let current = booking([Role::Plus, Role::Basic]);
        let decision = plan(
            &current,
            current.clone(),
            &rules(),
            at(10),
            Operation::Change,
        );
        assert!(matches!(decision, Ok(Decision::Unchanged)), "{decision:?}");
    }

    #[test]
    fn a_change_is_stored_with_its_room_planned() {
        let current = booking([Role::Plus, Role::Basic]);
        let mut next = current.clone();
        next.duration_secs = 1800;
        match plan(&current, next, &rules(), at(10), Operation::Change) {
            Ok(Decision::Store { next, .. }) => {
                assert_eq!(next.duration_secs, 1800);
                assert!(next.needs_room(), "the new spec wants its room");
            }
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_list_without_a_plus_user_is_refused_even_unchanged() {
        let current = booking([Role::Basic, Role::Basic]);
        let operation = Operation::AddParticipant { id: "t".into() };
        let refused = plan(
            &current,
            current.clone(),
            &rules(),
            at(10),
            operation.clone(),
        );
        assert!(
            matches!(&refused, Err(ServiceError::NoPlusUser { operation: o, .. }) if *o == operation),
            "{refused:?}"
        );
    }

    #[test]
    fn changes_are_refused_from_the_immutable_instant_on() {
        let tc = booking([Role::Plus, Role::Basic]);
        let hour = JoinRules {
            immutable_period_ms: 3_600_000,
            groups_with_background: Vec::new(),
        };
        assert!(refuse_if_immutable(&tc, at(10), &hour).is_ok());
        let refused = refuse_if_immutable(&tc, at(11), &hour).unwrap_err();
        assert!(
            matches!(refused, ServiceError::Immutable { from, .. } if from == at(11)),
            "{refused:?}"
        );
        assert!(refuse_if_immutable(&tc, at(11), &JoinRules::default()).is_ok());
    }

    #[test]
    fn the_budget_gives_lookups_half_the_time() {
        let arrived = Instant::now();
        let budget = Budget::from(arrived, Duration::from_secs(20));
        assert_eq!(budget.commit_by, arrived + Duration::from_secs(10));
        assert_eq!(budget.deadline, arrived + Duration::from_secs(20));
    }
}
