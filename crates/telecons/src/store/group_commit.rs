//! Group commit, for a database with one writer (SQLite). Write transactions that arrive
//! while another is running wait in a queue; one task then runs all of them in one
//! `BEGIN IMMEDIATE … COMMIT`, so that a group pays the commit (the WAL's fsync, most of a
//! transaction's time on the writer) once. Every write of a group learns its outcome after
//! the group's commit (a write is stored when it says so, as without grouping).
//!
//! A group first runs its writes one after the other, straight in the transaction: each
//! statement is a round trip to the connection's thread, and most groups have no write
//! that fails. When one fails, that attempt is rolled back whole and the group runs again,
//! each write in a savepoint of its own, so that a write that fails rolls back its own work
//! only. A write may thus run twice; only the second run's outcome counts.
//!
//! The task is never cut by the requests it serves. A request that goes away before its
//! write runs (or runs again) leaves nothing written; after, its write is done (as if only
//! the answer were lost).

use std::future::Future;
use std::pin::Pin;

use sqlx::{Database, Executor, IntoArguments, Pool};
use tokio::sync::{mpsc, oneshot};

use super::backend::Backend;
use super::{StoreError, StoreResult};

/// At most this many writes share one commit (a bound on how long a write's caller waits).
const MAX_GROUP: usize = 64;

pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The work of one write transaction: statements on the connection it is given. It owns
/// its data (`'static`), so that it can run on the writer's task, and it can run again (a
/// group runs a second time when one of its writes fails).
pub(super) trait WriteWork<DB: Database, T>:
    for<'c> Fn(&'c mut DB::Connection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static
{
}

impl<DB: Database, T, F> WriteWork<DB, T> for F where
    F: for<'c> Fn(&'c mut DB::Connection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static
{
}

/// A queued write, as the writer task sees it.
trait Job<DB: Database>: Send {
    /// Runs the write on the connection and keeps its result; false when it failed. A
    /// write whose caller has gone is not run (nothing written, nothing failed).
    fn run<'c>(&'c mut self, conn: &'c mut DB::Connection) -> BoxFuture<'c, bool>;
    /// Answers the caller once the group's outcome is known: the write's last result, or
    /// the group's failure (`group_error`) whatever that result was.
    fn answer(self: Box<Self>, group_error: Option<String>);
}

/// A write with its caller's answer.
struct Write<T, W, A> {
    operation: &'static str,
    write: W,
    /// Runs once the outcome is known, whatever it is (a failed commit may still have
    /// applied).
    after: A,
    answer: oneshot::Sender<StoreResult<T>>,
    /// The result of its last run; None when it never ran.
    result: Option<StoreResult<T>>,
}

impl<DB, T, W, A> Job<DB> for Write<T, W, A>
where
    DB: Database,
    T: Send + 'static,
    W: WriteWork<DB, T>,
    A: FnOnce() + Send + 'static,
{
    fn run<'c>(&'c mut self, conn: &'c mut DB::Connection) -> BoxFuture<'c, bool> {
        Box::pin(async move {
            if self.answer.is_closed() {
                // Its caller has gone (timed out, hung up) and answered a failure.
                self.result = None;
                return true;
            }
            let result = (self.write)(conn).await;
            let succeeded = result.is_ok();
            self.result = Some(result);
            succeeded
        })
    }

    fn answer(self: Box<Self>, group_error: Option<String>) {
        // A write that never ran leaves its caller to hear of the group's failure from the
        // dropped answer.
        let Some(result) = self.result else { return };
        (self.after)();
        let _ = self.answer.send(match group_error {
            Some(error) => Err(not_committed(self.operation, error)),
            None => result,
        });
    }
}

/// The queue of the writer task. Dropping it ends the task once the queue is empty.
pub(super) struct GroupCommit<DB: Database> {
    jobs: mpsc::UnboundedSender<Box<dyn Job<DB>>>,
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
    /// gone meanwhile. A caller gone before its write runs leaves nothing written.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        operation: &'static str,
        write: impl WriteWork<DB, T>,
        after: impl FnOnce() + Send + 'static,
    ) -> StoreResult<T> {
        let (answer, answered) = oneshot::channel();
        let job: Box<dyn Job<DB>> = Box::new(Write {
            operation,
            write,
            after,
            answer,
            result: None,
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
async fn run_groups<DB>(writer: Pool<DB>, mut queue: mpsc::UnboundedReceiver<Box<dyn Job<DB>>>)
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

/// Runs `group` in one transaction and commits it: first without savepoints, then, if a
/// write failed, again from the start with one savepoint per write. If a transaction cannot
/// begin, or a savepoint cannot be taken or ended, nothing of the group is committed and
/// every caller hears so.
async fn commit_group<DB>(writer: Pool<DB>, mut group: Vec<Box<dyn Job<DB>>>)
where
    DB: Backend,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let outcome = match run_writes(&writer, &mut group, false).await {
        Ok((tx, true)) => Ok(tx),
        // The connection is trusted again only once the first run is rolled back.
        Ok((tx, false)) => match tx.rollback().await {
            Ok(()) => run_writes(&writer, &mut group, true)
                .await
                .map(|(tx, _)| tx),
            Err(err) => Err(err),
        },
        Err(err) => Err(err),
    };
    let group_error = match outcome {
        Ok(tx) => tx.commit().await.err().map(|err| err.to_string()),
        Err(err) => {
            tracing::error!(error = %err, writes = group.len(), "a group of writes failed; none of it is stored");
            Some(err.to_string())
        }
    };
    for job in group {
        job.answer(group_error.clone());
    }
}

/// Runs the writes of `group` in a new transaction, which it returns with whether every
/// write succeeded. With `savepoints`, each write runs in a savepoint of its own, rolled
/// back when the write fails; without, the run stops at the first write that fails (the
/// transaction then holds part of a write).
async fn run_writes<DB>(
    writer: &Pool<DB>,
    group: &mut [Box<dyn Job<DB>>],
    savepoints: bool,
) -> Result<(sqlx::Transaction<'static, DB>, bool), sqlx::Error>
where
    DB: Backend,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let mut tx = writer.begin_with(DB::BEGIN_WRITE).await?;
    let mut all_succeeded = true;
    for job in group.iter_mut() {
        if !savepoints {
            if !job.run(&mut tx).await {
                return Ok((tx, false));
            }
            continue;
        }
        sqlx::query("SAVEPOINT write").execute(&mut *tx).await?;
        if !job.run(&mut tx).await {
            all_succeeded = false;
            sqlx::query("ROLLBACK TO write").execute(&mut *tx).await?;
        }
        sqlx::query("RELEASE write").execute(&mut *tx).await?;
    }
    Ok((tx, all_succeeded))
}
