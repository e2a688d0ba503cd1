//! Storage: one [`Store`] trait, one SQL implementation for two backends (SQLite, the
//! embedded default, and PostgreSQL, for several instances on one database). The store maps
//! the domain's records to row types of its own (`rows`). The same test suite runs on both.

pub mod agenda_lists;
mod backend;
mod group_commit;
mod postgres;
pub mod read_cache;
mod rows;
mod sql;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::access::AgendaScope;
use crate::domain::agenda::AgendaFilter;
use crate::domain::agenda::Position;
use crate::domain::events::LinksMoment;
use crate::domain::idempotency::KeptKey;
use crate::domain::roles::Role;
use crate::domain::room_spec::RoomAttempt;
use crate::domain::teleconsultation::Teleconsultation;

pub use crate::domain::agenda::StatusAt;
pub use backend::Backend;
pub use postgres::PostgresStore;
pub use sql::SqlStore;
pub use sqlite::SqliteStore;

/// What can go wrong in storage, told apart so that callers can react.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row to change does not exist.
    #[error("not found")]
    NotFound,
    /// The change was based on a version that is no longer current (someone else changed it).
    #[error("stale version: the record was changed concurrently")]
    StaleVersion,
    /// A row with the same key already exists (e.g. the same external user id twice).
    #[error("conflict: {0} already exists")]
    Conflict(String),
    /// The database could not be reached or answered with an error while doing `operation`.
    #[error("database error while {operation}: {source}")]
    Database {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// Its text in the message, not as a source too (which printed it twice in a chain).
    #[error("migration error: {0}")]
    Migration(sqlx::migrate::MigrateError),
    /// The idempotency key a write was to answer is no longer held by its request (its
    /// hold ended and another request took the key): nothing was written.
    #[error("the idempotency key was taken over by another request")]
    KeyLost,
    /// A stored value could not be read back (a bug or a hand-edited row).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error("unsupported DATABASE_URL: {0}")]
    UnsupportedUrl(String),
    /// The database cannot be opened: says where (never the password) and what to do.
    #[error("{0}")]
    CannotConnect(String),
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        Self::Migration(err)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The persistence interface of the service. Every change to a teleconsultation names the
/// version it was based on, so that two concurrent changes never both apply on stale data.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is ("sqlite" or "postgres"), for logs and the check-up route.
    fn backend(&self) -> &'static str;

    /// Applies the pending migrations (safe when several instances start at once).
    async fn migrate(&self) -> StoreResult<()>;

    /// Answers when the database can be reached.
    async fn ping(&self) -> StoreResult<()>;

    /// This database's installation: `candidate` when the database has none yet (it is
    /// stored), else the one stored, whoever made it (instances starting together agree).
    async fn installation(&self, candidate: &Installation) -> StoreResult<Installation>;

    /// This database's installation, if it has one (read only).
    async fn existing_installation(&self) -> StoreResult<Option<Installation>>;

    /// Stores a new teleconsultation with its participants. `Conflict` when the id exists.
    /// With `lease`, its provisioning lease is held by `lease.owner` from the start, and
    /// `creating` is marked and recorded as [`Store::mark_room_creation`] would: the request
    /// that books it provisions it next, without writes of its own to take the lease and
    /// mark the creation. With `key`, the booking becomes that idempotency key's answer in
    /// the same transaction; `KeyLost` (nothing stored) when the claim no longer holds it.
    /// `events` (spec §9) are stored in the same transaction, in their order.
    async fn insert_teleconsultation(
        &self,
        tc: &Teleconsultation,
        lease: Option<&Lease>,
        creating: Option<&RoomAttempt>,
        key: Option<&KeyClaim>,
        events: &[NewEvent],
    ) -> StoreResult<()>;

    /// Takes `claim`'s idempotency key for its request (spec §4.13): `None` when the claim
    /// now holds it — a new key, one kept longer than [`KEPT_FOR`](crate::domain::idempotency::KEPT_FOR), or one left running by
    /// a request whose hold has ended (its instance died) — else the key as kept.
    async fn claim_idempotency_key(&self, claim: &KeyClaim) -> StoreResult<Option<KeptKey>>;

    /// Keeps a refusal (`status`, `body` as sent) as the key's answer, if `claim` still
    /// holds the key.
    async fn keep_refusal(&self, claim: &KeyClaim, status: u16, body: &str) -> StoreResult<()>;

    /// Frees the key, if `claim` still holds it: its request failed and keeps nothing.
    async fn release_idempotency_key(&self, claim: &KeyClaim) -> StoreResult<()>;

    /// Deletes the idempotency keys created at or before `before`.
    async fn prune_idempotency_keys(&self, before: DateTime<Utc>) -> StoreResult<()>;

    /// The teleconsultation with this id, live or deleted.
    async fn get_teleconsultation(&self, id: &str) -> StoreResult<Option<Teleconsultation>>;

    /// [`Store::get_teleconsultation`] for what GET shows, from memory when it can
    /// (`read_cache`): never behind this instance's changes, at most a notification behind
    /// other instances'. Its provisioning bookkeeping may be older: writers use
    /// [`Store::get_teleconsultation`].
    async fn get_teleconsultation_cached(
        &self,
        id: &str,
    ) -> StoreResult<Option<Arc<Teleconsultation>>>;

    /// Replaces the stored teleconsultation (all fields and the participant list) when its
    /// stored version is still `tc.version`; the stored version becomes `tc.version + 1`,
    /// which is returned. `StaleVersion` when someone changed it meanwhile, `NotFound` when
    /// there is no such row. `retired_rooms` are queued for deletion in the same
    /// transaction, so a room that leaves the record is never forgotten; so are `events`.
    async fn update_teleconsultation(
        &self,
        tc: &Teleconsultation,
        retired_rooms: &[String],
        events: &[NewEvent],
    ) -> StoreResult<i64>;

    /// [`Store::update_teleconsultation`] by the provisioner holding `owner`'s lease, which
    /// has made the room `tc` now names: the same transaction clears the creation mark and
    /// releases the lease. When the lease is no longer `owner`'s (it expired and another
    /// took it), the holder's mark and lease stay. Of the participants, only their links
    /// are written: `tc` is the stored record of its version with the room switched.
    /// `events` are stored in the same transaction.
    async fn record_room(
        &self,
        tc: &Teleconsultation,
        retired_rooms: &[String],
        owner: &str,
        events: &[NewEvent],
    ) -> StoreResult<i64>;

    /// The live teleconsultations in which this external user id participates, oldest first.
    async fn list_teleconsultations_by_participant(
        &self,
        external_id: &str,
    ) -> StoreResult<Vec<Teleconsultation>>;

    /// A page of the agenda list (spec §4.12): live teleconsultations of `query.scope`,
    /// filtered, in (start, id) order after `query.after`, at most `query.limit`, with
    /// their participants. Every one's: read off an index in that order from the position
    /// on (migration 0007), so a page costs about the same however many are stored. One
    /// participant's: from its list kept in memory when it can (`read_cache`, with the
    /// staleness of [`Store::get_teleconsultation_cached`]), else as every one's.
    async fn agenda_page(
        &self,
        query: &AgendaPageQuery<'_>,
    ) -> StoreResult<Vec<Arc<Teleconsultation>>>;

    /// The Kaleyra user mapped to this external id.
    async fn get_kaleyra_user(&self, external_id: &str) -> StoreResult<Option<KaleyraUser>>;

    /// The Kaleyra users mapped to these external ids (those that are), in one read.
    async fn get_kaleyra_users(&self, external_ids: &[String]) -> StoreResult<Vec<KaleyraUser>>;

    /// Maps an external id to a Kaleyra user. `Conflict` when the id is already mapped
    /// (including by a concurrent caller): read it back with [`Store::get_kaleyra_user`].
    async fn insert_kaleyra_user(&self, user: &KaleyraUser) -> StoreResult<()>;

    /// Records a new role for a mapped user (roles only go up; the caller decides).
    async fn update_kaleyra_user_role(&self, user: &KaleyraUser) -> StoreResult<()>;

    /// Clears the provisioning mark of `id` if it is still at `version`; false when a
    /// change made meanwhile keeps it marked.
    async fn clear_provisioning(&self, id: &str, version: i64) -> StoreResult<bool>;

    /// Marks `id` for provisioning at `due_at` (work failed: retry later).
    /// Backs off: the next try is due `first_delay` after `now`, doubled for every failed
    /// attempt since the last change, at most `max_delay`. Returns when (None: no such row).
    async fn postpone_provisioning(
        &self,
        id: &str,
        now: DateTime<Utc>,
        first_delay: TimeDelta,
        max_delay: TimeDelta,
    ) -> StoreResult<Option<DateTime<Utc>>>;

    /// Ids of teleconsultations whose provisioning is due at `now`, most overdue first.
    async fn due_provisioning(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<String>>;

    /// Queues a room for deletion (idempotent), outside any teleconsultation change: e.g.
    /// a room created for a spec that changed before it could be recorded.
    async fn retire_room(
        &self,
        room_id: &str,
        teleconsultation_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Rooms whose deletion is due at `now`, most overdue first.
    async fn due_room_deletions(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<RoomDeletion>>;

    /// Leases one due room deletion to `owner` until `until` — the one for `room_id` when
    /// given — so that no two workers delete the same room at once.
    async fn claim_room_deletion(
        &self,
        room_id: Option<&str>,
        now: DateTime<Utc>,
        owner: &str,
        until: DateTime<Utc>,
    ) -> StoreResult<Option<RoomDeletion>>;

    /// The room is gone on Kaleyra: forget it.
    async fn finish_room_deletion(&self, room_id: &str) -> StoreResult<()>;

    /// The deletion failed: try again at `due_at` (the lease is given up).
    async fn postpone_room_deletion(&self, room_id: &str, due_at: DateTime<Utc>)
    -> StoreResult<()>;

    /// Leases up to `limit` due teleconsultations to `owner` until `until` (so that several
    /// instances never work on the same one) and returns their ids.
    async fn claim_due_provisioning(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>>;

    /// Leases `id` to `owner` until `until`, unless another owner holds a lease at `now`.
    async fn try_lease(
        &self,
        id: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Gives up `owner`'s lease on `id`.
    async fn release_lease(&self, id: &str, owner: &str) -> StoreResult<()>;

    /// Records (`Some`) or clears (`None`) that a room for the attempt's fingerprint is being
    /// created for `id`; not a change of the teleconsultation (the version stays). `Some`
    /// also records the attempt itself, for good, in the same transaction: done before
    /// Kaleyra is asked, it is what lets clean-up act on the room later
    /// ([`Store::is_attempt_recorded`]).
    async fn mark_room_creation(&self, id: &str, attempt: Option<&RoomAttempt>) -> StoreResult<()>;

    /// Whether this database recorded room creation attempt `attempt` for teleconsultation
    /// `teleconsultation_id` (rooms made by a copy of the database, or before attempts
    /// existed, were not).
    async fn is_attempt_recorded(
        &self,
        attempt: &str,
        teleconsultation_id: &str,
    ) -> StoreResult<bool>;

    /// Records that the call of room creation attempt `attempt` ended at `at` without an
    /// answer we could use (it may have made a room).
    async fn attempt_call_ended(&self, attempt: &str, at: DateTime<Utc>) -> StoreResult<()>;

    /// The last room creation attempt this database recorded for teleconsultation
    /// `teleconsultation_id`, if any: a listing of Kaleyra's rooms taken once its call is
    /// over shows the room it may have made.
    async fn last_attempt(&self, teleconsultation_id: &str) -> StoreResult<Option<AttemptTimes>>;

    /// The identity of the database this store is connected to, as it is now: PostgreSQL,
    /// `postgres:<cluster system identifier>/<database name>`; SQLite, `sqlite:<canonical
    /// file path>`. A copy, a move or a restore gives another one.
    async fn database_identity(&self) -> StoreResult<String>;

    /// The database identity recorded with the installation; `first` (the current one) is
    /// recorded when none is yet (the first start on the database, or the first since
    /// identities were recorded). `None` when the database has no installation or, without
    /// `first`, no identity recorded.
    async fn recorded_identity(&self, first: Option<&str>) -> StoreResult<Option<String>>;

    /// `telecons adopt-database`: records `identity` as this database's. With
    /// `new_installation`, the database also becomes a deployment of its own, in the same
    /// transaction: that installation id, and nothing of the original's rooms (its rooms
    /// are forgotten, their links too, and every live teleconsultation that wants a room and
    /// has not ended at `now` is due to get one of its own; ended ones want none any more;
    /// the original's deletion queue and recorded attempts are dropped). The request's
    /// database timeouts do not apply: it writes whole tables. `NotFound` when the database
    /// has no installation.
    async fn adopt_database(
        &self,
        identity: &str,
        new_installation: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Whether `room_id` is some teleconsultation's room or queued for deletion.
    async fn is_room_known(&self, room_id: &str) -> StoreResult<bool>;

    /// The id of the live teleconsultation whose room is `room_id`, if any.
    async fn teleconsultation_with_room(&self, room_id: &str) -> StoreResult<Option<String>>;

    /// A page of live teleconsultations: ids greater than `after`, in id order.
    async fn list_live_teleconsultations(
        &self,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<Teleconsultation>>;

    /// What the provisioner has not finished yet.
    async fn backlog(&self, now: DateTime<Utc>, immutable_period_ms: u64) -> StoreResult<Backlog>;

    // The event outbox (spec §9). An event is pending until delivered or given up; of a
    // teleconsultation's pending events only the first (its chain's head) is ever sent, so
    // that they arrive in order. Settling an attempt is done by the lease's owner only.

    /// Stores a new pending event, due at `event.due_at`. `Conflict` when its webhook id
    /// exists.
    async fn insert_event(&self, event: &NewEvent) -> StoreResult<()>;

    /// Teleconsultations whose links moment (spec §9's timed events) may have something to
    /// tell at `now`, their links opening `immutable_period_ms` before their start: live,
    /// complete ones whose links are open and whose moment is due, those whose room was told
    /// missing and is ready now, and those deleted or ended with their moment untold (to
    /// clear). In (start, id) order after `after`, at most `limit`.
    async fn links_moments(
        &self,
        now: DateTime<Utc>,
        immutable_period_ms: u64,
        after: Option<&LinksMomentDue>,
        limit: u32,
    ) -> StoreResult<Vec<LinksMomentDue>>;

    /// Moves the links moment of `id` from `from` to `to` (`None`: nothing more to tell for
    /// its start), storing `events` in the same transaction, if the record is still at
    /// `version` and its moment at `from` (not a change: the version stays). Whether it did:
    /// of two instances telling the same moment, one does.
    async fn settle_links_moment(
        &self,
        id: &str,
        version: i64,
        from: LinksMoment,
        to: Option<LinksMoment>,
        events: &[NewEvent],
    ) -> StoreResult<bool>;

    /// Makes the events with these webhook ids due at `now` (held until their request
    /// answered; see `outbox`), unless due already. (Only pending events are due later than
    /// now: a settled one was due when it was claimed.)
    async fn make_events_due(&self, webhook_ids: &[String], now: DateTime<Utc>) -> StoreResult<()>;

    /// Leases to `owner` until `until` up to `limit` events to send at `now`, the oldest
    /// stored first: pending, due, not leased (or their lease has expired) and the head of
    /// their teleconsultation's chain (no earlier event of it pending, leased or not), so
    /// that at most one event per teleconsultation is in flight. Concurrent claims never take
    /// one event twice. Its cost does not grow with the backlog.
    async fn claim_events(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedEvent>>;

    /// These events were delivered at `now` (`answer`, e.g. "HTTP 204"): those whose lease
    /// `owner` holds are counted as an attempt, settled, and no longer hold back the next
    /// one of their teleconsultation, in one write. Their ids (the others were taken over).
    async fn events_delivered(
        &self,
        ids: &[i64],
        owner: &str,
        now: DateTime<Utc>,
        answer: &str,
    ) -> StoreResult<Vec<i64>>;

    /// [`Store::events_delivered`] of one event: whether it was recorded.
    async fn event_delivered(
        &self,
        id: i64,
        owner: &str,
        now: DateTime<Utc>,
        answer: &str,
    ) -> StoreResult<bool> {
        Ok(!self
            .events_delivered(&[id], owner, now, answer)
            .await?
            .is_empty())
    }

    /// An attempt at the event failed at `now` with `answer` ("HTTP 503", "timeout"), if
    /// `owner` holds its lease: counted, the lease released, and the event retried at
    /// `next_due` (the later pending events of its teleconsultation are then due no
    /// earlier: they wait for it anyway), or, `None`, given up (settled at `now`: it no
    /// longer holds back the next one). Whether it was recorded.
    async fn event_failed(
        &self,
        id: i64,
        owner: &str,
        next_due: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        answer: &str,
    ) -> StoreResult<bool>;

    /// Gives up `owner`'s lease on the event without counting an attempt (the receiver
    /// answered 410: deliveries stop, the event stays pending as it was). Whether `owner`
    /// held it.
    async fn release_event(&self, id: i64, owner: &str) -> StoreResult<bool>;

    /// The given-up events, in the order they were stored.
    async fn failed_events(&self) -> StoreResult<Vec<FailedEvent>>;

    /// Makes given-up events pending again, with no attempt counted and due at `now`: the
    /// one with this webhook id, or (`None`) all of them. Their webhook ids, in the order
    /// they were stored (none when there was no such given-up event).
    async fn redeliver_events(
        &self,
        webhook_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<String>>;

    /// Deletes the events delivered before `before` (given-up ones are kept).
    async fn prune_delivered_events(&self, before: DateTime<Utc>) -> StoreResult<()>;

    /// How many events are pending and how many were given up, for the metrics.
    async fn event_counts(&self) -> StoreResult<EventCounts>;

    /// Every event kept, in the order stored (bodies left out): what the platform is told,
    /// for checking it against the changes that made it (the soak).
    async fn all_events(&self) -> StoreResult<Vec<StoredEvent>>;
}

/// How long the database may work on one statement, and wait for one lock, before it gives
/// up (PostgreSQL's `statement_timeout` and `lock_timeout`; SQLite's busy timeout is the
/// lock one). Below the request budget, so that a write fails (503, nothing stored) while
/// its request still waits for it, never commits after the request answered 503 (spec §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseTimeouts {
    pub statement: Duration,
    pub lock: Duration,
}

impl DatabaseTimeouts {
    /// For requests of `request_budget`: a write starts at the latest at half the budget
    /// (lookups before it get that half), after at most 5 s waiting for a connection; one
    /// statement then takes at most a quarter of the budget, a lock wait a fifth of it
    /// (25 s: 6.25 s and 5 s), so that a booking (one statement on PostgreSQL) ends by
    /// 3/4 of the budget + 5 s, within the HTTP timeout (the budget + 5 s).
    pub fn within(request_budget: Duration) -> Self {
        Self {
            statement: request_budget / 4,
            lock: request_budget / 5,
        }
    }
}

/// The request budget the default timeouts are for: the app's default request budget
/// (`app::DEFAULT_REQUEST_BUDGET` is this one; the store sits below the app).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(25);

impl Default for DatabaseTimeouts {
    /// For the default request budget.
    fn default() -> Self {
        Self::within(DEFAULT_BUDGET)
    }
}

/// Opens the store named by `DATABASE_URL`: `sqlite:` (file created if missing) or
/// `postgres:`/`postgresql:`. Migrations are not applied here: see [`Store::migrate`].
/// The database's timeouts are those of the default request budget.
pub async fn connect(database_url: &str) -> StoreResult<Arc<dyn Store>> {
    connect_within(database_url, DatabaseTimeouts::default()).await
}

/// [`connect`] with the database's timeouts for another request budget.
pub async fn connect_within(
    database_url: &str,
    timeouts: DatabaseTimeouts,
) -> StoreResult<Arc<dyn Store>> {
    // The scheme in any case, as the configuration accepts it; the drivers want lowercase.
    let url = match database_url.split_once(':') {
        Some((scheme, rest)) => format!("{}:{rest}", scheme.to_ascii_lowercase()),
        None => database_url.to_owned(),
    };
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(&url, timeouts).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(&url, timeouts).await?))
    } else {
        // Only the scheme is echoed: the rest of the URL may hold a password.
        let scheme = database_url.split(':').next().unwrap_or_default();
        Err(StoreError::UnsupportedUrl(format!(
            "scheme {scheme:?} (allowed: sqlite://PATH, postgres://…)"
        )))
    }
}

// The store's own records besides the teleconsultation (spec §8): the user map, the room
// deletion queue, the provisioning backlog and the installation.

/// The map external id → Kaleyra user.
#[derive(Debug, Clone, PartialEq)]
pub struct KaleyraUser {
    pub external_id: String,
    pub kaleyra_user_id: String,
    /// The role the Kaleyra user has (only ever goes up).
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// When a room creation attempt was recorded (just before its call to Kaleyra) and, when
/// its answer was lost, when its call ended ([`Store::attempt_call_ended`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTimes {
    pub recorded_at: DateTime<Utc>,
    pub call_ended_at: Option<DateTime<Utc>>,
}

/// What a page of the agenda list holds ([`Store::agenda_page`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgendaPageQuery<'a> {
    pub scope: AgendaScope<'a>,
    /// Start dates from this instant on (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Start dates before this instant (exclusive).
    pub to: Option<DateTime<Utc>>,
    pub status: Option<StatusAt>,
    /// Only the teleconsultations after this position in (start, id) order.
    pub after: Option<&'a Position>,
    pub limit: u32,
}

impl<'a> AgendaPageQuery<'a> {
    /// What it asks of each teleconsultation, besides whose it is.
    pub fn filter(&self) -> AgendaFilter<'a> {
        AgendaFilter {
            from: self.from,
            to: self.to,
            status: self.status,
            after: self.after,
        }
    }
}

/// A request's hold on an idempotency key (spec §4.13), from when it claims the key until
/// it answers, or `until` (so that a request that dies with its instance frees the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim {
    /// [`crate::domain::idempotency::scope`] of the caller.
    pub scope: String,
    pub key: String,
    /// [`crate::domain::idempotency::body_fingerprint`] of the request's body.
    pub fingerprint: String,
    /// The request, as the key names its holder.
    pub owner: String,
    /// When the key is claimed (its answer is kept [`KEPT_FOR`](crate::domain::idempotency::KEPT_FOR) from then).
    pub at: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// A provisioning lease: only `owner` works on a teleconsultation until `until` (several
/// instances share one database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until: DateTime<Utc>,
}

/// A Kaleyra room waiting to be deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomDeletion {
    pub room_id: String,
    pub teleconsultation_id: Option<String>,
    pub due_at: DateTime<Utc>,
    pub attempts: u32,
}

/// Work the provisioner has not finished, for metrics and the check-up route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Teleconsultations with users or a room still to create.
    pub teleconsultations: u64,
    /// Of those, the ones whose links should already be available (start − period passed).
    pub rooms_missing_at_start: u64,
    /// Rooms still to delete on Kaleyra.
    pub room_deletions: u64,
    /// Provisionings and room deletions due now (their next try's time has come).
    pub due: u64,
    /// When the oldest of those came due (`None`: nothing is due).
    pub oldest_due_at: Option<DateTime<Utc>>,
    /// Provisionings and room deletions leased to an instance now: being worked on.
    pub being_worked: u64,
}

/// An event to store in the outbox ([`Store::insert_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique per event, the same on every attempt (the `webhook-id` header).
    pub webhook_id: String,
    pub teleconsultation_id: String,
    /// The event's type, e.g. `teleconsultation.created`.
    pub event_type: String,
    /// The exact JSON sent and signed on every attempt.
    pub body: String,
    /// When the first attempt is due.
    pub due_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A teleconsultation whose links moment may have something to tell
/// ([`Store::links_moments`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinksMomentDue {
    pub id: String,
    pub start: DateTime<Utc>,
    pub moment: LinksMoment,
}

/// An event leased to a sender ([`Store::claim_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEvent {
    /// Names the event when its attempt is settled.
    pub id: i64,
    pub webhook_id: String,
    pub teleconsultation_id: String,
    pub event_type: String,
    pub body: String,
    /// The attempts made before this one.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

/// A given-up event, as `telecons events --failed` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEvent {
    pub webhook_id: String,
    pub event_type: String,
    pub teleconsultation_id: String,
    /// What its last attempt got.
    pub last_answer: Option<String>,
}

/// An event as kept in the outbox ([`Store::all_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The order stored: a teleconsultation's events are sent in this order.
    pub id: i64,
    pub webhook_id: String,
    pub teleconsultation_id: String,
    pub event_type: String,
    pub state: EventState,
    /// The attempts made so far (a delivered event's count its last, successful, one).
    pub attempts: u32,
}

/// Where an event stands in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    /// To send (possibly leased, or waiting for a retry).
    Pending,
    Delivered,
    /// Its retry schedule exhausted; kept until redelivered.
    GivenUp,
}

/// The outbox's size, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventCounts {
    pub pending: u64,
    pub given_up: u64,
}

/// Which program made a database: the service, or `telecons demo` (whose Kaleyra is a
/// simulator). Neither starts on the other's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallationMode {
    Service,
    Demo,
}

/// This database's installation, made once by the first instance that starts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// 16 lowercase hex (64 random bits), in every room tag.
    pub id: String,
    pub mode: InstallationMode,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_timeouts_end_a_write_within_the_http_timeout() {
        let budget = DEFAULT_BUDGET;
        let timeouts = DatabaseTimeouts::within(budget);
        assert_eq!(timeouts.statement, Duration::from_millis(6_250));
        assert_eq!(timeouts.lock, Duration::from_secs(5));
        // A write starts by half the budget plus 5 s for a connection; one statement (a
        // booking on PostgreSQL) then ends within the budget itself.
        assert!(budget / 2 + Duration::from_secs(5) + timeouts.statement < budget);
        assert!(timeouts.lock < timeouts.statement);
        assert_eq!(DatabaseTimeouts::default(), timeouts);
    }
}
