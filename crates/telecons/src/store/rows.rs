//! The stored formats: row types of the store's own, and their mapping to and from the
//! domain. Nothing here follows a domain type's field names, so renaming a field in the code
//! never changes what is stored (the room spec, say, whose fingerprint names live rooms).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::{
    ClaimedEvent, EventState, FailedEvent, Installation, InstallationMode, KaleyraUser,
    RoomDeletion, StoredEvent,
};
use super::{StoreError, StoreResult};
use crate::domain::agenda::AgendaItem;
use crate::domain::events::LinksMoment;
use crate::domain::idempotency::{KeptAnswer, KeptKey};
use crate::domain::roles::{Role, Tool, Tools};
use crate::domain::room_spec::{Recording, RoomSpec, RoomSpecParticipant};
use crate::domain::schedule::Schedule;
use crate::domain::teleconsultation::{Participant, Teleconsultation, TeleconsultationState};

/// A teleconsultation row joined with one of its participants (none for an empty list).
#[derive(sqlx::FromRow)]
pub struct JoinedRow {
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
pub struct KaleyraUserRow {
    external_id: String,
    kaleyra_user_id: String,
    role: String,
    created_at_ms: i64,
    updated_at_ms: i64,
}

#[derive(sqlx::FromRow)]
pub struct InstallationRow {
    id: String,
    mode: String,
    created_at_ms: i64,
}

#[derive(sqlx::FromRow)]
pub struct RoomDeletionRow {
    room_id: String,
    teleconsultation_id: Option<String>,
    due_at_ms: i64,
    attempts: i64,
}

/// The stored room spec (column `desired_room`, JSON). Its field names are a stored format.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRoomSpec {
    participants: Vec<StoredRoomParticipant>,
    duration_secs: Option<i64>,
    live: bool,
    recording: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredRoomParticipant {
    kaleyra_user_id: String,
    is_admin: bool,
    /// All eight tools by wire name when restricted; `null` = all tools on.
    #[serde(default)]
    tools: Option<BTreeMap<String, bool>>,
}

pub fn instant(ms: i64) -> StoreResult<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("instant {ms} ms out of range")))
}

pub fn state_text(state: TeleconsultationState) -> &'static str {
    match state {
        TeleconsultationState::Active => "active",
        TeleconsultationState::Deleted => "deleted",
    }
}

fn state(text: &str) -> StoreResult<TeleconsultationState> {
    match text {
        "active" => Ok(TeleconsultationState::Active),
        "deleted" => Ok(TeleconsultationState::Deleted),
        other => Err(StoreError::Corrupt(format!("state {other:?}"))),
    }
}

/// A links moment as the `links_event` column holds it.
pub fn links_moment_text(moment: LinksMoment) -> &'static str {
    match moment {
        LinksMoment::Due => "due",
        LinksMoment::RoomMissing => "missing",
    }
}

pub fn links_moment(text: &str) -> StoreResult<LinksMoment> {
    match text {
        "due" => Ok(LinksMoment::Due),
        "missing" => Ok(LinksMoment::RoomMissing),
        other => Err(StoreError::Corrupt(format!("links_event {other:?}"))),
    }
}

pub fn role_text(role: Role) -> &'static str {
    match role {
        Role::Basic => "basic",
        Role::Plus => "plus",
    }
}

fn role(text: &str) -> StoreResult<Role> {
    match text {
        "basic" => Ok(Role::Basic),
        "plus" => Ok(Role::Plus),
        other => Err(StoreError::Corrupt(format!("role {other:?}"))),
    }
}

fn recording_text(recording: Recording) -> &'static str {
    match recording {
        Recording::None => "none",
        Recording::Manual => "manual",
        Recording::Automatic => "automatic",
    }
}

fn recording(text: &str) -> StoreResult<Recording> {
    match text {
        "none" => Ok(Recording::None),
        "manual" => Ok(Recording::Manual),
        "automatic" => Ok(Recording::Automatic),
        other => Err(StoreError::Corrupt(format!("recording {other:?}"))),
    }
}

/// The JSON of `spec` for column `desired_room`.
pub fn room_spec_json(spec: &RoomSpec) -> String {
    let stored = StoredRoomSpec {
        participants: spec
            .participants()
            .iter()
            .map(|p| StoredRoomParticipant {
                kaleyra_user_id: p.kaleyra_user_id.clone(),
                is_admin: p.is_admin,
                tools: p.tools.as_ref().map(|tools| {
                    Tool::ALL
                        .into_iter()
                        .map(|tool| (tool.as_str().to_owned(), tools.is_enabled(tool)))
                        .collect()
                }),
            })
            .collect(),
        duration_secs: spec.duration_secs(),
        live: spec.live(),
        recording: recording_text(spec.recording()).to_owned(),
    };
    serde_json::to_string(&stored).expect("plain data always serializes")
}

/// Reads back [`room_spec_json`]. A tool name we do not know is corrupt data, never "all
/// tools on": a room is made with exactly the tools stored, or not at all.
pub fn room_spec(json: &str) -> StoreResult<RoomSpec> {
    let stored: StoredRoomSpec = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("desired room: {e}")))?;
    let participants = stored
        .participants
        .into_iter()
        .map(|p| {
            let tools = p
                .tools
                .map(|tools| {
                    tools
                        .into_iter()
                        .map(|(name, on)| {
                            let tool = name.parse::<Tool>().map_err(|e| {
                                StoreError::Corrupt(format!("desired room tools: {e}"))
                            })?;
                            Ok(on.then_some(tool))
                        })
                        .collect::<StoreResult<Vec<Option<Tool>>>>()
                        .map(|enabled| Tools::new(enabled.into_iter().flatten()))
                })
                .transpose()?;
            Ok(RoomSpecParticipant {
                kaleyra_user_id: p.kaleyra_user_id,
                is_admin: p.is_admin,
                tools,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(RoomSpec::from_parts(
        participants,
        stored.duration_secs,
        stored.live,
        recording(&stored.recording)?,
    ))
}

/// The participant's groups for column `groups_json`.
pub fn groups_json(groups: &[String]) -> String {
    serde_json::to_string(groups).expect("strings always serialize")
}

/// Folds joined rows (ordered by teleconsultation, then position) into records.
pub fn assemble(rows: Vec<JoinedRow>) -> StoreResult<Vec<Teleconsultation>> {
    let mut out: Vec<Teleconsultation> = Vec::new();
    for row in rows {
        if out.last().is_none_or(|tc| tc.id != row.id) {
            out.push(Teleconsultation {
                id: row.id.clone(),
                version: row.version,
                state: state(&row.state)?,
                participant_count: u32::try_from(row.participant_count)
                    .map_err(|_| StoreError::Corrupt("participant_count".into()))?,
                start: instant(row.start_at_ms)?,
                duration_secs: row.duration_secs,
                participants: Vec::new(),
                desired_room: row.desired_room.as_deref().map(room_spec).transpose()?,
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

/// What the agenda list reads of a live teleconsultation ([`AgendaItem`]): `known` is the
/// number of its participants.
#[derive(sqlx::FromRow)]
pub struct AgendaItemRow {
    id: String,
    start_at_ms: i64,
    duration_secs: i64,
    participant_count: i64,
    known: i64,
}

pub fn agenda_item(row: AgendaItemRow) -> StoreResult<AgendaItem> {
    let start = instant(row.start_at_ms)?;
    Ok(AgendaItem {
        start,
        id: row.id,
        end: Schedule {
            start,
            duration_secs: row.duration_secs,
        }
        .end(),
        complete: row.known == row.participant_count,
    })
}

pub fn kaleyra_user(row: KaleyraUserRow) -> StoreResult<KaleyraUser> {
    Ok(KaleyraUser {
        external_id: row.external_id,
        kaleyra_user_id: row.kaleyra_user_id,
        role: role(&row.role)?,
        created_at: instant(row.created_at_ms)?,
        updated_at: instant(row.updated_at_ms)?,
    })
}

pub fn mode_text(mode: InstallationMode) -> &'static str {
    match mode {
        InstallationMode::Service => "service",
        InstallationMode::Demo => "demo",
    }
}

pub fn installation(row: InstallationRow) -> StoreResult<Installation> {
    Ok(Installation {
        id: row.id,
        mode: match row.mode.as_str() {
            "service" => InstallationMode::Service,
            "demo" => InstallationMode::Demo,
            other => return Err(StoreError::Corrupt(format!("installation mode {other:?}"))),
        },
        created_at: instant(row.created_at_ms)?,
    })
}

pub fn room_deletion(row: RoomDeletionRow) -> StoreResult<RoomDeletion> {
    Ok(RoomDeletion {
        room_id: row.room_id,
        teleconsultation_id: row.teleconsultation_id,
        due_at: instant(row.due_at_ms)?,
        attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
    })
}

#[derive(sqlx::FromRow)]
pub struct KeptKeyRow {
    fingerprint: String,
    lease_until_ms: Option<i64>,
    teleconsultation_id: Option<String>,
    answer_status: Option<i64>,
    answer_body: Option<String>,
}

/// A key as kept: booked, refused, or (neither) still running.
pub fn kept_key(row: KeptKeyRow) -> StoreResult<KeptKey> {
    let answer = match (row.teleconsultation_id, row.answer_status, row.answer_body) {
        (Some(room_id), _, _) => Some(KeptAnswer::Booked { room_id }),
        (None, Some(status), Some(body)) => Some(KeptAnswer::Refused {
            status: u16::try_from(status)
                .map_err(|_| StoreError::Corrupt(format!("answer status {status}")))?,
            body,
        }),
        _ => None,
    };
    Ok(KeptKey {
        fingerprint: row.fingerprint,
        answer,
        lease_until: row.lease_until_ms.map(instant).transpose()?,
    })
}

/// A claimed event ([`super::Store::claim_events`]); `due_at_ms` orders a claim's events.
#[derive(sqlx::FromRow)]
pub struct ClaimedEventRow {
    id: i64,
    webhook_id: String,
    teleconsultation_id: String,
    r#type: String,
    body: String,
    attempts: i64,
    due_at_ms: i64,
    created_at_ms: i64,
}

impl ClaimedEventRow {
    /// Where the event comes in a claim: oldest due first.
    pub fn claim_order(&self) -> (i64, i64) {
        (self.due_at_ms, self.id)
    }
}

pub fn claimed_event(row: ClaimedEventRow) -> StoreResult<ClaimedEvent> {
    Ok(ClaimedEvent {
        id: row.id,
        webhook_id: row.webhook_id,
        teleconsultation_id: row.teleconsultation_id,
        event_type: row.r#type,
        body: row.body,
        attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        created_at: instant(row.created_at_ms)?,
    })
}

/// A given-up event ([`super::Store::failed_events`]).
#[derive(sqlx::FromRow)]
pub struct FailedEventRow {
    webhook_id: String,
    r#type: String,
    teleconsultation_id: String,
    last_answer: Option<String>,
}

pub fn failed_event(row: FailedEventRow) -> FailedEvent {
    FailedEvent {
        webhook_id: row.webhook_id,
        event_type: row.r#type,
        teleconsultation_id: row.teleconsultation_id,
        last_answer: row.last_answer,
    }
}

/// An event as kept ([`super::Store::all_events`]).
#[derive(sqlx::FromRow)]
pub struct StoredEventRow {
    id: i64,
    webhook_id: String,
    teleconsultation_id: String,
    r#type: String,
    state: String,
    attempts: i64,
}

pub fn stored_event(row: StoredEventRow) -> StoreResult<StoredEvent> {
    let state = match row.state.as_str() {
        "pending" => EventState::Pending,
        "delivered" => EventState::Delivered,
        "given_up" => EventState::GivenUp,
        other => return Err(StoreError::Corrupt(format!("event state {other:?}"))),
    };
    Ok(StoredEvent {
        id: row.id,
        webhook_id: row.webhook_id,
        teleconsultation_id: row.teleconsultation_id,
        event_type: row.r#type,
        state,
        attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::roles::Privileges;
    use crate::domain::room_spec::{RoomRules, RoomSettings};

    fn spec() -> RoomSpec {
        let mut privileges = Privileges::default();
        privileges.plus.tools = Some(Tools::new([Tool::Whiteboard]));
        let rules = RoomRules {
            privileges,
            settings: RoomSettings {
                unlimited: false,
                live: true,
                recording: Recording::Automatic,
            },
        };
        RoomSpec::new(
            &[
                ("tc_doc".to_owned(), Role::Plus),
                ("tc_pat".to_owned(), Role::Basic),
            ],
            600,
            &rules,
        )
    }

    #[test]
    fn json_round_trip() {
        let r = spec();
        let back = room_spec(&room_spec_json(&r)).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.fingerprint(), r.fingerprint());
    }

    /// What the first release stored: a stored spec must keep reading as the same spec.
    #[test]
    fn the_stored_room_spec_format_is_pinned() {
        let stored = r#"{"participants":[{"kaleyra_user_id":"tc_doc","is_admin":true,"tools":null},{"kaleyra_user_id":"tc_pat","is_admin":false,"tools":{"chat":true,"file_upload":true,"live_edit":false,"live_pointer":false,"present_to_everyone":false,"screen_sharing":false,"snapshot":false,"whiteboard":false}}],"duration_secs":null,"live":true,"recording":"none"}"#;
        let spec = room_spec(stored).unwrap();
        assert_eq!(room_spec_json(&spec), stored);
        assert_eq!(spec.fingerprint(), "f1d3112c9b9a10af");
        assert_eq!(
            spec.participants()[1].tools,
            Some(Tools::new([Tool::Chat, Tool::FileUpload]))
        );
    }

    #[test]
    fn an_unknown_stored_tool_fails_closed() {
        let stored = r#"{"participants":[{"kaleyra_user_id":"tc_a","is_admin":true,"tools":{"teleport":true}}],"duration_secs":null,"live":true,"recording":"none"}"#;
        assert!(matches!(room_spec(stored), Err(StoreError::Corrupt(_))));
        let stored = r#"{"participants":[],"duration_secs":null,"live":true,"recording":"loud"}"#;
        assert!(matches!(room_spec(stored), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn stored_texts_round_trip() {
        for s in [
            TeleconsultationState::Active,
            TeleconsultationState::Deleted,
        ] {
            assert_eq!(state(state_text(s)).unwrap(), s);
        }
        for r in [Role::Basic, Role::Plus] {
            assert_eq!(role(role_text(r)).unwrap(), r);
        }
        assert!(matches!(role("admin"), Err(StoreError::Corrupt(_))));
    }
}
