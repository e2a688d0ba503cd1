//! What both SQL backends share: the statements (both accept `$N` placeholders), the
//! binding of records to parameters, and the decoding of rows back into records. The
//! backends differ only in pools, transactions and migrations.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Database, Encode, Type};

use super::model::{
    Backlog, KaleyraUser, Participant, RoomDeletion, Teleconsultation, TeleconsultationState,
};
use super::{StoreError, StoreResult};
use crate::domain::room_spec::RoomSpec;
use crate::domain::roster::Role;

pub(super) const INSERT_TELECONSULTATION: &str = "INSERT INTO teleconsultations \
    (id, version, state, participant_count, start_at_ms, duration_secs, room_id, \
     created_at_ms, updated_at_ms, created_by, updated_by, desired_room, desired_fingerprint, \
     room_fingerprint, provision_due_at_ms) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

/// Binds the same parameters as INSERT ($1 = id, $2 = the expected version); the version is
/// bumped by the statement itself.
pub(super) const UPDATE_TELECONSULTATION: &str = "UPDATE teleconsultations SET \
    version = version + 1, state = $3, participant_count = $4, start_at_ms = $5, \
    duration_secs = $6, room_id = $7, created_at_ms = $8, updated_at_ms = $9, \
    created_by = $10, updated_by = $11, desired_room = $12, desired_fingerprint = $13, \
    room_fingerprint = $14, provision_due_at_ms = $15 \
    WHERE id = $1 AND version = $2 RETURNING version";

pub(super) const TELECONSULTATION_EXISTS: &str = "SELECT id FROM teleconsultations WHERE id = $1";

pub(super) const DELETE_PARTICIPANTS: &str =
    "DELETE FROM participants WHERE teleconsultation_id = $1";

pub(super) const INSERT_PARTICIPANT: &str = "INSERT INTO participants \
    (teleconsultation_id, position, external_id, kaleyra_user_id, role, groups_json, \
     full_name, language, link) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// One statement (one snapshot) reads a teleconsultation with its participants.
const SELECT_JOINED: &str = "SELECT t.id, t.version, t.state, t.participant_count, \
    t.start_at_ms, t.duration_secs, t.room_id, t.created_at_ms, t.updated_at_ms, \
    t.created_by, t.updated_by, t.desired_room, t.room_fingerprint, t.provision_due_at_ms, \
    t.creating_fingerprint, \
    p.position AS p_position, p.external_id AS p_external_id, \
    p.kaleyra_user_id AS p_kaleyra_user_id, p.role AS p_role, p.groups_json AS p_groups_json, \
    p.full_name AS p_full_name, p.language AS p_language, p.link AS p_link \
    FROM teleconsultations t LEFT JOIN participants p ON p.teleconsultation_id = t.id";

pub(super) const SELECT_KALEYRA_USER: &str = "SELECT external_id, kaleyra_user_id, role, \
    created_at_ms, updated_at_ms FROM kaleyra_users WHERE external_id = $1";

pub(super) const INSERT_KALEYRA_USER: &str = "INSERT INTO kaleyra_users \
    (external_id, kaleyra_user_id, role, created_at_ms, updated_at_ms) \
    VALUES ($1, $2, $3, $4, $5)";

pub(super) const UPDATE_KALEYRA_USER_ROLE: &str = "UPDATE kaleyra_users SET role = $2, \
    updated_at_ms = $3 WHERE external_id = $1 RETURNING external_id";

type Q<'q, DB> = Query<'q, DB, <DB as Database>::Arguments>;

/// Binds $1..$15 of INSERT_TELECONSULTATION / UPDATE_TELECONSULTATION.
pub(super) fn bind_teleconsultation<'q, DB>(query: Q<'q, DB>, tc: &Teleconsultation) -> Q<'q, DB>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    query
        .bind(tc.id.clone())
        .bind(tc.version)
        .bind(tc.state.as_str().to_owned())
        .bind(i64::from(tc.participant_count))
        .bind(tc.start.timestamp_millis())
        .bind(tc.duration_secs)
        .bind(tc.room_id.clone())
        .bind(tc.created_at.timestamp_millis())
        .bind(tc.updated_at.timestamp_millis())
        .bind(tc.created_by.clone())
        .bind(tc.updated_by.clone())
        .bind(
            tc.desired_room
                .as_ref()
                .map(|spec| serde_json::to_string(spec).expect("a RoomSpec always serializes")),
        )
        .bind(tc.desired_room.as_ref().map(RoomSpec::fingerprint))
        .bind(tc.room_fingerprint.clone())
        .bind(tc.provision_due_at.map(|at| at.timestamp_millis()))
}

/// Binds $1..$9 of INSERT_PARTICIPANT.
pub(super) fn bind_participant<'q, DB>(
    query: Q<'q, DB>,
    teleconsultation_id: &str,
    position: usize,
    p: &Participant,
) -> Q<'q, DB>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let groups = serde_json::to_string(&p.groups).unwrap_or_else(|_| "[]".to_owned());
    query
        .bind(teleconsultation_id.to_owned())
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .bind(p.external_id.clone())
        .bind(p.kaleyra_user_id.clone())
        .bind(p.role.as_str().to_owned())
        .bind(groups)
        .bind(p.full_name.clone())
        .bind(p.language.clone())
        .bind(p.link.clone())
}

/// Binds $1..$5 of INSERT_KALEYRA_USER ($1..$3 of UPDATE_KALEYRA_USER_ROLE are the same
/// values minus creation).
pub(super) fn bind_kaleyra_user<'q, DB>(query: Q<'q, DB>, user: &KaleyraUser) -> Q<'q, DB>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    query
        .bind(user.external_id.clone())
        .bind(user.kaleyra_user_id.clone())
        .bind(user.role.as_str().to_owned())
        .bind(user.created_at.timestamp_millis())
        .bind(user.updated_at.timestamp_millis())
}

pub(super) fn bind_kaleyra_user_role<'q, DB>(query: Q<'q, DB>, user: &KaleyraUser) -> Q<'q, DB>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    query
        .bind(user.external_id.clone())
        .bind(user.role.as_str().to_owned())
        .bind(user.updated_at.timestamp_millis())
}

/// A teleconsultation row joined with one of its participants (none for an empty list).
#[derive(sqlx::FromRow)]
pub(super) struct JoinedRow {
    id: String,
    version: i64,
    state: String,
    participant_count: i64,
    start_at_ms: i64,
    duration_secs: i64,
    room_id: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    created_by: Option<String>,
    updated_by: Option<String>,
    desired_room: Option<String>,
    room_fingerprint: Option<String>,
    provision_due_at_ms: Option<i64>,
    creating_fingerprint: Option<String>,
    p_position: Option<i64>,
    p_external_id: Option<String>,
    p_kaleyra_user_id: Option<String>,
    p_role: Option<String>,
    p_groups_json: Option<String>,
    p_full_name: Option<String>,
    p_language: Option<String>,
    p_link: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct KaleyraUserRow {
    external_id: String,
    kaleyra_user_id: String,
    role: String,
    created_at_ms: i64,
    updated_at_ms: i64,
}

fn instant(ms: i64) -> StoreResult<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("instant {ms} ms out of range")))
}

fn role(s: &str) -> StoreResult<Role> {
    s.parse().map_err(StoreError::Corrupt)
}

/// Folds joined rows (ordered by teleconsultation, then position) into records.
pub(super) fn assemble(rows: Vec<JoinedRow>) -> StoreResult<Vec<Teleconsultation>> {
    let mut out: Vec<Teleconsultation> = Vec::new();
    for row in rows {
        if out.last().is_none_or(|tc| tc.id != row.id) {
            out.push(Teleconsultation {
                id: row.id.clone(),
                version: row.version,
                state: TeleconsultationState::parse(&row.state)
                    .ok_or_else(|| StoreError::Corrupt(format!("state {:?}", row.state)))?,
                participant_count: u32::try_from(row.participant_count)
                    .map_err(|_| StoreError::Corrupt("participant_count".into()))?,
                start: instant(row.start_at_ms)?,
                duration_secs: row.duration_secs,
                participants: Vec::new(),
                desired_room: row
                    .desired_room
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(format!("desired room: {e}")))?,
                room_id: row.room_id.clone(),
                room_fingerprint: row.room_fingerprint.clone(),
                provision_due_at: row.provision_due_at_ms.map(instant).transpose()?,
                creating_fingerprint: row.creating_fingerprint.clone(),
                created_at: instant(row.created_at_ms)?,
                updated_at: instant(row.updated_at_ms)?,
                created_by: row.created_by.clone(),
                updated_by: row.updated_by.clone(),
            });
        }
        if let (Some(_), Some(external_id), Some(kaleyra_user_id), Some(role_text), Some(groups)) = (
            row.p_position,
            row.p_external_id,
            row.p_kaleyra_user_id,
            row.p_role,
            row.p_groups_json,
        ) {
            let groups: Vec<String> = serde_json::from_str(&groups)
                .map_err(|e| StoreError::Corrupt(format!("participant groups: {e}")))?;
            if let Some(tc) = out.last_mut() {
                tc.participants.push(Participant {
                    external_id,
                    kaleyra_user_id,
                    role: role(&role_text)?,
                    groups,
                    full_name: row.p_full_name,
                    language: row.p_language,
                    link: row.p_link,
                });
            }
        }
    }
    Ok(out)
}

pub(super) fn kaleyra_user(row: KaleyraUserRow) -> StoreResult<KaleyraUser> {
    Ok(KaleyraUser {
        external_id: row.external_id,
        kaleyra_user_id: row.kaleyra_user_id,
        role: role(&row.role)?,
        created_at: instant(row.created_at_ms)?,
        updated_at: instant(row.updated_at_ms)?,
    })
}

/// A unique-key violation becomes `Conflict(what)`; anything else stays a database error.
pub(super) fn conflict_or(err: sqlx::Error, what: &str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what.into()),
        _ => StoreError::Database(err),
    }
}

/// Inserts a teleconsultation and its participants on `conn` (inside the caller's
/// transaction).
pub(super) async fn insert_teleconsultation<DB>(
    conn: &mut DB::Connection,
    tc: &Teleconsultation,
) -> StoreResult<()>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    bind_teleconsultation(sqlx::query(INSERT_TELECONSULTATION), tc)
        .execute(&mut *conn)
        .await
        .map_err(|e| conflict_or(e, &format!("teleconsultation {}", tc.id)))?;
    insert_participants(conn, tc).await
}

async fn insert_participants<DB>(
    conn: &mut DB::Connection,
    tc: &Teleconsultation,
) -> StoreResult<()>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    for (position, p) in tc.participants.iter().enumerate() {
        bind_participant(sqlx::query(INSERT_PARTICIPANT), &tc.id, position, p)
            .execute(&mut *conn)
            .await
            .map_err(|e| conflict_or(e, &format!("participant {}", p.external_id)))?;
    }
    Ok(())
}

/// The versioned update (see `Store::update_teleconsultation`) on `conn`, inside the
/// caller's transaction.
pub(super) async fn update_teleconsultation<DB>(
    conn: &mut DB::Connection,
    tc: &Teleconsultation,
    retired_rooms: &[String],
) -> StoreResult<i64>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    let updated = bind_teleconsultation(sqlx::query(UPDATE_TELECONSULTATION), tc)
        .fetch_optional(&mut *conn)
        .await?;
    if updated.is_none() {
        let exists = sqlx::query(TELECONSULTATION_EXISTS)
            .bind(tc.id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        return Err(if exists.is_some() {
            StoreError::StaleVersion
        } else {
            StoreError::NotFound
        });
    }
    sqlx::query(DELETE_PARTICIPANTS)
        .bind(tc.id.as_str())
        .execute(&mut *conn)
        .await?;
    insert_participants(conn, tc).await?;
    for room_id in retired_rooms {
        bind_retired_room(
            sqlx::query(RETIRE_ROOM),
            room_id,
            Some(&tc.id),
            tc.updated_at,
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(tc.version + 1)
}

pub(super) async fn fetch_teleconsultation<'e, DB, E>(
    executor: E,
    id: &str,
) -> StoreResult<Option<Teleconsultation>>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'r> JoinedRow: sqlx::FromRow<'r, DB::Row>,
{
    let found: Vec<JoinedRow> = sqlx::query_as(AssertSqlSafe(format!(
        "{SELECT_JOINED} WHERE t.id = $1 ORDER BY p.position"
    )))
    .bind(id.to_owned())
    .fetch_all(executor)
    .await?;
    Ok(assemble(found)?.pop())
}

pub(super) async fn fetch_by_participant<'e, DB, E>(
    executor: E,
    external_id: &str,
) -> StoreResult<Vec<Teleconsultation>>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'r> JoinedRow: sqlx::FromRow<'r, DB::Row>,
{
    let found: Vec<JoinedRow> = sqlx::query_as(AssertSqlSafe(format!(
        "{SELECT_JOINED} WHERE t.state = 'active' AND t.id IN \
         (SELECT teleconsultation_id FROM participants WHERE external_id = $1) \
         ORDER BY t.created_at_ms, t.id, p.position"
    )))
    .bind(external_id.to_owned())
    .fetch_all(executor)
    .await?;
    assemble(found)
}

pub(super) async fn fetch_kaleyra_user<'e, DB, E>(
    executor: E,
    external_id: &str,
) -> StoreResult<Option<KaleyraUser>>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'r> KaleyraUserRow: sqlx::FromRow<'r, DB::Row>,
{
    let row: Option<KaleyraUserRow> = sqlx::query_as(SELECT_KALEYRA_USER)
        .bind(external_id.to_owned())
        .fetch_optional(executor)
        .await?;
    row.map(kaleyra_user).transpose()
}

pub(super) async fn insert_kaleyra_user<'e, DB, E>(
    executor: E,
    user: &KaleyraUser,
) -> StoreResult<()>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    bind_kaleyra_user(sqlx::query(INSERT_KALEYRA_USER), user)
        .execute(executor)
        .await
        .map_err(|e| conflict_or(e, &format!("user {}", user.external_id)))?;
    Ok(())
}

pub(super) async fn update_kaleyra_user_role<'e, DB, E>(
    executor: E,
    user: &KaleyraUser,
) -> StoreResult<()>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let updated = bind_kaleyra_user_role(sqlx::query(UPDATE_KALEYRA_USER_ROLE), user)
        .fetch_optional(executor)
        .await?;
    match updated {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound),
    }
}

const RETIRE_ROOM: &str = "INSERT INTO rooms_to_delete \
    (room_id, teleconsultation_id, due_at_ms, attempts, created_at_ms) \
    VALUES ($1, $2, $3, 0, $3) ON CONFLICT (room_id) DO NOTHING";

fn bind_retired_room<'q, DB>(
    query: Q<'q, DB>,
    room_id: &str,
    teleconsultation_id: Option<&str>,
    at: DateTime<Utc>,
) -> Q<'q, DB>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    query
        .bind(room_id.to_owned())
        .bind(teleconsultation_id.map(str::to_owned))
        .bind(at.timestamp_millis())
}

pub(super) async fn retire_room<'e, DB, E>(
    executor: E,
    room_id: &str,
    teleconsultation_id: Option<&str>,
    at: DateTime<Utc>,
) -> StoreResult<()>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    bind_retired_room(sqlx::query(RETIRE_ROOM), room_id, teleconsultation_id, at)
        .execute(executor)
        .await?;
    Ok(())
}

/// Clears the provisioning mark, but only if nothing changed since `version` (a change
/// made meanwhile keeps its own mark).
pub(super) async fn clear_provisioning<'e, DB, E>(
    executor: E,
    id: &str,
    version: i64,
) -> StoreResult<bool>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let cleared = sqlx::query(
        "UPDATE teleconsultations SET provision_due_at_ms = NULL \
         WHERE id = $1 AND version = $2 RETURNING id",
    )
    .bind(id.to_owned())
    .bind(version)
    .fetch_optional(executor)
    .await?;
    Ok(cleared.is_some())
}

/// Moves a pending mark to `due_at` (a retry later); a cleared mark stays cleared.
pub(super) async fn postpone_provisioning<'e, DB, E>(
    executor: E,
    id: &str,
    due_at: DateTime<Utc>,
) -> StoreResult<()>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    sqlx::query(
        "UPDATE teleconsultations SET provision_due_at_ms = $2 \
         WHERE id = $1 AND provision_due_at_ms IS NOT NULL",
    )
    .bind(id.to_owned())
    .bind(due_at.timestamp_millis())
    .execute(executor)
    .await?;
    Ok(())
}

pub(super) async fn due_provisioning<'e, DB, E>(
    executor: E,
    now: DateTime<Utc>,
    limit: u32,
) -> StoreResult<Vec<String>>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    let ids: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM teleconsultations WHERE provision_due_at_ms <= $1 \
         ORDER BY provision_due_at_ms, id LIMIT $2",
    )
    .bind(now.timestamp_millis())
    .bind(i64::from(limit))
    .fetch_all(executor)
    .await?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

#[derive(sqlx::FromRow)]
pub(super) struct RoomDeletionRow {
    room_id: String,
    teleconsultation_id: Option<String>,
    due_at_ms: i64,
    attempts: i64,
}

pub(super) async fn due_room_deletions<'e, DB, E>(
    executor: E,
    now: DateTime<Utc>,
    limit: u32,
) -> StoreResult<Vec<RoomDeletion>>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'r> RoomDeletionRow: sqlx::FromRow<'r, DB::Row>,
{
    let rows: Vec<RoomDeletionRow> = sqlx::query_as(
        "SELECT room_id, teleconsultation_id, due_at_ms, attempts FROM rooms_to_delete \
         WHERE due_at_ms <= $1 ORDER BY due_at_ms, room_id LIMIT $2",
    )
    .bind(now.timestamp_millis())
    .bind(i64::from(limit))
    .fetch_all(executor)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(RoomDeletion {
                room_id: row.room_id,
                teleconsultation_id: row.teleconsultation_id,
                due_at: instant(row.due_at_ms)?,
                attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            })
        })
        .collect()
}

pub(super) async fn finish_room_deletion<'e, DB, E>(executor: E, room_id: &str) -> StoreResult<()>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    sqlx::query("DELETE FROM rooms_to_delete WHERE room_id = $1")
        .bind(room_id.to_owned())
        .execute(executor)
        .await?;
    Ok(())
}

pub(super) async fn postpone_room_deletion<'e, DB, E>(
    executor: E,
    room_id: &str,
    due_at: DateTime<Utc>,
) -> StoreResult<()>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    sqlx::query(
        "UPDATE rooms_to_delete SET due_at_ms = $2, attempts = attempts + 1 WHERE room_id = $1",
    )
    .bind(room_id.to_owned())
    .bind(due_at.timestamp_millis())
    .execute(executor)
    .await?;
    Ok(())
}

pub(super) async fn backlog<'e, DB, E>(
    executor: E,
    now: DateTime<Utc>,
    immutable_period_ms: u64,
) -> StoreResult<Backlog>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'r> (i64, i64, i64): sqlx::FromRow<'r, DB::Row>,
{
    // One statement, one snapshot. CAST keeps the count types equal on both backends.
    let (teleconsultations, missing, deletions): (i64, i64, i64) = sqlx::query_as(
        "SELECT \
           CAST((SELECT COUNT(*) FROM teleconsultations \
                 WHERE provision_due_at_ms IS NOT NULL) AS BIGINT), \
           CAST((SELECT COUNT(*) FROM teleconsultations \
                 WHERE state = 'active' AND desired_fingerprint IS NOT NULL \
                   AND (room_fingerprint IS NULL OR room_fingerprint <> desired_fingerprint) \
                   AND start_at_ms - $2 <= $1) AS BIGINT), \
           CAST((SELECT COUNT(*) FROM rooms_to_delete) AS BIGINT)",
    )
    .bind(now.timestamp_millis())
    .bind(i64::try_from(immutable_period_ms).unwrap_or(i64::MAX))
    .fetch_one(executor)
    .await?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(Backlog {
        teleconsultations: count(teleconsultations),
        rooms_missing_at_start: count(missing),
        room_deletions: count(deletions),
    })
}

/// Leases up to `limit` due teleconsultations to `owner` until `until` and returns their
/// ids. `lock_clause` is the backend's way to skip rows another transaction is claiming
/// (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer and needs none).
pub(super) async fn claim_due_provisioning<'e, DB, E>(
    executor: E,
    lock_clause: &str,
    now: DateTime<Utc>,
    owner: &str,
    until: DateTime<Utc>,
    limit: u32,
) -> StoreResult<Vec<String>>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    let ids: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(format!(
        "UPDATE teleconsultations SET lease_owner = $3, lease_until_ms = $4 \
         WHERE id IN (SELECT id FROM teleconsultations \
           WHERE provision_due_at_ms <= $1 AND (lease_until_ms IS NULL OR lease_until_ms < $1) \
           ORDER BY provision_due_at_ms, id LIMIT $2 {lock_clause}) \
         RETURNING id"
    )))
    .bind(now.timestamp_millis())
    .bind(i64::from(limit))
    .bind(owner.to_owned())
    .bind(until.timestamp_millis())
    .fetch_all(executor)
    .await?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// Leases one teleconsultation to `owner` unless another owner holds an unexpired lease.
pub(super) async fn try_lease<'e, DB, E>(
    executor: E,
    id: &str,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> StoreResult<bool>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let leased = sqlx::query(
        "UPDATE teleconsultations SET lease_owner = $2, lease_until_ms = $4 \
         WHERE id = $1 AND (lease_until_ms IS NULL OR lease_until_ms < $3 OR lease_owner = $2) \
         RETURNING id",
    )
    .bind(id.to_owned())
    .bind(owner.to_owned())
    .bind(now.timestamp_millis())
    .bind(until.timestamp_millis())
    .fetch_optional(executor)
    .await?;
    Ok(leased.is_some())
}

pub(super) async fn release_lease<'e, DB, E>(executor: E, id: &str, owner: &str) -> StoreResult<()>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    sqlx::query(
        "UPDATE teleconsultations SET lease_owner = NULL, lease_until_ms = NULL \
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id.to_owned())
    .bind(owner.to_owned())
    .execute(executor)
    .await?;
    Ok(())
}

pub(super) async fn mark_room_creation<'e, DB, E>(
    executor: E,
    id: &str,
    fingerprint: Option<&str>,
) -> StoreResult<()>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
{
    sqlx::query("UPDATE teleconsultations SET creating_fingerprint = $2 WHERE id = $1")
        .bind(id.to_owned())
        .bind(fingerprint.map(str::to_owned))
        .execute(executor)
        .await?;
    Ok(())
}

/// Whether a room is recorded anywhere: as some teleconsultation's room, or queued for
/// deletion.
pub(super) async fn is_room_known<'e, DB, E>(executor: E, room_id: &str) -> StoreResult<bool>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
{
    let (known,): (i64,) = sqlx::query_as(
        "SELECT CAST((SELECT COUNT(*) FROM teleconsultations WHERE room_id = $1) \
              + (SELECT COUNT(*) FROM rooms_to_delete WHERE room_id = $1) AS BIGINT)",
    )
    .bind(room_id.to_owned())
    .fetch_one(executor)
    .await?;
    Ok(known > 0)
}

/// Live teleconsultations with ids after `after`, in id order (pages for audits).
pub(super) async fn list_live<'e, DB, E>(
    executor: E,
    after: &str,
    limit: u32,
) -> StoreResult<Vec<Teleconsultation>>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    E: sqlx::Executor<'e, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'r> JoinedRow: sqlx::FromRow<'r, DB::Row>,
{
    let found: Vec<JoinedRow> = sqlx::query_as(AssertSqlSafe(format!(
        "{SELECT_JOINED} WHERE t.id IN (SELECT id FROM teleconsultations \
           WHERE state = 'active' AND id > $1 ORDER BY id LIMIT $2) \
         ORDER BY t.id, p.position"
    )))
    .bind(after.to_owned())
    .bind(i64::from(limit))
    .fetch_all(executor)
    .await?;
    assemble(found)
}
