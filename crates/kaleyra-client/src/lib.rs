//! Typed client of the Kaleyra Video v2 REST API, as this project speaks it
//! (`shared/spec/kaleyra.md`): timeouts, safe retries, typed errors, metrics.
//!
//! - [`KaleyraClient`]: one typed async method per Kaleyra call, plus
//!   [`KaleyraClient::ensure_user`] (idempotent user creation with role upgrade).
//!   Only calls that are safe to repeat are retried; room creation, SDK credentials and the
//!   background upload never are (see the type's documentation).
//! - [`KaleyraError`]: which [`Operation`] failed and how ([`ErrorKind`]): unreachable,
//!   timeout, connection lost, rejected (4xx: the request was wrong), unavailable (5xx/429 after
//!   retries), invalid response.
//! - [`RoomList`]: what [`KaleyraClient::list_rooms`] returns — each room of the listing is
//!   decoded on its own, so a room this client cannot read is skipped and counted
//!   (`unreadable`) instead of failing the whole listing. The listing is decoded as it
//!   arrives: [`KaleyraClient::list_rooms_filter_map`] holds only the rooms its caller keeps.
//!   Every other answer is read with a cap ([`MAX_ANSWER_BYTES`], 64 MiB by default) enforced
//!   while it streams in; in a listing, the cap bounds each room.
//! - [`wire`]: every JSON body, in one module, easy to correct once a real answer is seen.
//! - [`webhook`]: the `bandyer-signature` of Kaleyra's webhooks ([`webhook::sign`],
//!   [`webhook::verify`]), shared by the service that receives them and the simulator that
//!   sends them; `t` is in seconds.
//! - [`kaleyra_user_id`]: the deterministic, non-revealing Kaleyra id of a user.
//!
//! The API key lives in a [`secrecy::SecretString`] and is sent only in the `apikey` header
//! (marked sensitive); it never appears in errors, logs or `Debug` output.
//!
//! ```no_run
//! use kaleyra_client::{KaleyraClient, KaleyraClientConfig, Role, kaleyra_user_id};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = KaleyraClientConfig::new(
//!     "https://api.sandbox.eu.bandyer.com",
//!     secrecy::SecretString::from("ak_live_…"),
//! );
//! let client = KaleyraClient::new(config)?;
//! let user = client
//!     .ensure_user(&kaleyra_user_id("doctor-42"), Role::Plus, Some("it"))
//!     .await?;
//! # let _ = user; Ok(()) }
//! ```

mod back_pressure;
mod client;
mod error;
mod listing;
mod user_id;
pub mod webhook;
pub mod wire;

pub use back_pressure::MAX_RETRY_AFTER;
pub use client::{
    API_KEY_HEADER, DeleteOutcome, KaleyraClient, KaleyraClientConfig, LISTING_TIMEOUT,
    MAX_ANSWER_BYTES, RetryPolicy, describe_metrics,
};
pub use error::{ConfigError, ErrorKind, KaleyraError, Operation};
pub use listing::RoomList;
pub use user_id::{KALEYRA_USER_ID_PREFIX, kaleyra_user_id};
pub use wire::{
    CallType, Company, CreateRoom, DefaultBackground, NewParticipant, Recording, Role, Room,
    RoomParticipant, SdkCredentials, Tools, UpdateCompany, UpdateUser, Upload, User,
    VirtualBackground, WebhookEvent,
};

/// Re-exported so that callers can build a [`KaleyraClientConfig`] without naming the crate.
pub use secrecy::{ExposeSecret, SecretString};
