//! `GET /v2/rooms`, read as it arrives: Kaleyra answers one JSON array of every room of the
//! company (no pagination), which at a large company is far more than anyone should hold.
//!
//! A blocking thread decodes the array element by element (serde_json over the body, bridged
//! with `StreamReader` + `SyncIoBridge`) and hands the rooms over, [`BATCH`] at a time,
//! through a small channel; the caller's `keep` then decides, on the caller's task, what is
//! held. So the memory is what `keep` keeps, plus the element being decoded and at most four
//! batches in flight (one being filled, [`QUEUED_BATCHES`] waiting, one being kept) — never
//! the listing.

use std::cell::Cell;
use std::io::{self, BufReader, Read};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde::de::{self, Deserializer as _, SeqAccess, Visitor};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::{ErrorKind, KaleyraError, Operation, transport_error};
use crate::wire::Room;

/// Decoded rooms are handed over this many at a time: one hand-over per room costs a
/// thread wake-up per room, which doubled the time of a listing (measured).
const BATCH: usize = 64;

/// Batches waiting for the caller's `keep`: the decoder runs at most this far ahead.
const QUEUED_BATCHES: usize = 2;

/// One element of the listing: a room, or why it is not one.
type Element = Result<Room, serde_json::Error>;

/// The decoder's read buffer. serde_json reads byte by byte, which std serves cheaply out of
/// a `BufReader` (measured: a third less time for the whole listing than counting each byte
/// on its way out of the buffer).
const READ_BUFFER: usize = 16 * 1024;

/// What `GET /v2/rooms` answered ([`KaleyraClient::list_rooms`]): the rooms that could be
/// decoded (or, from [`KaleyraClient::list_rooms_filter_map`], what its `keep` made of
/// them), and how many elements could not be decoded.
///
/// Each room of the listing is decoded on its own, so one room this client cannot read (a
/// room made by another tool without a field we need, a value of an unexpected type) does not
/// hide all the others: it is skipped and counted in `unreadable` (and logged at warn).
/// Note that an unreadable room cannot be recognised as one's own: a caller that cleans up
/// its rooms should report a non-zero `unreadable` rather than assume there is nothing else.
///
/// Dereferences to the slice of what was kept and iterates over it, so it can be used where
/// a `Vec<Room>` was.
///
/// [`KaleyraClient::list_rooms`]: crate::KaleyraClient::list_rooms
/// [`KaleyraClient::list_rooms_filter_map`]: crate::KaleyraClient::list_rooms_filter_map
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomList<T = Room> {
    /// What was kept of the rooms that could be decoded, in Kaleyra's order.
    pub rooms: Vec<T>,
    /// How many elements of the listing could not be decoded as a room.
    pub unreadable: u64,
}

impl<T> Default for RoomList<T> {
    fn default() -> Self {
        Self {
            rooms: Vec::new(),
            unreadable: 0,
        }
    }
}

impl<T> std::ops::Deref for RoomList<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.rooms
    }
}

impl<T> IntoIterator for RoomList<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.rooms.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a RoomList<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.rooms.iter()
    }
}

/// How a listing's 2xx answer is read.
pub(crate) struct ListingReader<'k, F> {
    pub(crate) op: Operation,
    /// Longest wait for the next piece of the body.
    pub(crate) stall: Duration,
    /// Largest element of the array, in bytes.
    pub(crate) max_room_bytes: usize,
    /// The caller's filter. Attempts never overlap; the lock is only what lets each attempt
    /// borrow it in turn while the call's future stays `Send`.
    pub(crate) keep: &'k Mutex<F>,
}

impl<F> ListingReader<'_, F> {
    /// Reads the listing in `response` to its end, keeping what `keep` returns.
    pub(crate) async fn read<T>(
        &self,
        response: reqwest::Response,
    ) -> Result<RoomList<T>, KaleyraError>
    where
        F: FnMut(Room) -> Option<T>,
    {
        let op = self.op;
        let (rooms_tx, mut rooms_rx) = mpsc::channel(QUEUED_BATCHES);
        let body = SyncIoBridge::new(StreamReader::new(Box::pin(body_chunks(
            op, response, self.stall,
        ))));
        let max_room_bytes = self.max_room_bytes;
        let decoder = tokio::task::spawn_blocking(move || {
            decode_listing(op, body, max_room_bytes, &rooms_tx)
        });

        let mut list = RoomList::default();
        let mut readable = 0_usize;
        let mut first_error = None;
        while let Some(batch) = rooms_rx.recv().await {
            let mut keep = self.keep.lock().unwrap_or_else(PoisonError::into_inner);
            for element in batch {
                match element {
                    Ok(room) => {
                        readable += 1;
                        list.rooms.extend(keep(room));
                    }
                    Err(e) => {
                        list.unreadable += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match decoder.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                return Err(KaleyraError::new(
                    op,
                    ErrorKind::InvalidResponse("the listing was not read to its end".into()),
                )
                .with_source(e));
            }
        }
        if let Some(e) = first_error {
            metrics::counter!("kaleyra_unreadable_rooms_total").increment(list.unreadable);
            tracing::warn!(
                operation = op.as_str(),
                unreadable = list.unreadable,
                readable,
                kept = list.rooms.len(),
                first_error = %e,
                "Kaleyra listed rooms this client cannot decode; they are skipped"
            );
        }
        Ok(list)
    }
}

/// The body of `response` as a stream of chunks: a transport failure, or a wait longer than
/// `stall` for the next chunk, ends it with that failure (a [`KaleyraError`] inside the
/// `io::Error`, taken out again by [`listing_error`]).
fn body_chunks(
    op: Operation,
    response: reqwest::Response,
    stall: Duration,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    futures_util::stream::unfold(Some(response), move |response| async move {
        let mut response = response?;
        let failure = match tokio::time::timeout(stall, response.chunk()).await {
            Ok(Ok(Some(chunk))) => return Some((Ok(chunk), Some(response))),
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => transport_error(op, e),
            Err(_) => KaleyraError::new(op, ErrorKind::Timeout).with_source(io::Error::new(
                io::ErrorKind::TimedOut,
                "the answer stalled for longer than the request timeout",
            )),
        };
        Some((Err(io::Error::other(failure)), None))
    })
}

/// Decodes the JSON array in `body` as it arrives (on a blocking thread), sending each element
/// to `rooms` as a room or as the reason it is not one. Fails when the body is not one JSON
/// array, an element is larger than `max_room_bytes`, or the body fails.
fn decode_listing(
    op: Operation,
    body: impl Read,
    max_room_bytes: usize,
    rooms: &mpsc::Sender<Vec<Element>>,
) -> Result<(), KaleyraError> {
    let budget = ElementBudget {
        op,
        limit: max_room_bytes,
        fetched: Cell::new(0),
    };
    let reader = BufReader::with_capacity(
        READ_BUFFER,
        Budgeted {
            inner: body,
            budget: &budget,
        },
    );
    let mut json = serde_json::Deserializer::from_reader(reader);
    json.deserialize_seq(ElementsVisitor {
        budget: &budget,
        rooms,
    })
    .and_then(|()| json.end())
    .map_err(|e| listing_error(op, e))
}

/// A failed decoding of the listing, as the caller should see it: the body's own failure
/// (transport, stall) or the element limit as the reader raised it, else an answer that is
/// not one JSON array.
fn listing_error(op: Operation, e: serde_json::Error) -> KaleyraError {
    if !e.is_io() {
        return KaleyraError::new(
            op,
            ErrorKind::InvalidResponse(format!("the room listing is not a JSON array: {e}")),
        );
    }
    match io::Error::from(e).downcast::<KaleyraError>() {
        Ok(failure) => failure,
        Err(io) => KaleyraError::new(op, ErrorKind::ConnectionLost).with_source(io),
    }
}

/// The bytes one element of the listing may take: the bytes fetched from the body while it
/// is decoded. The read buffer sits between this count and the decoder, so the count is off
/// by up to [`READ_BUFFER`] either way: an element is refused once the count passes
/// `limit + READ_BUFFER`, i.e. only when it is surely larger than `limit`, and at the latest
/// when it is `2 × READ_BUFFER` larger.
struct ElementBudget {
    op: Operation,
    limit: usize,
    fetched: Cell<usize>,
}

/// A reader that fails once the current element has taken more than its budget.
struct Budgeted<'b, R> {
    inner: R,
    budget: &'b ElementBudget,
}

impl<R: Read> Read for Budgeted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let fetched = self.budget.fetched.get().saturating_add(n);
        self.budget.fetched.set(fetched);
        if fetched > self.budget.limit.saturating_add(READ_BUFFER) {
            return Err(io::Error::other(KaleyraError::new(
                self.budget.op,
                ErrorKind::InvalidResponse(format!(
                    "a room of the listing is larger than the limit of {} bytes \
                     (max_answer_bytes)",
                    self.budget.limit
                )),
            )));
        }
        Ok(n)
    }
}

/// Visits the listing's array: each element is taken raw (within its budget), then decoded
/// as a [`Room`] on its own, so that one unreadable element does not fail the others.
struct ElementsVisitor<'a> {
    budget: &'a ElementBudget,
    rooms: &'a mpsc::Sender<Vec<Element>>,
}

impl ElementsVisitor<'_> {
    /// Hands `batch` over; `false` when the caller is gone (its call was dropped).
    fn hand_over(&self, batch: Vec<Element>) -> bool {
        batch.is_empty() || self.rooms.blocking_send(batch).is_ok()
    }
}

impl<'de> Visitor<'de> for ElementsVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of rooms")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut elements: A) -> Result<(), A::Error> {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            self.budget.fetched.set(0);
            let Some(raw) = elements.next_element::<Box<RawValue>>()? else {
                break;
            };
            batch.push(serde_json::from_str::<Room>(raw.get()));
            if batch.len() == BATCH
                && !self.hand_over(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
            {
                return Err(de::Error::custom("the listing is no longer wanted"));
            }
        }
        if !self.hand_over(batch) {
            return Err(de::Error::custom("the listing is no longer wanted"));
        }
        Ok(())
    }
}
