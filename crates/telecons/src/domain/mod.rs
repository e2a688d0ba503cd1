//! Pure rules of the product: no I/O, no clock reads, unit-tested.

pub mod caller;
pub mod ids;
pub mod links;
pub mod room_spec;
pub mod roster;
pub mod schedule;
