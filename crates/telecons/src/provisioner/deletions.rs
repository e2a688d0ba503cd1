//! The room deletion queue: rooms retired by a change are stored in the same transaction,
//! then deleted on Kaleyra until it confirms (a 404 counts), backing off on failures.

use chrono::{DateTime, TimeDelta, Utc};
use kaleyra_client::{DeleteOutcome, KaleyraError};

use super::Provisioner;
use crate::store::{RoomDeletion, StoreError};
use crate::telemetry;

/// Room deletions back off exponentially from here, up to [`MAX_DELETION_BACKOFF`].
const FIRST_DELETION_BACKOFF: TimeDelta = TimeDelta::seconds(5);
/// At most a minute, as provisioning's: no orphan is left two minutes after Kaleyra answers
/// again.
const MAX_DELETION_BACKOFF: TimeDelta = TimeDelta::minutes(1);

impl Provisioner {
    /// Deletes retired rooms now (best effort): what fails stays queued for the worker.
    pub async fn delete_rooms(&self, room_ids: &[String]) {
        for room_id in room_ids {
            match self.claim_deletion(Some(room_id)).await {
                // A failure is logged and postponed inside.
                Ok(Some(entry)) => {
                    let _ = self.delete_room(&entry).await;
                }
                Ok(None) => {} // another worker has it, or it is not due yet
                Err(err) => {
                    tracing::warn!(room = %room_id, error = %err, "room deletion left to the worker")
                }
            }
        }
    }

    /// Leases one due deletion (`room_id`'s, when given) for a fresh piece of work. The
    /// lease ends with the entry (deleted) or with its postponement.
    pub(super) async fn claim_deletion(
        &self,
        room_id: Option<&str>,
    ) -> Result<Option<RoomDeletion>, StoreError> {
        let lease = self.lease();
        self.store
            .claim_room_deletion(room_id, self.clock.now(), &lease.owner, lease.until)
            .await
    }

    /// Deletes a leased room: done → forgotten; failed → retried later (lease given up).
    /// Returns Kaleyra's failure, if any (the caller may slow down).
    pub(super) async fn delete_room(&self, entry: &RoomDeletion) -> Result<(), KaleyraError> {
        match self.kaleyra.delete_room(&entry.room_id).await {
            Ok(outcome) => {
                if outcome == DeleteOutcome::Deleted {
                    metrics::counter!(telemetry::ROOMS_DELETED).increment(1);
                }
                if let Err(err) = self.store.finish_room_deletion(&entry.room_id).await {
                    tracing::warn!(room = %entry.room_id, error = %err, "room deleted; queue entry kept, will retry");
                }
                Ok(())
            }
            Err(err) => {
                // Kaleyra asked to slow down: again as soon as it is ready, no backoff.
                let retry_at = match super::back_pressure_wait(&err) {
                    Some(wait) => self.clock.now() + wait,
                    None => deletion_retry_at(self.clock.now(), entry.attempts),
                };
                tracing::warn!(room = %entry.room_id, error = %err, retry_at = %retry_at, "room deletion failed; will retry");
                if let Err(store_err) = self
                    .store
                    .postpone_room_deletion(&entry.room_id, retry_at)
                    .await
                {
                    tracing::error!(room = %entry.room_id, error = %store_err, "cannot postpone room deletion");
                }
                Err(err)
            }
        }
    }
}

fn deletion_retry_at(now: DateTime<Utc>, attempts: u32) -> DateTime<Utc> {
    let factor = 1_i32 << attempts.min(10);
    now + (FIRST_DELETION_BACKOFF * factor).min(MAX_DELETION_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletions_back_off_exponentially_up_to_a_minute() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(deletion_retry_at(now, 0), now + TimeDelta::seconds(5));
        assert_eq!(deletion_retry_at(now, 1), now + TimeDelta::seconds(10));
        assert_eq!(deletion_retry_at(now, 3), now + TimeDelta::seconds(40));
        assert_eq!(deletion_retry_at(now, 4), now + TimeDelta::minutes(1));
        assert_eq!(
            deletion_retry_at(now, u32::MAX),
            now + TimeDelta::minutes(1)
        );
    }
}
