//! The use cases, one file per resource, mirroring `api/`: each decides with the domain's
//! rules, then stores and converges (store, provisioner, Kaleyra). HTTP-free: handlers turn
//! requests into these calls, and their errors into answers (`api::error`).

pub mod credentials;
pub mod health;
pub mod kaleyra_webhooks;
pub mod room_details;
pub mod settings;
pub mod teleconsultations;
