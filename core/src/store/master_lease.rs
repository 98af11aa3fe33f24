//! The master lease: one row whose holder is the primary master. Expiry is
//! judged on the database clock, and every win bumps the epoch that fences
//! the holder's cluster-management writes.

use super::dialect::RowText;
use super::{ms, Store, StoreResult};
use sqlx::Row;
use std::time::Duration;

/// The lease as stored, with the database clock at the time of reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterLease {
    /// Node id of the holder; empty when never taken.
    pub holder: String,
    /// Incremented by every win.
    pub epoch: i64,
    /// Database-clock expiry, unix ms.
    pub expires_at: i64,
    /// Database clock when read, unix ms.
    pub now: i64,
}

impl MasterLease {
    /// Whether the lease is held right now.
    pub fn is_live(&self) -> bool {
        !self.holder.is_empty() && self.expires_at > self.now
    }
}

/// The credentials a primary master presents on each cluster-management write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterAuth {
    /// Node id of the master.
    pub holder: String,
    /// Epoch of its lease.
    pub epoch: i64,
}

/// SQL condition that holds only while `MasterAuth` (two binds) holds an unexpired lease.
pub(crate) const MASTER_FENCE: &str = "EXISTS (SELECT 1 FROM master_lease WHERE id = 1 \
     AND holder = ? AND epoch = ? AND expires_at > {now})";

impl Store {
    /// Takes the lease if it is free or expired; returns the new epoch when won.
    pub async fn try_acquire_master_lease(&self, holder: &str, ttl: Duration) -> StoreResult<Option<MasterAuth>> {
        // Free from `expires_at` on: the lease is live only while
        // `expires_at > now` (`is_live`, `MASTER_FENCE`), so `<` here left a
        // millisecond in which it was neither live nor acquirable.
        let sql = self.sql(
            "UPDATE master_lease SET holder = ?, epoch = epoch + 1, expires_at = {now} + ?, \
             version = version + 1 WHERE id = 1 AND expires_at <= {now}",
        );
        let won = self.changed_one_row(sqlx::query(&sql).bind(holder).bind(ms(ttl))).await?;
        if !won {
            return Ok(None);
        }
        let lease = self.read_master_lease().await?;
        Ok((lease.holder == holder).then_some(MasterAuth { holder: lease.holder, epoch: lease.epoch }))
    }

    /// Extends a held lease; false when it was lost (expired and taken, or never held).
    pub async fn renew_master_lease(&self, auth: &MasterAuth, ttl: Duration) -> StoreResult<bool> {
        let sql = self.sql(
            "UPDATE master_lease SET expires_at = {now} + ?, version = version + 1 \
             WHERE id = 1 AND holder = ? AND epoch = ? AND expires_at > {now}",
        );
        self.changed_one_row(sqlx::query(&sql).bind(ms(ttl)).bind(&auth.holder).bind(auth.epoch)).await
    }

    /// Gives the lease up at once, so that a secondary need not wait for expiry.
    pub async fn release_master_lease(&self, auth: &MasterAuth) -> StoreResult<bool> {
        let sql = self.sql(
            "UPDATE master_lease SET expires_at = 0, version = version + 1 \
             WHERE id = 1 AND holder = ? AND epoch = ?",
        );
        self.changed_one_row(sqlx::query(&sql).bind(&auth.holder).bind(auth.epoch)).await
    }

    /// Reads the lease and the database clock in one statement.
    pub async fn read_master_lease(&self) -> StoreResult<MasterLease> {
        let sql = self.sql("SELECT holder, epoch, expires_at, {now} FROM master_lease WHERE id = 1");
        let row = sqlx::query(&sql).fetch_one(self.pool()).await?;
        Ok(MasterLease {
            holder: row.text(0)?,
            epoch: row.try_get(1)?,
            expires_at: row.try_get(2)?,
            now: row.try_get(3)?,
        })
    }
}
