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
//! store         identity
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
pub mod provisioner;
pub mod services;
pub mod store;
pub mod telemetry;

pub use app::{Application, Dependencies, Services};
