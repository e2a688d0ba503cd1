//! Events to the platform (spec §9): made with the change they report and stored in its
//! transaction (the outbox), then sent by a worker.

pub mod links_moments;
pub mod outbox;

pub use links_moments::LinksMoments;
pub use outbox::{HeldEvents, Outbox};
