//! The teleconsultations `GET /teleconsultation/:id` reads, kept in memory: every participant
//! polls that route until the link appears, thousands at the top of the hour, and a poll
//! should cost neither a database round trip nor a database connection. And the
//! participants' agenda lists (`GET /teleconsultations`, [`super::agenda_lists`]), so that a
//! participant's page is a filter in memory and its records come from here.
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
//! The agenda lists follow the same contract, by the same means: every write of a
//! teleconsultation tells its [`Change`] (the id, and the participants it has after), and
//! forgetting it drops the lists that hold the id (the participants it had: a list kept
//! knows its ids) and those of the participants it has (it may be new in theirs). Other
//! instances' changes carry the same in their notification ([`Change::announcement`]); one
//! that does not say who takes part (an instance of the previous version, or too many
//! participants to tell) drops every list. A read begun before a change is kept neither as
//! a record nor as a list (one counter, [`Ticket`]). A page served from a kept list is
//! checked against its records (each must still be the list's item, live, with the
//! participant): where one is newer than the list (read after a change not heard of yet),
//! the list is dropped and the page is read by SQL, so a page is never a mix of two times.
//!
//! Only the fields GET shows are kept current (participants, room, links, state, schedule):
//! the provisioner's bookkeeping (leases, marks) changes without a new version and is not
//! followed here. Writers always read the database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::agenda_lists::{self, AgendaList, AgendaLists, Bounds, LONGEST_KEPT};
use crate::domain::agenda::AgendaItem;
use crate::domain::teleconsultation::Teleconsultation;

/// At most this many teleconsultations are kept (moka's policy decides which go).
pub const CAPACITY: u64 = 10_000;
/// An entry, or an agenda list, is read again from the database after this long, whatever
/// was heard.
pub const TIME_TO_LIVE: Duration = Duration::from_secs(10);
/// PostgreSQL refuses a notification payload of this many bytes or more.
const LONGEST_ANNOUNCEMENT: usize = 7_999;

/// Shared by the store and (on PostgreSQL) the task following other instances' changes.
pub struct ReadCache {
    entries: moka::sync::Cache<String, Arc<Teleconsultation>>,
    /// Keeping and forgetting hold it, so that one is wholly before the other; serving a
    /// record never does, serving an agenda list does for a lookup.
    state: Mutex<State>,
    /// Whether every change is heard of (always on SQLite, whose one instance makes them
    /// all; on PostgreSQL only while the notifications are followed).
    following: AtomicBool,
}

struct State {
    /// Counts the forgettings: a read that began before one may have read what it forgot,
    /// so its result is not kept.
    generation: u64,
    agendas: AgendaLists,
}

/// Taken before a database read: the read's result is kept only if nothing was forgotten
/// since.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

/// What is known of a participant's agenda list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgendaLookup {
    Kept(AgendaList),
    /// Not kept: to read, and keep with [`ReadCache::keep_agenda`].
    NotKept,
    /// Changes are not followed: nothing is served from memory, nor kept.
    NotServed,
}

/// A change of a teleconsultation, as the caches hear of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub id: String,
    /// Its participants after the change; `None` when not told: every list is dropped.
    pub participants: Option<Vec<String>>,
}

impl Change {
    /// `tc` is written as it is.
    pub fn of(tc: &Teleconsultation) -> Self {
        Change {
            id: tc.id.clone(),
            participants: Some(
                tc.participants
                    .iter()
                    .map(|p| p.external_id.clone())
                    .collect(),
            ),
        }
    }

    /// How it is announced to other instances (a PostgreSQL notification's payload):
    /// `{"id":"…","participants":["…",…]}`; the id alone, the previous version's form,
    /// when that would be too long for a notification (then it drops every list).
    pub fn announcement(&self) -> String {
        if self.participants.is_some()
            && let Ok(json) = serde_json::to_string(self)
            && json.len() <= LONGEST_ANNOUNCEMENT
        {
            return json;
        }
        self.id.clone()
    }

    /// The change an announcement tells: an id alone (announced by the previous version, or
    /// too long to tell) says nothing of the participants. `None` when it cannot be read.
    pub fn announced(payload: &str) -> Option<Self> {
        if payload.starts_with('{') {
            return serde_json::from_str(payload).ok();
        }
        Some(Change {
            id: payload.to_owned(),
            participants: None,
        })
    }
}

impl ReadCache {
    /// `following`: whether this instance hears of every change from the start.
    pub fn new(following: bool) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TIME_TO_LIVE)
                .build(),
            state: Mutex::new(State {
                generation: 0,
                agendas: AgendaLists::new(Bounds {
                    participants: agenda_lists::MAX_PARTICIPANTS,
                    items: agenda_lists::MAX_ITEMS,
                    time_to_live: TIME_TO_LIVE,
                }),
            }),
            following: AtomicBool::new(following),
        }
    }

    /// The kept teleconsultation `id`, if any (never while changes are not followed).
    pub fn get(&self, id: &str) -> Option<Arc<Teleconsultation>> {
        if self.is_following() {
            self.entries.get(id)
        } else {
            None
        }
    }

    /// To take before reading the database for [`Self::keep`] or [`Self::keep_agenda`].
    pub fn ticket(&self) -> Ticket {
        Ticket(self.state().generation)
    }

    /// Keeps `tc`, read from the database after `ticket` was taken, unless something was
    /// forgotten since (it may be older than what was forgotten).
    pub fn keep(&self, ticket: Ticket, tc: Arc<Teleconsultation>) {
        let state = self.state();
        if state.generation == ticket.0 && self.is_following() {
            self.entries.insert(tc.id.clone(), tc);
        }
    }

    /// `participant`'s kept agenda list.
    pub fn agenda(&self, participant: &str) -> AgendaLookup {
        if !self.is_following() {
            return AgendaLookup::NotServed;
        }
        match self.state().agendas.get(participant, Instant::now()) {
            Some(list) => AgendaLookup::Kept(list),
            None => AgendaLookup::NotKept,
        }
    }

    /// `participant`'s agenda list of `items` (its live teleconsultations, read from the
    /// database after `ticket` was taken, at most one more than [`LONGEST_KEPT`]), kept
    /// unless something was forgotten since.
    pub fn keep_agenda(
        &self,
        ticket: Ticket,
        participant: &str,
        items: Vec<AgendaItem>,
    ) -> AgendaList {
        let list = AgendaList::of(items, LONGEST_KEPT);
        let mut state = self.state();
        if state.generation == ticket.0 && self.is_following() {
            state
                .agendas
                .keep(participant, list.clone(), Instant::now());
        }
        list
    }

    /// `participant`'s kept agenda list is older than what was read since: it goes.
    pub fn drop_agenda(&self, participant: &str) {
        self.state().agendas.remove(participant);
    }

    /// A teleconsultation changed: its entry is dropped, so are the agenda lists it is in
    /// or now belongs in, and reads in flight are not kept.
    pub fn forget(&self, change: &Change) {
        let mut state = self.state();
        state.generation += 1;
        match &change.participants {
            Some(participants) => state.agendas.forget(&change.id, participants),
            None => state.agendas.clear(),
        }
        self.entries.invalidate(&change.id);
    }

    /// Changes may have been missed, or will be: nothing kept is trusted, and (`following`
    /// false) nothing is kept until it is called again with `following` true.
    pub fn forget_all(&self, following: bool) {
        let mut state = self.state();
        self.following.store(following, Ordering::SeqCst);
        state.generation += 1;
        state.agendas.clear();
        self.entries.invalidate_all();
    }

    fn is_following(&self) -> bool {
        self.following.load(Ordering::SeqCst)
    }

    /// After a panic under the lock, the counter is whole but the lists' bookkeeping may
    /// have been cut short: they go (and reads in flight are not kept).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| {
            let mut state = poisoned.into_inner();
            state.generation += 1;
            state.agendas.clear();
            self.state.clear_poison();
            state
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::domain::schedule::Schedule;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_900_000_000 + secs, 0).unwrap()
    }

    fn sample(id: &str) -> Teleconsultation {
        let schedule = Schedule {
            start: at(0),
            duration_secs: 3600,
        };
        Teleconsultation::new(id.into(), 2, schedule, Vec::new(), at(0), None)
    }

    /// A change of `id`, which has `participants` after.
    fn change(id: &str, participants: &[&str]) -> Change {
        Change {
            id: id.into(),
            participants: Some(participants.iter().map(|p| (*p).to_owned()).collect()),
        }
    }

    fn item(id: &str) -> AgendaItem {
        AgendaItem::of(&sample(id))
    }

    /// `participant`'s kept list's ids; `None` when none is kept.
    fn kept_ids(cache: &ReadCache, participant: &str) -> Option<Vec<String>> {
        match cache.agenda(participant) {
            AgendaLookup::Kept(AgendaList::Items(items)) => {
                Some(items.iter().map(|item| item.id.clone()).collect())
            }
            AgendaLookup::Kept(AgendaList::TooLong) => Some(vec!["too long".into()]),
            AgendaLookup::NotKept | AgendaLookup::NotServed => None,
        }
    }

    fn keep_list(cache: &ReadCache, participant: &str, ids: &[&str]) {
        cache.keep_agenda(
            cache.ticket(),
            participant,
            ids.iter().map(|id| item(id)).collect(),
        );
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
        cache.forget(&change("a", &[])); // the change commits while the read is in flight
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
        cache.forget(&change("a", &[]));
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some(), "only the changed one");
    }

    #[test]
    fn nothing_is_served_or_kept_while_changes_are_not_followed() {
        let cache = ReadCache::new(false);
        cache.keep(cache.ticket(), Arc::new(sample("a")));
        keep_list(&cache, "u", &["a"]);
        assert!(cache.get("a").is_none());
        assert_eq!(cache.agenda("u"), AgendaLookup::NotServed);

        cache.forget_all(true);
        assert_eq!(cache.agenda("u"), AgendaLookup::NotKept);
        cache.keep(cache.ticket(), Arc::new(sample("a")));
        keep_list(&cache, "u", &["a"]);
        assert!(cache.get("a").is_some());
        assert_eq!(kept_ids(&cache, "u"), Some(vec!["a".into()]));
        // The notifications are lost: what was kept is not trusted, even once they are
        // followed again.
        cache.forget_all(false);
        assert!(cache.get("a").is_none());
        assert_eq!(cache.agenda("u"), AgendaLookup::NotServed);
        cache.forget_all(true);
        assert!(cache.get("a").is_none());
        assert_eq!(kept_ids(&cache, "u"), None);
    }

    #[test]
    fn an_agenda_list_read_older_than_a_change_is_not_kept() {
        let cache = ReadCache::new(true);
        let ticket = cache.ticket();
        // A booking for someone else commits while the list is read: the list may be
        // older than it, whoever it is for.
        cache.forget(&change("new", &["someone else"]));
        let read = cache.keep_agenda(ticket, "u", vec![item("b"), item("a")]);
        assert_eq!(kept_ids(&cache, "u"), None);
        // What was read is still answered, in the list's order.
        let AgendaList::Items(items) = read else {
            panic!("a short list")
        };
        assert_eq!(items[0].id, "a");

        keep_list(&cache, "u", &["a", "b"]);
        assert_eq!(kept_ids(&cache, "u"), Some(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn a_change_drops_the_agenda_lists_it_touches() {
        let cache = ReadCache::new(true);
        let keep_all = || {
            keep_list(&cache, "doc", &["a", "b"]);
            keep_list(&cache, "pat", &["a"]);
            keep_list(&cache, "pat2", &["b"]);
        };
        keep_all();

        // `a` changes in place (same participants): the lists holding it go.
        cache.forget(&change("a", &["doc", "pat"]));
        assert_eq!(kept_ids(&cache, "doc"), None);
        assert_eq!(kept_ids(&cache, "pat"), None);
        assert!(kept_ids(&cache, "pat2").is_some());

        // A new one for pat2: its list goes, though no list holds the new id.
        keep_all();
        cache.forget(&change("c", &["pat2"]));
        assert_eq!(kept_ids(&cache, "pat2"), None);
        assert!(kept_ids(&cache, "doc").is_some() && kept_ids(&cache, "pat").is_some());

        // pat is removed from `a` (the change names only doc and pat2): pat's list goes by
        // the id, pat2's by its name.
        keep_all();
        cache.forget(&change("a", &["doc", "pat2"]));
        assert_eq!(kept_ids(&cache, "pat"), None);
        assert_eq!(kept_ids(&cache, "pat2"), None);
        assert_eq!(kept_ids(&cache, "doc"), None);

        // A change that does not say who takes part drops every list, and its entry.
        keep_all();
        cache.keep(cache.ticket(), Arc::new(sample("b")));
        cache.forget(&Change {
            id: "b".into(),
            participants: None,
        });
        for participant in ["doc", "pat", "pat2"] {
            assert_eq!(kept_ids(&cache, participant), None, "{participant}");
        }
        assert!(cache.get("b").is_none());
    }

    #[test]
    fn a_long_list_is_answered_but_kept_as_too_long() {
        let cache = ReadCache::new(true);
        let ids: Vec<String> = (0..=LONGEST_KEPT).map(|i| format!("{i:024}")).collect();
        let items = ids.iter().map(|id| item(id)).collect();
        assert_eq!(
            cache.keep_agenda(cache.ticket(), "busy", items),
            AgendaList::TooLong
        );
        assert_eq!(kept_ids(&cache, "busy"), Some(vec!["too long".into()]));
        keep_list(&cache, "quiet", &[&ids[0]]);
        assert_eq!(kept_ids(&cache, "quiet"), Some(vec![ids[0].clone()]));
    }

    #[test]
    fn a_list_found_stale_is_dropped() {
        let cache = ReadCache::new(true);
        keep_list(&cache, "u", &["a"]);
        keep_list(&cache, "v", &["a"]);
        cache.drop_agenda("u");
        assert_eq!(kept_ids(&cache, "u"), None);
        assert!(kept_ids(&cache, "v").is_some());
    }

    #[test]
    fn a_change_is_announced_with_its_participants() {
        let changed = change("64b000000000000000000001", &["doc", "pat \"x\""]);
        let announcement = changed.announcement();
        assert_eq!(
            announcement,
            r#"{"id":"64b000000000000000000001","participants":["doc","pat \"x\""]}"#
        );
        assert_eq!(Change::announced(&announcement), Some(changed));
    }

    #[test]
    fn an_announcement_too_long_or_of_the_previous_version_is_the_id_alone() {
        let id = "64b000000000000000000001";
        let many: Vec<String> = (0..40).map(|i| format!("{i:0>200}")).collect();
        let crowded = Change {
            id: id.into(),
            participants: Some(many),
        };
        assert_eq!(crowded.announcement(), id);
        // Just short enough: the JSON.
        let names = |len: usize| Change {
            id: id.into(),
            participants: Some(vec!["u".repeat(len)]),
        };
        let overhead = names(0).announcement().len();
        assert_eq!(
            names(LONGEST_ANNOUNCEMENT - overhead).announcement().len(),
            LONGEST_ANNOUNCEMENT
        );
        assert_eq!(
            names(LONGEST_ANNOUNCEMENT - overhead + 1).announcement(),
            id
        );

        // The id alone (from the previous version, or too long) says nothing of who takes
        // part.
        let unknown = Change {
            id: id.into(),
            participants: None,
        };
        assert_eq!(Change::announced(id), Some(unknown.clone()));
        assert_eq!(unknown.announcement(), id);
        // Unreadable: nothing can be trusted.
        assert_eq!(Change::announced("{\"id\":"), None);
    }
}
