//! Group commit, for a database with one writer (SQLite). Write transactions that arrive
//! while another is running wait in a queue; one task then runs all of them in one
//! `BEGIN IMMEDIATE … COMMIT`, each in a savepoint of its own, so that a group pays the
//! commit (the WAL's fsync, most of a transaction's time on the writer) once. A write that
//! fails rolls back its own savepoint only; every write of a group learns its outcome after
//! the group's commit (a write is stored when it says so, as without grouping).
//!
//! The task is never cut by the requests it serves. A request that goes away before its
//! write began leaves nothing written; after, its write is done (as if only the answer were
//! lost).

use std::future::Future;
use std::pin::Pin;

use sqlx::{Database, Executor, IntoArguments, Pool};
use tokio::sync::{mpsc, oneshot};

use super::sql::Backend;
use super::{StoreError, StoreResult};

/// At most this many writes share one commit (a bound on how long a write's caller waits).
const MAX_GROUP: usize = 64;

pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The work of one write transaction: statements on the connection it is given. It owns
/// its data (`'static`), so that it can run on the writer's task.
pub(super) trait WriteWork<DB: Database, T>:
    for<'c> FnOnce(&'c mut DB::Connection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static
{
}

impl<DB: Database, T, F> WriteWork<DB, T> for F where
    F: for<'c> FnOnce(&'c mut DB::Connection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static
{
}

/// A write, run on the connection inside its savepoint; says whether it succeeded (its
/// savepoint is released, else rolled back) and how to answer its caller once the group's
/// outcome is known.
type Job<DB> = Box<
    dyn for<'c> FnOnce(&'c mut <DB as Database>::Connection) -> BoxFuture<'c, (bool, Reply)> + Send,
>;
/// Answers a write's caller: given the group's commit error, if any.
type Reply = Box<dyn FnOnce(Option<String>) + Send>;

/// The queue of the writer task. Dropping it ends the task once the queue is empty.
pub(super) struct GroupCommit<DB: Database> {
    jobs: mpsc::UnboundedSender<Job<DB>>,
}

impl<DB> GroupCommit<DB>
where
    DB: Backend,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// Starts the writer task on `writer` (the pool of the one writer connection).
    pub(super) fn start(writer: Pool<DB>) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(run_groups(writer, queue));
        Self { jobs }
    }

    /// Runs `write` in a transaction shared with the writes queued with it; its result once
    /// the transaction is committed (a database error if the commit failed, whatever the
    /// write's own result: a refusal may rest on a neighbour's change that did not commit).
    /// `after` runs once the outcome is known, on the writer's side, even if the caller has
    /// gone meanwhile. A caller gone before its write began leaves nothing written.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        operation: &'static str,
        write: impl WriteWork<DB, T>,
        after: impl FnOnce() + Send + 'static,
    ) -> StoreResult<T> {
        let (answer, answered) = oneshot::channel();
        let job: Job<DB> = Box::new(move |conn| {
            Box::pin(async move {
                if answer.is_closed() {
                    // Its caller has gone (timed out, hung up) and answered a failure.
                    let nothing: Reply = Box::new(|_| {});
                    return (false, nothing);
                }
                let result = write(conn).await;
                let succeeded = result.is_ok();
                let reply: Reply = Box::new(move |commit_error| {
                    after();
                    let _ = answer.send(match commit_error {
                        Some(error) => Err(not_committed(operation, error)),
                        None => result,
                    });
                });
                (succeeded, reply)
            })
        });
        if self.jobs.send(job).is_err() {
            return Err(not_committed(operation, "the writer has stopped".into()));
        }
        answered.await.unwrap_or_else(|_| {
            Err(not_committed(
                operation,
                "its group of writes failed (see the log)".into(),
            ))
        })
    }
}

fn not_committed(operation: &'static str, why: String) -> StoreError {
    StoreError::Database {
        operation,
        source: sqlx::Error::Protocol(format!("the write was not committed: {why}")),
    }
}

/// The writer task: takes the queued writes in groups and commits each group.
async fn run_groups<DB>(writer: Pool<DB>, mut queue: mpsc::UnboundedReceiver<Job<DB>>)
where
    DB: Backend,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        // A task of its own: should a write panic, its group is lost (rolled back, its
        // callers told), not the writer.
        if let Err(err) = tokio::spawn(commit_group(writer.clone(), group)).await {
            tracing::error!(error = %err, "a group of writes failed; none of it is stored");
        }
    }
}

/// Runs `group` in one transaction. If the transaction cannot begin, or a savepoint
/// cannot be taken or ended, nothing of the group is committed and every caller hears so
/// (the unanswered ones by their dropped answer).
async fn commit_group<DB>(writer: Pool<DB>, group: Vec<Job<DB>>)
where
    DB: Backend,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let mut tx = match writer.begin_with(DB::BEGIN_WRITE).await {
        Ok(tx) => tx,
        Err(err) => {
            tracing::error!(error = %err, writes = group.len(), "cannot begin a group of writes");
            return;
        }
    };
    // Every write that ran is answered after the commit, the refused ones too.
    let mut answers: Vec<Reply> = Vec::with_capacity(group.len());
    for job in group {
        if let Err(err) = sqlx::query("SAVEPOINT write").execute(&mut *tx).await {
            return fail(answers, &err);
        }
        let (succeeded, reply) = job(&mut tx).await;
        let ended = if succeeded {
            sqlx::query("RELEASE write").execute(&mut *tx).await
        } else {
            match sqlx::query("ROLLBACK TO write").execute(&mut *tx).await {
                Ok(_) => sqlx::query("RELEASE write").execute(&mut *tx).await,
                err => err,
            }
        };
        answers.push(reply);
        if let Err(err) = ended {
            return fail(answers, &err);
        }
    }
    let commit_error = tx.commit().await.err().map(|err| err.to_string());
    for reply in answers {
        reply(commit_error.clone());
    }
}

/// Abandons the group (the transaction rolls back when dropped) and tells the writes that
/// ran.
fn fail(ran: Vec<Reply>, err: &sqlx::Error) {
    tracing::error!(error = %err, "a group of writes failed; none of it is stored");
    for reply in ran {
        reply(Some(err.to_string()));
    }
}
