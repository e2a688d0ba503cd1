//! Compares what the store says with what Kaleyra has: every live, complete teleconsultation
//! should have exactly its recorded room, matching its spec; no room tagged by this service
//! should exist without one. Used by `telecons audit`, the soak command and the tests.

use std::collections::{BTreeMap, BTreeSet};

use kaleyra_client::Room;
use serde::Serialize;

use super::{ProvisionError, Provisioner};
use crate::domain::room_spec::{RoomSpec, RoomTag};
use crate::domain::teleconsultation::Teleconsultation;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Live teleconsultations that should have a room (all participants known).
    pub rooms_expected: u64,
    /// Rooms on Kaleyra tagged by this installation.
    pub rooms_live: u64,
    /// Expected rooms that exist, are recorded and match their spec.
    pub rooms_matching: u64,
    /// Teleconsultations whose room is missing, not yet recorded, or does not match.
    pub missing: Vec<String>,
    /// Tagged rooms that no live teleconsultation has (deletion pending, or leaked).
    pub orphans: Vec<String>,
    /// Rooms this installation did not make (another deployment's, or made by hand): never
    /// touched.
    pub untagged_rooms: u64,
    /// Rooms carrying this installation's id that this database neither knows nor recorded
    /// the creation of (made by a copy of the database, by its original, or before attempts
    /// were recorded): never touched, not counted in `rooms_live`, not an inconsistency of
    /// this database.
    pub rooms_of_unknown_attempts: Vec<String>,
}

impl AuditReport {
    /// Every expected room is there and matches, and nothing else of ours exists.
    pub fn is_consistent(&self) -> bool {
        self.missing.is_empty()
            && self.orphans.is_empty()
            && self.rooms_matching == self.rooms_expected
            && self.rooms_live == self.rooms_expected
    }
}

const PAGE: u32 = 500;

impl Provisioner {
    /// Compares every live teleconsultation with Kaleyra's rooms.
    pub async fn audit(&self) -> Result<AuditReport, ProvisionError> {
        let rooms = self.kaleyra.list_rooms().await?;
        let mut live = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.store.list_live_teleconsultations(&after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            live.extend(page);
        }
        let mut report = compare(&live, &rooms, &self.settings.installation_id);
        // An orphan this database neither knows (deletion pending) nor made is not its own.
        let tags: BTreeMap<&str, RoomTag> = rooms
            .iter()
            .filter_map(|room| self.own_tag(room).map(|tag| (room.id.as_str(), tag)))
            .collect();
        let mut orphans = Vec::new();
        for id in std::mem::take(&mut report.orphans) {
            let ours = match tags.get(id.as_str()) {
                Some(tag) => self.made_here(tag).await? || self.store.is_room_known(&id).await?,
                None => true,
            };
            if ours {
                orphans.push(id);
            } else {
                report.rooms_live -= 1;
                report.rooms_of_unknown_attempts.push(id);
            }
        }
        report.orphans = orphans;
        Ok(report)
    }
}

/// The comparison itself, pure.
pub fn compare(live: &[Teleconsultation], rooms: &[Room], installation_id: &str) -> AuditReport {
    let mut report = AuditReport::default();
    let mut tagged: BTreeMap<&str, &Room> = BTreeMap::new();
    for room in rooms {
        let ours = room
            .description
            .as_deref()
            .and_then(RoomTag::parse)
            .is_some_and(|tag| tag.is_of(installation_id));
        if ours {
            tagged.insert(room.id.as_str(), room);
        } else {
            report.untagged_rooms += 1;
        }
    }
    report.rooms_live = tagged.len() as u64;
    let mut claimed: BTreeSet<&str> = BTreeSet::new();
    for tc in live {
        let Some(spec) = &tc.desired_room else {
            continue;
        };
        report.rooms_expected += 1;
        let room = tc.room_id.as_deref().and_then(|id| tagged.get(id));
        match room {
            Some(room) if tc.room_is_current() && room_matches(room, spec, &tc.id) => {
                report.rooms_matching += 1;
                claimed.insert(room.id.as_str());
            }
            _ => report.missing.push(tc.id.clone()),
        }
    }
    report.orphans = tagged
        .keys()
        .filter(|id| !claimed.contains(*id))
        .map(|id| (*id).to_owned())
        .collect();
    report
}

/// Whether Kaleyra's room is the one `spec` describes (participants and their admin flag,
/// duration, live, recording, and our tag for this teleconsultation and spec).
fn room_matches(room: &Room, spec: &RoomSpec, teleconsultation_id: &str) -> bool {
    let wanted: BTreeSet<(&str, bool)> = spec
        .participants()
        .iter()
        .map(|p| (p.kaleyra_user_id.as_str(), p.is_admin))
        .collect();
    let actual: BTreeSet<(&str, bool)> = room
        .participants
        .iter()
        .map(|p| (p.user_id.as_str(), p.is_admin))
        .collect();
    let duration = spec
        .duration_secs()
        .and_then(|d| u64::try_from(d).ok())
        .unwrap_or(0);
    let tagged_for_it = room
        .description
        .as_deref()
        .and_then(RoomTag::parse)
        .is_some_and(|tag| {
            tag.teleconsultation_id == teleconsultation_id && tag.fingerprint == spec.fingerprint()
        });
    wanted == actual
        && room.participants.len() == spec.participants().len()
        && room.duration_in_seconds == duration
        && room.live == spec.live()
        && room.recording == spec.recording().as_str()
        && tagged_for_it
}
