//! The events sent to the platform (spec §9), once stored in the outbox: their delivery
//! (`delivery`: the worker that signs and sends them, retries, gives up, prunes) and what the
//! operator does with the given-up ones (`commands`: `telecons events`).
//!
//! What each event says, and storing it with the change it reports, is not here: the use
//! cases do that, and wake the worker ([`EventDelivery::wake`]) once it is stored.

pub mod commands;
mod delivery;

pub use delivery::{
    CONCURRENCY, DEFAULT_TIMEOUT, EventDelivery, POLL_INTERVAL, PRUNE_EVERY, RETENTION,
};
