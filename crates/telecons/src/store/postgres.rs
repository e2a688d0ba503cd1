//! PostgreSQL: for several instances on one database. Concurrent changes are decided by the
//! version check inside UPDATE (row locks make the loser see the new version); background
//! work is claimed with `FOR UPDATE SKIP LOCKED`. Each change of a teleconsultation is
//! announced on [`CHANGES_CHANNEL`] as it commits, with the participants it has after (a
//! booking too: it enters their agenda lists); every instance follows the channel to keep
//! its read cache current.

use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Postgres;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use tokio_util::sync::CancellationToken;

use super::backend::Backend;
use super::read_cache::{Change, ReadCache};
use super::sql::{During, SqlStore};
use super::{DatabaseTimeouts, StoreError, StoreResult};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel on which changes of teleconsultations are announced (payload:
/// [`Change::announcement`]). The previous version announced the id alone, and bookings not
/// at all: while both run (a rolling update), this version drops every agenda list on such
/// an announcement, and misses the previous version's bookings for at most the lists' time
/// to live; the previous version takes this one's payload for an unknown id, and serves
/// this version's changes at most its read cache's time to live late.
pub const CHANGES_CHANNEL: &str = "telecons_changes";
/// After the channel cannot be followed, the next attempt waits this long, doubling with
/// each failure in a row up to [`MAX_FOLLOW_RETRY`] (one warning each, not one a second).
const FOLLOW_RETRY: Duration = Duration::from_secs(1);
const MAX_FOLLOW_RETRY: Duration = Duration::from_secs(30);
/// How long opening the first connection may take before the server counts as not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Backend for Postgres {
    const LABEL: &'static str = "postgres";
    const BEGIN_WRITE: &'static str = "BEGIN";
    const SKIP_LOCKED: &'static str = "FOR UPDATE SKIP LOCKED";
    /// The claim reads the pending events in id order through their index, never by a
    /// bitmap of it: an event's older row versions stay in the index until a vacuum, and an
    /// index scan marks those it meets dead so that later claims skip them, where a bitmap
    /// scan reads every one of them each time (right after a burst, 20,000 delivered events
    /// made each claim 11 ms instead of 0.6).
    const CLAIM_EVENTS_SETTING: Option<&'static str> = Some("SET LOCAL enable_bitmapscan = off");
    const PING: &'static str = "SELECT 1";
    /// Delivered to the listeners when the transaction commits, never if it rolls back.
    fn announce_change(payload: &str) -> Option<String> {
        Some(format!("SELECT pg_notify('{CHANGES_CHANNEL}', {payload})"))
    }
    const ONE_STATEMENT_WRITES: bool = true;
    /// The request's timeouts are lifted: the advisory lock waits for another instance's
    /// migrations, and a migration may rewrite a large table.
    const MIGRATION_SESSION: Option<&'static str> =
        Some("SET statement_timeout = 0; SET lock_timeout = 0");

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    /// The cluster's system identifier (made by initdb; a physical replica shares it, a
    /// restored dump or an upgraded cluster does not) and the database's name (a
    /// `CREATE DATABASE … TEMPLATE` copy in the same cluster has another).
    const IDENTITY: &'static str = "SELECT CAST(system_identifier AS TEXT) || '/' || \
        current_database() FROM pg_control_system()";

    fn identity(answer: String) -> Result<String, String> {
        Ok(format!("postgres:{answer}"))
    }
}

pub type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Every connection has `timeouts` as its `statement_timeout` and `lock_timeout`, and
    /// does not send notices (such as `IF NOT EXISTS`'s "already exists, skipping", which
    /// sqlx would log at INFO on every start-up). One connection is tried first, so that a
    /// database or server that is not there is reported once, saying where and what to do.
    pub async fn connect(url: &str, timeouts: DatabaseTimeouts) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .during("reading DATABASE_URL")?
            .options([
                (
                    "statement_timeout",
                    timeouts.statement.as_millis().to_string(),
                ),
                ("lock_timeout", timeouts.lock.as_millis().to_string()),
                ("client_min_messages", "warning".to_owned()),
            ]);
        match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
            Ok(Ok(probe)) => {
                let _ = probe.close().await;
            }
            Ok(Err(err)) => return Err(StoreError::CannotConnect(cannot_connect(&options, &err))),
            Err(_) => {
                let server = Server::of(&options);
                return Err(StoreError::CannotConnect(format!(
                    "PostgreSQL at {} did not answer within {} s (database {:?}); is PostgreSQL running on {}?",
                    server.address,
                    CONNECT_TIMEOUT.as_secs(),
                    server.database,
                    server.address
                )));
            }
        }
        let pool = PgPoolOptions::new()
            // Ten for queries, and one for the follower of the changes channel (it holds
            // one while it follows; it is not reserved).
            .max_connections(11)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .during("connecting to PostgreSQL")?;
        // Nothing is served from memory until the channel is followed.
        let read_cache = Arc::new(ReadCache::new(false));
        let stop = CancellationToken::new();
        tokio::spawn(follow_changes(
            pool.clone(),
            Arc::clone(&read_cache),
            stop.clone(),
        ));
        // One pool serves both: PostgreSQL has no single-writer constraint.
        Ok(Self {
            writer: pool.clone(),
            readers: pool,
            read_cache,
            _follower: Some(stop.drop_guard()),
            // PostgreSQL groups concurrent commits itself, and has no single writer.
            group_commit: None,
        })
    }
}

/// Follows the changes other instances announce until `stop`, forgetting each changed
/// teleconsultation and the agenda lists it touches. Whenever announcements may have been
/// missed, everything is forgotten; while the channel cannot be followed, nothing is served
/// from memory.
async fn follow_changes(pool: PgPool, cache: Arc<ReadCache>, stop: CancellationToken) {
    let mut retry = FOLLOW_RETRY;
    loop {
        let mut followed_once = false;
        let err = tokio::select! {
            () = stop.cancelled() => return,
            result = follow(&pool, &cache, &mut followed_once) => {
                let Err(err) = result;
                err
            }
        };
        cache.forget_all(false);
        if followed_once {
            retry = FOLLOW_RETRY;
        }
        tracing::warn!(error = %err, retry_in_secs = retry.as_secs(), "cannot follow other instances' changes; GET reads the database meanwhile");
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(MAX_FOLLOW_RETRY);
    }
}

/// Returns only on an error (the connection is gone and cannot be made again);
/// `followed_once` tells whether the channel was followed before.
async fn follow(
    pool: &PgPool,
    cache: &ReadCache,
    followed_once: &mut bool,
) -> Result<Infallible, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANGES_CHANNEL).await?;
    cache.forget_all(true);
    *followed_once = true;
    loop {
        match listener.try_recv().await? {
            Some(announced) => match Change::announced(announced.payload()) {
                Some(change) => cache.forget(&change),
                None => {
                    tracing::warn!(
                        payload = announced.payload(),
                        "an unreadable change announcement; everything kept in memory is forgotten"
                    );
                    cache.forget_all(true);
                }
            },
            // The connection was lost and made again: what was announced meanwhile is
            // unknown.
            None => cache.forget_all(true),
        }
    }
}

/// Where a PostgreSQL URL points: what an operator needs to find it (never the password).
struct Server {
    /// `host:port`, or the socket directory.
    address: String,
    host: String,
    port: u16,
    database: String,
    user: String,
}

impl Server {
    fn of(options: &PgConnectOptions) -> Self {
        let (host, port) = (options.get_host().to_owned(), options.get_port());
        Self {
            address: match options.get_socket() {
                Some(socket) => socket.display().to_string(),
                None => format!("{host}:{port}"),
            },
            host,
            port,
            // PostgreSQL's own default: the database named like the user.
            database: options
                .get_database()
                .unwrap_or(options.get_username())
                .to_owned(),
            user: options.get_username().to_owned(),
        }
    }
}

/// What went wrong opening a connection, for an operator: where, and the next step.
fn cannot_connect(options: &PgConnectOptions, err: &sqlx::Error) -> String {
    let Server {
        address,
        host,
        port,
        database,
        user,
    } = Server::of(options);
    match err {
        // invalid_catalog_name: the server answers, the database is not there.
        sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000") => format!(
            "PostgreSQL at {address} has no database {database:?}; create it with: createdb -h {host} -p {port} {database}"
        ),
        sqlx::Error::Database(db) => format!(
            "PostgreSQL at {address} refused the connection to database {database:?} as user {user:?}: {}",
            db.message()
        ),
        sqlx::Error::Io(io) => format!(
            "cannot reach PostgreSQL at {address} (database {database:?}): {io}; is PostgreSQL running on {address}?"
        ),
        other => {
            format!("cannot connect to PostgreSQL at {address} (database {database:?}): {other}")
        }
    }
}
