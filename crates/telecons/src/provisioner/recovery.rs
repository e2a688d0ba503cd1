//! Finding rooms again: a room whose creation answer was lost is found by its tag and
//! adopted (or retired); a tagged room that no record knows is an orphan and is deleted.
//!
//! Both read one listing of the company's rooms, indexed by the teleconsultation each tag
//! names ([`TaggedRooms`]), and share it: every lost answer settled in a pass, and the sweep,
//! use the last listing as long as it was taken after what they look for — never a listing
//! per teleconsultation.
//!
//! Both act only on rooms this database made: the tag carries this installation's id and a
//! creation attempt recorded here ([`Store::is_attempt_recorded`]). A room with our id but
//! an attempt this database never recorded was made by a copy of it (or by the original of
//! this copy), or before attempts existed: it is left alone and reported — a warning, and
//! the counter `rooms_of_unknown_attempts_total`, once per room per pass that meets it.
//!
//! [`Store::is_attempt_recorded`]: crate::store::Store::is_attempt_recorded

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use kaleyra_client::Room;

use super::{ProvisionError, Provisioner};
use crate::domain::room_spec::{RoomSpec, RoomTag};
use crate::domain::teleconsultation::Teleconsultation;
use crate::store::{AttemptTimes, StoreError};
use crate::telemetry;

/// At most this many of the rooms a sweep leaves alone are named in its warning.
const NAMED_IN_WARNING: usize = 10;

/// A tagged room nobody recorded is deleted only once it is this old, so that a creation
/// still in flight on another instance is never mistaken for an orphan.
pub const ORPHAN_GRACE: TimeDelta = TimeDelta::minutes(10);
/// At most this many of this installation's rooms are checked per sweep.
const SWEEP_BATCH: usize = 500;

/// The order in which sweeps go through the rooms (and where one stops).
pub(super) type SweepKey = (chrono::DateTime<chrono::Utc>, String);

fn sweep_key(room: &Room) -> SweepKey {
    (room.creation_date, room.id.clone())
}

/// How long after its attempt was recorded a room creation's call is surely over: sent once
/// Kaleyra's back-pressure is waited out (at most `kaleyra_client::MAX_RETRY_AFTER`, 30 s),
/// then answered or timed out (the client's request timeout, 10 s), with a margin. A
/// listing taken earlier may miss the room that call made. Used when the end of the call
/// was not recorded (the process died during it).
const ATTEMPT_SETTLED: TimeDelta = TimeDelta::seconds(45);

/// How long after a call whose answer was lost ended its room surely shows in a listing:
/// Kaleyra may still be finishing a request we stopped waiting for (a timeout, a dropped
/// connection). A room made later still is not leaked: the orphan sweep retires it.
const ANSWER_SETTLED: TimeDelta = TimeDelta::seconds(2);

/// From when a listing of Kaleyra's rooms surely shows the room `attempt` may have made.
fn surely_listed_after(attempt: &AttemptTimes) -> DateTime<Utc> {
    match attempt.call_ended_at {
        Some(ended) => ended + ANSWER_SETTLED,
        None => attempt.recorded_at + ATTEMPT_SETTLED,
    }
}

/// How long a listing is kept for the lost answers of later passes (a lost answer is tried
/// again [`super::LOST_ANSWER_RETRY`] later: the listing its first retry took serves the
/// answers lost meanwhile).
const LISTING_KEPT: TimeDelta = TimeDelta::minutes(1);

/// A sweep may use a listing taken this long ago (rooms it judges are older than
/// [`ORPHAN_GRACE`] anyway).
const SWEEP_LISTING_MAX_AGE: TimeDelta = TimeDelta::minutes(1);

/// This installation's rooms, from one listing of the company's rooms, by sweep key, and
/// indexed by the teleconsultation their tags name.
pub(super) struct TaggedRooms {
    /// When the listing was asked for: it holds every room created before.
    taken_at: DateTime<Utc>,
    rooms: Vec<(Room, RoomTag)>,
    by_teleconsultation: HashMap<String, Vec<usize>>,
}

impl TaggedRooms {
    fn index(taken_at: DateTime<Utc>, mut rooms: Vec<(Room, RoomTag)>) -> Self {
        rooms.sort_by_key(|(room, _)| sweep_key(room));
        let mut by_teleconsultation: HashMap<String, Vec<usize>> = HashMap::new();
        for (at, (_, tag)) in rooms.iter().enumerate() {
            by_teleconsultation
                .entry(tag.teleconsultation_id.clone())
                .or_default()
                .push(at);
        }
        Self {
            taken_at,
            rooms,
            by_teleconsultation,
        }
    }

    /// The rooms tagged for teleconsultation `id`, oldest first.
    fn of(&self, id: &str) -> impl Iterator<Item = &(Room, RoomTag)> {
        self.by_teleconsultation
            .get(id)
            .into_iter()
            .flatten()
            .map(|&at| &self.rooms[at])
    }
}

impl Provisioner {
    /// The last listing of this installation's rooms if it was taken after `since`, else a
    /// new one. One listing at a time: those who ask meanwhile wait for it and share it.
    pub(super) async fn tagged_rooms_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Arc<TaggedRooms>, ProvisionError> {
        let mut last = self.tagged_rooms.lock().await;
        if let Some(rooms) = last.as_ref().filter(|rooms| rooms.taken_at > since) {
            return Ok(Arc::clone(rooms));
        }
        let taken_at = self.clock.now();
        // Read as it arrives: of a company's rooms, only this installation's are ever held.
        let rooms = self
            .kaleyra
            .list_rooms_filter_map(|room| self.own_tag(&room).map(|tag| (room, tag)))
            .await?
            .rooms;
        let rooms = Arc::new(TaggedRooms::index(taken_at, rooms));
        metrics::counter!(telemetry::ROOM_LISTINGS).increment(1);
        *last = Some(Arc::clone(&rooms));
        Ok(rooms)
    }

    /// Forgets the last listing once it is older than [`LISTING_KEPT`]: lost answers that
    /// come due over the next passes share it, and an idle service holds none.
    pub(super) async fn forget_old_tagged_rooms(&self) {
        let now = self.clock.now();
        let mut last = self.tagged_rooms.lock().await;
        if last
            .as_ref()
            .is_some_and(|rooms| now - rooms.taken_at > LISTING_KEPT)
        {
            last.take();
        }
    }

    /// Looks on Kaleyra for rooms tagged for `tc` that no record knows (answers lost on the
    /// way back), in a listing taken after its last creation attempt. Returns one that fits
    /// the current spec, to be adopted; retires the others.
    pub(super) async fn recover_lost_rooms(
        &self,
        tc: &Teleconsultation,
    ) -> Result<Option<Room>, ProvisionError> {
        let wanted = tc
            .desired_room
            .as_ref()
            .filter(|_| tc.needs_room())
            .map(RoomSpec::fingerprint);
        let Some(last_attempt) = self.store.last_attempt(&tc.id).await? else {
            // No attempt recorded here: no room to find that clean-up may act on.
            return Ok(None);
        };
        // The listing must be taken once the attempt's call is surely over; until then (a
        // retry soon after), only a listing taken now will do.
        let settled = surely_listed_after(&last_attempt).min(self.clock.now());
        let listing = self.tagged_rooms_since(settled).await?;
        let mut adopted = None;
        for (room, tag) in listing.of(&tc.id) {
            if self.store.is_room_known(&room.id).await? {
                continue;
            }
            if !self.made_here(tag).await? {
                metrics::counter!(telemetry::ROOMS_OF_UNKNOWN_ATTEMPTS).increment(1);
                tracing::warn!(teleconsultation = %tc.id, room = %room.id, attempt = tag.attempt.as_deref().unwrap_or("none"), "a room tagged for this teleconsultation by this installation, but by an attempt this database never recorded (a copy of this database made it?): left alone");
                continue;
            }
            if adopted.is_none() && wanted == Some(tag.fingerprint.as_str()) {
                tracing::info!(teleconsultation = %tc.id, room = %room.id, "found a room whose creation answer was lost");
                adopted = Some(room.clone());
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

    /// The room's tag, if it carries this installation's id: clean-up never acts on others'.
    pub(super) fn own_tag(&self, room: &Room) -> Option<RoomTag> {
        room.description
            .as_deref()
            .and_then(RoomTag::parse)
            .filter(|tag| tag.is_of(&self.settings.installation_id))
    }

    /// Whether this database recorded the creation attempt of the room tagged `tag` (one of
    /// this installation's): only then may clean-up delete or adopt it. A tag without an
    /// attempt (made before attempts existed) proves nothing: a copy of the database would
    /// hold the same records.
    pub(super) async fn made_here(&self, tag: &RoomTag) -> Result<bool, StoreError> {
        match &tag.attempt {
            Some(attempt) => {
                self.store
                    .is_attempt_recorded(attempt, &tag.teleconsultation_id)
                    .await
            }
            None => Ok(false),
        }
    }

    /// Deletes rooms that carry our tag but that no record knows and no creation in flight
    /// explains, once older than [`ORPHAN_GRACE`] — those whose creation attempt this
    /// database recorded; the others are left alone and reported. Returns how many were
    /// retired. The safety net behind the creation marks (e.g. the database failed right
    /// after a creation).
    pub async fn sweep_orphans(&self) -> Result<u64, ProvisionError> {
        let now = self.clock.now();
        // This installation's rooms old enough to judge, oldest first; at most a batch per
        // pass, so that a pass's database work stays bounded.
        let listing = self.tagged_rooms_since(now - SWEEP_LISTING_MAX_AGE).await?;
        let candidates: Vec<&(Room, RoomTag)> = listing
            .rooms
            .iter()
            .filter(|(room, _)| room.creation_date <= now - ORPHAN_GRACE)
            .collect();
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
        let mut retired = 0;
        let mut left_alone = Vec::new();
        for (room, tag) in &candidates[from..until] {
            // The record first, then whether the room is known: a room being recorded right
            // now is seen either as in flight or as known.
            let in_flight = self
                .store
                .get_teleconsultation(&tag.teleconsultation_id)
                .await?
                .is_some_and(|tc| {
                    tc.is_live()
                        && tc.provision_due_at.is_some()
                        && tc.creating_fingerprint.as_deref() == Some(tag.fingerprint.as_str())
                });
            if in_flight || self.store.is_room_known(&room.id).await? {
                continue;
            }
            if !self.made_here(tag).await? {
                left_alone.push(room.id.clone());
                continue;
            }
            let teleconsultation_id = &tag.teleconsultation_id;
            tracing::warn!(room = %room.id, teleconsultation = %teleconsultation_id, "orphan room found; deleting it");
            self.store
                .retire_room(&room.id, Some(teleconsultation_id), now)
                .await?;
            self.delete_rooms(std::slice::from_ref(&room.id)).await;
            retired += 1;
        }
        if !left_alone.is_empty() {
            metrics::counter!(telemetry::ROOMS_OF_UNKNOWN_ATTEMPTS)
                .increment(left_alone.len() as u64);
            let named: Vec<&str> = left_alone
                .iter()
                .take(NAMED_IN_WARNING)
                .map(String::as_str)
                .collect();
            tracing::warn!(
                rooms = left_alone.len(),
                named = named.join(","),
                "rooms carrying this installation's id but a creation attempt this database never recorded (made by a copy of this database, by its original, or before attempts were recorded): left alone; delete them by hand if no deployment uses them"
            );
        }
        Ok(retired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_answer_is_settled_soon_after_its_call_ended_else_after_the_longest_call() {
        let recorded_at = DateTime::<Utc>::UNIX_EPOCH;
        let ended = recorded_at + TimeDelta::seconds(3);
        assert_eq!(
            surely_listed_after(&AttemptTimes {
                recorded_at,
                call_ended_at: Some(ended),
            }),
            ended + ANSWER_SETTLED
        );
        assert_eq!(
            surely_listed_after(&AttemptTimes {
                recorded_at,
                call_ended_at: None,
            }),
            recorded_at + ATTEMPT_SETTLED,
            "a call whose end was not recorded (the process died) may have lasted the longest"
        );
    }
}
