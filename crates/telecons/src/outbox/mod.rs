//! The outbox (spec §9): each change's event, made with the §4.12 view as it was and stored
//! in the change's own transaction (held until its request has answered), and the timed
//! events of the links' moment. Sending what it holds is `events`'.

mod held;
mod links_moments;

pub use held::{Answering, HeldEvents, Outbox};
pub use links_moments::LinksMoments;
