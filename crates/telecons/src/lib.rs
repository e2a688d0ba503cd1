//! telecons: turns booked video consultations into Kaleyra Video rooms.
//!
//! Imports run one way: `domain` (pure rules, the entity) ← `store` ← `provisioner`,
//! `identity` ← `lifecycle`, `health` ← `api` (HTTP) ← `app` (the assembly) ← `main`, `demo`.

pub mod api;
pub mod app;
pub mod clock;
pub mod company;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod details;
pub mod domain;
pub mod health;
pub mod identity;
pub mod lifecycle;
pub mod provisioner;
pub mod store;
pub mod telemetry;
pub mod webhooks;

pub use app::{Application, Dependencies, Services};
