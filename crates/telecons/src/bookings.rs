//! The teleconsultation lifecycle (spec §4.1–§4.6): validation, the stored effect, then the
//! provisioner. HTTP-free: handlers translate requests into these calls and errors into
//! responses.
//!
//! Every change is a read–modify–write on a versioned record. When another request changed
//! the record in between, the change is re-decided on the fresh record (up to a few times):
//! concurrent changes never both apply on stale data, and callers rarely see a conflict.

use chrono::{DateTime, Utc};
use kaleyra_client::{DeleteOutcome, KaleyraError, Room};

use crate::app::AppState;
use crate::directory::DirectoryError;
use crate::domain::links::{LinkLanguage, access_link};
use crate::domain::room_spec::RoomSpec;
use crate::domain::roster::{Role, check_participants, has_plus};
use crate::domain::schedule::{self, DurationInput, Schedule};
use crate::provisioner;
use crate::store::{Participant, StoreError, Teleconsultation, TeleconsultationState};
use crate::users;

/// How many times a change is re-decided after losing a race before answering 409. Each
/// stored change may be followed by the provisioner's own (the room switch), so a burst of
/// N concurrent changes needs up to about 2N attempts for the last one.
const MAX_ATTEMPTS: usize = 24;

/// One participant as given by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantInput {
    pub external_id: String,
    pub groups: Option<Vec<String>>,
    pub full_name: Option<String>,
    pub language: Option<String>,
}

/// The two formats of `participants`.
#[derive(Debug, Clone, PartialEq)]
pub enum ParticipantsInput {
    /// Plain user ids, resolved through the user directory.
    Ids(Vec<String>),
    Listed {
        number: i64,
        data: Vec<ParticipantInput>,
    },
}

/// The fields of a POST or PATCH body; `None` = not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BookingInput {
    pub participants: Option<ParticipantsInput>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub duration_secs: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error("teleconsultation {0} not found")]
    NotFound(String),
    #[error("unauthorized user")]
    Unauthorized,
    #[error("{0}")]
    Invalid(String),
    #[error("teleconsultation {id} can no longer be changed: changes are refused from {}", schedule::format_instant(*.from))]
    Immutable { id: String, from: DateTime<Utc> },
    #[error("{0}")]
    Conflict(String),
    #[error("no plus user in room")]
    NoPlusUser,
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error(transparent)]
    Kaleyra(#[from] KaleyraError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

type Result<T> = std::result::Result<T, BookingError>;

/// `POST /teleconsultation`: stores a new teleconsultation and provisions it. Returns its id.
pub async fn create(
    state: &AppState,
    input: BookingInput,
    caller: Option<String>,
) -> Result<String> {
    let participants_input = input
        .participants
        .ok_or_else(|| BookingError::Invalid("participants is required".into()))?;
    let start = input
        .start
        .ok_or_else(|| BookingError::Invalid("start_date is required".into()))?;
    let duration = duration_input(input.end, input.duration_secs)?.ok_or_else(|| {
        BookingError::Invalid("one of end_date or duration_in_seconds is required".into())
    })?;
    let schedule =
        Schedule::new(start, duration).map_err(|e| BookingError::Invalid(e.to_string()))?;
    let (number, participants) = resolve_participants(state, participants_input).await?;
    let now = state.clock.now();
    let mut tc = Teleconsultation {
        id: state.ids.next(now),
        version: 1,
        state: TeleconsultationState::Active,
        participant_count: number,
        start: schedule.start,
        duration_secs: schedule.duration_secs,
        participants,
        desired_room: None,
        room_id: None,
        room_fingerprint: None,
        provision_due_at: None,
        creating_fingerprint: None,
        created_at: now,
        updated_at: now,
        created_by: caller.clone(),
        updated_by: caller,
    };
    plan_room(state, &mut tc)?;
    state.store.insert_teleconsultation(&tc).await?;
    provisioner::converge_inline(state, &tc.id).await;
    Ok(tc.id)
}

/// `PATCH /teleconsultation/:id`: applies the given fields, re-validates the result.
pub async fn update(
    state: &AppState,
    id: &str,
    input: BookingInput,
    caller: Option<String>,
) -> Result<()> {
    let duration = duration_input(input.end, input.duration_secs)?;
    let mut resolved = None;
    for _ in 0..MAX_ATTEMPTS {
        let current = live(state, id).await?;
        let mut next = current.clone();
        let start = input.start.unwrap_or(current.start);
        let schedule = match duration {
            Some(duration) => Schedule::new(start, duration),
            // A new start alone keeps the duration; bounds were checked when it was set.
            None => Ok(Schedule {
                start,
                duration_secs: current.duration_secs,
            }),
        }
        .map_err(|e| BookingError::Invalid(e.to_string()))?;
        next.start = schedule.start;
        next.duration_secs = schedule.duration_secs;
        if let Some(participants) = &input.participants {
            precheck_participants(state, participants)?;
        }
        refuse_if_immutable(state, &current)?;
        // Resolved once (directory and user map), then reused if the write must be retried.
        if let (Some(participants), None) = (&input.participants, &resolved) {
            resolved = Some(resolve_participants(state, participants.clone()).await?);
        }
        if let Some((number, participants)) = &resolved {
            next.participant_count = *number;
            next.participants = keep_links(&current, participants.clone());
        }
        if let Some(outcome) = save(state, &current, next, caller.clone()).await? {
            return Ok(outcome);
        }
        lost_a_race().await;
    }
    Err(changed_concurrently())
}

/// `POST /teleconsultation/:id/participants/data`: adds one participant.
pub async fn add_participant(
    state: &AppState,
    id: &str,
    entry: ParticipantInput,
    caller: Option<String>,
) -> Result<()> {
    let mut resolved = None;
    for _ in 0..MAX_ATTEMPTS {
        let current = live(state, id).await?;
        precheck_entry(state, &entry, "")?;
        refuse_if_immutable(state, &current)?;
        let participant = match &resolved {
            Some(participant) => Participant::clone(participant),
            None => resolve_entry(state, entry.clone(), "").await?,
        };
        resolved = Some(participant.clone());
        if current.is_complete() {
            return Err(BookingError::Conflict(format!(
                "all {} participants of teleconsultation {id} are already known",
                current.participant_count
            )));
        }
        if current.participant(&participant.external_id).is_some() {
            return Err(BookingError::Conflict(format!(
                "user {} is already a participant of teleconsultation {id}",
                participant.external_id
            )));
        }
        let mut next = current.clone();
        next.participants.push(participant);
        if let Some(outcome) = save(state, &current, next, caller.clone()).await? {
            return Ok(outcome);
        }
        lost_a_race().await;
    }
    Err(changed_concurrently())
}

/// `DELETE /teleconsultation/:id`: marks it deleted and deletes its room (now, or later if
/// Kaleyra is down).
pub async fn delete(state: &AppState, id: &str, caller: Option<String>) -> Result<()> {
    for _ in 0..MAX_ATTEMPTS {
        let current = live(state, id).await?;
        let mut next = current.clone();
        next.state = TeleconsultationState::Deleted;
        next.desired_room = None;
        next.room_id = None;
        next.room_fingerprint = None;
        // A room creation whose answer was lost may have left a room behind: the
        // provisioner looks for it (and deletes it) before forgetting this one.
        next.provision_due_at = current
            .creating_fingerprint
            .as_ref()
            .map(|_| state.clock.now());
        for participant in &mut next.participants {
            participant.link = None;
        }
        next.updated_at = state.clock.now();
        next.updated_by = caller.clone();
        let retired: Vec<String> = current.room_id.iter().cloned().collect();
        match state.store.update_teleconsultation(&next, &retired).await {
            Ok(_) => {
                provisioner::delete_rooms(state, &retired).await;
                return Ok(());
            }
            Err(StoreError::StaleVersion) => lost_a_race().await,
            Err(err) => return Err(err.into()),
        }
    }
    Err(changed_concurrently())
}

/// What `GET /teleconsultation/:id` shows its caller.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinView {
    pub kaleyra_user_id: String,
    pub access_link: Option<String>,
    /// Every known participant: Kaleyra user id and full name.
    pub participants: Vec<(String, Option<String>)>,
    pub details: Option<Room>,
}

/// The caller's options for its link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkOptions {
    pub use_background: bool,
    pub language: Option<String>,
    /// The caller's groups from the gateway, if it sent them.
    pub caller_groups: Option<Vec<String>>,
}

/// How long the room details may take: the join must not wait for them.
const DETAILS_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /teleconsultation/:id` for `caller`.
/// `tc` must be one [`authorize`] returned for `caller`.
pub async fn view(
    state: &AppState,
    tc: &Teleconsultation,
    caller: &str,
    options: LinkOptions,
) -> Result<JoinView> {
    let participant = tc.participant(caller).ok_or(BookingError::Unauthorized)?;
    let now = state.clock.now();
    let access_link = if tc.room_is_current()
        && schedule::link_available(now, tc.start, state.config.immutable_period_ms)
    {
        participant.link.as_deref().map(|link| {
            let language = options
                .language
                .as_deref()
                .and_then(LinkLanguage::parse)
                .or_else(|| {
                    participant
                        .language
                        .as_deref()
                        .and_then(LinkLanguage::parse)
                });
            let groups = options
                .caller_groups
                .as_ref()
                .unwrap_or(&participant.groups);
            let background = options.use_background
                || groups
                    .iter()
                    .any(|g| state.config.service.groups_with_background.contains(g));
            access_link(link, language, background)
        })
    } else {
        None
    };
    let details = match &tc.room_id {
        Some(room_id) => room_details(state, room_id).await,
        None => None,
    };
    Ok(JoinView {
        kaleyra_user_id: participant.kaleyra_user_id.clone(),
        access_link,
        participants: tc
            .participants
            .iter()
            .map(|p| (p.kaleyra_user_id.clone(), p.full_name.clone()))
            .collect(),
        details,
    })
}

async fn room_details(state: &AppState, room_id: &str) -> Option<Room> {
    let quick = state
        .kaleyra
        .with_retry_policy(kaleyra_client::RetryPolicy::none())
        .with_request_timeout(DETAILS_BUDGET);
    match quick.get_room(room_id).await {
        Ok(room) => Some(room),
        Err(err) => {
            tracing::warn!(room = room_id, error = %err, "room details unavailable; answering without them");
            None
        }
    }
}

/// `{total, deleted}` of `DELETE /teleconsultation/:id/uploads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadsDeleted {
    pub total: u64,
    pub deleted: u64,
}

/// `DELETE /teleconsultation/:id/uploads` (when enabled): deletes the files shared in the
/// room. Failures are counted, not fatal: the same request may be sent again.
pub async fn delete_uploads(
    state: &AppState,
    id: &str,
    caller: Option<&str>,
) -> Result<UploadsDeleted> {
    let tc = live(state, id).await?;
    if caller.and_then(|caller| tc.participant(caller)).is_none() {
        return Err(BookingError::Unauthorized);
    }
    let Some(room_id) = &tc.room_id else {
        return Ok(UploadsDeleted {
            total: 0,
            deleted: 0,
        });
    };
    let uploads = match state.kaleyra.list_uploads(room_id).await {
        Ok(uploads) => uploads,
        // A room Kaleyra no longer knows has no files left.
        Err(err) if err.is_not_found() => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    let mut deleted = 0;
    for upload in &uploads {
        match state.kaleyra.delete_upload(&upload.key).await {
            Ok(DeleteOutcome::Deleted | DeleteOutcome::AlreadyGone) => deleted += 1,
            Err(err) => tracing::warn!(upload = %upload.key, error = %err, "upload not deleted"),
        }
    }
    Ok(UploadsDeleted {
        total: uploads.len() as u64,
        deleted,
    })
}

/// `NotFound` unless `id` names a live teleconsultation (checked first: 404 comes before
/// any other error).
pub async fn ensure_live(state: &AppState, id: &str) -> Result<()> {
    live(state, id).await.map(|_| ())
}

/// The live teleconsultation `id` if `caller` participates in it: `NotFound`, then
/// `Unauthorized`, otherwise.
pub async fn authorize(
    state: &AppState,
    id: &str,
    caller: Option<&str>,
) -> Result<Teleconsultation> {
    let tc = live(state, id).await?;
    match caller.and_then(|caller| tc.participant(caller)) {
        Some(_) => Ok(tc),
        None => Err(BookingError::Unauthorized),
    }
}

/// The live teleconsultation `id`; a deleted one is as unknown as a missing one.
async fn live(state: &AppState, id: &str) -> Result<Teleconsultation> {
    match state.store.get_teleconsultation(id).await? {
        Some(tc) if tc.state == TeleconsultationState::Active => Ok(tc),
        _ => Err(BookingError::NotFound(id.to_owned())),
    }
}

fn duration_input(end: Option<DateTime<Utc>>, secs: Option<i64>) -> Result<Option<DurationInput>> {
    match (end, secs) {
        (Some(_), Some(_)) => Err(BookingError::Invalid(
            "give either end_date or duration_in_seconds, not both".into(),
        )),
        (Some(end), None) => Ok(Some(DurationInput::End(end))),
        (None, Some(secs)) => Ok(Some(DurationInput::Seconds(secs))),
        (None, None) => Ok(None),
    }
}

fn refuse_if_immutable(state: &AppState, tc: &Teleconsultation) -> Result<()> {
    let period = state.config.immutable_period_ms;
    if schedule::is_immutable(state.clock.now(), tc.start, period, tc.is_complete()) {
        return Err(BookingError::Immutable {
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

fn changed_concurrently() -> BookingError {
    BookingError::Conflict(
        "the teleconsultation kept changing under concurrent requests; try again".into(),
    )
}

/// The checks of a participant list that need no I/O (the 400s that come before a 409).
fn precheck_participants(state: &AppState, input: &ParticipantsInput) -> Result<()> {
    match input {
        ParticipantsInput::Ids(_) if state.config.auth_service.is_none() => {
            Err(ids_need_directory())
        }
        ParticipantsInput::Ids(ids) => {
            check_participants(i64::try_from(ids.len()).unwrap_or(i64::MAX), ids)
                .map_err(|e| BookingError::Invalid(e.to_string()))
        }
        ParticipantsInput::Listed { number, data } => {
            let ids: Vec<&str> = data.iter().map(|p| p.external_id.as_str()).collect();
            check_participants(*number, &ids).map_err(|e| BookingError::Invalid(e.to_string()))?;
            for (index, entry) in data.iter().enumerate() {
                precheck_entry(state, entry, &format!("participants.data[{index}]."))?;
            }
            Ok(())
        }
    }
}

/// The checks of one entry that need no I/O: without a directory, its groups, name and
/// role come from the body.
fn precheck_entry(state: &AppState, entry: &ParticipantInput, field_prefix: &str) -> Result<()> {
    let user = entry.external_id.as_str();
    if user.trim().is_empty() {
        return Err(BookingError::Invalid(format!(
            "{field_prefix}userId must be a non-empty string"
        )));
    }
    if state.config.auth_service.is_some() {
        return Ok(());
    }
    let groups = entry
        .groups
        .as_ref()
        .filter(|g| !g.is_empty())
        .ok_or_else(|| {
            BookingError::Invalid(format!(
                "{field_prefix}groups is required for user {user} (no user directory is configured)"
            ))
        })?;
    if entry.full_name.is_none() {
        return Err(BookingError::Invalid(format!(
            "{field_prefix}fullName is required for user {user} (no user directory is configured)"
        )));
    }
    state
        .config
        .service
        .privileges
        .require_role(user, groups)
        .map(|_| ())
        .map_err(|e| BookingError::Invalid(e.to_string()))
}

fn ids_need_directory() -> BookingError {
    BookingError::Invalid(
        "participants as a list of user ids needs the user directory, which is not \
         configured (AUTH_SERVICE); give participants as {\"number\": N, \"data\": [...]}"
            .into(),
    )
}

/// Validates a participant list and resolves each entry (role, Kaleyra user id).
async fn resolve_participants(
    state: &AppState,
    input: ParticipantsInput,
) -> Result<(u32, Vec<Participant>)> {
    let (number, data) = match input {
        ParticipantsInput::Ids(_) if state.config.auth_service.is_none() => {
            return Err(ids_need_directory());
        }
        // All known at once: `number` is the list's length.
        ParticipantsInput::Ids(ids) => (
            i64::try_from(ids.len()).unwrap_or(i64::MAX),
            ids.into_iter()
                .map(|external_id| ParticipantInput {
                    external_id,
                    groups: None,
                    full_name: None,
                    language: None,
                })
                .collect(),
        ),
        ParticipantsInput::Listed { number, data } => (number, data),
    };
    let ids: Vec<&str> = data.iter().map(|p| p.external_id.as_str()).collect();
    check_participants(number, &ids).map_err(|e| BookingError::Invalid(e.to_string()))?;
    let mut participants = Vec::with_capacity(data.len());
    for (index, entry) in data.into_iter().enumerate() {
        participants
            .push(resolve_entry(state, entry, &format!("participants.data[{index}].")).await?);
    }
    let number =
        u32::try_from(number).map_err(|_| BookingError::Invalid("participants.number".into()))?;
    Ok((number, participants))
}

/// One entry: its fields (`field_prefix` locates it in the body for messages), its role
/// from its groups, its Kaleyra user id.
async fn resolve_entry(
    state: &AppState,
    entry: ParticipantInput,
    field_prefix: &str,
) -> Result<Participant> {
    let user = entry.external_id.as_str();
    if user.trim().is_empty() {
        return Err(BookingError::Invalid(format!(
            "{field_prefix}userId must be a non-empty string"
        )));
    }
    let directory = match (&state.config.auth_service, &state.directory) {
        // Never fall back to the body's groups (the caller would choose its own role).
        (Some(_), None) => {
            return Err(DirectoryError::Unavailable("it could not be set up".into()).into());
        }
        (_, directory) => directory,
    };
    let (groups, full_name) = match directory {
        // The directory's groups and name; body values are ignored.
        Some(directory) => {
            let known = directory.user(user).await?.ok_or_else(|| {
                BookingError::Invalid(format!(
                    "{field_prefix}userId: user {user} is not known to the user directory"
                ))
            })?;
            (known.groups, known.full_name)
        }
        None => {
            let groups = entry.groups.filter(|g| !g.is_empty()).ok_or_else(|| {
                BookingError::Invalid(format!(
                    "{field_prefix}groups is required for user {user} (no user directory is configured)"
                ))
            })?;
            let full_name = entry.full_name.ok_or_else(|| {
                BookingError::Invalid(format!(
                    "{field_prefix}fullName is required for user {user} (no user directory is configured)"
                ))
            })?;
            (groups, Some(full_name))
        }
    };
    let role = state
        .config
        .service
        .privileges
        .require_role(user, &groups)
        .map_err(|e| BookingError::Invalid(e.to_string()))?;
    Ok(Participant {
        kaleyra_user_id: users::kaleyra_id_for(&*state.store, user).await?,
        external_id: entry.external_id,
        role,
        groups,
        full_name,
        language: entry.language,
        link: None,
    })
}

/// Participants given again keep their links while the room stays the same.
fn keep_links(current: &Teleconsultation, mut participants: Vec<Participant>) -> Vec<Participant> {
    for participant in &mut participants {
        participant.link = current
            .participant(&participant.external_id)
            .filter(|old| old.kaleyra_user_id == participant.kaleyra_user_id)
            .and_then(|old| old.link.clone());
    }
    participants
}

/// Derives the room `tc` should have and what to retire. Refuses a complete list without
/// a plus user.
fn plan_room(state: &AppState, tc: &mut Teleconsultation) -> Result<Vec<String>> {
    if !tc.is_complete() {
        tc.desired_room = None;
        let retired: Vec<String> = tc.room_id.take().into_iter().collect();
        tc.room_fingerprint = None;
        for participant in &mut tc.participants {
            participant.link = None;
        }
        // Users to create, or a room creation whose answer was lost to clean up.
        let work = !tc.participants.is_empty() || tc.creating_fingerprint.is_some();
        tc.provision_due_at = work.then(|| state.clock.now());
        return Ok(retired);
    }
    if !has_plus(tc.participants.iter().map(|p| p.role)) {
        return Err(BookingError::NoPlusUser);
    }
    let members: Vec<(String, Role)> = tc
        .participants
        .iter()
        .map(|p| (p.kaleyra_user_id.clone(), p.role))
        .collect();
    let schedule = Schedule {
        start: tc.start,
        duration_secs: tc.duration_secs,
    };
    tc.desired_room = Some(RoomSpec::new(
        &members,
        &schedule,
        &state.config.service.privileges,
        &state.config.room_settings(),
    ));
    tc.provision_due_at = Some(state.clock.now());
    Ok(Vec::new())
}

/// Stores `next` (derived from `current`) with its room plan. `None` when `current` was
/// changed meanwhile (the caller re-decides), `Some(())` when stored and provisioned.
async fn save(
    state: &AppState,
    current: &Teleconsultation,
    mut next: Teleconsultation,
    caller: Option<String>,
) -> Result<Option<()>> {
    let unchanged = next.participant_count == current.participant_count
        && next.start == current.start
        && next.duration_secs == current.duration_secs
        && next.participants == current.participants;
    let retired = plan_room(state, &mut next)?;
    if unchanged {
        return Ok(Some(())); // nothing to store: no write, no version bump
    }
    next.updated_at = state.clock.now();
    next.updated_by = caller;
    match state.store.update_teleconsultation(&next, &retired).await {
        Ok(_) => {
            provisioner::delete_rooms(state, &retired).await;
            provisioner::converge_inline(state, &next.id).await;
            Ok(Some(()))
        }
        Err(StoreError::StaleVersion) => Ok(None),
        Err(err) => Err(err.into()),
    }
}
