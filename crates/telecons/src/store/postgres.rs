//! PostgreSQL: for several instances on one database. Concurrent changes are decided by the
//! version check inside UPDATE (row locks make the loser see the new version); background
//! work is claimed with `FOR UPDATE SKIP LOCKED`.

use std::time::Duration;

use sqlx::Postgres;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

use super::StoreResult;
use super::sql::{Backend, During, SqlStore};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

impl Backend for Postgres {
    const LABEL: &'static str = "postgres";
    const BEGIN_WRITE: &'static str = "BEGIN";
    const SKIP_LOCKED: &'static str = "FOR UPDATE SKIP LOCKED";
    const PING: &'static str = "SELECT 1";

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }
}

pub type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .during("connecting to PostgreSQL")?;
        // One pool serves both: PostgreSQL has no single-writer constraint.
        Ok(Self {
            writer: pool.clone(),
            readers: pool,
        })
    }
}
