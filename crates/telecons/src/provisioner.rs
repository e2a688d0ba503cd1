//! Rooms by reconciliation. Each teleconsultation stores the room it should have (a
//! [`RoomSpec`], or none) and the room it has; [`converge`] makes the second match the first:
//! it creates the Kaleyra users, creates the room, switches the record to it and retires
//! the old one. Retired rooms sit in a stored queue until Kaleyra confirms their deletion.
//!
//! Requests run [`converge`] inline, so normally the room exists when they answer. Whatever
//! fails stays marked in the store and [`run_due`] (the background worker) retries it,
//! across restarts, until it succeeds.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use kaleyra_client::{CreateRoom, DeleteOutcome, KaleyraError, NewParticipant};
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::domain::room_spec::{Recording, RoomSpec, parse_description};
use crate::store::{RoomDeletion, StoreError, Teleconsultation, TeleconsultationState};
use crate::users::{self, UserSyncError};

/// A failed provisioning is retried after this, doubling with each failure up to
/// [`MAX_PROVISION_RETRY`].
pub const PROVISION_RETRY: TimeDelta = TimeDelta::seconds(10);
const MAX_PROVISION_RETRY: TimeDelta = TimeDelta::minutes(5);
/// When Kaleyra refuses the request itself (a 4xx: our data, not its health), retrying soon
/// would only repeat the refusal: wait longer, and say so loudly.
const REFUSED_RETRY: TimeDelta = TimeDelta::minutes(5);
/// How long a request waits for its inline provisioning before answering anyway (the work
/// stays marked; the worker finishes it). Well under the request timeout.
pub const INLINE_BUDGET: Duration = Duration::from_secs(8);
/// Room deletions back off exponentially from here, up to [`MAX_DELETION_BACKOFF`].
const FIRST_DELETION_BACKOFF: TimeDelta = TimeDelta::seconds(5);
const MAX_DELETION_BACKOFF: TimeDelta = TimeDelta::minutes(5);
/// Teleconsultations or rooms handled per background pass.
const BATCH: u32 = 50;
/// How often the background worker looks for due work.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// A record that keeps changing under the provisioner is left to the next pass.
const MAX_ROUNDS: usize = 3;
/// A tagged room nobody recorded is deleted only once it is this old, so that a creation
/// still in flight on another instance is never mistaken for an orphan.
pub const ORPHAN_GRACE: TimeDelta = TimeDelta::minutes(10);
/// The background worker sweeps Kaleyra for orphans every this many passes.
const SWEEP_EVERY: u32 = 150;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Kaleyra(#[from] KaleyraError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<UserSyncError> for ProvisionError {
    fn from(err: UserSyncError) -> Self {
        match err {
            UserSyncError::Kaleyra(e) => Self::Kaleyra(e),
            UserSyncError::Store(e) => Self::Store(e),
        }
    }
}

/// How long an instance may work on one teleconsultation before another may take over; it
/// should exceed the slowest provisioning (user creations with retries, then a room).
fn lease(state: &AppState) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(state.config.provisioning_lease_secs).unwrap_or(60))
}

/// Brings teleconsultation `id` to its desired state. On failure the work stays marked
/// (postponed by [`PROVISION_RETRY`]) and the error is returned for logging. While someone
/// else (another request, another instance) holds the lease on `id`, this waits a moment
/// for it, then leaves the work to the lease holder and the background worker.
pub async fn converge(state: &AppState, id: &str) -> Result<(), ProvisionError> {
    let owner = lease_owner(state);
    for attempt in 0..LEASE_WAIT_ATTEMPTS {
        let now = state.clock.now();
        if state
            .store
            .try_lease(id, &owner, now, now + lease(state))
            .await?
        {
            return converge_leased(state, id, &owner).await;
        }
        if attempt + 1 < LEASE_WAIT_ATTEMPTS {
            tokio::time::sleep(LEASE_WAIT).await;
        }
    }
    tracing::debug!(teleconsultation = id, "someone else is provisioning it");
    Ok(())
}

/// [`converge`] within [`INLINE_BUDGET`], for requests: whatever is not done by then is
/// left to the background worker (it stays marked), and the request answers as usual.
pub async fn converge_inline(state: &AppState, id: &str) {
    match tokio::time::timeout(INLINE_BUDGET, converge(state, id)).await {
        Ok(_) => {} // errors are logged and postponed inside
        Err(_) => {
            tracing::warn!(
                teleconsultation = id,
                "provisioning is slow; the background worker finishes it"
            )
        }
    }
}

/// A name for one piece of work: leases exclude other requests of this instance as well as
/// other instances.
fn lease_owner(state: &AppState) -> String {
    format!("{}/{:016x}", state.instance_id, rand::random::<u64>())
}

const LEASE_WAIT_ATTEMPTS: usize = 20;
const LEASE_WAIT: Duration = Duration::from_millis(50);

/// [`converge`] under a lease `owner` already holds; releases it at the end.
async fn converge_leased(state: &AppState, id: &str, owner: &str) -> Result<(), ProvisionError> {
    let result = converge_once(state, id).await;
    if let Err(err) = state.store.release_lease(id, owner).await {
        tracing::warn!(teleconsultation = id, error = %err, "cannot release the lease; it expires");
    }
    if let Err(err) = &result {
        metrics::counter!("provisioning_failures_total").increment(1);
        let refused = matches!(err, ProvisionError::Kaleyra(e) if e.is_rejected());
        let (first, max) = if refused {
            (REFUSED_RETRY, REFUSED_RETRY)
        } else {
            (PROVISION_RETRY, MAX_PROVISION_RETRY)
        };
        match state
            .store
            .postpone_provisioning(id, state.clock.now(), first, max)
            .await
        {
            Ok(retry_at) if refused => {
                tracing::error!(teleconsultation = id, error = %err, retry_at = ?retry_at, "Kaleyra refuses this provisioning; will retry")
            }
            Ok(retry_at) => {
                tracing::warn!(teleconsultation = id, error = %err, retry_at = ?retry_at, "provisioning failed; will retry")
            }
            Err(store_err) => {
                tracing::error!(teleconsultation = id, error = %err, store_error = %store_err, "provisioning failed and cannot be postponed")
            }
        }
    }
    result
}

async fn converge_once(state: &AppState, id: &str) -> Result<(), ProvisionError> {
    for _ in 0..MAX_ROUNDS {
        let Some(tc) = state.store.get_teleconsultation(id).await? else {
            return Ok(());
        };
        if tc.state == TeleconsultationState::Active {
            users::ensure_users(
                &*state.store,
                &state.kaleyra,
                &*state.clock,
                &tc.participants,
            )
            .await?;
        }
        // A previous attempt may have created a room whose answer was lost.
        let recovered = match &tc.creating_fingerprint {
            Some(_) => recover_lost_rooms(state, &tc).await?,
            None => None,
        };
        let spec = match &tc.desired_room {
            Some(spec) if tc.needs_room() => spec.clone(),
            _ => {
                if tc.creating_fingerprint.is_some() {
                    state.store.mark_room_creation(id, None).await?;
                }
                state.store.clear_provisioning(id, tc.version).await?;
                return Ok(());
            }
        };
        let room = match recovered {
            Some(room) => room,
            None => create_room(state, id, &spec).await?,
        };
        if switch_to(state, tc, &spec, &room).await? {
            state.store.mark_room_creation(id, None).await?;
            return Ok(());
        }
        // The teleconsultation changed and no longer wants this room: retire it (unless
        // someone else recorded it meanwhile, e.g. after our lease expired), look again.
        if !state.store.is_room_known(&room.id).await? {
            state
                .store
                .retire_room(&room.id, Some(id), state.clock.now())
                .await?;
            delete_rooms(state, std::slice::from_ref(&room.id)).await;
        }
        state.store.mark_room_creation(id, None).await?;
    }
    Ok(())
}

/// Records `room` (made for `spec`) as the room of `tc` and retires its old room. When `tc`
/// changed meanwhile, tries again on the fresh record as long as it still wants a room for
/// this very spec (a change of the start date alone, say). False when it no longer does.
async fn switch_to(
    state: &AppState,
    mut tc: Teleconsultation,
    spec: &RoomSpec,
    room: &kaleyra_client::Room,
) -> Result<bool, ProvisionError> {
    let fingerprint = spec.fingerprint();
    loop {
        let wants_this_room = tc.needs_room()
            && tc.desired_room.as_ref().map(RoomSpec::fingerprint) == Some(fingerprint.clone());
        if !wants_this_room {
            return Ok(false);
        }
        let retired: Vec<String> = tc.room_id.iter().cloned().collect();
        let mut switched = tc.clone();
        switched.room_id = Some(room.id.clone());
        switched.room_fingerprint = Some(fingerprint.clone());
        switched.provision_due_at = None;
        for participant in &mut switched.participants {
            participant.link = room
                .participants
                .iter()
                .find(|p| p.user_id == participant.kaleyra_user_id)
                .map(|p| p.link.clone());
        }
        match state
            .store
            .update_teleconsultation(&switched, &retired)
            .await
        {
            Ok(_) => {
                tracing::info!(teleconsultation = %tc.id, room = %room.id, "room created");
                delete_rooms(state, &retired).await;
                return Ok(true);
            }
            Err(StoreError::StaleVersion) => {
                match state.store.get_teleconsultation(&tc.id).await? {
                    Some(fresh) => tc = fresh,
                    None => return Ok(false),
                }
            }
            Err(err) => {
                // Not recorded: never leave the room behind unknown.
                if let Err(retire_err) = state
                    .store
                    .retire_room(&room.id, Some(&tc.id), state.clock.now())
                    .await
                {
                    tracing::error!(room = %room.id, error = %retire_err, "room created but not recorded");
                }
                return Err(err.into());
            }
        }
    }
}

/// Creates the room for `spec`, marking the attempt first: if the answer is lost (crash,
/// timeout, dropped connection) the next attempt finds the room by its tag instead of
/// making a second one.
async fn create_room(
    state: &AppState,
    id: &str,
    spec: &RoomSpec,
) -> Result<kaleyra_client::Room, ProvisionError> {
    let fingerprint = spec.fingerprint();
    state
        .store
        .mark_room_creation(id, Some(&fingerprint))
        .await?;
    match state
        .kaleyra
        .create_room(&create_room_request(spec, id))
        .await
    {
        Ok(room) => {
            metrics::counter!("rooms_created_total").increment(1);
            Ok(room)
        }
        Err(err) => {
            if !err.may_have_taken_effect() {
                state.store.mark_room_creation(id, None).await?;
            }
            Err(err.into())
        }
    }
}

/// Looks on Kaleyra for rooms tagged for `tc` that no record knows (answers lost on the way
/// back). Returns one that fits the current spec, to be adopted; retires the others.
async fn recover_lost_rooms(
    state: &AppState,
    tc: &crate::store::Teleconsultation,
) -> Result<Option<kaleyra_client::Room>, ProvisionError> {
    let wanted = tc
        .desired_room
        .as_ref()
        .filter(|_| tc.needs_room())
        .map(RoomSpec::fingerprint);
    let mut adopted = None;
    for room in state.kaleyra.list_rooms().await? {
        let Some((owner, fingerprint)) = room.description.as_deref().and_then(parse_description)
        else {
            continue;
        };
        if owner != tc.id || state.store.is_room_known(&room.id).await? {
            continue;
        }
        if adopted.is_none() && wanted.as_deref() == Some(fingerprint.as_str()) {
            tracing::info!(teleconsultation = %tc.id, room = %room.id, "found a room whose creation answer was lost");
            adopted = Some(room);
        } else {
            state
                .store
                .retire_room(&room.id, Some(&tc.id), state.clock.now())
                .await?;
            delete_rooms(state, std::slice::from_ref(&room.id)).await;
        }
    }
    // The mark stays until the adopted room (or a new one) is recorded: until then a sweep
    // must not take the room for an orphan.
    Ok(adopted)
}

/// Deletes rooms that carry our tag but that no record knows and no creation in flight
/// explains, once older than [`ORPHAN_GRACE`]. Returns how many were retired. The safety
/// net behind the creation marks (e.g. the database failed right after a creation).
pub async fn sweep_orphans(state: &AppState) -> Result<u64, ProvisionError> {
    let rooms = state.kaleyra.list_rooms().await?;
    let now = state.clock.now();
    let mut retired = 0;
    for room in rooms {
        let Some((teleconsultation_id, fingerprint)) =
            room.description.as_deref().and_then(parse_description)
        else {
            continue; // not ours
        };
        if room.creation_date > now - ORPHAN_GRACE {
            continue;
        }
        // The record first, then whether the room is known: a room being recorded right now
        // is seen either as in flight or as known.
        let in_flight = state
            .store
            .get_teleconsultation(&teleconsultation_id)
            .await?
            .is_some_and(|tc| {
                tc.state == TeleconsultationState::Active
                    && tc.provision_due_at.is_some()
                    && tc.creating_fingerprint.as_deref() == Some(fingerprint.as_str())
            });
        if in_flight || state.store.is_room_known(&room.id).await? {
            continue;
        }
        tracing::warn!(room = %room.id, teleconsultation = %teleconsultation_id, "orphan room found; deleting it");
        state
            .store
            .retire_room(&room.id, Some(&teleconsultation_id), now)
            .await?;
        delete_rooms(state, std::slice::from_ref(&room.id)).await;
        retired += 1;
    }
    Ok(retired)
}

/// The Kaleyra request for `spec`. The description is our tag (teleconsultation id and
/// spec fingerprint), so a room whose creation answer was lost can be found again.
pub fn create_room_request(spec: &RoomSpec, teleconsultation_id: &str) -> CreateRoom {
    CreateRoom {
        participants: spec
            .participants
            .iter()
            .map(|p| NewParticipant {
                user_id: p.kaleyra_user_id.clone(),
                is_admin: p.is_admin,
                // Same field names on both sides: a JSON round trip maps them.
                tools: p
                    .tools
                    .as_ref()
                    .and_then(|tools| serde_json::to_value(tools).ok())
                    .and_then(|tools| serde_json::from_value(tools).ok()),
            })
            .collect(),
        duration: spec.duration_secs.and_then(|secs| u64::try_from(secs).ok()),
        live: Some(spec.live),
        recording: Some(match spec.recording {
            Recording::None => kaleyra_client::Recording::None,
            Recording::Manual => kaleyra_client::Recording::Manual,
            Recording::Automatic => kaleyra_client::Recording::Automatic,
        }),
        call_type: None,
        description: Some(spec.description(teleconsultation_id)),
    }
}

/// Deletes retired rooms now (best effort): what fails stays queued for the worker.
pub async fn delete_rooms(state: &AppState, room_ids: &[String]) {
    for room_id in room_ids {
        match claim_deletion(state, Some(room_id)).await {
            Ok(Some(entry)) => delete_room(state, &entry).await,
            Ok(None) => {} // another worker has it, or it is not due yet
            Err(err) => {
                tracing::warn!(room = %room_id, error = %err, "room deletion left to the worker")
            }
        }
    }
}

/// Leases one due deletion (`room_id`'s, when given) for a fresh piece of work. The lease
/// ends with the entry (deleted) or with its postponement.
async fn claim_deletion(
    state: &AppState,
    room_id: Option<&str>,
) -> Result<Option<RoomDeletion>, StoreError> {
    let now = state.clock.now();
    state
        .store
        .claim_room_deletion(room_id, now, &lease_owner(state), now + lease(state))
        .await
}

/// Deletes a leased room: done → forgotten; failed → retried later (lease given up).
async fn delete_room(state: &AppState, entry: &RoomDeletion) {
    match state.kaleyra.delete_room(&entry.room_id).await {
        Ok(outcome) => {
            if outcome == DeleteOutcome::Deleted {
                metrics::counter!("rooms_deleted_total").increment(1);
            }
            if let Err(err) = state.store.finish_room_deletion(&entry.room_id).await {
                tracing::warn!(room = %entry.room_id, error = %err, "room deleted; queue entry kept, will retry");
            }
        }
        Err(err) => {
            let retry_at = deletion_retry_at(state.clock.now(), entry.attempts);
            tracing::warn!(room = %entry.room_id, error = %err, retry_at = %retry_at, "room deletion failed; will retry");
            if let Err(store_err) = state
                .store
                .postpone_room_deletion(&entry.room_id, retry_at)
                .await
            {
                tracing::error!(room = %entry.room_id, error = %store_err, "cannot postpone room deletion");
            }
        }
    }
}

fn deletion_retry_at(now: DateTime<Utc>, attempts: u32) -> DateTime<Utc> {
    let factor = 1_i32 << attempts.min(10);
    now + (FIRST_DELETION_BACKOFF * factor).min(MAX_DELETION_BACKOFF)
}

/// One background pass: every due provisioning (leased to this instance, so that other
/// instances take other work), then every due room deletion.
pub async fn run_due(state: &AppState) -> Result<(), StoreError> {
    // One at a time, each leased just before it is worked on: a lease taken for a whole
    // batch could expire before the batch reaches it.
    for _ in 0..BATCH {
        let owner = lease_owner(state);
        let now = state.clock.now();
        let claimed = state
            .store
            .claim_due_provisioning(now, &owner, now + lease(state), 1)
            .await?;
        let Some(id) = claimed.first() else { break };
        // Errors are logged and postponed inside.
        let _ = converge_leased(state, id, &owner).await;
    }
    for _ in 0..BATCH {
        let Some(entry) = claim_deletion(state, None).await? else {
            break;
        };
        delete_room(state, &entry).await;
    }
    let backlog = state
        .store
        .backlog(state.clock.now(), state.config.immutable_period_ms)
        .await?;
    if backlog.rooms_missing_at_start > 0 {
        tracing::warn!(
            rooms_missing_at_start = backlog.rooms_missing_at_start,
            "teleconsultations whose links are due have no room yet"
        );
    }
    Ok(())
}

/// The background worker: a pass every [`POLL_INTERVAL`] until `shutdown`, and now and
/// then a sweep for orphan rooms.
pub async fn run_worker(state: AppState, shutdown: CancellationToken) {
    let mut passes: u32 = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL_INTERVAL) => {
                if let Err(err) = run_due(&state).await {
                    tracing::warn!(error = %err, "provisioning pass failed");
                }
                passes = passes.wrapping_add(1);
                if passes.is_multiple_of(SWEEP_EVERY)
                    && let Err(err) = sweep_orphans(&state).await
                {
                    tracing::warn!(error = %err, "orphan sweep failed");
                }
            }
        }
    }
}
