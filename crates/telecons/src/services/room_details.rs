//! The rooms' details for the join (spec §4.4), from a short-lived cache: every participant
//! polls `GET /teleconsultation/:id` until its link appears, and a poll must neither wait for
//! Kaleyra nor spend the company's Kaleyra rate limit.
//!
//! - A room's details are fetched once, on the first ask (the callers asking at that moment
//!   wait together for one Kaleyra call, at most [`FETCH_BUDGET`]).
//! - Then they are served from memory. Past [`FRESH_FOR`] they are still served, and one
//!   background call per room refreshes them: details are at most a few seconds old.
//! - A failure is remembered for [`FAILURE_FOR`] only (details null meanwhile); a room Kaleyra
//!   does not know is reported as gone.
//! - The cache is bounded ([`CAPACITY`] rooms, least recently used out first), and rooms
//!   nobody asks about leave it after [`IDLE_FOR`]. A replaced room has a new id, so its old
//!   entry is never served.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kaleyra_client::{KaleyraClient, Room};
use tokio::time::Instant;

/// How long the first fetch of a room's details may take: the join must not wait longer.
pub const FETCH_BUDGET: Duration = Duration::from_secs(1);
/// Details younger than this are served without asking Kaleyra.
pub const FRESH_FOR: Duration = Duration::from_secs(5);
/// A failure to read them is remembered this long.
pub const FAILURE_FOR: Duration = Duration::from_secs(2);
/// At most this many rooms' details are kept.
pub const CAPACITY: u64 = 5_000;
/// Details nobody asked about for this long are dropped.
pub const IDLE_FOR: Duration = Duration::from_secs(600);

/// What is known of a room's details; cheap to clone (each join takes one).
#[derive(Debug, Clone, PartialEq)]
pub enum Details {
    Known(Arc<Room>),
    /// Kaleyra could not be read (recently): no details to show.
    Unavailable,
    /// Kaleyra does not know the room (404).
    Gone,
}

#[derive(Debug)]
struct Entry {
    details: Details,
    fetched: Instant,
}

impl Entry {
    fn is_stale(&self) -> bool {
        let keep = match self.details {
            Details::Known(_) => FRESH_FOR,
            Details::Unavailable | Details::Gone => FAILURE_FOR,
        };
        self.fetched.elapsed() >= keep
    }
}

/// Cheap to clone: the clones share the cache.
#[derive(Clone)]
pub struct RoomDetailsCache {
    /// No retries, [`FETCH_BUDGET`] per call.
    kaleyra: KaleyraClient,
    entries: moka::future::Cache<String, Arc<Entry>>,
    /// Rooms being refreshed in the background (one call per room at a time).
    refreshing: Arc<Mutex<HashSet<String>>>,
}

impl RoomDetailsCache {
    pub fn new(kaleyra: &KaleyraClient) -> Self {
        Self {
            kaleyra: kaleyra
                .with_retry_policy(kaleyra_client::RetryPolicy::none())
                .with_request_timeout(FETCH_BUDGET),
            entries: moka::future::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(IDLE_FOR)
                .build(),
            refreshing: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The details of `room_id`: from memory when known (refreshed in the background once
    /// stale), else fetched now — once for every caller asking at the same time.
    pub async fn get(&self, room_id: &str) -> Details {
        if let Some(entry) = self.entries.get(room_id).await {
            if entry.is_stale() {
                self.refresh_in_background(room_id);
            }
            return entry.details.clone();
        }
        let kaleyra = self.kaleyra.clone();
        let entry = self
            .entries
            .get_with(room_id.to_owned(), fetch(kaleyra, room_id.to_owned()))
            .await;
        entry.details.clone()
    }

    /// Forgets `room_id` (gone, or no longer anyone's room).
    pub async fn forget(&self, room_id: &str) {
        self.entries.invalidate(room_id).await;
    }

    fn refresh_in_background(&self, room_id: &str) {
        {
            let mut refreshing = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
            if !refreshing.insert(room_id.to_owned()) {
                return; // one call per room at a time
            }
        }
        let cache = self.clone();
        let room_id = room_id.to_owned();
        tokio::spawn(async move {
            let entry = fetch(cache.kaleyra.clone(), room_id.clone()).await;
            cache.entries.insert(room_id.clone(), entry).await;
            cache
                .refreshing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&room_id);
        });
    }
}

async fn fetch(kaleyra: KaleyraClient, room_id: String) -> Arc<Entry> {
    let details = match kaleyra.get_room(&room_id).await {
        Ok(room) => Details::Known(Arc::new(room)),
        Err(err) if err.is_not_found() => Details::Gone,
        Err(err) => {
            tracing::warn!(room = %room_id, error = %err, "room details unavailable; answering without them");
            Details::Unavailable
        }
    };
    Arc::new(Entry {
        details,
        fetched: Instant::now(),
    })
}
