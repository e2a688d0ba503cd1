//! The participants' agenda lists kept in memory (the [`super::read_cache`] owns them, and
//! decides when a list read may be kept and what a change drops): for a participant
//! (external user id) whose agenda was read lately, the [`AgendaItem`]s of its live
//! teleconsultations in the list's order, so that a page of its `GET /teleconsultations` is
//! a filter in memory rather than a database read.
//!
//! Bounded: a participant with more than [`LONGEST_KEPT`] teleconsultations is kept as
//! [`AgendaList::TooLong`] (its pages are read by SQL, and the long list is not loaded again
//! for each); at most [`MAX_PARTICIPANTS`] lists and [`MAX_ITEMS`] items in all are kept, the
//! oldest going first; a list is used for at most its time to live.
//!
//! Which kept lists hold each teleconsultation is kept too, so that a change of it drops
//! exactly those: the participants it had before are not known to the write, which has the
//! record as it becomes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::agenda::AgendaItem;

/// A participant with more teleconsultations than this is not kept.
pub const LONGEST_KEPT: usize = 1_000;
/// At most this many participants' lists are kept.
pub const MAX_PARTICIPANTS: usize = 10_000;
/// At most this many items are kept in all the lists: some 250 bytes each with the reverse
/// map, 25 MB in all.
pub const MAX_ITEMS: usize = 100_000;

/// A participant's agenda list, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgendaList {
    /// Its live teleconsultations, in (start, id) order.
    Items(Arc<[AgendaItem]>),
    /// It has more than it is worth keeping: its pages are read by SQL.
    TooLong,
}

impl AgendaList {
    /// The list of `items` (one per teleconsultation, in any order), unless there are more
    /// than `longest`.
    pub fn of(mut items: Vec<AgendaItem>, longest: usize) -> Self {
        if items.len() > longest {
            return AgendaList::TooLong;
        }
        items.sort_unstable_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
        AgendaList::Items(items.into())
    }

    fn len(&self) -> usize {
        match self {
            AgendaList::Items(items) => items.len(),
            AgendaList::TooLong => 0,
        }
    }
}

/// How much is kept, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub participants: usize,
    pub items: usize,
    pub time_to_live: Duration,
}

/// The kept lists. The time is passed in.
pub struct AgendaLists {
    bounds: Bounds,
    lists: HashMap<Arc<str>, Kept>,
    /// The kept lists in the order they were kept (the oldest first), by a counter.
    by_age: BTreeMap<u64, Arc<str>>,
    /// For each teleconsultation id, the participants whose kept list holds it.
    holders: HashMap<String, Vec<Arc<str>>>,
    /// Items in all the kept lists.
    items: usize,
    kept: u64,
}

struct Kept {
    list: AgendaList,
    at: Instant,
    /// Its key in `by_age`.
    order: u64,
}

impl AgendaLists {
    pub fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            lists: HashMap::new(),
            by_age: BTreeMap::new(),
            holders: HashMap::new(),
            items: 0,
            kept: 0,
        }
    }

    /// `participant`'s list, if it was kept less than the time to live before `now`.
    pub fn get(&self, participant: &str, now: Instant) -> Option<AgendaList> {
        self.lists
            .get(participant)
            .filter(|kept| !self.is_expired(kept, now))
            .map(|kept| kept.list.clone())
    }

    /// Keeps `list` as `participant`'s (in place of any), read at `now`. Expired lists go
    /// first, then the oldest while more are kept than the bounds allow.
    pub fn keep(&mut self, participant: &str, list: AgendaList, now: Instant) {
        self.remove(participant);
        while let Some(oldest) = self.oldest()
            && self.is_expired(&self.lists[&oldest], now)
        {
            self.remove(&oldest);
        }
        let participant: Arc<str> = participant.into();
        if let AgendaList::Items(items) = &list {
            for item in items.iter() {
                self.holders
                    .entry(item.id.clone())
                    .or_default()
                    .push(Arc::clone(&participant));
            }
        }
        self.items += list.len();
        let order = self.kept;
        self.kept += 1;
        self.by_age.insert(order, Arc::clone(&participant));
        self.lists.insert(
            participant,
            Kept {
                list,
                at: now,
                order,
            },
        );
        while self.lists.len() > self.bounds.participants || self.items > self.bounds.items {
            let Some(oldest) = self.oldest() else { break };
            self.remove(&oldest);
        }
    }

    /// Teleconsultation `id` changed, and has `participants` now: the lists that hold it
    /// and theirs are dropped.
    pub fn forget(&mut self, id: &str, participants: &[String]) {
        for holder in self.holders.remove(id).unwrap_or_default() {
            self.remove(&holder);
        }
        for participant in participants {
            self.remove(participant);
        }
    }

    /// Drops `participant`'s list, if kept.
    pub fn remove(&mut self, participant: &str) {
        let Some(kept) = self.lists.remove(participant) else {
            return;
        };
        self.by_age.remove(&kept.order);
        self.items -= kept.list.len();
        if let AgendaList::Items(items) = kept.list {
            for item in items.iter() {
                if let Some(holders) = self.holders.get_mut(&item.id) {
                    holders.retain(|holder| **holder != *participant);
                    if holders.is_empty() {
                        self.holders.remove(&item.id);
                    }
                }
            }
        }
    }

    pub fn clear(&mut self) {
        self.lists.clear();
        self.by_age.clear();
        self.holders.clear();
        self.items = 0;
    }

    fn oldest(&self) -> Option<Arc<str>> {
        self.by_age.values().next().cloned()
    }

    fn is_expired(&self, kept: &Kept, now: Instant) -> bool {
        now.saturating_duration_since(kept.at) >= self.bounds.time_to_live
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_900_000_000 + secs, 0).unwrap()
    }

    fn item(id: &str, start: i64) -> AgendaItem {
        AgendaItem {
            start: at(start),
            id: id.into(),
            end: at(start + 1800),
            complete: true,
        }
    }

    fn list(items: &[AgendaItem]) -> AgendaList {
        AgendaList::of(items.to_vec(), LONGEST_KEPT)
    }

    fn lists(participants: usize, items: usize) -> AgendaLists {
        AgendaLists::new(Bounds {
            participants,
            items,
            time_to_live: TTL,
        })
    }

    fn ids(list: Option<AgendaList>) -> Option<Vec<String>> {
        match list? {
            AgendaList::Items(items) => Some(items.iter().map(|item| item.id.clone()).collect()),
            AgendaList::TooLong => Some(vec!["too long".into()]),
        }
    }

    #[test]
    fn a_list_is_in_start_then_id_order_unless_too_long() {
        let items = vec![item("c", 2), item("b", 1), item("a", 2)];
        assert_eq!(
            ids(Some(AgendaList::of(items.clone(), 3))),
            Some(vec!["b".into(), "a".into(), "c".into()])
        );
        assert_eq!(AgendaList::of(items, 2), AgendaList::TooLong);
    }

    #[test]
    fn a_kept_list_is_served_until_its_time_to_live() {
        let now = Instant::now();
        let mut kept = lists(10, 100);
        kept.keep("u", list(&[item("a", 1)]), now);
        assert_eq!(ids(kept.get("u", now + TTL / 2)), Some(vec!["a".into()]));
        assert_eq!(kept.get("u", now + TTL), None);
        assert_eq!(kept.get("v", now), None);
    }

    #[test]
    fn a_change_drops_the_lists_holding_it_and_those_of_its_participants() {
        let now = Instant::now();
        let mut kept = lists(10, 100);
        kept.keep("u", list(&[item("a", 1), item("b", 2)]), now);
        kept.keep("v", list(&[item("b", 2)]), now);
        kept.keep("w", list(&[item("c", 3)]), now);
        kept.keep("x", list(&[]), now);

        // `a` changed; it has x now (it had u): u's and x's lists go, v's and w's stay.
        kept.forget("a", &["x".into()]);
        assert_eq!(kept.get("u", now), None);
        assert_eq!(kept.get("x", now), None);
        assert!(kept.get("v", now).is_some());
        assert!(kept.get("w", now).is_some());
        // u's list no longer counts as holding `b`: a change of `b` drops v's only.
        kept.keep("u", list(&[item("a", 1)]), now);
        kept.forget("b", &[]);
        assert_eq!(kept.get("v", now), None);
        assert!(kept.get("u", now).is_some());
        assert_eq!(kept.items, 2, "u's a and w's c");
    }

    #[test]
    fn a_participant_removed_by_a_change_loses_its_list_through_the_id() {
        let now = Instant::now();
        let mut kept = lists(10, 100);
        kept.keep("removed", list(&[item("a", 1)]), now);
        // The write knows only who is in `a` after.
        kept.forget("a", &["stays".into()]);
        assert_eq!(kept.get("removed", now), None);
    }

    #[test]
    fn a_too_long_list_is_kept_as_such_and_dropped_like_any() {
        let now = Instant::now();
        let mut kept = lists(10, 100);
        kept.keep("busy", AgendaList::TooLong, now);
        assert_eq!(kept.get("busy", now), Some(AgendaList::TooLong));
        assert_eq!(kept.items, 0);
        // A change that gives it one more teleconsultation names it.
        kept.forget("new", &["busy".into()]);
        assert_eq!(kept.get("busy", now), None);
    }

    #[test]
    fn the_oldest_lists_go_beyond_the_bounds() {
        let now = Instant::now();
        let mut kept = lists(3, 3);
        kept.keep("u", list(&[item("a", 1)]), now);
        kept.keep("v", list(&[item("b", 1)]), now);
        kept.keep("w", list(&[item("c", 1)]), now);
        kept.keep("t", list(&[item("d", 1)]), now);
        assert_eq!(
            kept.get("u", now),
            None,
            "four participants: the first goes"
        );
        assert!(kept.get("v", now).is_some());

        // Five items: the oldest go until three are left.
        kept.keep("x", list(&[item("e", 1), item("f", 2)]), now);
        assert_eq!(kept.get("v", now), None);
        assert_eq!(kept.get("w", now), None);
        assert!(kept.get("t", now).is_some() && kept.get("x", now).is_some());
        assert_eq!(kept.items, 3);
        assert_eq!(kept.holders.len(), 3, "the lists gone hold nothing");

        // Kept again, a list counts as new: x is the oldest now.
        kept.keep("t", list(&[item("d", 1)]), now);
        kept.keep("y", list(&[item("g", 1)]), now);
        assert_eq!(kept.get("x", now), None);
        assert!(kept.get("t", now).is_some() && kept.get("y", now).is_some());
    }

    #[test]
    fn expired_lists_go_when_another_is_kept() {
        let now = Instant::now();
        let mut kept = lists(10, 100);
        kept.keep("u", list(&[item("a", 1)]), now);
        kept.keep("v", list(&[item("b", 1)]), now + TTL / 2);
        kept.keep("w", list(&[]), now + TTL);
        assert!(!kept.lists.contains_key("u"));
        assert!(!kept.holders.contains_key("a"));
        assert!(kept.get("v", now + TTL).is_some());
        assert_eq!(kept.items, 1);
    }

    #[test]
    fn clearing_drops_every_list() {
        let now = Instant::now();
        let mut kept = lists(10, 100);
        kept.keep("u", list(&[item("a", 1)]), now);
        kept.keep("v", AgendaList::TooLong, now);
        kept.clear();
        assert_eq!(kept.get("u", now), None);
        assert_eq!(kept.get("v", now), None);
        assert_eq!((kept.items, kept.holders.len()), (0, 0));
    }
}
