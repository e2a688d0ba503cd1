//! The pure parts of the events sent to the platform (spec §9): how an event is signed and
//! when a failed delivery is tried again. Storing and sending them is not here.

pub mod retry;
pub mod signature;
