//! The use cases, one file per resource, mirroring `api/`: each decides with the domain's
//! rules, then stores and converges (store, provisioner, Kaleyra). HTTP-free: handlers turn
//! requests into these calls, and their errors into answers (`api::error`).

pub mod credentials;
pub mod health;
pub mod kaleyra_webhooks;
pub mod room_details;
pub mod settings;
pub mod teleconsultations;

use std::future::Future;

use tokio::time::Instant;

use crate::provisioner::INLINE_BUDGET;

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
    let task = tokio::spawn(async move {
        match work.await {
            Ok((answer, after_commit)) => {
                let _ = answer_tx.send(Ok(answer));
                after_commit.await;
            }
            Err(err) => {
                let _ = answer_tx.send(Err(err));
            }
        }
    });
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
        tracing::warn!("the request's time is up; the background worker finishes its Kaleyra work");
    }
    answer
}
