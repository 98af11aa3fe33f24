//! The shard map: for each shard, the coreapp that owns it and the lease it
//! holds. Ownership changes only through a master-fenced reassignment that
//! bumps the shard's fencing epoch; the owner then claims and renews the
//! lease itself, and may not claim before `not_before` on the database clock,
//! the moment by which any earlier holder's upstream session is surely closed.

use super::dialect::RowText;
use super::master_lease::{MasterAuth, MASTER_FENCE};
use super::{ms, Store, StoreResult};
use sqlx::Row;
use std::time::Duration;

/// One shard's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRow {
    /// Shard number, `0..shards`.
    pub shard: u32,
    /// Node id of the assigned primary coreapp; empty when none.
    pub owner: String,
    /// Process instance that claimed the lease; empty until claimed.
    pub owner_instance: String,
    /// Fencing epoch, bumped by every reassignment.
    pub epoch: i64,
    /// Database-clock expiry of the owner's lease, unix ms (0 when unclaimed).
    pub lease_expires_at: i64,
    /// The owner may not claim before this database-clock time.
    pub not_before: i64,
    /// Epoch of the master that last reassigned the shard.
    pub master_epoch: i64,
    /// Row version, bumped by every write; reassignments are conditioned on it.
    pub version: i64,
    /// Database-clock time of the last assignment, claim or release (renewals
    /// do not touch it), unix ms.
    pub updated_at: i64,
}

impl ShardRow {
    /// Whether the owner holds an unexpired lease at `now`.
    pub fn lease_live(&self, now: i64) -> bool {
        !self.owner_instance.is_empty() && self.lease_expires_at > now
    }
}

/// The whole shard map and the database clock at the time it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    /// Database clock, unix ms.
    pub now: i64,
    /// Rows ordered by shard.
    pub rows: Vec<ShardRow>,
}

/// Cluster-wide facts set once by the first primary master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Shard count: 1, 2, 4, 8, 16 or 32.
    pub shards: u32,
    /// The account (phone number) whose sessions the coreapps hold.
    pub account: String,
}

impl Store {
    /// Reads the cluster facts, `None` before the first primary master set them.
    pub async fn cluster_info(&self) -> StoreResult<Option<ClusterInfo>> {
        let row = sqlx::query("SELECT shards, account FROM cluster WHERE id = 1").fetch_optional(self.pool()).await?;
        row.map(|r| {
            Ok(ClusterInfo { shards: u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(1), account: r.text(1)? })
        })
        .transpose()
    }

    /// Sets the cluster facts if unset and creates the missing shard rows;
    /// returns what is stored. Unfenced on purpose: both steps only fill
    /// what is absent, so a deposed master running them late changes nothing.
    pub async fn init_cluster(&self, wanted: &ClusterInfo) -> StoreResult<ClusterInfo> {
        let sql = self.sql("{insert_ignore} INTO cluster (id, shards, account) VALUES (1, ?, ?)");
        sqlx::query(&sql).bind(i64::from(wanted.shards)).bind(&wanted.account).execute(self.pool()).await?;
        let info = self.cluster_info().await?.unwrap_or_else(|| wanted.clone());
        let sql = self.sql(
            "{insert_ignore} INTO shard_map (shard, owner, owner_instance, epoch, lease_expires_at, \
             not_before, master_epoch, version, updated_at) VALUES (?, '', '', 0, 0, 0, 0, 0, {now})",
        );
        for shard in 0..info.shards {
            sqlx::query(&sql).bind(i64::from(shard)).execute(self.pool()).await?;
        }
        Ok(info)
    }

    /// Reads the shard map with the database clock.
    pub async fn shard_map(&self) -> StoreResult<ShardMap> {
        let sql = self.sql(
            "SELECT shard, owner, owner_instance, epoch, lease_expires_at, not_before, master_epoch, \
             version, updated_at, {now} FROM shard_map ORDER BY shard",
        );
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        let now = match rows.first() {
            Some(r) => r.try_get(9)?,
            None => self.now_ms().await?,
        };
        let rows = rows
            .iter()
            .map(|r| {
                Ok(ShardRow {
                    shard: u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(u32::MAX),
                    owner: r.text(1)?,
                    owner_instance: r.text(2)?,
                    epoch: r.try_get(3)?,
                    lease_expires_at: r.try_get(4)?,
                    not_before: r.try_get(5)?,
                    master_epoch: r.try_get(6)?,
                    version: r.try_get(7)?,
                    updated_at: r.try_get(8)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(ShardMap { now, rows })
    }

    /// Gives the shard to `new_owner` with a new epoch, if the row is still at
    /// `expected_version` and `auth` still holds the master lease.
    pub async fn reassign_shard(
        &self,
        shard: u32,
        expected_version: i64,
        new_owner: &str,
        not_before: i64,
        auth: &MasterAuth,
    ) -> StoreResult<bool> {
        let sql = self.sql(&format!(
            "UPDATE shard_map SET epoch = epoch + 1, owner = ?, owner_instance = '', \
             lease_expires_at = 0, not_before = ?, master_epoch = ?, version = version + 1, \
             updated_at = {{now}} WHERE shard = ? AND version = ? AND {MASTER_FENCE}"
        ));
        self.changed_one_row(
            sqlx::query(&sql)
                .bind(new_owner)
                .bind(not_before)
                .bind(auth.epoch)
                .bind(i64::from(shard))
                .bind(expected_version)
                .bind(&auth.holder)
                .bind(auth.epoch),
        )
        .await
    }

    /// The assigned owner takes the lease of `epoch`, once `not_before` has passed.
    pub async fn claim_shard(
        &self,
        shard: u32,
        epoch: i64,
        node_id: &str,
        instance: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let sql = self.sql(
            "UPDATE shard_map SET owner_instance = ?, lease_expires_at = {now} + ?, \
             version = version + 1, updated_at = {now} WHERE shard = ? AND epoch = ? AND owner = ? \
             AND owner_instance = '' AND not_before <= {now}",
        );
        self.changed_one_row(
            sqlx::query(&sql).bind(instance).bind(ms(ttl)).bind(i64::from(shard)).bind(epoch).bind(node_id),
        )
        .await
    }

    /// Extends a claimed lease; false once the shard was reassigned.
    pub async fn renew_shard(&self, shard: u32, epoch: i64, instance: &str, ttl: Duration) -> StoreResult<bool> {
        let sql = self.sql(
            "UPDATE shard_map SET lease_expires_at = {now} + ?, version = version + 1 \
             WHERE shard = ? AND epoch = ? AND owner_instance = ?",
        );
        self.changed_one_row(sqlx::query(&sql).bind(ms(ttl)).bind(i64::from(shard)).bind(epoch).bind(instance)).await
    }

    /// Hands a shard back after its session was closed (clean shutdown), so a
    /// master can reassign it without waiting for the lease to expire; the
    /// next owner may claim it `quiet` from now, once the upstream has surely
    /// closed the session.
    pub async fn release_shard(&self, shard: u32, epoch: i64, instance: &str, quiet: Duration) -> StoreResult<bool> {
        let sql = self.sql(
            "UPDATE shard_map SET owner = '', owner_instance = '', lease_expires_at = 0, \
             not_before = {now} + ?, version = version + 1, updated_at = {now} \
             WHERE shard = ? AND epoch = ? AND owner_instance = ?",
        );
        self.changed_one_row(sqlx::query(&sql).bind(ms(quiet)).bind(i64::from(shard)).bind(epoch).bind(instance)).await
    }
}
