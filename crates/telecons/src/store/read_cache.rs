//! The teleconsultations `GET /teleconsultation/:id` reads, kept in memory: every participant
//! polls that route until the link appears, thousands at the top of the hour, and a poll
//! should cost neither a database round trip nor a database connection.
//!
//! An entry is never behind this instance's own changes: the store forgets it in the write
//! itself. On PostgreSQL, another instance's change reaches this one as a notification
//! committed with it (`LISTEN`), so an entry is at most that notification behind; while the
//! notifications cannot be followed (not connected yet, reconnecting) nothing is served from
//! memory, and after a reconnection everything is forgotten (what was missed is unknown). In
//! any case an entry lives at most [`TIME_TO_LIVE`].
//!
//! Staleness of one notification matters little for the join: from `start −
//! IMMUTABLE_PERIOD_MS` on, when links are shown, a teleconsultation no longer changes except
//! by deletion or by the loss of its room; before, links are not shown at all.
//!
//! The agenda's single view (`GET /teleconsultations/:id`) reads it too: what it shows more
//! (count, creation and last change) changes only with a versioned write, like the rest.
//!
//! Only the fields GET shows are kept current (participants, room, links, state, schedule):
//! the provisioner's bookkeeping (leases, marks) changes without a new version and is not
//! followed here. Writers always read the database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::domain::teleconsultation::Teleconsultation;

/// At most this many teleconsultations are kept (moka's policy decides which go).
pub const CAPACITY: u64 = 10_000;
/// An entry is read again from the database after this long, whatever was heard.
pub const TIME_TO_LIVE: Duration = Duration::from_secs(10);

/// Shared by the store and (on PostgreSQL) the task following other instances' changes.
pub struct ReadCache {
    entries: moka::sync::Cache<String, Arc<Teleconsultation>>,
    /// Counts the forgettings: a read that began before one may have read what it forgot,
    /// so its result is not kept. Keeping and forgetting hold it, so that one is wholly
    /// before the other (serving never does).
    generation: Mutex<u64>,
    /// Whether every change is heard of (always on SQLite, whose one instance makes them
    /// all; on PostgreSQL only while the notifications are followed).
    following: AtomicBool,
}

/// Taken before a database read: the read's result is kept only if nothing was forgotten
/// since.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl ReadCache {
    /// `following`: whether this instance hears of every change from the start.
    pub fn new(following: bool) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TIME_TO_LIVE)
                .build(),
            generation: Mutex::new(0),
            following: AtomicBool::new(following),
        }
    }

    /// The kept teleconsultation `id`, if any (never while changes are not followed).
    pub fn get(&self, id: &str) -> Option<Arc<Teleconsultation>> {
        if self.following.load(Ordering::SeqCst) {
            self.entries.get(id)
        } else {
            None
        }
    }

    /// To take before reading the database for [`Self::keep`].
    pub fn ticket(&self) -> Ticket {
        Ticket(*self.generation())
    }

    /// Keeps `tc`, read from the database after `ticket` was taken, unless something was
    /// forgotten since (it may be older than what was forgotten).
    pub fn keep(&self, ticket: Ticket, tc: Arc<Teleconsultation>) {
        let generation = self.generation();
        if *generation == ticket.0 && self.following.load(Ordering::SeqCst) {
            self.entries.insert(tc.id.clone(), tc);
        }
    }

    /// `id` changed: its entry is dropped, and reads in flight are not kept.
    pub fn forget(&self, id: &str) {
        let mut generation = self.generation();
        *generation += 1;
        self.entries.invalidate(id);
    }

    /// Changes may have been missed, or will be: nothing kept is trusted, and (`following`
    /// false) nothing is kept until it is called again with `following` true.
    pub fn forget_all(&self, following: bool) {
        let mut generation = self.generation();
        self.following.store(following, Ordering::SeqCst);
        *generation += 1;
        self.entries.invalidate_all();
    }

    /// A poisoned lock still holds a valid counter (a panic elsewhere cannot leave it
    /// half-written).
    fn generation(&self) -> MutexGuard<'_, u64> {
        self.generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::domain::schedule::Schedule;

    fn sample(id: &str) -> Teleconsultation {
        let start = Utc.timestamp_opt(1_900_000_000, 0).unwrap();
        let schedule = Schedule {
            start,
            duration_secs: 3600,
        };
        Teleconsultation::new(id.into(), 2, schedule, Vec::new(), start, None)
    }

    #[test]
    fn a_read_is_kept_and_served() {
        let cache = ReadCache::new(true);
        let ticket = cache.ticket();
        cache.keep(ticket, Arc::new(sample("a")));
        assert_eq!(cache.get("a").map(|tc| tc.id.clone()).as_deref(), Some("a"));
    }

    #[test]
    fn a_read_older_than_a_change_is_not_kept() {
        let cache = ReadCache::new(true);
        let ticket = cache.ticket();
        cache.forget("a"); // the change commits while the read is in flight
        cache.keep(ticket, Arc::new(sample("a")));
        assert!(cache.get("a").is_none());
        // A read begun after the change is kept.
        let ticket = cache.ticket();
        cache.keep(ticket, Arc::new(sample("a")));
        assert!(cache.get("a").is_some());
    }

    #[test]
    fn a_change_drops_the_entry() {
        let cache = ReadCache::new(true);
        cache.keep(cache.ticket(), Arc::new(sample("a")));
        cache.keep(cache.ticket(), Arc::new(sample("b")));
        cache.forget("a");
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some(), "only the changed one");
    }

    #[test]
    fn nothing_is_served_or_kept_while_changes_are_not_followed() {
        let cache = ReadCache::new(false);
        cache.keep(cache.ticket(), Arc::new(sample("a")));
        assert!(cache.get("a").is_none());

        cache.forget_all(true);
        cache.keep(cache.ticket(), Arc::new(sample("a")));
        assert!(cache.get("a").is_some());
        // The notifications are lost: what was kept is not trusted, even once they are
        // followed again.
        cache.forget_all(false);
        assert!(cache.get("a").is_none());
        cache.forget_all(true);
        assert!(cache.get("a").is_none());
    }
}
