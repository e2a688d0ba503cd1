//! What differs between the SQL backends (SQLite, PostgreSQL): the rest of the store is
//! written once for both.

use sqlx::Database;
use sqlx::migrate::Migrator;

/// What differs between the SQL backends.
pub trait Backend: Database {
    /// For logs and the check-up route.
    const LABEL: &'static str;
    /// How a write transaction begins.
    const BEGIN_WRITE: &'static str;
    /// Appended to the claim query's row selection: skip rows another transaction is
    /// claiming (empty where the database has one writer anyway).
    const SKIP_LOCKED: &'static str;
    /// Run first in the claim's transaction (see [`super::Store::claim_events`]), where the
    /// database must be told how to read the pending events.
    const CLAIM_EVENTS_SETTING: Option<&'static str> = None;
    /// A query that answers only when the database (its file, its server) can be read.
    const PING: &'static str;
    /// The SELECT run with every change of a teleconsultation (in its transaction, or as a
    /// part of its one statement), so that other instances hear of it when it commits; its
    /// payload ([`super::read_cache::Change::announcement`]) is the parameter `payload`
    /// names (`$N`). `None` where one instance makes them all.
    fn announce_change(payload: &str) -> Option<String>;
    /// Whether one statement may write several tables (`WITH … AS (INSERT/UPDATE …)`):
    /// then a new teleconsultation, and a room recorded by its provisioner, are each written
    /// by one statement (atomic by itself: one round trip, no transaction around it).
    const ONE_STATEMENT_WRITES: bool;
    /// Run on the own connection (never returned to the pool) of the migrations, and of
    /// `adopt-database`, before they begin: they may rightly wait longer than a request's
    /// statements (for another instance that is migrating, or to rewrite a large table).
    const MIGRATION_SESSION: Option<&'static str> = None;
    fn migrator() -> &'static Migrator;
    /// A query answering one text that says which database this is (see
    /// [`Self::identity`]).
    const IDENTITY: &'static str;
    /// The database's identity from what [`Self::IDENTITY`] answered: the same for the same
    /// database however it is reached, another one for a copy (see
    /// [`super::Store::database_identity`]).
    fn identity(answer: String) -> Result<String, String>;
}
