//! The pure parts of the events sent to the platform (spec §9): how an event is signed, what
//! an attempt's answer means and when a failed delivery is tried again. Storing and sending
//! them is not here.

pub mod answer;
pub mod retry;
pub mod signature;
