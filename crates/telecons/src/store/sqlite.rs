//! SQLite: the embedded default. WAL journal (readers never wait for the writer) and a
//! single writer connection, so writes queue in the pool instead of failing with BUSY. The
//! write transactions of teleconsultations that queue together share one commit
//! (`group_commit`): a commit's fsync is most of a transaction's time on the writer.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::backend::Backend;
use super::group_commit::GroupCommit;
use super::read_cache::ReadCache;
use super::sql::{During, SqlStore};
use super::{DatabaseTimeouts, StoreResult};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

impl Backend for Sqlite {
    const LABEL: &'static str = "sqlite";
    /// Takes the write lock up front, so a transaction never has to upgrade a read lock
    /// (which SQLite may refuse with BUSY).
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    /// One writer: nothing to skip.
    const SKIP_LOCKED: &'static str = "";
    /// Reads the schema: `SELECT 1` would be answered without touching the file.
    const PING: &'static str = "SELECT COUNT(*) FROM sqlite_schema";
    /// One instance per database file: it hears of every change it makes.
    fn announce_change(_payload: &str) -> Option<String> {
        None
    }
    /// Its WITH takes no INSERT or UPDATE (and its writes are grouped anyway).
    const ONE_STATEMENT_WRITES: bool = false;

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    /// The main database's file, as SQLite opened it.
    const IDENTITY: &'static str = "SELECT file FROM pragma_database_list WHERE name = 'main'";

    /// The file's canonical path (symbolic links resolved): a copied or moved file has
    /// another. An in-memory database has no file, and no copy.
    fn identity(file: String) -> Result<String, String> {
        if file.is_empty() {
            return Ok("sqlite::memory:".to_owned());
        }
        let path = std::fs::canonicalize(&file)
            .map_err(|e| format!("cannot resolve the database file {file}: {e}"))?;
        Ok(format!("sqlite:{}", path.display()))
    }
}

pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (and creates if missing) the database file named by a `sqlite://PATH` URL.
    /// Waits for another process's lock at most `timeouts.lock` (the busy timeout).
    pub async fn connect(url: &str, timeouts: DatabaseTimeouts) -> StoreResult<Self> {
        const OPERATION: &str = "opening the SQLite database";
        let options = SqliteConnectOptions::from_str(url)
            .during(OPERATION)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed change survives a power loss too (a 2xx means stored).
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Below the request budget: a write another process blocks fails in time.
            .busy_timeout(timeouts.lock);
        // No ping before each use (`test_before_acquire`): a connection to a local file
        // does not hang up, and the ping would be a second round trip to the connection's
        // thread, where a read's cost is the hand-offs rather than the SQL. It also means
        // a cancelled acquire never drops the one writer connection.
        // One writer connection: SQLite has one writer at a time anyway.
        // A request waits at most this long for the writer: it must stay within its budget
        // (a failed write is a 503 with nothing stored).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await
            .during(OPERATION)?;
        // Four readers: enough for concurrent reads to overlap, few enough that their
        // threads (one per connection) do not crowd a small machine's cores.
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.read_only(true))
            .await
            .during(OPERATION)?;
        Ok(Self {
            group_commit: Some(GroupCommit::start(writer.clone())),
            writer,
            readers,
            read_cache: Arc::new(ReadCache::new(true)),
            _follower: None,
        })
    }
}
