//! PostgreSQL: for several instances on one database. Concurrent changes are decided by the
//! version check inside UPDATE (row locks make the loser see the new version).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::rows;
use chrono::{DateTime, Utc};

use super::{Backlog, KaleyraUser, RoomDeletion, Store, StoreResult, Teleconsultation};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// The pool, for tests and tools that need raw access.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    /// sqlx takes a PostgreSQL advisory lock around the migrations, so instances that start
    /// together apply them once.
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_teleconsultation(&self, tc: &Teleconsultation) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        rows::insert_teleconsultation::<sqlx::Postgres>(&mut *tx, tc).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_teleconsultation(&self, id: &str) -> StoreResult<Option<Teleconsultation>> {
        rows::fetch_teleconsultation(&self.pool, id).await
    }

    async fn update_teleconsultation(
        &self,
        tc: &Teleconsultation,
        retired_rooms: &[String],
    ) -> StoreResult<i64> {
        let mut tx = self.pool.begin().await?;
        let version =
            rows::update_teleconsultation::<sqlx::Postgres>(&mut *tx, tc, retired_rooms).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn list_teleconsultations_by_participant(
        &self,
        external_id: &str,
    ) -> StoreResult<Vec<Teleconsultation>> {
        rows::fetch_by_participant(&self.pool, external_id).await
    }

    async fn get_kaleyra_user(&self, external_id: &str) -> StoreResult<Option<KaleyraUser>> {
        rows::fetch_kaleyra_user(&self.pool, external_id).await
    }

    async fn insert_kaleyra_user(&self, user: &KaleyraUser) -> StoreResult<()> {
        rows::insert_kaleyra_user(&self.pool, user).await
    }

    async fn update_kaleyra_user_role(&self, user: &KaleyraUser) -> StoreResult<()> {
        rows::update_kaleyra_user_role(&self.pool, user).await
    }

    async fn clear_provisioning(&self, id: &str, version: i64) -> StoreResult<bool> {
        rows::clear_provisioning(&self.pool, id, version).await
    }

    async fn postpone_provisioning(&self, id: &str, due_at: DateTime<Utc>) -> StoreResult<()> {
        rows::postpone_provisioning(&self.pool, id, due_at).await
    }

    async fn due_provisioning(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<String>> {
        rows::due_provisioning(&self.pool, now, limit).await
    }

    async fn retire_room(
        &self,
        room_id: &str,
        teleconsultation_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        rows::retire_room(&self.pool, room_id, teleconsultation_id, at).await
    }

    async fn due_room_deletions(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<RoomDeletion>> {
        rows::due_room_deletions(&self.pool, now, limit).await
    }

    async fn finish_room_deletion(&self, room_id: &str) -> StoreResult<()> {
        rows::finish_room_deletion(&self.pool, room_id).await
    }

    async fn postpone_room_deletion(
        &self,
        room_id: &str,
        due_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        rows::postpone_room_deletion(&self.pool, room_id, due_at).await
    }

    async fn backlog(&self, now: DateTime<Utc>, immutable_period_ms: u64) -> StoreResult<Backlog> {
        rows::backlog(&self.pool, now, immutable_period_ms).await
    }

    async fn claim_due_provisioning(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        rows::claim_due_provisioning(
            &self.pool,
            "FOR UPDATE SKIP LOCKED",
            now,
            owner,
            until,
            limit,
        )
        .await
    }

    async fn try_lease(
        &self,
        id: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        rows::try_lease(&self.pool, id, owner, now, until).await
    }

    async fn release_lease(&self, id: &str, owner: &str) -> StoreResult<()> {
        rows::release_lease(&self.pool, id, owner).await
    }

    async fn mark_room_creation(&self, id: &str, fingerprint: Option<&str>) -> StoreResult<()> {
        rows::mark_room_creation(&self.pool, id, fingerprint).await
    }

    async fn is_room_known(&self, room_id: &str) -> StoreResult<bool> {
        rows::is_room_known(&self.pool, room_id).await
    }

    async fn list_live_teleconsultations(
        &self,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<Teleconsultation>> {
        rows::list_live(&self.pool, after, limit).await
    }
}
