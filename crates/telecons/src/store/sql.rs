//! The one implementation of [`Store`] over SQL, for both backends: the statements (both
//! accept `$N` placeholders), the binding of records to parameters and the decoding of rows.
//! A [`Backend`] says only what differs: how a write transaction begins, how rows being
//! claimed by another transaction are skipped, the liveness probe, how a change is announced
//! to other instances and the migrations.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::migrate::Migrate;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{
    AssertSqlSafe, Connection, Database, Encode, Executor, FromRow, IntoArguments, Pool, Type,
};
use tokio_util::sync::DropGuard;

use super::agenda_lists::{AgendaList, LONGEST_KEPT};
use super::backend::Backend;
use super::group_commit::{GroupCommit, WriteWork};
use super::read_cache::{AgendaLookup, Change, ReadCache};
use super::rows::{
    AgendaItemRow, ClaimedEventRow, FailedEventRow, InstallationRow, JoinedRow, KaleyraUserRow,
    KeptKeyRow, RoomDeletionRow, StoredEventRow, agenda_item, assemble, claimed_event,
    failed_event, groups_json, installation, instant, kaleyra_user, kept_key, links_moment,
    links_moment_text, mode_text, role_text, room_deletion, room_spec_json, state_text,
    stored_event,
};
use super::{
    AgendaPageQuery, AttemptTimes, Backlog, ClaimedEvent, EventCounts, FailedEvent, Installation,
    KaleyraUser, KeyClaim, Lease, LinksMomentDue, NewEvent, RoomDeletion, StatusAt, StoredEvent,
};
use super::{Store, StoreError, StoreResult};
use crate::domain::access::AgendaScope;
use crate::domain::agenda::{AgendaItem, Status};
use crate::domain::events::LinksMoment;
use crate::domain::idempotency::{KEPT_FOR, KeptKey};
use crate::domain::room_spec::RoomAttempt;
use crate::domain::schedule;
use crate::domain::teleconsultation::Teleconsultation;

/// A store on one SQL backend: a pool for writes, a pool for reads (the same pool where the
/// database needs no separation), and the teleconsultations GET reads, kept in memory.
pub struct SqlStore<DB: Database> {
    pub(super) writer: Pool<DB>,
    pub(super) readers: Pool<DB>,
    pub(super) read_cache: Arc<ReadCache>,
    /// Stops the task that follows other instances' changes (PostgreSQL) with the store.
    pub(super) _follower: Option<DropGuard>,
    /// Where the database has one writer (SQLite): the queue of the task that commits
    /// concurrent write transactions together.
    pub(super) group_commit: Option<GroupCommit<DB>>,
}

/// $16 and $17 are the provisioning lease (owner, until), $18 the creation mark; NULL when
/// none is taken.
const INSERT_TELECONSULTATION: &str = "INSERT INTO teleconsultations \
    (id, version, state, participant_count, start_at_ms, duration_secs, room_id, \
     created_at_ms, updated_at_ms, created_by, updated_by, desired_room, desired_fingerprint, \
     room_fingerprint, provision_due_at_ms, lease_owner, lease_until_ms, creating_fingerprint) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";

/// Binds the same $1..$15 as INSERT ($1 = id, $2 = the expected version); the version is
/// bumped by the statement itself. $16: the lease holder recording a room, whose creation
/// is then over and whose lease is released (NULL for other changes: `lease_owner = NULL`
/// is never true, so mark and lease stay). SET expressions all read the row as it was.
const UPDATE_TELECONSULTATION: &str = "UPDATE teleconsultations SET \
    version = version + 1, state = $3, participant_count = $4, start_at_ms = $5, \
    duration_secs = $6, room_id = $7, created_at_ms = $8, updated_at_ms = $9, \
    created_by = $10, updated_by = $11, desired_room = $12, desired_fingerprint = $13, \
    room_fingerprint = $14, provision_due_at_ms = $15, provision_attempts = 0, \
    creating_fingerprint = CASE WHEN lease_owner = $16 THEN NULL ELSE creating_fingerprint END, \
    lease_until_ms = CASE WHEN lease_owner = $16 THEN NULL ELSE lease_until_ms END, \
    lease_owner = CASE WHEN lease_owner = $16 THEN NULL ELSE lease_owner END, \
    links_event = CASE WHEN $3 <> 'active' THEN NULL \
      WHEN start_at_ms <> $5 THEN 'due' ELSE links_event END \
    WHERE id = $1 AND version = $2 RETURNING version";

const TELECONSULTATION_EXISTS: &str = "SELECT id FROM teleconsultations WHERE id = $1";

const DELETE_PARTICIPANTS: &str = "DELETE FROM participants WHERE teleconsultation_id = $1";

/// Followed by one row of [`PARTICIPANT_COLUMNS`] placeholders per participant.
/// `start_at_ms` is the teleconsultation's, kept with each participant for the agenda's
/// index (migration 0007): participants are written anew with every change of the record.
const INSERT_PARTICIPANTS: &str = "INSERT INTO participants \
    (teleconsultation_id, position, external_id, kaleyra_user_id, role, groups_json, \
     full_name, language, link, start_at_ms) VALUES ";
const PARTICIPANT_COLUMNS: usize = 10;

/// One statement (one snapshot) reads a teleconsultation with its participants.
const SELECT_JOINED: &str = "SELECT t.id, t.version, t.state, t.participant_count, \
    t.start_at_ms, t.duration_secs, t.room_id, t.created_at_ms, t.updated_at_ms, \
    t.created_by, t.updated_by, t.desired_room, t.room_fingerprint, t.provision_due_at_ms, \
    t.creating_fingerprint, \
    p.position AS p_position, p.external_id AS p_external_id, \
    p.kaleyra_user_id AS p_kaleyra_user_id, p.role AS p_role, p.groups_json AS p_groups_json, \
    p.full_name AS p_full_name, p.language AS p_language, p.link AS p_link \
    FROM teleconsultations t LEFT JOIN participants p ON p.teleconsultation_id = t.id";

/// A participant's live teleconsultations as its agenda list reads them ([`AgendaItemRow`]),
/// off the index of its participations (`participants_by_user_and_start`), at most $2: no
/// links, groups or room spec. Their order is made in memory.
const SELECT_AGENDA_ITEMS: &str = "SELECT t.id, t.start_at_ms, t.duration_secs, \
    t.participant_count, CAST((SELECT COUNT(*) FROM participants c \
      WHERE c.teleconsultation_id = t.id) AS BIGINT) AS known \
    FROM participants q JOIN teleconsultations t ON t.id = q.teleconsultation_id \
    WHERE q.external_id = $1 AND t.state = 'active' LIMIT $2";

const SELECT_KALEYRA_USERS: &str = "SELECT external_id, kaleyra_user_id, role, \
    created_at_ms, updated_at_ms FROM kaleyra_users";

const INSERT_KALEYRA_USER: &str = "INSERT INTO kaleyra_users \
    (external_id, kaleyra_user_id, role, created_at_ms, updated_at_ms) \
    VALUES ($1, $2, $3, $4, $5)";

const UPDATE_KALEYRA_USER_ROLE: &str = "UPDATE kaleyra_users SET role = $2, \
    updated_at_ms = $3 WHERE external_id = $1 RETURNING external_id";

/// A room's insert into the deletion queue, from `$rows` (room, teleconsultation, due at,
/// attempts, created at); a room already queued stays as it is.
macro_rules! retire_room {
    ($rows:literal) => {
        concat!(
            "INSERT INTO rooms_to_delete \
             (room_id, teleconsultation_id, due_at_ms, attempts, created_at_ms) ",
            $rows,
            " ON CONFLICT (room_id) DO NOTHING"
        )
    };
}
const RETIRE_ROOM: &str = retire_room!("VALUES ($1, $2, $3, 0, $3)");

/// The record of a room creation attempt: its id, teleconsultation, fingerprint and time,
/// from the parameters named.
fn insert_attempt(id: &str, teleconsultation: &str, fingerprint: &str, at: &str) -> String {
    format!(
        "INSERT INTO room_attempts (id, teleconsultation_id, fingerprint, created_at_ms) \
         VALUES ({id}, {teleconsultation}, {fingerprint}, {at})"
    )
}

/// Ends a claim's hold on its idempotency key (the answer is kept).
const ANSWERED: &str = "owner = NULL, lease_until_ms = NULL";
/// The key of claim ($1 scope, $2 key, $3 owner), while the claim still holds it.
const HELD_BY_CLAIM: &str = "WHERE scope = $1 AND idempotency_key = $2 AND owner = $3";

/// `insert` (an `INSERT … VALUES …`) made to write only when the CTE `source` of its
/// statement has a row: `answered` (the idempotency key was still the booking's to answer),
/// `updated` (the version check held).
fn only_if(insert: &str, source: &str) -> String {
    let (head, values) = insert
        .split_once(" VALUES ")
        .expect("an INSERT … VALUES statement");
    format!("{head} SELECT * FROM (VALUES {values}) AS v WHERE EXISTS (SELECT 1 FROM {source})")
}

/// The columns of an event's row [`SqlStore::bind_event`] binds.
const EVENT_COLUMNS: usize = 6;

/// Stores `count` new pending events ([`NewEvent`]), in their order, from parameters
/// `$first`… as [`SqlStore::bind_event`] binds them: standalone, or as a part of a change's
/// own write.
fn insert_events(first: usize, count: usize) -> String {
    format!(
        "INSERT INTO events \
         (webhook_id, teleconsultation_id, type, body, due_at_ms, created_at_ms) VALUES {}",
        placeholder_rows(first, count, EVENT_COLUMNS)
    )
}

/// Leases to $2 until $3 up to $4 events to send at $1 (see [`Store::claim_events`]): of
/// the first [`CLAIM_WINDOW`] pending events due and not leased, oldest first by id, those
/// at the head of their teleconsultation's chain. A leased head still blocks its chain (it is
/// pending), so one event per teleconsultation is in flight; delivered and given-up ones no
/// longer do. The window bounds the work whatever the backlog: it holds the heads first (a
/// chain's events are in id order), and of the blocked events only those behind heads in
/// flight or held for their request (the newest). The conditions on `state` are the partial
/// indexes' (`events_pending`, `events_chain`), as literals. `{skip}`: rows being claimed by
/// another transaction are skipped (PostgreSQL); the chain check still sees them pending, so
/// their successors are not taken meanwhile.
fn claim_events(skip: &str) -> String {
    format!(
        "UPDATE events SET lease_owner = $2, lease_until_ms = $3 \
         WHERE id IN (SELECT w.id FROM (SELECT id, teleconsultation_id FROM events \
             WHERE state = 'pending' AND due_at_ms <= $1 \
               AND (lease_until_ms IS NULL OR lease_until_ms < $1) \
             ORDER BY id LIMIT {CLAIM_WINDOW} {skip}) w \
           WHERE w.id = (SELECT MIN(p.id) FROM events p \
             WHERE p.teleconsultation_id = w.teleconsultation_id AND p.state = 'pending') \
           ORDER BY w.id LIMIT $4) \
         RETURNING id, webhook_id, teleconsultation_id, type, body, attempts, due_at_ms, \
           created_at_ms"
    )
}

/// How many pending events a claim looks at, at most (see [`claim_events`]): more than the
/// events in flight at once across instances, whose successors it passes over. Each is
/// checked for being its chain's head by one lookup of the chain's first (a scalar
/// subquery, which the planners do not turn into a join over every pending event).
const CLAIM_WINDOW: u32 = 256;

/// Settles an attempt at event $1 while $2 holds its lease: counts it, releases the lease,
/// records the answer ($3) and applies `changes` (its further `SET` clauses, from $4).
fn settle_event(changes: &str) -> String {
    format!(
        "UPDATE events SET attempts = attempts + 1, last_answer = $3, \
           lease_owner = NULL, lease_until_ms = NULL, {changes} \
         WHERE id = $1 AND lease_owner = $2 AND state = 'pending' \
         RETURNING teleconsultation_id"
    )
}

/// Records events `$4`… (`count` ids) delivered at $3 with the answer $2, those of them $1
/// holds: counts the attempt, releases the lease, settles them.
fn settle_delivered(count: usize) -> String {
    format!(
        "UPDATE events SET attempts = attempts + 1, last_answer = $2, \
           lease_owner = NULL, lease_until_ms = NULL, state = 'delivered', settled_at_ms = $3 \
         WHERE lease_owner = $1 AND state = 'pending' AND id IN ({}) RETURNING id",
        placeholders(4, count)
    )
}

/// Teleconsultations whose links moment may have something to tell (see
/// [`Store::links_moments`]): starting at or before $1 (now + the immutable period), after
/// ($2 start, $3 id), ended at $4 (now) or deleted, or complete with their moment due, or
/// with their room told missing and now current; $5 at most. `links_event IS NOT NULL` is
/// the partial index's predicate, as a literal.
const LINKS_MOMENTS: &str = "SELECT id, start_at_ms, links_event FROM teleconsultations \
    WHERE links_event IS NOT NULL AND start_at_ms <= $1 \
      AND (start_at_ms > $2 OR (start_at_ms = $2 AND id > $3)) \
      AND (state <> 'active' OR start_at_ms + duration_secs * 1000 <= $4 \
        OR (links_event = 'due' AND desired_fingerprint IS NOT NULL) \
        OR (links_event = 'missing' AND room_id IS NOT NULL \
          AND room_fingerprint = desired_fingerprint)) \
    ORDER BY start_at_ms, id LIMIT $5";

/// The links moment of teleconsultation $1 moved from $3 to $4, if it is still at version
/// $2 and moment $3.
const SETTLE_LINKS_MOMENT: &str = "UPDATE teleconsultations SET links_event = $4 \
    WHERE id = $1 AND version = $2 AND links_event = $3 RETURNING id";

/// What a claim found: the key held by it, kept for another request, or gone meanwhile.
enum KeyRead {
    Held,
    Kept(KeptKeyRow),
    Gone,
}

/// Expired idempotency keys, or delivered events, deleted per statement.
const PRUNE_BATCH: usize = 1_000;

/// Takes a key for a claim ($1–$6), unless it is kept for a live request or an answer:
/// free when new, created at or before $7 (its answer has been kept long enough), or
/// running under a hold that has ended by $6 (its request died with its instance).
const CLAIM_IDEMPOTENCY_KEY: &str = "INSERT INTO idempotency_keys \
    (scope, idempotency_key, fingerprint, owner, lease_until_ms, created_at_ms) \
    VALUES ($1, $2, $3, $4, $5, $6) \
    ON CONFLICT (scope, idempotency_key) DO UPDATE SET \
    fingerprint = excluded.fingerprint, owner = excluded.owner, \
    lease_until_ms = excluded.lease_until_ms, created_at_ms = excluded.created_at_ms, \
    teleconsultation_id = NULL, answer_status = NULL, answer_body = NULL \
    WHERE idempotency_keys.created_at_ms <= $7 \
    OR (idempotency_keys.owner IS NOT NULL AND idempotency_keys.lease_until_ms <= $6) \
    RETURNING owner";

/// Forgets the original's rooms in a database that becomes a deployment of its own
/// ([`Store::adopt_database`] with a new installation; `$1` of the first is now): the
/// original deletes its retired rooms and keeps its attempts; the copy makes rooms of its
/// own. Run while no instance serves the database (it refuses to start until adopted), so
/// no read cache holds what changes.
///
/// Only a teleconsultation that has not ended (start + duration after now) gets a room of
/// its own: a copy holds years of past bookings, and a room each would spend the Kaleyra
/// rate limit the copy shares with the original. An ended one wants no room any more (its
/// desired room is cleared, not only its due mark), so that it is not reported as a room
/// missing at start, nor expected by the audit, for ever.
const DETACH_FROM_ORIGINAL: [&str; 4] = [
    "UPDATE teleconsultations SET version = version + 1, room_id = NULL, \
       room_fingerprint = NULL, creating_fingerprint = NULL, lease_owner = NULL, \
       lease_until_ms = NULL, provision_attempts = 0, \
       desired_room = CASE WHEN start_at_ms + duration_secs * 1000 > $1 \
         THEN desired_room ELSE NULL END, \
       desired_fingerprint = CASE WHEN start_at_ms + duration_secs * 1000 > $1 \
         THEN desired_fingerprint ELSE NULL END, \
       provision_due_at_ms = CASE WHEN state = 'active' AND desired_fingerprint IS NOT NULL \
         AND start_at_ms + duration_secs * 1000 > $1 THEN $1 ELSE NULL END \
     WHERE room_id IS NOT NULL OR creating_fingerprint IS NOT NULL \
       OR provision_due_at_ms IS NOT NULL \
       OR (desired_fingerprint IS NOT NULL AND start_at_ms + duration_secs * 1000 <= $1)",
    "UPDATE participants SET link = NULL WHERE link IS NOT NULL",
    "DELETE FROM rooms_to_delete",
    "DELETE FROM room_attempts",
];

/// A parameter of a statement built at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Param {
    Text(String),
    Int(i64),
}

/// The parameters of a statement being built, numbered in the order added.
#[derive(Default)]
struct Params(Vec<Param>);

impl Params {
    /// Adds `param`; returns its placeholder.
    fn add(&mut self, param: Param) -> String {
        self.0.push(param);
        format!("${}", self.0.len())
    }
}

/// The statement of [`Store::agenda_page`] and its parameters.
///
/// The page's ids are chosen by a subquery that walks one index in (start, id) order from
/// the position on and stops at the limit (checked with EXPLAIN QUERY PLAN on SQLite and
/// EXPLAIN on PostgreSQL at 100,000 rows: a range search on the index, no sort, no scan):
/// - a participant's (`participants_by_user_and_start`: user id, start, teleconsultation
///   id): `external_id = $1` and the start bounds are its range; each row found is then
///   joined to its teleconsultation by primary key for its state and status;
/// - every one (`teleconsultations_live_by_start`, partial on `state = 'active'`: deleted
///   ones are not in it).
///
/// The same as [`AgendaFilter`](crate::domain::agenda::AgendaFilter) decides for a list kept
/// in memory.
///
/// The cursor's `(start, id) > (a, b)` is written `start >= a AND (start > a OR id > b)`:
/// the first term bounds the index range on both backends. The status is decided in SQL as
/// `agenda::status` decides it: `ended` when start + duration <= now; `open` when complete
/// (as many participants as expected) and start − period <= now < end; else `scheduled`.
/// Durations are 5 minutes to 24 hours (`schedule`), so an ended one started at least 5
/// minutes ago and one not ended started at most 24 hours ago: these bounds on the start,
/// implied by the status, narrow the index range to where such teleconsultations can be,
/// so a status page does not walk past years of the others.
fn agenda_page_statement(query: &AgendaPageQuery<'_>) -> (String, Vec<Param>) {
    let mut params = Params::default();
    let (rows, start, id, mut conditions) = match query.scope {
        AgendaScope::All => (
            "teleconsultations s",
            "s.start_at_ms",
            "s.id",
            vec!["s.state = 'active'".to_owned()],
        ),
        AgendaScope::Participant(user) => {
            let user = params.add(Param::Text(user.to_owned()));
            (
                "participants q JOIN teleconsultations s ON s.id = q.teleconsultation_id",
                "q.start_at_ms",
                "q.teleconsultation_id",
                vec![
                    format!("q.external_id = {user}"),
                    "s.state = 'active'".to_owned(),
                ],
            )
        }
    };
    let mut millis = |instant: DateTime<Utc>| params.add(Param::Int(millis_from(instant)));
    if let Some(from) = query.from {
        conditions.push(format!("{start} >= {}", millis(from)));
    }
    if let Some(to) = query.to {
        conditions.push(format!("{start} < {}", millis(to)));
    }
    if let Some(after) = query.after {
        let after_start = millis(after.start);
        let after_id = params.add(Param::Text(after.id.clone()));
        conditions.push(format!(
            "{start} >= {after_start} AND ({start} > {after_start} OR {id} > {after_id})"
        ));
    }
    if let Some(status) = query.status {
        conditions.extend(status_conditions(status, start, &mut params));
    }
    let limit = params.add(Param::Int(i64::from(query.limit)));
    let statement = format!(
        "{SELECT_JOINED} WHERE t.id IN (SELECT {id} FROM {rows} WHERE {} \
         ORDER BY {start}, {id} LIMIT {limit}) ORDER BY t.start_at_ms, t.id, p.position",
        conditions.join(" AND ")
    );
    (statement, params.0)
}

/// The first whole millisecond at or after `instant`: a stored start (whole milliseconds) is
/// at or after `instant` exactly when it is at or after this one, and before it exactly when
/// before this one (a bound given to the microsecond compares as the agenda's filter does).
fn millis_from(instant: DateTime<Utc>) -> i64 {
    let millis = instant.timestamp_millis();
    if instant.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        millis
    } else {
        millis.saturating_add(1)
    }
}

/// The conditions on `s` (a teleconsultation) of having `status.status` at `status.now`;
/// `start` is the indexed start column the page walks.
fn status_conditions(status: StatusAt, start: &str, params: &mut Params) -> Vec<String> {
    const END: &str = "s.start_at_ms + s.duration_secs * 1000";
    const COMPLETE: &str = "(SELECT COUNT(*) FROM participants c \
        WHERE c.teleconsultation_id = s.id) = s.participant_count";
    let now_ms = status.now.timestamp_millis();
    let now = params.add(Param::Int(now_ms));
    let links_due_by = params.add(Param::Int(
        now_ms.saturating_add(i64::try_from(status.immutable_period_ms).unwrap_or(i64::MAX)),
    ));
    let not_ended = |params: &mut Params| {
        let earliest = params.add(Param::Int(
            now_ms.saturating_sub(schedule::MAX_DURATION_SECS * 1000),
        ));
        [format!("{END} > {now}"), format!("{start} > {earliest}")]
    };
    match status.status {
        Status::Ended => {
            let latest = params.add(Param::Int(
                now_ms.saturating_sub(schedule::MIN_DURATION_SECS * 1000),
            ));
            vec![format!("{END} <= {now}"), format!("{start} <= {latest}")]
        }
        Status::Open => {
            let mut conditions = not_ended(params).to_vec();
            conditions.push(format!("{start} <= {links_due_by}"));
            conditions.push(COMPLETE.to_owned());
            conditions
        }
        Status::Scheduled => {
            let mut conditions = not_ended(params).to_vec();
            conditions.push(format!("(NOT ({COMPLETE}) OR {start} > {links_due_by})"));
            conditions
        }
    }
}

type Q<'q, DB> = Query<'q, DB, <DB as Database>::Arguments>;

/// The parameters INSERT_TELECONSULTATION binds.
const INSERT_PARAMETERS: usize = 18;
/// The parameters UPDATE_TELECONSULTATION binds.
const UPDATE_PARAMETERS: usize = 16;

/// `count` placeholders numbered from `$first`, for an `IN (…)` list: `$3, $4, $5`.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ids listed in one statement at most: far below either backend's parameter limit.
const IDS_PER_STATEMENT: usize = 500;

/// `count` rows of `columns` placeholders each, numbered from `$first`: `($1, $2), ($3, $4)`.
fn placeholder_rows(first: usize, count: usize, columns: usize) -> String {
    (0..count)
        .map(|row| format!("({})", placeholders(first + row * columns, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The update of `tc`'s participants' links (there is at least one): `$1` is the record's
/// id, and from `$first` on come a (position, link) pair per participant; `condition` is
/// added to its WHERE.
fn links_update(tc: &Teleconsultation, first: usize, condition: &str) -> String {
    let cases: String = (0..tc.participants.len())
        .map(|i| format!("WHEN ${} THEN ${} ", first + 2 * i, first + 2 * i + 1))
        .collect();
    format!(
        "UPDATE participants SET link = CASE position {cases}ELSE link END \
         WHERE teleconsultation_id = $1{condition}"
    )
}

/// Names the operation a database error happened in (logs say what failed).
pub(super) trait During<T> {
    fn during(self, operation: &'static str) -> StoreResult<T>;
}

impl<T> During<T> for Result<T, sqlx::Error> {
    fn during(self, operation: &'static str) -> StoreResult<T> {
        self.map_err(|source| StoreError::Database { operation, source })
    }
}

/// A unique-key violation becomes `Conflict(what)`; anything else stays a database error.
fn conflict_or(err: sqlx::Error, operation: &'static str, what: &str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what.into()),
        _ => StoreError::Database {
            operation,
            source: err,
        },
    }
}

/// The queries, written once for every backend. (The bounds say that the backend can bind
/// and decode the few types the schema uses; both SQLite and PostgreSQL can.)
impl<DB> SqlStore<DB>
where
    DB: Backend,
    DB::Arguments: IntoArguments<DB>,
    DB::Connection: Migrate,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'r> JoinedRow: FromRow<'r, DB::Row>,
    for<'r> AgendaItemRow: FromRow<'r, DB::Row>,
    for<'r> KaleyraUserRow: FromRow<'r, DB::Row>,
    for<'r> RoomDeletionRow: FromRow<'r, DB::Row>,
    for<'r> InstallationRow: FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (Option<String>,): FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> (i64, i64, i64): FromRow<'r, DB::Row>,
    for<'r> (String, i64, String): FromRow<'r, DB::Row>,
{
    /// Binds the parameters of [`insert_event`] to `query`'s next ones.
    fn bind_event<'q>(query: Q<'q, DB>, event: &NewEvent) -> Q<'q, DB> {
        query
            .bind(event.webhook_id.clone())
            .bind(event.teleconsultation_id.clone())
            .bind(event.event_type.clone())
            .bind(event.body.clone())
            .bind(event.due_at.timestamp_millis())
            .bind(event.created_at.timestamp_millis())
    }

    /// `events`' rows bound after what `query` binds already.
    fn bind_events<'q>(mut query: Q<'q, DB>, events: &[NewEvent]) -> Q<'q, DB> {
        for event in events {
            query = Self::bind_event(query, event);
        }
        query
    }

    /// Stores `events` in one statement of a change's write transaction.
    async fn insert_events_of_change(
        conn: &mut DB::Connection,
        events: &[NewEvent],
        operation: &'static str,
    ) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let query = sqlx::query(AssertSqlSafe(insert_events(1, events.len())));
        Self::bind_events(query, events)
            .execute(&mut *conn)
            .await
            .map_err(|err| conflict_or(err, operation, "an event's webhook id"))?;
        Ok(())
    }

    /// Settles an attempt at event `id` by a [`settle_event`] `statement` whose $4 is `at`,
    /// if `owner` holds its lease; whether it did.
    async fn settle_event_at(
        &self,
        operation: &'static str,
        statement: String,
        id: i64,
        owner: &str,
        answer: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (statement, owner, answer) = (
            Arc::<str>::from(statement),
            Arc::<str>::from(owner),
            Arc::<str>::from(answer),
        );
        self.write_alone(operation, move |conn| {
            let (statement, owner, answer) = (
                Arc::clone(&statement),
                Arc::clone(&owner),
                Arc::clone(&answer),
            );
            Box::pin(async move {
                let settled: Option<(String,)> =
                    sqlx::query_as(AssertSqlSafe(statement.to_string()))
                        .bind(id)
                        .bind(owner.to_string())
                        .bind(answer.to_string())
                        .bind(at.timestamp_millis())
                        .fetch_optional(&mut *conn)
                        .await
                        .during(operation)?;
                Ok(settled.is_some())
            })
        })
        .await
    }

    async fn begin_write(
        &self,
        operation: &'static str,
    ) -> StoreResult<sqlx::Transaction<'static, DB>> {
        self.writer
            .begin_with(DB::BEGIN_WRITE)
            .await
            .during(operation)
    }

    /// Binds $1..$15 of INSERT_TELECONSULTATION / UPDATE_TELECONSULTATION.
    fn bind_teleconsultation<'q>(query: Q<'q, DB>, tc: &Teleconsultation) -> Q<'q, DB> {
        query
            .bind(tc.id.clone())
            .bind(tc.version)
            .bind(state_text(tc.state).to_owned())
            .bind(i64::from(tc.participant_count))
            .bind(tc.start.timestamp_millis())
            .bind(tc.duration_secs)
            .bind(tc.room_id.clone())
            .bind(tc.created_at.timestamp_millis())
            .bind(tc.updated_at.timestamp_millis())
            .bind(tc.created_by.clone())
            .bind(tc.updated_by.clone())
            .bind(tc.desired_room.as_ref().map(room_spec_json))
            .bind(
                tc.desired_room
                    .as_ref()
                    .map(|spec| spec.fingerprint().to_owned()),
            )
            .bind(tc.room_fingerprint.clone())
            .bind(tc.provision_due_at.map(|at| at.timestamp_millis()))
    }

    /// The parameters of INSERT_TELECONSULTATION: the record, the lease ($16, $17) and the
    /// creation mark ($18).
    fn bind_new<'q>(
        query: Q<'q, DB>,
        tc: &Teleconsultation,
        lease: Option<&Lease>,
        creating: Option<&RoomAttempt>,
    ) -> Q<'q, DB> {
        Self::bind_teleconsultation(query, tc)
            .bind(lease.map(|lease| lease.owner.clone()))
            .bind(lease.map(|lease| lease.until.timestamp_millis()))
            .bind(creating.map(|attempt| attempt.fingerprint.clone()))
    }

    /// Records `attempt` for teleconsultation `id` (a statement of a write transaction).
    async fn record_attempt(
        conn: &mut DB::Connection,
        id: &str,
        attempt: &RoomAttempt,
        operation: &'static str,
    ) -> StoreResult<()> {
        sqlx::query(AssertSqlSafe(insert_attempt("$1", "$2", "$3", "$4")))
            .bind(attempt.id.clone())
            .bind(id.to_owned())
            .bind(attempt.fingerprint.clone())
            .bind(attempt.at.timestamp_millis())
            .execute(&mut *conn)
            .await
            .during(operation)?;
        Ok(())
    }

    /// Makes booking `id` the answer of `key`'s idempotency key (a statement of the
    /// booking's transaction); `KeyLost` when the claim no longer holds the key.
    async fn answer_key_with_booking(
        conn: &mut DB::Connection,
        key: &KeyClaim,
        id: &str,
    ) -> StoreResult<()> {
        let answered: Option<(String,)> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE idempotency_keys SET teleconsultation_id = $4, {ANSWERED} {HELD_BY_CLAIM} \
             RETURNING scope"
        )))
        .bind(key.scope.clone())
        .bind(key.key.clone())
        .bind(key.owner.clone())
        .bind(id.to_owned())
        .fetch_optional(&mut *conn)
        .await
        .during("keeping a booking as its idempotency key's answer")?;
        answered.map(|_| ()).ok_or(StoreError::KeyLost)
    }

    /// All participants in one statement (each statement is a round trip; on SQLite, to the
    /// connection's thread).
    async fn insert_participants(
        conn: &mut DB::Connection,
        tc: &Teleconsultation,
        operation: &'static str,
    ) -> StoreResult<()> {
        if tc.participants.is_empty() {
            return Ok(());
        }
        let rows = placeholder_rows(1, tc.participants.len(), PARTICIPANT_COLUMNS);
        let query = sqlx::query(AssertSqlSafe(format!("{INSERT_PARTICIPANTS}{rows}")));
        Self::bind_participants(query, tc)
            .execute(&mut *conn)
            .await
            .map_err(|e| conflict_or(e, operation, &format!("a participant of {}", tc.id)))?;
        Ok(())
    }

    /// The rows of INSERT_PARTICIPANTS, bound after what `query` binds already.
    fn bind_participants<'q>(mut query: Q<'q, DB>, tc: &Teleconsultation) -> Q<'q, DB> {
        for (position, p) in tc.participants.iter().enumerate() {
            query = query
                .bind(tc.id.clone())
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .bind(p.external_id.clone())
                .bind(p.kaleyra_user_id.clone())
                .bind(role_text(p.role).to_owned())
                .bind(groups_json(&p.groups))
                .bind(p.full_name.clone())
                .bind(p.language.clone())
                .bind(p.link.clone())
                .bind(tc.start.timestamp_millis());
        }
        query
    }

    /// Writes the participants' links of `tc` (the rest of each participant is as stored:
    /// a room was recorded for this very version), in one statement.
    async fn write_links(
        conn: &mut DB::Connection,
        tc: &Teleconsultation,
        operation: &'static str,
    ) -> StoreResult<()> {
        if tc.participants.is_empty() {
            return Ok(());
        }
        let query = sqlx::query(AssertSqlSafe(links_update(tc, 2, ""))).bind(tc.id.clone());
        Self::bind_links(query, tc)
            .execute(&mut *conn)
            .await
            .during(operation)?;
        Ok(())
    }

    /// The (position, link) parameters of [`links_update`], bound after what `query` binds.
    fn bind_links<'q>(mut query: Q<'q, DB>, tc: &Teleconsultation) -> Q<'q, DB> {
        for (position, p) in tc.participants.iter().enumerate() {
            query = query
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .bind(p.link.clone());
        }
        query
    }

    async fn retire<'e>(
        executor: impl Executor<'e, Database = DB>,
        room_id: &str,
        teleconsultation_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(RETIRE_ROOM)
            .bind(room_id.to_owned())
            .bind(teleconsultation_id.map(str::to_owned))
            .bind(at.timestamp_millis())
            .execute(executor)
            .await
            .during("retiring a room")?;
        Ok(())
    }

    /// Announces `change` to other instances (where the backend does) in the transaction of
    /// `conn`.
    async fn announce(
        conn: &mut DB::Connection,
        change: &Change,
        operation: &'static str,
    ) -> StoreResult<()> {
        if let Some(announce) = DB::announce_change("$1") {
            sqlx::query(AssertSqlSafe(announce))
                .bind(change.announcement())
                .execute(&mut *conn)
                .await
                .during(operation)?;
        }
        Ok(())
    }

    /// The insert of [`Store::insert_teleconsultation`]. It is announced (the new one enters
    /// its participants' agenda lists), and forgotten here, whatever the outcome.
    async fn insert(
        &self,
        tc: &Teleconsultation,
        lease: Option<&Lease>,
        creating: Option<&RoomAttempt>,
        key: Option<&KeyClaim>,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        const OPERATION: &str = "inserting a teleconsultation";
        let change = Change::of(tc);
        if DB::ONE_STATEMENT_WRITES {
            return self
                .insert_in_one_statement(tc, lease, creating, key, events, &change)
                .await;
        }
        let tc = Arc::new(tc.clone());
        let lease = lease.cloned();
        let creating = creating.cloned();
        let key = key.cloned();
        let events: Arc<[NewEvent]> = events.into();
        let change = Arc::new(change);
        let read_cache = Arc::clone(&self.read_cache);
        let forget = {
            let change = Arc::clone(&change);
            move || read_cache.forget(&change)
        };
        self.in_write_transaction(
            OPERATION,
            move |conn| {
                let (tc, lease, creating, key, events, change) = (
                    Arc::clone(&tc),
                    lease.clone(),
                    creating.clone(),
                    key.clone(),
                    Arc::clone(&events),
                    Arc::clone(&change),
                );
                Box::pin(async move {
                    if let Some(key) = &key {
                        Self::answer_key_with_booking(conn, key, &tc.id).await?;
                    }
                    Self::bind_new(
                        sqlx::query(INSERT_TELECONSULTATION),
                        &tc,
                        lease.as_ref(),
                        creating.as_ref(),
                    )
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| {
                        conflict_or(e, OPERATION, &format!("teleconsultation {}", tc.id))
                    })?;
                    if let Some(attempt) = &creating {
                        Self::record_attempt(conn, &tc.id, attempt, OPERATION).await?;
                    }
                    Self::insert_participants(conn, &tc, OPERATION).await?;
                    Self::insert_events_of_change(conn, &events, OPERATION).await?;
                    Self::announce(conn, &change, OPERATION).await
                })
            },
            forget,
        )
        .await
    }

    /// [`Self::insert`] in one statement (`ONE_STATEMENT_WRITES`): every write is a CTE
    /// (each runs, whatever the main statement reads), and the main statement reads the
    /// announcement: no round trip more, but notifying commits queue their notifications
    /// under one lock of the server, as updates did already. With an idempotency key, the
    /// first write makes the booking the key's answer while the claim holds it, and every
    /// other write reads from it: under a key taken over, nothing is written (`KeyLost`).
    /// After the record's $1..$18 come the participants' rows, the attempt's id and time,
    /// the events' rows, the key's scope, key and holder, and the announcement's payload;
    /// the attempt's record reuses the id ($1) and the creation mark's fingerprint ($18).
    async fn insert_in_one_statement(
        &self,
        tc: &Teleconsultation,
        lease: Option<&Lease>,
        creating: Option<&RoomAttempt>,
        key: Option<&KeyClaim>,
        events: &[NewEvent],
        change: &Change,
    ) -> StoreResult<()> {
        const OPERATION: &str = "inserting a teleconsultation";
        let gate = |insert: String| match key {
            Some(_) => only_if(&insert, "answered"),
            None => insert,
        };
        let mut next = INSERT_PARAMETERS + tc.participants.len() * PARTICIPANT_COLUMNS + 1;
        let mut writes = vec![format!(
            "inserted AS ({})",
            gate(INSERT_TELECONSULTATION.to_owned())
        )];
        if !tc.participants.is_empty() {
            let rows = placeholder_rows(
                INSERT_PARAMETERS + 1,
                tc.participants.len(),
                PARTICIPANT_COLUMNS,
            );
            writes.push(format!(
                "participants_inserted AS ({})",
                gate(format!("{INSERT_PARTICIPANTS}{rows}"))
            ));
        }
        if creating.is_some() {
            let (id, at) = (format!("${next}"), format!("${}", next + 1));
            writes.push(format!(
                "attempt AS ({})",
                gate(insert_attempt(&id, "$1", "$18", &at))
            ));
            next += 2;
        }
        if !events.is_empty() {
            writes.push(format!(
                "events_inserted AS ({})",
                gate(insert_events(next, events.len()))
            ));
            next += events.len() * EVENT_COLUMNS;
        }
        if key.is_some() {
            writes.insert(
                0,
                format!(
                    "answered AS (UPDATE idempotency_keys SET teleconsultation_id = $1, \
                     {ANSWERED} WHERE scope = ${next} AND idempotency_key = ${} \
                     AND owner = ${} RETURNING 1)",
                    next + 1,
                    next + 2
                ),
            );
            next += 3;
        }
        let announce = DB::announce_change(&format!("${next}"));
        let main = match (key, &announce) {
            (None, Some(announce)) => announce.clone(),
            (None, None) => "SELECT 1".to_owned(),
            // Announced only when written; the count says whether it was.
            (Some(_), Some(announce)) => {
                writes.push(format!("announced AS ({announce} FROM answered)"));
                "SELECT COUNT(*) FROM answered, announced".to_owned()
            }
            (Some(_), None) => "SELECT COUNT(*) FROM answered".to_owned(),
        };
        let statement = format!("WITH {} {main}", writes.join(", "));
        let query = Self::bind_new(sqlx::query(AssertSqlSafe(statement)), tc, lease, creating);
        let mut query = Self::bind_participants(query, tc);
        if let Some(attempt) = creating {
            query = query
                .bind(attempt.id.clone())
                .bind(attempt.at.timestamp_millis());
        }
        query = Self::bind_events(query, events);
        if let Some(key) = key {
            query = query
                .bind(key.scope.clone())
                .bind(key.key.clone())
                .bind(key.owner.clone());
        }
        if announce.is_some() {
            query = query.bind(change.announcement());
        }
        let inserted = query
            .fetch_one(&self.writer)
            .await
            .map_err(|e| conflict_or(e, OPERATION, &format!("teleconsultation {}", tc.id)));
        self.read_cache.forget(change);
        let row = inserted?;
        if key.is_some() {
            let (answered,) = <(i64,)>::from_row(&row).during(OPERATION)?;
            if answered == 0 {
                return Err(StoreError::KeyLost);
            }
        }
        Ok(())
    }

    /// The update of [`Store::update_teleconsultation`]; with `holder`, also the end of the
    /// room creation of [`Store::record_room`]. The kept read of `tc`, and the agenda lists
    /// it touches, are forgotten whatever the outcome (a failed commit may still have
    /// applied).
    async fn update(
        &self,
        tc: &Teleconsultation,
        retired_rooms: &[String],
        holder: Option<&str>,
        events: &[NewEvent],
    ) -> StoreResult<i64> {
        const OPERATION: &str = "updating a teleconsultation";
        let change = Arc::new(Change::of(tc));
        if let Some(owner) = holder.filter(|_| DB::ONE_STATEMENT_WRITES) {
            let recorded = self
                .record_in_one_statement(tc, retired_rooms, owner, events, &change)
                .await;
            self.read_cache.forget(&change);
            return recorded;
        }
        let tc = Arc::new(tc.clone());
        let retired_rooms: Arc<[String]> = retired_rooms.into();
        let events: Arc<[NewEvent]> = events.into();
        let holder = holder.map(str::to_owned);
        let read_cache = Arc::clone(&self.read_cache);
        let forget = {
            let change = Arc::clone(&change);
            move || read_cache.forget(&change)
        };
        self.in_write_transaction(
            OPERATION,
            move |conn| {
                let (tc, retired_rooms, holder, events, change) = (
                    Arc::clone(&tc),
                    Arc::clone(&retired_rooms),
                    holder.clone(),
                    Arc::clone(&events),
                    Arc::clone(&change),
                );
                Box::pin(async move {
                    let updated =
                        Self::bind_teleconsultation(sqlx::query(UPDATE_TELECONSULTATION), &tc)
                            .bind(holder.clone())
                            .fetch_optional(&mut *conn)
                            .await
                            .during(OPERATION)?;
                    if updated.is_none() {
                        return Err(Self::not_updated(&mut *conn, &tc.id, OPERATION).await);
                    }
                    if holder.is_some() {
                        Self::write_links(conn, &tc, OPERATION).await?;
                    } else {
                        sqlx::query(DELETE_PARTICIPANTS)
                            .bind(tc.id.clone())
                            .execute(&mut *conn)
                            .await
                            .during(OPERATION)?;
                        Self::insert_participants(conn, &tc, OPERATION).await?;
                    }
                    for room_id in retired_rooms.iter() {
                        Self::retire(&mut *conn, room_id, Some(&tc.id), tc.updated_at).await?;
                    }
                    Self::insert_events_of_change(conn, &events, OPERATION).await?;
                    Self::announce(conn, &change, OPERATION).await?;
                    Ok(tc.version + 1)
                })
            },
            forget,
        )
        .await
    }

    /// [`Store::record_room`] in one statement (where [`Backend::ONE_STATEMENT_WRITES`]):
    /// the record's update, its links, the retired rooms queued, its events stored and the
    /// change announced, all or nothing.
    async fn record_in_one_statement(
        &self,
        tc: &Teleconsultation,
        retired_rooms: &[String],
        owner: &str,
        events: &[NewEvent],
        change: &Change,
    ) -> StoreResult<i64> {
        const OPERATION: &str = "recording a room";
        // $1..$16 the update, then the links, then the retired rooms' time and ids, then the
        // events' rows, then the announcement's payload.
        let retired_at = UPDATE_PARAMETERS + 2 * tc.participants.len() + 1;
        let first_event = retired_at + retired_rooms.len() + 1;
        let announcement = first_event + events.len() * EVENT_COLUMNS;
        let mut statement = format!("WITH updated AS ({UPDATE_TELECONSULTATION})");
        if !tc.participants.is_empty() {
            let links = links_update(
                tc,
                UPDATE_PARAMETERS + 1,
                " AND EXISTS (SELECT 1 FROM updated)",
            );
            statement += &format!(", links AS ({links})");
        }
        for n in 1..=retired_rooms.len() {
            statement += &format!(
                concat!(
                    ", retired{n} AS (",
                    retire_room!("SELECT ${room}, $1, ${at}, 0, ${at} FROM updated"),
                    ")"
                ),
                n = n,
                room = retired_at + n,
                at = retired_at
            );
        }
        if !events.is_empty() {
            let insert = only_if(&insert_events(first_event, events.len()), "updated");
            statement += &format!(", events_inserted AS ({insert})");
        }
        let announce = DB::announce_change(&format!("${announcement}"));
        statement += &match &announce {
            Some(announce) => format!(
                ", announced AS ({announce} FROM updated) SELECT version FROM updated, announced"
            ),
            None => " SELECT version FROM updated".to_owned(),
        };
        let query = Self::bind_teleconsultation(sqlx::query(AssertSqlSafe(statement)), tc)
            .bind(Some(owner.to_owned()));
        let mut query = Self::bind_links(query, tc).bind(tc.updated_at.timestamp_millis());
        for room_id in retired_rooms {
            query = query.bind(room_id.clone());
        }
        query = Self::bind_events(query, events);
        if announce.is_some() {
            query = query.bind(change.announcement());
        }
        if query
            .fetch_optional(&self.writer)
            .await
            .during(OPERATION)?
            .is_some()
        {
            return Ok(tc.version + 1);
        }
        Err(Self::not_updated(&self.readers, &tc.id, OPERATION).await)
    }

    /// Why an update of teleconsultation `id` under a version check changed nothing:
    /// `StaleVersion` when the record exists (changed meanwhile), else `NotFound`.
    async fn not_updated<'e>(
        executor: impl Executor<'e, Database = DB>,
        id: &str,
        operation: &'static str,
    ) -> StoreError {
        match sqlx::query(TELECONSULTATION_EXISTS)
            .bind(id.to_owned())
            .fetch_optional(executor)
            .await
        {
            Ok(Some(_)) => StoreError::StaleVersion,
            Ok(None) => StoreError::NotFound,
            Err(source) => StoreError::Database { operation, source },
        }
    }

    /// Runs `write` in a write transaction and commits it: grouped with concurrent writes
    /// where the database has one writer ([`GroupCommit`]), else a transaction of its own.
    /// The work is owned (`'static`): a grouped write runs on the writer's task. `after`
    /// runs once the outcome is known, whatever it is (a failed commit may still have
    /// applied).
    async fn in_write_transaction<T: Send + 'static>(
        &self,
        operation: &'static str,
        write: impl WriteWork<DB, T>,
        after: impl FnOnce() + Send + 'static,
    ) -> StoreResult<T> {
        if let Some(group) = &self.group_commit {
            return group.write(operation, write, after).await;
        }
        let written = async {
            let mut tx = self.begin_write(operation).await?;
            let written = write(&mut tx).await?;
            tx.commit().await.during(operation)?;
            Ok(written)
        }
        .await;
        after();
        written
    }

    /// A write of its own (its statements in autocommit, or in a transaction where the
    /// database has one writer): grouped with concurrent writes on SQLite ([`GroupCommit`],
    /// one commit's fsync shared), else straight on a writer connection, with no
    /// `BEGIN`/`COMMIT` round trips for what needs no transaction.
    async fn write_alone<T: Send + 'static>(
        &self,
        operation: &'static str,
        write: impl WriteWork<DB, T>,
    ) -> StoreResult<T> {
        if let Some(group) = &self.group_commit {
            return group.write(operation, write, || {}).await;
        }
        let mut connection = self.writer.acquire().await.during(operation)?;
        write(&mut connection).await
    }

    /// Runs `delete` (a `DELETE … RETURNING` of at most [`PRUNE_BATCH`] rows older than
    /// `$1` = `before`) until it deletes fewer: each batch a short write of its own, so a
    /// backlog never makes one statement that outlasts the statement timeout or holds
    /// SQLite's writer for long.
    async fn delete_in_batches(
        &self,
        operation: &'static str,
        delete: String,
        before: DateTime<Utc>,
    ) -> StoreResult<()> {
        let delete: Arc<str> = delete.into();
        let before = before.timestamp_millis();
        loop {
            let delete = Arc::clone(&delete);
            let deleted = self
                .write_alone(operation, move |conn| {
                    let delete = Arc::clone(&delete);
                    Box::pin(async move {
                        let deleted: Vec<(i64,)> =
                            sqlx::query_as(AssertSqlSafe(delete.to_string()))
                                .bind(before)
                                .fetch_all(&mut *conn)
                                .await
                                .during(operation)?;
                        Ok(deleted.len())
                    })
                })
                .await?;
            if deleted < PRUNE_BATCH {
                return Ok(());
            }
        }
    }

    /// A connection of its own on which the request's timeouts are lifted
    /// ([`Backend::MIGRATION_SESSION`]), for work that may rightly take longer than a
    /// request's statements: the migrations, adopting a database. Its session settings stay
    /// with it: it is closed after, never reused by requests. `None` where the backend has
    /// no such timeouts to lift (SQLite: no statement timeout).
    async fn connection_without_timeouts(
        &self,
        operation: &'static str,
    ) -> StoreResult<Option<PoolConnection<DB>>> {
        let Some(session) = DB::MIGRATION_SESSION else {
            return Ok(None);
        };
        let mut connection = self.writer.acquire().await.during(operation)?;
        connection.close_on_drop();
        sqlx::raw_sql(session)
            .execute(&mut *connection)
            .await
            .during(operation)?;
        Ok(Some(connection))
    }

    /// [`Self::in_write_transaction`] on a [connection without the request's
    /// timeouts](Self::connection_without_timeouts), where the backend has them: for a
    /// write over whole tables, which may rightly take longer than a request's.
    async fn in_unbounded_write_transaction<T: Send + 'static>(
        &self,
        operation: &'static str,
        write: impl WriteWork<DB, T>,
        after: impl FnOnce() + Send + 'static,
    ) -> StoreResult<T> {
        let Some(mut connection) = self.connection_without_timeouts(operation).await? else {
            return self.in_write_transaction(operation, write, after).await;
        };
        let written = async {
            let mut tx = connection
                .begin_with(DB::BEGIN_WRITE)
                .await
                .during(operation)?;
            let written = write(&mut tx).await?;
            tx.commit().await.during(operation)?;
            Ok(written)
        }
        .await;
        after();
        written
    }

    /// The teleconsultations `ids` as [`Store::get_teleconsultation_cached`] reads them, in
    /// that order (`None` for an id that names none): from memory, and those not kept read
    /// in one statement (and kept).
    async fn cached_records(
        &self,
        ids: &[&str],
    ) -> StoreResult<Vec<Option<Arc<Teleconsultation>>>> {
        let mut records: Vec<Option<Arc<Teleconsultation>>> =
            ids.iter().map(|id| self.read_cache.get(id)).collect();
        let missing: Vec<&str> = ids
            .iter()
            .zip(&records)
            .filter(|(_, record)| record.is_none())
            .map(|(id, _)| *id)
            .collect();
        if missing.is_empty() {
            return Ok(records);
        }
        let ticket = self.read_cache.ticket();
        let list = placeholder_rows(1, 1, missing.len());
        let mut query = sqlx::query_as::<DB, JoinedRow>(AssertSqlSafe(format!(
            "{SELECT_JOINED} WHERE t.id IN {list} ORDER BY t.id, p.position"
        )));
        for id in missing {
            query = query.bind(id.to_owned());
        }
        let read = query
            .fetch_all(&self.readers)
            .await
            .during("reading teleconsultations")?;
        for tc in assemble(read)? {
            let tc = Arc::new(tc);
            self.read_cache.keep(ticket, Arc::clone(&tc));
            if let Some(record) = ids
                .iter()
                .zip(records.iter_mut())
                .find_map(|(id, record)| (*id == tc.id).then_some(record))
            {
                *record = Some(tc);
            }
        }
        Ok(records)
    }

    /// [`Store::agenda_page`] of `participant` from its agenda list kept in memory (read and
    /// kept when it is not), with the records of the read cache. `None` when the page is to
    /// be read by SQL: changes are not followed, the list is too long to keep, or a record
    /// is newer than the list (it no longer is the list's item, live, with the participant:
    /// a change not heard of yet).
    async fn agenda_page_from_memory(
        &self,
        participant: &str,
        query: &AgendaPageQuery<'_>,
    ) -> StoreResult<Option<Vec<Arc<Teleconsultation>>>> {
        let items = match self.read_cache.agenda(participant) {
            AgendaLookup::Kept(AgendaList::Items(items)) => items,
            AgendaLookup::Kept(AgendaList::TooLong) | AgendaLookup::NotServed => return Ok(None),
            AgendaLookup::NotKept => {
                let ticket = self.read_cache.ticket();
                let read = self.agenda_items(participant).await?;
                match self.read_cache.keep_agenda(ticket, participant, read) {
                    AgendaList::Items(items) => items,
                    AgendaList::TooLong => return Ok(None),
                }
            }
        };
        let page: Vec<&AgendaItem> = query.filter().page(&items, query.limit as usize).collect();
        let ids: Vec<&str> = page.iter().map(|item| item.id.as_str()).collect();
        let records = self.cached_records(&ids).await?;
        let mut answer = Vec::with_capacity(records.len());
        for (item, record) in page.into_iter().zip(records) {
            match record {
                Some(tc)
                    if tc.is_live()
                        && item.describes(&tc)
                        && tc.participant(participant).is_some() =>
                {
                    answer.push(tc);
                }
                _ => {
                    self.read_cache.drop_agenda(participant);
                    return Ok(None);
                }
            }
        }
        Ok(Some(answer))
    }

    /// `participant`'s live teleconsultations as its agenda list reads them: one more than
    /// [`LONGEST_KEPT`] at most (enough to tell a list too long to keep).
    async fn agenda_items(&self, participant: &str) -> StoreResult<Vec<AgendaItem>> {
        let rows: Vec<AgendaItemRow> = sqlx::query_as(SELECT_AGENDA_ITEMS)
            .bind(participant.to_owned())
            .bind(i64::try_from(LONGEST_KEPT + 1).unwrap_or(i64::MAX))
            .fetch_all(&self.readers)
            .await
            .during("reading a participant's agenda")?;
        rows.into_iter().map(agenda_item).collect()
    }

    async fn select_joined(
        &self,
        operation: &'static str,
        filter: &str,
        param: &str,
        limit: Option<u32>,
    ) -> StoreResult<Vec<Teleconsultation>> {
        let mut query =
            sqlx::query_as::<DB, JoinedRow>(AssertSqlSafe(format!("{SELECT_JOINED} {filter}")))
                .bind(param.to_owned());
        if let Some(limit) = limit {
            query = query.bind(i64::from(limit));
        }
        assemble(query.fetch_all(&self.readers).await.during(operation)?)
    }
}

#[async_trait]
impl<DB> Store for SqlStore<DB>
where
    DB: Backend,
    DB::Arguments: IntoArguments<DB>,
    DB::Connection: Migrate,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'r> JoinedRow: FromRow<'r, DB::Row>,
    for<'r> AgendaItemRow: FromRow<'r, DB::Row>,
    for<'r> KaleyraUserRow: FromRow<'r, DB::Row>,
    for<'r> RoomDeletionRow: FromRow<'r, DB::Row>,
    for<'r> KeptKeyRow: FromRow<'r, DB::Row>,
    for<'r> InstallationRow: FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (Option<String>,): FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> (i64, i64, i64): FromRow<'r, DB::Row>,
    for<'r> (String, i64, String): FromRow<'r, DB::Row>,
    for<'r> (i64, Option<i64>): FromRow<'r, DB::Row>,
    for<'r> (i64, i64): FromRow<'r, DB::Row>,
    for<'r> (i64, String): FromRow<'r, DB::Row>,
    for<'r> ClaimedEventRow: FromRow<'r, DB::Row>,
    for<'r> FailedEventRow: FromRow<'r, DB::Row>,
    for<'r> StoredEventRow: FromRow<'r, DB::Row>,
{
    fn backend(&self) -> &'static str {
        DB::LABEL
    }

    /// On PostgreSQL, sqlx takes an advisory lock around the migrations, so instances that
    /// start together apply them once.
    async fn migrate(&self) -> StoreResult<()> {
        let Some(mut connection) = self
            .connection_without_timeouts("applying the migrations")
            .await?
        else {
            DB::migrator().run(&self.writer).await?;
            return Ok(());
        };
        DB::migrator()
            .run_direct(None, &mut *connection, false)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query(DB::PING)
            .execute(&self.readers)
            .await
            .during("checking the database answers")?;
        Ok(())
    }

    async fn installation(&self, candidate: &Installation) -> StoreResult<Installation> {
        const OPERATION: &str = "reading the installation";
        sqlx::query(
            "INSERT INTO installation (id, mode, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (singleton) DO NOTHING",
        )
        .bind(candidate.id.clone())
        .bind(mode_text(candidate.mode).to_owned())
        .bind(candidate.created_at.timestamp_millis())
        .execute(&self.writer)
        .await
        .during(OPERATION)?;
        let row: InstallationRow =
            sqlx::query_as("SELECT id, mode, created_at_ms FROM installation")
                .fetch_one(&self.writer)
                .await
                .during(OPERATION)?;
        installation(row)
    }

    async fn existing_installation(&self) -> StoreResult<Option<Installation>> {
        let row: Option<InstallationRow> =
            sqlx::query_as("SELECT id, mode, created_at_ms FROM installation")
                .fetch_optional(&self.readers)
                .await
                .during("reading the installation")?;
        row.map(installation).transpose()
    }

    async fn insert_teleconsultation(
        &self,
        tc: &Teleconsultation,
        lease: Option<&Lease>,
        creating: Option<&RoomAttempt>,
        key: Option<&KeyClaim>,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        self.insert(tc, lease, creating, key, events).await
    }

    async fn claim_idempotency_key(&self, claim: &KeyClaim) -> StoreResult<Option<KeptKey>> {
        const OPERATION: &str = "claiming an idempotency key";
        let claim = Arc::new(claim.clone());
        // The key may be freed between the claim and the read (its request failed): then
        // it is claimed again.
        for _ in 0..3 {
            let claim = Arc::clone(&claim);
            let read = self
                .write_alone(OPERATION, move |conn| {
                    let claim = Arc::clone(&claim);
                    Box::pin(async move {
                        let claimed: Option<(Option<String>,)> =
                            sqlx::query_as(CLAIM_IDEMPOTENCY_KEY)
                                .bind(claim.scope.clone())
                                .bind(claim.key.clone())
                                .bind(claim.fingerprint.clone())
                                .bind(claim.owner.clone())
                                .bind(claim.until.timestamp_millis())
                                .bind(claim.at.timestamp_millis())
                                .bind((claim.at - KEPT_FOR).timestamp_millis())
                                .fetch_optional(&mut *conn)
                                .await
                                .during(OPERATION)?;
                        if claimed.is_some() {
                            return Ok(KeyRead::Held);
                        }
                        let kept: Option<KeptKeyRow> = sqlx::query_as(
                            "SELECT fingerprint, lease_until_ms, teleconsultation_id, \
                             answer_status, answer_body FROM idempotency_keys \
                             WHERE scope = $1 AND idempotency_key = $2",
                        )
                        .bind(claim.scope.clone())
                        .bind(claim.key.clone())
                        .fetch_optional(&mut *conn)
                        .await
                        .during(OPERATION)?;
                        Ok(kept.map_or(KeyRead::Gone, KeyRead::Kept))
                    })
                })
                .await?;
            match read {
                KeyRead::Held => return Ok(None),
                KeyRead::Kept(kept) => return kept_key(kept).map(Some),
                KeyRead::Gone => {}
            }
        }
        Err(StoreError::KeyLost)
    }

    async fn keep_refusal(&self, claim: &KeyClaim, status: u16, body: &str) -> StoreResult<()> {
        const OPERATION: &str = "keeping a refusal as its idempotency key's answer";
        let (claim, body) = (Arc::new(claim.clone()), Arc::<str>::from(body));
        self.write_alone(OPERATION, move |conn| {
            let (claim, body) = (Arc::clone(&claim), Arc::clone(&body));
            Box::pin(async move {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE idempotency_keys SET answer_status = $4, answer_body = $5, \
                     {ANSWERED} {HELD_BY_CLAIM}"
                )))
                .bind(claim.scope.clone())
                .bind(claim.key.clone())
                .bind(claim.owner.clone())
                .bind(i64::from(status))
                .bind(body.to_string())
                .execute(&mut *conn)
                .await
                .during(OPERATION)?;
                Ok(())
            })
        })
        .await
    }

    async fn release_idempotency_key(&self, claim: &KeyClaim) -> StoreResult<()> {
        const OPERATION: &str = "freeing an idempotency key";
        let claim = Arc::new(claim.clone());
        self.write_alone(OPERATION, move |conn| {
            let claim = Arc::clone(&claim);
            Box::pin(async move {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM idempotency_keys {HELD_BY_CLAIM}"
                )))
                .bind(claim.scope.clone())
                .bind(claim.key.clone())
                .bind(claim.owner.clone())
                .execute(&mut *conn)
                .await
                .during(OPERATION)?;
                Ok(())
            })
        })
        .await
    }

    /// In batches ([`Self::delete_in_batches`]).
    async fn prune_idempotency_keys(&self, before: DateTime<Utc>) -> StoreResult<()> {
        self.delete_in_batches(
            "deleting expired idempotency keys",
            format!(
                "DELETE FROM idempotency_keys WHERE (scope, idempotency_key) IN \
                 (SELECT scope, idempotency_key FROM idempotency_keys \
                  WHERE created_at_ms <= $1 LIMIT {PRUNE_BATCH}) \
                 RETURNING created_at_ms"
            ),
            before,
        )
        .await
    }

    async fn get_teleconsultation(&self, id: &str) -> StoreResult<Option<Teleconsultation>> {
        Ok(self
            .select_joined(
                "reading a teleconsultation",
                "WHERE t.id = $1 ORDER BY p.position",
                id,
                None,
            )
            .await?
            .pop())
    }

    async fn get_teleconsultation_cached(
        &self,
        id: &str,
    ) -> StoreResult<Option<Arc<Teleconsultation>>> {
        // The join's polls: nothing allocated when it is kept.
        if let Some(kept) = self.read_cache.get(id) {
            return Ok(Some(kept));
        }
        Ok(self.cached_records(&[id]).await?.pop().flatten())
    }

    async fn update_teleconsultation(
        &self,
        tc: &Teleconsultation,
        retired_rooms: &[String],
        events: &[NewEvent],
    ) -> StoreResult<i64> {
        self.update(tc, retired_rooms, None, events).await
    }

    async fn record_room(
        &self,
        tc: &Teleconsultation,
        retired_rooms: &[String],
        owner: &str,
        events: &[NewEvent],
    ) -> StoreResult<i64> {
        self.update(tc, retired_rooms, Some(owner), events).await
    }

    async fn list_teleconsultations_by_participant(
        &self,
        external_id: &str,
    ) -> StoreResult<Vec<Teleconsultation>> {
        self.select_joined(
            "listing a participant's teleconsultations",
            "WHERE t.state = 'active' AND t.id IN \
             (SELECT teleconsultation_id FROM participants WHERE external_id = $1) \
             ORDER BY t.created_at_ms, t.id, p.position",
            external_id,
            None,
        )
        .await
    }

    async fn agenda_page(
        &self,
        query: &AgendaPageQuery<'_>,
    ) -> StoreResult<Vec<Arc<Teleconsultation>>> {
        if let AgendaScope::Participant(participant) = query.scope
            && let Some(page) = self.agenda_page_from_memory(participant, query).await?
        {
            return Ok(page);
        }
        let (statement, params) = agenda_page_statement(query);
        let mut query = sqlx::query_as::<DB, JoinedRow>(AssertSqlSafe(statement));
        for param in params {
            query = match param {
                Param::Text(text) => query.bind(text),
                Param::Int(int) => query.bind(int),
            };
        }
        let read = query
            .fetch_all(&self.readers)
            .await
            .during("reading a page of the agenda")?;
        Ok(assemble(read)?.into_iter().map(Arc::new).collect())
    }

    async fn get_kaleyra_user(&self, external_id: &str) -> StoreResult<Option<KaleyraUser>> {
        let row: Option<KaleyraUserRow> = sqlx::query_as(AssertSqlSafe(format!(
            "{SELECT_KALEYRA_USERS} WHERE external_id = $1"
        )))
        .bind(external_id.to_owned())
        .fetch_optional(&self.readers)
        .await
        .during("reading a Kaleyra user")?;
        row.map(kaleyra_user).transpose()
    }

    async fn get_kaleyra_users(&self, external_ids: &[String]) -> StoreResult<Vec<KaleyraUser>> {
        if external_ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = placeholder_rows(1, 1, external_ids.len());
        let mut query = sqlx::query_as::<DB, KaleyraUserRow>(AssertSqlSafe(format!(
            "{SELECT_KALEYRA_USERS} WHERE external_id IN {list}"
        )));
        for external_id in external_ids {
            query = query.bind(external_id.clone());
        }
        let rows = query
            .fetch_all(&self.readers)
            .await
            .during("reading Kaleyra users")?;
        rows.into_iter().map(kaleyra_user).collect()
    }

    async fn insert_kaleyra_user(&self, user: &KaleyraUser) -> StoreResult<()> {
        sqlx::query(INSERT_KALEYRA_USER)
            .bind(user.external_id.clone())
            .bind(user.kaleyra_user_id.clone())
            .bind(role_text(user.role).to_owned())
            .bind(user.created_at.timestamp_millis())
            .bind(user.updated_at.timestamp_millis())
            .execute(&self.writer)
            .await
            .map_err(|e| {
                conflict_or(
                    e,
                    "inserting a Kaleyra user",
                    &format!("user {}", user.external_id),
                )
            })?;
        Ok(())
    }

    async fn update_kaleyra_user_role(&self, user: &KaleyraUser) -> StoreResult<()> {
        let updated = sqlx::query(UPDATE_KALEYRA_USER_ROLE)
            .bind(user.external_id.clone())
            .bind(role_text(user.role).to_owned())
            .bind(user.updated_at.timestamp_millis())
            .fetch_optional(&self.writer)
            .await
            .during("updating a Kaleyra user's role")?;
        updated.map(|_| ()).ok_or(StoreError::NotFound)
    }

    async fn clear_provisioning(&self, id: &str, version: i64) -> StoreResult<bool> {
        let cleared = sqlx::query(
            "UPDATE teleconsultations SET provision_due_at_ms = NULL, provision_attempts = 0 \
             WHERE id = $1 AND version = $2 RETURNING id",
        )
        .bind(id.to_owned())
        .bind(version)
        .fetch_optional(&self.writer)
        .await
        .during("clearing a provisioning mark")?;
        Ok(cleared.is_some())
    }

    async fn postpone_provisioning(
        &self,
        id: &str,
        now: DateTime<Utc>,
        first_delay: TimeDelta,
        max_delay: TimeDelta,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        // first × 2^attempts, capped (the shift is bounded so it cannot overflow).
        let due: Option<(i64,)> = sqlx::query_as(
            "UPDATE teleconsultations SET \
               provision_due_at_ms = $2 + CASE \
                 WHEN provision_attempts >= 30 THEN $4 \
                 WHEN $3 * (CAST(1 AS BIGINT) << CAST(provision_attempts AS INTEGER)) > $4 THEN $4 \
                 ELSE $3 * (CAST(1 AS BIGINT) << CAST(provision_attempts AS INTEGER)) END, \
               provision_attempts = provision_attempts + 1 \
             WHERE id = $1 RETURNING provision_due_at_ms",
        )
        .bind(id.to_owned())
        .bind(now.timestamp_millis())
        .bind(first_delay.num_milliseconds())
        .bind(max_delay.num_milliseconds())
        .fetch_optional(&self.writer)
        .await
        .during("postponing a provisioning")?;
        due.map(|(ms,)| instant(ms)).transpose()
    }

    async fn due_provisioning(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<String>> {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM teleconsultations WHERE provision_due_at_ms <= $1 \
             ORDER BY provision_due_at_ms, id LIMIT $2",
        )
        .bind(now.timestamp_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .during("listing due provisioning")?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    async fn retire_room(
        &self,
        room_id: &str,
        teleconsultation_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        Self::retire(&self.writer, room_id, teleconsultation_id, at).await
    }

    async fn due_room_deletions(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<RoomDeletion>> {
        let rows: Vec<RoomDeletionRow> = sqlx::query_as(
            "SELECT room_id, teleconsultation_id, due_at_ms, attempts FROM rooms_to_delete \
             WHERE due_at_ms <= $1 ORDER BY due_at_ms, room_id LIMIT $2",
        )
        .bind(now.timestamp_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .during("listing due room deletions")?;
        rows.into_iter().map(room_deletion).collect()
    }

    async fn claim_room_deletion(
        &self,
        room_id: Option<&str>,
        now: DateTime<Utc>,
        owner: &str,
        until: DateTime<Utc>,
    ) -> StoreResult<Option<RoomDeletion>> {
        let row: Option<RoomDeletionRow> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE rooms_to_delete SET lease_owner = $3, lease_until_ms = $4 \
             WHERE room_id IN (SELECT room_id FROM rooms_to_delete \
               WHERE due_at_ms <= $1 AND (lease_until_ms IS NULL OR lease_until_ms < $1) \
                 AND ($2 = '' OR room_id = $2) \
               ORDER BY due_at_ms, room_id LIMIT 1 {}) \
             RETURNING room_id, teleconsultation_id, due_at_ms, attempts",
            DB::SKIP_LOCKED
        )))
        .bind(now.timestamp_millis())
        .bind(room_id.unwrap_or_default().to_owned())
        .bind(owner.to_owned())
        .bind(until.timestamp_millis())
        .fetch_optional(&self.writer)
        .await
        .during("claiming a room deletion")?;
        row.map(room_deletion).transpose()
    }

    async fn finish_room_deletion(&self, room_id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM rooms_to_delete WHERE room_id = $1")
            .bind(room_id.to_owned())
            .execute(&self.writer)
            .await
            .during("finishing a room deletion")?;
        Ok(())
    }

    async fn postpone_room_deletion(
        &self,
        room_id: &str,
        due_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE rooms_to_delete SET due_at_ms = $2, attempts = attempts + 1, \
               lease_owner = NULL, lease_until_ms = NULL \
             WHERE room_id = $1",
        )
        .bind(room_id.to_owned())
        .bind(due_at.timestamp_millis())
        .execute(&self.writer)
        .await
        .during("postponing a room deletion")?;
        Ok(())
    }

    async fn claim_due_provisioning(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let ids: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE teleconsultations SET lease_owner = $3, lease_until_ms = $4 \
             WHERE id IN (SELECT id FROM teleconsultations \
               WHERE provision_due_at_ms <= $1 \
                 AND (lease_until_ms IS NULL OR lease_until_ms < $1) \
               ORDER BY provision_due_at_ms, id LIMIT $2 {}) \
             RETURNING id",
            DB::SKIP_LOCKED
        )))
        .bind(now.timestamp_millis())
        .bind(i64::from(limit))
        .bind(owner.to_owned())
        .bind(until.timestamp_millis())
        .fetch_all(&self.writer)
        .await
        .during("claiming due provisioning")?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    async fn try_lease(
        &self,
        id: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let leased = sqlx::query(
            "UPDATE teleconsultations SET lease_owner = $2, lease_until_ms = $4 \
             WHERE id = $1 \
               AND (lease_until_ms IS NULL OR lease_until_ms < $3 OR lease_owner = $2) \
             RETURNING id",
        )
        .bind(id.to_owned())
        .bind(owner.to_owned())
        .bind(now.timestamp_millis())
        .bind(until.timestamp_millis())
        .fetch_optional(&self.writer)
        .await
        .during("taking a provisioning lease")?;
        Ok(leased.is_some())
    }

    async fn release_lease(&self, id: &str, owner: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE teleconsultations SET lease_owner = NULL, lease_until_ms = NULL \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id.to_owned())
        .bind(owner.to_owned())
        .execute(&self.writer)
        .await
        .during("releasing a provisioning lease")?;
        Ok(())
    }

    async fn mark_room_creation(&self, id: &str, attempt: Option<&RoomAttempt>) -> StoreResult<()> {
        const OPERATION: &str = "marking a room creation";
        const MARK: &str = "UPDATE teleconsultations SET creating_fingerprint = $2 WHERE id = $1";
        let Some(attempt) = attempt else {
            sqlx::query(MARK)
                .bind(id.to_owned())
                .bind(None::<String>)
                .execute(&self.writer)
                .await
                .during(OPERATION)?;
            return Ok(());
        };
        if DB::ONE_STATEMENT_WRITES {
            let attempt_cte = insert_attempt("$3", "$1", "$2", "$4");
            sqlx::query(AssertSqlSafe(format!(
                "WITH attempt AS ({attempt_cte}) {MARK}"
            )))
            .bind(id.to_owned())
            .bind(Some(attempt.fingerprint.clone()))
            .bind(attempt.id.clone())
            .bind(attempt.at.timestamp_millis())
            .execute(&self.writer)
            .await
            .during(OPERATION)?;
            return Ok(());
        }
        let (id, attempt) = (id.to_owned(), attempt.clone());
        self.in_write_transaction(
            OPERATION,
            move |conn| {
                let (id, attempt) = (id.clone(), attempt.clone());
                Box::pin(async move {
                    sqlx::query(MARK)
                        .bind(id.clone())
                        .bind(Some(attempt.fingerprint.clone()))
                        .execute(&mut *conn)
                        .await
                        .during(OPERATION)?;
                    Self::record_attempt(conn, &id, &attempt, OPERATION).await
                })
            },
            || {},
        )
        .await
    }

    async fn is_attempt_recorded(
        &self,
        attempt: &str,
        teleconsultation_id: &str,
    ) -> StoreResult<bool> {
        let found: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM room_attempts WHERE id = $1 AND teleconsultation_id = $2",
        )
        .bind(attempt.to_owned())
        .bind(teleconsultation_id.to_owned())
        .fetch_optional(&self.readers)
        .await
        .during("looking up a room creation attempt")?;
        Ok(found.is_some())
    }

    async fn attempt_call_ended(&self, attempt: &str, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE room_attempts SET call_ended_at_ms = $2 WHERE id = $1")
            .bind(attempt.to_owned())
            .bind(at.timestamp_millis())
            .execute(&self.writer)
            .await
            .during("recording the end of a room creation call")?;
        Ok(())
    }

    async fn last_attempt(&self, teleconsultation_id: &str) -> StoreResult<Option<AttemptTimes>> {
        let last: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT created_at_ms, call_ended_at_ms FROM room_attempts \
             WHERE teleconsultation_id = $1 ORDER BY created_at_ms DESC LIMIT 1",
        )
        .bind(teleconsultation_id.to_owned())
        .fetch_optional(&self.readers)
        .await
        .during("looking up the last room creation attempt")?;
        last.map(|(recorded, ended)| {
            Ok(AttemptTimes {
                recorded_at: instant(recorded)?,
                call_ended_at: ended.map(instant).transpose()?,
            })
        })
        .transpose()
    }

    async fn database_identity(&self) -> StoreResult<String> {
        let (answer,): (String,) = sqlx::query_as(DB::IDENTITY)
            .fetch_one(&self.writer)
            .await
            .during("reading which database this is")?;
        DB::identity(answer).map_err(StoreError::Corrupt)
    }

    async fn recorded_identity(&self, first: Option<&str>) -> StoreResult<Option<String>> {
        const OPERATION: &str = "reading the database identity";
        if let Some(first) = first {
            sqlx::query(
                "UPDATE installation SET database_identity = $1 WHERE database_identity IS NULL",
            )
            .bind(first.to_owned())
            .execute(&self.writer)
            .await
            .during(OPERATION)?;
        }
        let recorded: Option<(Option<String>,)> =
            sqlx::query_as("SELECT database_identity FROM installation")
                .fetch_optional(&self.writer)
                .await
                .during(OPERATION)?;
        Ok(recorded.and_then(|(identity,)| identity))
    }

    async fn adopt_database(
        &self,
        identity: &str,
        new_installation: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        const OPERATION: &str = "adopting the database";
        let (identity, new_installation) =
            (identity.to_owned(), new_installation.map(str::to_owned));
        // Over every teleconsultation of a copy of production: longer than a request may
        // take (the request's statement timeout would refuse it for good).
        self.in_unbounded_write_transaction(
            OPERATION,
            move |conn| {
                let (identity, new_installation) = (identity.clone(), new_installation.clone());
                Box::pin(async move {
                    let adopted = sqlx::query(
                        "UPDATE installation SET database_identity = $1, id = COALESCE($2, id) \
                         RETURNING id",
                    )
                    .bind(identity)
                    .bind(new_installation.clone())
                    .fetch_optional(&mut *conn)
                    .await
                    .during(OPERATION)?;
                    if adopted.is_none() {
                        return Err(StoreError::NotFound);
                    }
                    if new_installation.is_some() {
                        let [teleconsultations, rest @ ..] = DETACH_FROM_ORIGINAL;
                        sqlx::query(teleconsultations)
                            .bind(now.timestamp_millis())
                            .execute(&mut *conn)
                            .await
                            .during(OPERATION)?;
                        for statement in rest {
                            sqlx::query(statement)
                                .execute(&mut *conn)
                                .await
                                .during(OPERATION)?;
                        }
                    }
                    Ok(())
                })
            },
            || {},
        )
        .await
    }

    async fn is_room_known(&self, room_id: &str) -> StoreResult<bool> {
        let (known,): (i64,) = sqlx::query_as(
            "SELECT CAST((SELECT COUNT(*) FROM teleconsultations WHERE room_id = $1) \
                  + (SELECT COUNT(*) FROM rooms_to_delete WHERE room_id = $1) AS BIGINT)",
        )
        .bind(room_id.to_owned())
        .fetch_one(&self.readers)
        .await
        .during("looking up a room")?;
        Ok(known > 0)
    }

    async fn teleconsultation_with_room(&self, room_id: &str) -> StoreResult<Option<String>> {
        let id: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM teleconsultations WHERE room_id = $1 AND state = 'active'",
        )
        .bind(room_id.to_owned())
        .fetch_optional(&self.readers)
        .await
        .during("finding a room's teleconsultation")?;
        Ok(id.map(|(id,)| id))
    }

    async fn list_live_teleconsultations(
        &self,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<Teleconsultation>> {
        self.select_joined(
            "listing live teleconsultations",
            "WHERE t.id IN (SELECT id FROM teleconsultations \
               WHERE state = 'active' AND id > $1 ORDER BY id LIMIT $2) \
             ORDER BY t.id, p.position",
            after,
            Some(limit),
        )
        .await
    }

    async fn backlog(&self, now: DateTime<Utc>, immutable_period_ms: u64) -> StoreResult<Backlog> {
        // One statement, one snapshot. CAST keeps the count types equal on both backends.
        // The room condition is written as the partial index `teleconsultations_awaiting_room`
        // states it (both planners match it term by term), and the instant from which links
        // are due is computed here (no overflow in SQL for a huge period).
        let links_due_by = now
            .timestamp_millis()
            .saturating_add(i64::try_from(immutable_period_ms).unwrap_or(i64::MAX));
        let (teleconsultations, missing, deletions): (i64, i64, i64) = sqlx::query_as(
            "SELECT \
               CAST((SELECT COUNT(*) FROM teleconsultations \
                     WHERE provision_due_at_ms IS NOT NULL) AS BIGINT), \
               CAST((SELECT COUNT(*) FROM teleconsultations \
                     WHERE state = 'active' AND desired_fingerprint IS NOT NULL \
                       AND (room_fingerprint IS NULL OR room_fingerprint <> desired_fingerprint) \
                       AND start_at_ms <= $1) AS BIGINT), \
               CAST((SELECT COUNT(*) FROM rooms_to_delete) AS BIGINT)",
        )
        .bind(links_due_by)
        .fetch_one(&self.readers)
        .await
        .during("counting the provisioning backlog")?;
        // What is due now, since when, and what is leased: through the due-time indexes
        // (partial on teleconsultations), never a scan of every row. No due item: the
        // oldest due time comes back as `now` (+1 to tell it apart).
        let now_ms = now.timestamp_millis();
        let (due, oldest_due_ms, being_worked): (i64, i64, i64) = sqlx::query_as(
            "SELECT \
               CAST((SELECT COUNT(*) FROM teleconsultations \
                     WHERE provision_due_at_ms IS NOT NULL AND provision_due_at_ms <= $1) \
                    + (SELECT COUNT(*) FROM rooms_to_delete WHERE due_at_ms <= $1) AS BIGINT), \
               CAST(COALESCE((SELECT MIN(due) FROM ( \
                 SELECT MIN(provision_due_at_ms) AS due FROM teleconsultations \
                   WHERE provision_due_at_ms IS NOT NULL AND provision_due_at_ms <= $1 \
                 UNION ALL \
                 SELECT MIN(due_at_ms) FROM rooms_to_delete WHERE due_at_ms <= $1) AS due_times), \
                 $1 + 1) AS BIGINT), \
               CAST((SELECT COUNT(*) FROM teleconsultations \
                     WHERE provision_due_at_ms IS NOT NULL AND lease_until_ms > $1) \
                    + (SELECT COUNT(*) FROM rooms_to_delete WHERE lease_until_ms > $1) AS BIGINT)",
        )
        .bind(now_ms)
        .fetch_one(&self.readers)
        .await
        .during("counting the provisioning backlog")?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Backlog {
            teleconsultations: count(teleconsultations),
            rooms_missing_at_start: count(missing),
            room_deletions: count(deletions),
            due: count(due),
            oldest_due_at: (oldest_due_ms <= now_ms)
                .then(|| instant(oldest_due_ms))
                .transpose()?,
            being_worked: count(being_worked),
        })
    }

    async fn insert_event(&self, event: &NewEvent) -> StoreResult<()> {
        const OPERATION: &str = "storing an event";
        let event = Arc::new(event.clone());
        self.write_alone(OPERATION, move |conn| {
            let event = Arc::clone(&event);
            Box::pin(async move {
                Self::bind_event(sqlx::query(AssertSqlSafe(insert_events(1, 1))), &event)
                    .execute(&mut *conn)
                    .await
                    .map_err(|err| conflict_or(err, OPERATION, "the webhook id"))?;
                Ok(())
            })
        })
        .await
    }

    async fn links_moments(
        &self,
        now: DateTime<Utc>,
        immutable_period_ms: u64,
        after: Option<&LinksMomentDue>,
        limit: u32,
    ) -> StoreResult<Vec<LinksMomentDue>> {
        const OPERATION: &str = "reading the links moments to tell";
        let opening_by = now
            .timestamp_millis()
            .saturating_add(i64::try_from(immutable_period_ms).unwrap_or(i64::MAX));
        let rows: Vec<(String, i64, String)> = sqlx::query_as(LINKS_MOMENTS)
            .bind(opening_by)
            .bind(after.map_or(i64::MIN, |a| a.start.timestamp_millis()))
            .bind(after.map(|a| a.id.clone()).unwrap_or_default())
            .bind(now.timestamp_millis())
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await
            .during(OPERATION)?;
        rows.into_iter()
            .map(|(id, start, moment)| {
                Ok(LinksMomentDue {
                    start: instant(start)?,
                    moment: links_moment(&moment)?,
                    id,
                })
            })
            .collect()
    }

    async fn settle_links_moment(
        &self,
        id: &str,
        version: i64,
        from: LinksMoment,
        to: Option<LinksMoment>,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        const OPERATION: &str = "telling a links moment";
        let id: Arc<str> = id.into();
        let events: Arc<[NewEvent]> = events.into();
        self.in_write_transaction(
            OPERATION,
            move |conn| {
                let (id, events) = (Arc::clone(&id), Arc::clone(&events));
                Box::pin(async move {
                    let moved: Option<(String,)> = sqlx::query_as(SETTLE_LINKS_MOMENT)
                        .bind(id.to_string())
                        .bind(version)
                        .bind(links_moment_text(from).to_owned())
                        .bind(to.map(|to| links_moment_text(to).to_owned()))
                        .fetch_optional(&mut *conn)
                        .await
                        .during(OPERATION)?;
                    if moved.is_none() {
                        return Ok(false);
                    }
                    Self::insert_events_of_change(conn, &events, OPERATION).await?;
                    Ok(true)
                })
            },
            || {},
        )
        .await
    }

    async fn make_events_due(&self, webhook_ids: &[String], now: DateTime<Utc>) -> StoreResult<()> {
        const OPERATION: &str = "releasing held events";
        for chunk in webhook_ids.chunks(IDS_PER_STATEMENT) {
            let ids: Arc<[String]> = chunk.into();
            // By their webhook ids alone, not also by `state`: a held event (due later) is
            // pending, and the pending events' index would be read too (on PostgreSQL with
            // every older row version it still holds).
            let statement: Arc<str> = format!(
                "UPDATE events SET due_at_ms = $1 \
                 WHERE due_at_ms > $1 AND webhook_id IN ({})",
                placeholders(2, chunk.len())
            )
            .into();
            self.write_alone(OPERATION, move |conn| {
                let (ids, statement) = (Arc::clone(&ids), Arc::clone(&statement));
                Box::pin(async move {
                    let mut query = sqlx::query(AssertSqlSafe(statement.to_string()))
                        .bind(now.timestamp_millis());
                    for id in ids.iter() {
                        query = query.bind(id.clone());
                    }
                    query.execute(&mut *conn).await.during(OPERATION)?;
                    Ok(())
                })
            })
            .await?;
        }
        Ok(())
    }

    async fn claim_events(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedEvent>> {
        const OPERATION: &str = "claiming events to send";
        let owner = Arc::<str>::from(owner);
        let mut rows = self
            .in_write_transaction(
                OPERATION,
                move |conn| {
                    let owner = Arc::clone(&owner);
                    Box::pin(async move {
                        if let Some(setting) = DB::CLAIM_EVENTS_SETTING {
                            sqlx::query(setting)
                                .execute(&mut *conn)
                                .await
                                .during(OPERATION)?;
                        }
                        let rows: Vec<ClaimedEventRow> =
                            sqlx::query_as(AssertSqlSafe(claim_events(DB::SKIP_LOCKED)))
                                .bind(now.timestamp_millis())
                                .bind(owner.to_string())
                                .bind(until.timestamp_millis())
                                .bind(i64::from(limit))
                                .fetch_all(&mut *conn)
                                .await
                                .during(OPERATION)?;
                        Ok(rows)
                    })
                },
                || {},
            )
            .await?;
        // RETURNING follows no order: the claim's is restored.
        rows.sort_by_key(ClaimedEventRow::claim_order);
        rows.into_iter().map(claimed_event).collect()
    }

    async fn events_delivered(
        &self,
        ids: &[i64],
        owner: &str,
        now: DateTime<Utc>,
        answer: &str,
    ) -> StoreResult<Vec<i64>> {
        const OPERATION: &str = "recording delivered events";
        let mut recorded = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let ids: Arc<[i64]> = chunk.into();
            let (owner, answer) = (Arc::<str>::from(owner), Arc::<str>::from(answer));
            let statement: Arc<str> = settle_delivered(chunk.len()).into();
            let settled = self
                .write_alone(OPERATION, move |conn| {
                    let (ids, owner, answer, statement) = (
                        Arc::clone(&ids),
                        Arc::clone(&owner),
                        Arc::clone(&answer),
                        Arc::clone(&statement),
                    );
                    Box::pin(async move {
                        let mut query = sqlx::query_as(AssertSqlSafe(statement.to_string()))
                            .bind(owner.to_string())
                            .bind(answer.to_string())
                            .bind(now.timestamp_millis());
                        for id in ids.iter() {
                            query = query.bind(*id);
                        }
                        let rows: Vec<(i64,)> =
                            query.fetch_all(&mut *conn).await.during(OPERATION)?;
                        Ok(rows)
                    })
                })
                .await?;
            recorded.extend(settled.into_iter().map(|(id,)| id));
        }
        Ok(recorded)
    }

    async fn event_failed(
        &self,
        id: i64,
        owner: &str,
        next_due: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        answer: &str,
    ) -> StoreResult<bool> {
        const OPERATION: &str = "recording a failed event delivery";
        let Some(next_due) = next_due else {
            let statement = settle_event("state = 'given_up', settled_at_ms = $4");
            return self
                .settle_event_at(OPERATION, statement, id, owner, answer, now)
                .await;
        };
        let (owner, answer) = (Arc::<str>::from(owner), Arc::<str>::from(answer));
        let next_due = next_due.timestamp_millis();
        self.in_write_transaction(
            OPERATION,
            move |conn| {
                let (owner, answer) = (Arc::clone(&owner), Arc::clone(&answer));
                Box::pin(async move {
                    let retried: Option<(String,)> =
                        sqlx::query_as(AssertSqlSafe(settle_event("due_at_ms = $4")))
                            .bind(id)
                            .bind(owner.to_string())
                            .bind(answer.to_string())
                            .bind(next_due)
                            .fetch_optional(&mut *conn)
                            .await
                            .during(OPERATION)?;
                    let Some((teleconsultation,)) = retried else {
                        return Ok(false);
                    };
                    // Only an optimisation (the chain check alone keeps the order): the
                    // events waiting behind this one are not due before it, so they leave
                    // the due scan while the receiver fails.
                    sqlx::query(
                        "UPDATE events SET due_at_ms = $3 \
                         WHERE teleconsultation_id = $1 AND state = 'pending' AND id > $2 \
                           AND due_at_ms < $3",
                    )
                    .bind(teleconsultation)
                    .bind(id)
                    .bind(next_due)
                    .execute(&mut *conn)
                    .await
                    .during(OPERATION)?;
                    Ok(true)
                })
            },
            || {},
        )
        .await
    }

    async fn release_event(&self, id: i64, owner: &str) -> StoreResult<bool> {
        const OPERATION: &str = "releasing an event's lease";
        let owner = Arc::<str>::from(owner);
        self.write_alone(OPERATION, move |conn| {
            let owner = Arc::clone(&owner);
            Box::pin(async move {
                let released: Option<(i64,)> = sqlx::query_as(
                    "UPDATE events SET lease_owner = NULL, lease_until_ms = NULL \
                     WHERE id = $1 AND lease_owner = $2 AND state = 'pending' RETURNING id",
                )
                .bind(id)
                .bind(owner.to_string())
                .fetch_optional(&mut *conn)
                .await
                .during(OPERATION)?;
                Ok(released.is_some())
            })
        })
        .await
    }

    async fn failed_events(&self) -> StoreResult<Vec<FailedEvent>> {
        let rows: Vec<FailedEventRow> = sqlx::query_as(
            "SELECT webhook_id, type, teleconsultation_id, last_answer FROM events \
             WHERE state = 'given_up' ORDER BY id",
        )
        .fetch_all(&self.readers)
        .await
        .during("listing the given-up events")?;
        Ok(rows.into_iter().map(failed_event).collect())
    }

    async fn redeliver_events(
        &self,
        webhook_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<String>> {
        const OPERATION: &str = "redelivering given-up events";
        // '' (no webhook id is empty) stands for all of them.
        let webhook_id = Arc::<str>::from(webhook_id.unwrap_or_default());
        let mut redelivered = self
            .write_alone(OPERATION, move |conn| {
                let webhook_id = Arc::clone(&webhook_id);
                Box::pin(async move {
                    let rows: Vec<(i64, String)> = sqlx::query_as(
                        "UPDATE events SET state = 'pending', attempts = 0, due_at_ms = $2, \
                           settled_at_ms = NULL, lease_owner = NULL, lease_until_ms = NULL \
                         WHERE state = 'given_up' AND ($1 = '' OR webhook_id = $1) \
                         RETURNING id, webhook_id",
                    )
                    .bind(webhook_id.to_string())
                    .bind(now.timestamp_millis())
                    .fetch_all(&mut *conn)
                    .await
                    .during(OPERATION)?;
                    Ok(rows)
                })
            })
            .await?;
        redelivered.sort();
        Ok(redelivered.into_iter().map(|(_, id)| id).collect())
    }

    /// In batches ([`Self::delete_in_batches`]).
    async fn prune_delivered_events(&self, before: DateTime<Utc>) -> StoreResult<()> {
        self.delete_in_batches(
            "deleting delivered events",
            format!(
                "DELETE FROM events WHERE id IN \
                 (SELECT id FROM events \
                  WHERE state = 'delivered' AND settled_at_ms < $1 \
                  ORDER BY settled_at_ms LIMIT {PRUNE_BATCH}) \
                 RETURNING id"
            ),
            before,
        )
        .await
    }

    async fn all_events(&self) -> StoreResult<Vec<StoredEvent>> {
        let rows: Vec<StoredEventRow> = sqlx::query_as(
            "SELECT id, webhook_id, teleconsultation_id, type, state, attempts FROM events \
             ORDER BY id",
        )
        .fetch_all(&self.readers)
        .await
        .during("listing the events")?;
        rows.into_iter().map(stored_event).collect()
    }

    async fn event_counts(&self) -> StoreResult<EventCounts> {
        // One statement, one snapshot; each count through its state's partial index.
        let (pending, given_up): (i64, i64) = sqlx::query_as(
            "SELECT \
               CAST((SELECT COUNT(*) FROM events WHERE state = 'pending') AS BIGINT), \
               CAST((SELECT COUNT(*) FROM events WHERE state = 'given_up') AS BIGINT)",
        )
        .fetch_one(&self.readers)
        .await
        .during("counting the events")?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(EventCounts {
            pending: count(pending),
            given_up: count(given_up),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The highest `$N` of a statement.
    fn highest_parameter(statement: &str) -> usize {
        statement
            .split('$')
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .max()
            .unwrap_or(0)
    }

    /// The one-statement writes number their parameters after these counts.
    #[test]
    fn parameter_counts_are_those_of_the_statements() {
        assert_eq!(
            highest_parameter(INSERT_TELECONSULTATION),
            INSERT_PARAMETERS
        );
        assert_eq!(
            highest_parameter(UPDATE_TELECONSULTATION),
            UPDATE_PARAMETERS
        );
    }

    /// The events' INSERT takes six parameters a row from the one named on, so that a
    /// change's own write can append it after its own.
    #[test]
    fn the_event_insert_numbers_its_parameters_from_the_first_given() {
        assert_eq!(highest_parameter(&insert_events(1, 1)), EVENT_COLUMNS);
        let appended = insert_events(INSERT_PARAMETERS + 1, 2);
        assert_eq!(
            highest_parameter(&appended),
            INSERT_PARAMETERS + 2 * EVENT_COLUMNS
        );
        assert!(appended.contains(&format!("VALUES (${}, ", INSERT_PARAMETERS + 1)));
    }
}
