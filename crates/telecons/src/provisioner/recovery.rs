//! Finding rooms again: a room whose creation answer was lost is found by its tag and
//! adopted (or retired); a tagged room that no record knows is an orphan and is deleted.

use chrono::TimeDelta;

use super::{ProvisionError, Provisioner};
use crate::domain::room_spec::{RoomSpec, RoomTag};
use crate::domain::teleconsultation::Teleconsultation;

/// A tagged room nobody recorded is deleted only once it is this old, so that a creation
/// still in flight on another instance is never mistaken for an orphan.
pub const ORPHAN_GRACE: TimeDelta = TimeDelta::minutes(10);
/// At most this many of this installation's rooms are checked per sweep.
const SWEEP_BATCH: usize = 500;

/// The order in which sweeps go through the rooms (and where one stops).
pub(super) type SweepKey = (chrono::DateTime<chrono::Utc>, String);

fn sweep_key(room: &kaleyra_client::Room) -> SweepKey {
    (room.creation_date, room.id.clone())
}

impl Provisioner {
    /// Looks on Kaleyra for rooms tagged for `tc` that no record knows (answers lost on the
    /// way back). Returns one that fits the current spec, to be adopted; retires the others.
    pub(super) async fn recover_lost_rooms(
        &self,
        tc: &Teleconsultation,
    ) -> Result<Option<kaleyra_client::Room>, ProvisionError> {
        let wanted = tc
            .desired_room
            .as_ref()
            .filter(|_| tc.needs_room())
            .map(RoomSpec::fingerprint);
        let mut adopted = None;
        for room in self.kaleyra.list_rooms().await? {
            // This installation's only.
            let Some(tag) = room
                .description
                .as_deref()
                .and_then(RoomTag::parse)
                .filter(|tag| tag.is_of(&self.settings.installation_id))
            else {
                continue;
            };
            if tag.teleconsultation_id != tc.id || self.store.is_room_known(&room.id).await? {
                continue;
            }
            if adopted.is_none() && wanted == Some(tag.fingerprint.as_str()) {
                tracing::info!(teleconsultation = %tc.id, room = %room.id, "found a room whose creation answer was lost");
                adopted = Some(room);
            } else {
                self.store
                    .retire_room(&room.id, Some(&tc.id), self.clock.now())
                    .await?;
                self.delete_rooms(std::slice::from_ref(&room.id)).await;
            }
        }
        // The mark stays until the adopted room (or a new one) is recorded: until then a
        // sweep must not take the room for an orphan.
        Ok(adopted)
    }

    /// The room's tag, if this installation made the room: clean-up never acts on others'.
    fn own_tag(&self, room: &kaleyra_client::Room) -> Option<RoomTag> {
        room.description
            .as_deref()
            .and_then(RoomTag::parse)
            .filter(|tag| tag.is_of(&self.settings.installation_id))
    }

    /// Deletes rooms that carry our tag but that no record knows and no creation in flight
    /// explains, once older than [`ORPHAN_GRACE`]. Returns how many were retired. The
    /// safety net behind the creation marks (e.g. the database failed right after a
    /// creation).
    pub async fn sweep_orphans(&self) -> Result<u64, ProvisionError> {
        let now = self.clock.now();
        // This installation's rooms old enough to judge, oldest first; at most a batch per
        // pass, so that a pass's database work stays bounded.
        let mut candidates: Vec<(kaleyra_client::Room, RoomTag)> = self
            .kaleyra
            .list_rooms()
            .await?
            .rooms
            .into_iter()
            .filter(|room| room.creation_date <= now - ORPHAN_GRACE)
            .filter_map(|room| self.own_tag(&room).map(|tag| (room, tag)))
            .collect();
        candidates.sort_by_key(|(room, _)| sweep_key(room));
        // Each sweep goes on from where the last one stopped, and starts over at the end.
        let mut cursor = self.sweep_cursor.lock().await;
        let from = cursor.as_ref().map_or(0, |after| {
            candidates.partition_point(|(room, _)| sweep_key(room) <= *after)
        });
        let from = if from >= candidates.len() { 0 } else { from };
        let until = (from + SWEEP_BATCH).min(candidates.len());
        *cursor = match candidates.get(until.wrapping_sub(1)) {
            Some((last, _)) if until < candidates.len() => Some(sweep_key(last)),
            _ => None,
        };
        drop(cursor);
        if candidates.len() > SWEEP_BATCH {
            tracing::info!(
                rooms = candidates.len(),
                batch = SWEEP_BATCH,
                "more rooms to check than a sweep takes; the next sweeps go on from here"
            );
        }
        let candidates: Vec<_> = candidates.drain(from..until).collect();
        let mut retired = 0;
        for (room, tag) in candidates {
            let RoomTag {
                teleconsultation_id,
                fingerprint,
                ..
            } = tag;
            // The record first, then whether the room is known: a room being recorded right
            // now is seen either as in flight or as known.
            let in_flight = self
                .store
                .get_teleconsultation(&teleconsultation_id)
                .await?
                .is_some_and(|tc| {
                    tc.is_live()
                        && tc.provision_due_at.is_some()
                        && tc.creating_fingerprint.as_deref() == Some(fingerprint.as_str())
                });
            if in_flight || self.store.is_room_known(&room.id).await? {
                continue;
            }
            tracing::warn!(room = %room.id, teleconsultation = %teleconsultation_id, "orphan room found; deleting it");
            self.store
                .retire_room(&room.id, Some(&teleconsultation_id), now)
                .await?;
            self.delete_rooms(std::slice::from_ref(&room.id)).await;
            retired += 1;
        }
        Ok(retired)
    }
}
