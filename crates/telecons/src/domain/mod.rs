//! Pure rules of the product and its central entity: no I/O, no clock reads, unit-tested.

pub mod access;
pub mod agenda;
pub mod agenda_query;
pub mod events;
pub mod idempotency;
pub mod ids;
pub mod join;
pub mod links;
pub mod participants;
pub mod roles;
pub mod room_spec;
pub mod schedule;
pub mod teleconsultation;
