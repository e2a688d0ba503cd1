//! telecons: turns booked video consultations into Kaleyra Video rooms.

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod domain;
pub mod store;
pub mod telemetry;

pub use app::{AppDeps, AppState, build_app};
pub mod audit;
pub mod bookings;
pub mod demo;
pub mod directory;
pub mod provisioner;
pub mod server;
pub mod users;
