//! SQLite: the embedded default. WAL journal (readers never wait for the writer) and a
//! single writer connection, so writes queue in the pool instead of failing with BUSY.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::rows;
use chrono::{DateTime, Utc};

use super::{Backlog, KaleyraUser, RoomDeletion, Store, StoreResult, Teleconsultation};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    /// One connection: SQLite has one writer at a time anyway.
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    /// Opens (and creates if missing) the database file named by a `sqlite://PATH` URL.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { writer, readers })
    }

    /// A write transaction. `BEGIN IMMEDIATE` takes the write lock up front, so a
    /// transaction never has to upgrade a read lock (which SQLite may refuse with BUSY).
    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        // Reads the schema: `SELECT 1` would be answered without touching the file.
        sqlx::query("SELECT COUNT(*) FROM sqlite_schema")
            .execute(&self.readers)
            .await?;
        Ok(())
    }

    async fn insert_teleconsultation(&self, tc: &Teleconsultation) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        rows::insert_teleconsultation::<sqlx::Sqlite>(&mut *tx, tc).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_teleconsultation(&self, id: &str) -> StoreResult<Option<Teleconsultation>> {
        rows::fetch_teleconsultation(&self.readers, id).await
    }

    async fn update_teleconsultation(
        &self,
        tc: &Teleconsultation,
        retired_rooms: &[String],
    ) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        let version =
            rows::update_teleconsultation::<sqlx::Sqlite>(&mut *tx, tc, retired_rooms).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn list_teleconsultations_by_participant(
        &self,
        external_id: &str,
    ) -> StoreResult<Vec<Teleconsultation>> {
        rows::fetch_by_participant(&self.readers, external_id).await
    }

    async fn get_kaleyra_user(&self, external_id: &str) -> StoreResult<Option<KaleyraUser>> {
        rows::fetch_kaleyra_user(&self.readers, external_id).await
    }

    async fn insert_kaleyra_user(&self, user: &KaleyraUser) -> StoreResult<()> {
        rows::insert_kaleyra_user(&self.writer, user).await
    }

    async fn update_kaleyra_user_role(&self, user: &KaleyraUser) -> StoreResult<()> {
        rows::update_kaleyra_user_role(&self.writer, user).await
    }

    async fn clear_provisioning(&self, id: &str, version: i64) -> StoreResult<bool> {
        rows::clear_provisioning(&self.writer, id, version).await
    }

    async fn postpone_provisioning(&self, id: &str, due_at: DateTime<Utc>) -> StoreResult<()> {
        rows::postpone_provisioning(&self.writer, id, due_at).await
    }

    async fn due_provisioning(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<String>> {
        rows::due_provisioning(&self.readers, now, limit).await
    }

    async fn retire_room(
        &self,
        room_id: &str,
        teleconsultation_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        rows::retire_room(&self.writer, room_id, teleconsultation_id, at).await
    }

    async fn due_room_deletions(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<RoomDeletion>> {
        rows::due_room_deletions(&self.readers, now, limit).await
    }

    async fn finish_room_deletion(&self, room_id: &str) -> StoreResult<()> {
        rows::finish_room_deletion(&self.writer, room_id).await
    }

    async fn postpone_room_deletion(
        &self,
        room_id: &str,
        due_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        rows::postpone_room_deletion(&self.writer, room_id, due_at).await
    }

    async fn backlog(&self, now: DateTime<Utc>, immutable_period_ms: u64) -> StoreResult<Backlog> {
        rows::backlog(&self.readers, now, immutable_period_ms).await
    }

    async fn claim_due_provisioning(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        rows::claim_due_provisioning(&self.writer, "", now, owner, until, limit).await
    }

    async fn try_lease(
        &self,
        id: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        rows::try_lease(&self.writer, id, owner, now, until).await
    }

    async fn release_lease(&self, id: &str, owner: &str) -> StoreResult<()> {
        rows::release_lease(&self.writer, id, owner).await
    }

    async fn mark_room_creation(&self, id: &str, fingerprint: Option<&str>) -> StoreResult<()> {
        rows::mark_room_creation(&self.writer, id, fingerprint).await
    }

    async fn is_room_known(&self, room_id: &str) -> StoreResult<bool> {
        rows::is_room_known(&self.readers, room_id).await
    }

    async fn list_live_teleconsultations(
        &self,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<Teleconsultation>> {
        rows::list_live(&self.readers, after, limit).await
    }
}
