//! telecons: turns booked video consultations into Kaleyra Video rooms.
//!
//! Imports run down this stack only, never up it nor along a line (the README's "Layout"):
//!
//! ```text
//! main, bin/               the commands
//! demo
//! app                      the one assembly
//! api                      HTTP
//! services                 the use cases
//! events                   sending the stored events to the platform
//! provisioner   config
//! outbox                   each change's event, stored with it; the timed ones
//! store         identity  views
//! domain                   pure rules, no I/O
//! clock         telemetry  leaves
//! ```

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod events;
pub mod identity;
pub mod outbox;
pub mod provisioner;
pub mod services;
pub mod store;
pub mod telemetry;
pub mod views;

pub use app::{Application, Dependencies, Services};
