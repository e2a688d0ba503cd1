//! The use cases, one file per resource, mirroring `api/`: each decides with the domain's
//! rules, then stores and converges (store, provisioner, Kaleyra). HTTP-free: handlers turn
//! requests into these calls, and their errors into answers (`api::error`).

pub mod credentials;
pub mod guard;
pub mod health;
pub mod idempotency;
pub mod kaleyra_webhooks;
pub mod room_details;
pub mod settings;
pub mod teleconsultations;

use std::future::Future;

use chrono::{DateTime, Utc};
use kaleyra_client::KaleyraError;
use tokio::time::Instant;
use tracing::Instrument;

use crate::domain::access::Denied;
use crate::domain::idempotency::InvalidKey;
use crate::domain::schedule;
use crate::domain::teleconsultation::NoPlusUser;
use crate::identity::directory::DirectoryError;
use crate::identity::{GroupsError, IdentityError};
use crate::provisioner::{INLINE_BUDGET, ProvisionError};
use crate::store::StoreError;
use teleconsultations::Operation;

/// Why a use case refuses or fails: one enum for the layer, mapped to HTTP once
/// (`api::error`). The messages are meant for the caller; causes go to the logs there.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No live teleconsultation has this id.
    #[error("teleconsultation {0} not found")]
    NotFound(String),
    /// The join's 404, whose documented text differs from the other routes'.
    #[error("room {0} not found")]
    RoomNotFound(String),
    /// No caller (401), not a participant (401), not in the groups an action needs (403).
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The caller's identity is ambiguous or unusable (400).
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The body or query could not be read.
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
    /// What was sent breaks a rule (400).
    #[error("{0}")]
    Invalid(String),
    /// The caller's groups give it no role (403).
    #[error("{0}")]
    NoRole(String),
    /// The teleconsultation is in its immutable period (409).
    #[error("teleconsultation {id} can no longer be changed: changes are refused from {}", schedule::format_instant(*.from))]
    Immutable { id: String, from: DateTime<Utc> },
    /// The change conflicts with the teleconsultation as it is (409).
    #[error("{0}")]
    Conflict(String),
    /// A complete room needs a plus user (400, the documented text names the route).
    #[error("{operation:?}: {source}")]
    NoPlusUser {
        operation: Operation,
        source: NoPlusUser,
    },
    /// A virtual background alias Kaleyra does not know (404).
    #[error("{0}")]
    UnknownAlias(String),
    /// The company has as many virtual backgrounds as Kaleyra allows (409).
    #[error("{0}")]
    TooMany(String),
    /// An image too large (413).
    #[error("{0}")]
    TooLarge(String),
    /// Not a JPEG (415).
    #[error("{0}")]
    NotJpeg(String),
    /// The caller's groups cannot be had (400 unknown to the directory, 503 unreachable).
    #[error(transparent)]
    Groups(#[from] GroupsError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Kaleyra(#[from] KaleyraError),
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// The `Idempotency-Key` header cannot be a key (400).
    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),
    /// The idempotency key was used with another body (422).
    #[error(
        "the Idempotency-Key was used with another body; a key names one request: send another key for another request"
    )]
    KeyReused,
    /// The first request with this idempotency key is still running (409).
    #[error(
        "a request with this Idempotency-Key is still running; send it again once that one has answered"
    )]
    KeyInUse,
    /// What had to happen before the commit did not fit in the request's time.
    #[error(
        "the request could not be decided in time (the user directory or storage is slow); nothing was stored"
    )]
    OutOfTime,
}

impl From<ProvisionError> for ServiceError {
    fn from(err: ProvisionError) -> Self {
        match err {
            ProvisionError::Kaleyra(err) => Self::Kaleyra(err),
            ProvisionError::Store(err) => Self::Storage(err),
        }
    }
}

/// A part of a request that the API could not read (its body or query), handed to the use
/// case unopened so that the use case reports it in the documented order: 404 (unknown id)
/// → 401 (caller) → 400 (body) → 409.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unreadable {
    pub kind: UnreadableKind,
    /// What was wrong, naming the field and what belongs there.
    pub message: String,
}

/// Why a request part cannot be read: its content (400), its size (413) or its media type
/// (415).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnreadableKind {
    Invalid,
    TooLarge,
    UnsupportedMediaType,
}

impl Unreadable {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: UnreadableKind::Invalid,
            message: message.into(),
        }
    }
}

/// The work after a commit, as a use case hands it to [`commit_then_finish`].
pub type AfterCommit = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `work` — the decision and the commit, returning the answer and what follows the
/// commit — in one task of its own, detached from the request: a client that hangs up stops
/// the wait, never the work, so a change is never cut in a transaction nor between its commit
/// and what follows it. The answer comes once committed; then the work after the commit is
/// waited for until the request's `deadline`, or [`INLINE_BUDGET`] after the commit if that
/// comes first, past which it goes on in the background (what it leaves undone stays stored
/// for the background worker).
pub(crate) async fn commit_then_finish<A, E>(
    deadline: Instant,
    work: impl Future<Output = Result<(A, AfterCommit), E>> + Send + 'static,
) -> Result<A, E>
where
    A: Send + 'static,
    E: Send + 'static,
{
    let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
    // In the request's span: its log lines keep the request id.
    let task = tokio::spawn(
        async move {
            match work.await {
                Ok((answer, after_commit)) => {
                    let _ = answer_tx.send(Ok(answer));
                    after_commit.await;
                }
                Err(err) => {
                    let _ = answer_tx.send(Err(err));
                }
            }
        }
        .in_current_span(),
    );
    let Ok(answer) = answer_rx.await else {
        // The task ended without an answer. A panic goes on up (the panic layer answers
        // 500); otherwise the runtime is stopping, and this request with it.
        if let Err(err) = task.await
            && err.is_panic()
        {
            std::panic::resume_unwind(err.into_panic());
        }
        return std::future::pending().await;
    };
    let deadline = deadline.min(Instant::now() + INLINE_BUDGET);
    if answer.is_ok() && tokio::time::timeout_at(deadline, task).await.is_err() {
        tracing::warn!(
            "the request answers before its Kaleyra work is done; the work goes on in the background"
        );
    }
    answer
}
