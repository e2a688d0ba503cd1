//! `telecons events`: the given-up events, listed (`--failed`) and sent again
//! (`--redeliver ID|all`), for the operator once the platform is fixed (spec §9).
//!
//! Choices where the spec is silent:
//! - The list is tab-separated (for `cut` and spreadsheets) under a header line; a missing
//!   last answer shows as `-`.
//! - A redelivered event is made pending and due now; a running service sends it at its next
//!   pass (within a second), ahead of its teleconsultation's events still pending. Without
//!   `EVENTS_WEBHOOK_URL`, nothing sends it until a service runs with one.

use chrono::{DateTime, Utc};

use crate::store::Store;

/// What `telecons events --failed` prints: the given-up events, oldest first.
pub async fn list_failed(store: &dyn Store) -> anyhow::Result<String> {
    let failed = store.failed_events().await?;
    if failed.is_empty() {
        return Ok("no given-up events".to_owned());
    }
    let mut lines = vec!["webhook-id\ttype\tteleconsultation\tlast answer".to_owned()];
    lines.extend(failed.into_iter().map(|event| {
        format!(
            "{}\t{}\t{}\t{}",
            event.webhook_id,
            event.event_type,
            event.teleconsultation_id,
            event.last_answer.as_deref().unwrap_or("-")
        )
    }));
    Ok(lines.join("\n"))
}

/// What `telecons events --redeliver <which>` does at `now`: `which` is a webhook id or
/// `all`. An id that is not a given-up event is an error (a typo must not pass silently);
/// `all` with none is not.
pub async fn redeliver(
    store: &dyn Store,
    which: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let webhook_id = (which != "all").then_some(which);
    let redelivered = store.redeliver_events(webhook_id, now).await?;
    match (webhook_id, redelivered.is_empty()) {
        (Some(id), true) => anyhow::bail!(
            "{id} is not a given-up event (`telecons events --failed` lists them); nothing \
             redelivered"
        ),
        (None, true) => Ok("no given-up events: nothing to redeliver".to_owned()),
        (_, false) => Ok(redelivered
            .iter()
            .map(|id| format!("pending again: {id}"))
            .collect::<Vec<_>>()
            .join("\n")),
    }
}
