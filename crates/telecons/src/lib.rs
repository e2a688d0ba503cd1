//! telecons: turns booked video consultations into Kaleyra Video rooms.
//!
//! Imports run one way: `domain` (pure rules, the entity) ← `store` ← `provisioner`,
//! `identity` ← `lifecycle`, `health` ← `api` (HTTP) ← `app` (the assembly) ← `main`, `demo`.

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod identity;
pub mod provisioner;
pub mod services;
pub mod store;
pub mod telemetry;

pub use app::{Application, Dependencies, Services};
