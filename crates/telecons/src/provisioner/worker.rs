//! The background worker: due provisioning and due room deletions, one lease at a time, so
//! that several instances share the work; now and then a sweep for orphan rooms.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Provisioner;
use crate::store::StoreError;

/// How often the background worker looks for due work.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Teleconsultations or rooms handled per background pass.
const BATCH: u32 = 50;
/// The background worker sweeps Kaleyra for orphans first after this many passes (about
/// 30 s after start-up), then every [`SWEEP_EVERY`] passes (about 5 minutes).
const FIRST_SWEEP: u32 = 15;
const SWEEP_EVERY: u32 = 150;

impl Provisioner {
    /// One background pass: every due provisioning (leased to this instance, so that other
    /// instances take other work), then every due room deletion.
    pub async fn run_due(&self) -> Result<(), StoreError> {
        // One at a time, each leased just before it is worked on: a lease taken for a whole
        // batch could expire before the batch reaches it.
        for _ in 0..BATCH {
            let lease = self.lease();
            let claimed = self
                .store
                .claim_due_provisioning(self.clock.now(), &lease.owner, lease.until, 1)
                .await?;
            let Some(id) = claimed.first() else { break };
            // Errors are logged and postponed inside.
            let _ = self.converge_leased(id, &lease.owner, None).await;
        }
        for _ in 0..BATCH {
            let Some(entry) = self.claim_deletion(None).await? else {
                break;
            };
            self.delete_room(&entry).await;
        }
        let backlog = self
            .store
            .backlog(self.clock.now(), self.settings.immutable_period_ms)
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
    pub async fn run_worker(self, shutdown: CancellationToken) {
        let mut passes: u32 = 0;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(POLL_INTERVAL) => {
                    if let Err(err) = self.run_due().await {
                        tracing::warn!(error = %err, "provisioning pass failed");
                    }
                    passes = passes.wrapping_add(1);
                    if passes >= FIRST_SWEEP
                        && (passes - FIRST_SWEEP).is_multiple_of(SWEEP_EVERY)
                        && let Err(err) = self.sweep_orphans().await
                    {
                        tracing::warn!(error = %err, "orphan sweep failed");
                    }
                }
            }
        }
    }
}
