//! Node registration, database liveness, and the heartbeat observations
//! that masters share so that the primary knows whether ANY master still
//! hears a coreapp.

use super::dialect::RowText;
use super::{Store, StoreResult};
use sqlx::Row;

/// A node as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Stable node id (host name by default).
    pub node_id: String,
    /// `master`, `coreapp` or `webapp`.
    pub role: String,
    /// Random id of the running process; changes on every restart.
    pub instance_id: String,
    /// `host:port` of its control API.
    pub control_addr: String,
    /// Shardgate version.
    pub version: String,
    /// OS process id.
    pub pid: i64,
    /// Database-clock start time, unix ms.
    pub started_at: i64,
    /// Database-clock time of its last liveness write, unix ms.
    pub last_seen: i64,
}

/// One master's latest successful heartbeat to one coreapp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatObservation {
    /// The master that sent the heartbeat.
    pub master_id: String,
    /// The coreapp that answered.
    pub node_id: String,
    /// The coreapp's process instance at that answer.
    pub instance_id: String,
    /// Database-clock time the answer was recorded, unix ms.
    pub last_ok_at: i64,
    /// Round-trip time of that heartbeat, µs.
    pub rtt_us: i64,
}

impl Store {
    /// Registers (or re-registers after a restart) this node, stamping liveness.
    pub async fn register_node(&self, node: &NodeRecord) -> StoreResult<()> {
        let update = self.sql(
            "UPDATE nodes SET role = ?, instance_id = ?, control_addr = ?, version = ?, pid = ?, \
             started_at = {now}, last_seen = {now} WHERE node_id = ?",
        );
        let updated = sqlx::query(&update)
            .bind(&node.role)
            .bind(&node.instance_id)
            .bind(&node.control_addr)
            .bind(&node.version)
            .bind(node.pid)
            .bind(&node.node_id)
            .execute(self.pool())
            .await?
            .rows_affected();
        if updated == 0 {
            let insert = self.sql(
                "{insert_ignore} INTO nodes (node_id, role, instance_id, control_addr, version, pid, \
                 started_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, {now}, {now})",
            );
            sqlx::query(&insert)
                .bind(&node.node_id)
                .bind(&node.role)
                .bind(&node.instance_id)
                .bind(&node.control_addr)
                .bind(&node.version)
                .bind(node.pid)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }

    /// Writes this node's database liveness; false when another process took its id.
    pub async fn touch_node(&self, node_id: &str, instance_id: &str) -> StoreResult<bool> {
        let sql = self.sql("UPDATE nodes SET last_seen = {now} WHERE node_id = ? AND instance_id = ?");
        self.changed_one_row(sqlx::query(&sql).bind(node_id).bind(instance_id)).await
    }

    /// Marks this process of a node as leaving: its liveness is made ancient,
    /// so that from now on no master counts it healthy, and none picks it for
    /// a shard it is about to release. Without this, a node whose address
    /// vanishes as it stops (a stopped container) would still look healthy
    /// for `unhealthy_interval`, and be promoted again in vain. False when
    /// another process holds the id.
    pub async fn mark_node_leaving(&self, node_id: &str, instance_id: &str) -> StoreResult<bool> {
        let sql = self.sql("UPDATE nodes SET last_seen = 0 WHERE node_id = ? AND instance_id = ?");
        self.changed_one_row(sqlx::query(&sql).bind(node_id).bind(instance_id)).await
    }

    /// Deletes the record of a node gone for good, with the heartbeat
    /// observations of it and by it; true when it was deleted.
    ///
    /// The record goes only as the caller read it (`last_seen` unchanged) and
    /// only while the node neither owns a shard row nor holds the master
    /// lease, checked in the same statement: a node that came back or was
    /// given a shard meanwhile is kept. No node loop re-registers after its
    /// record is deleted, so deleting a live node would hide it until it restarts.
    pub async fn remove_node(&self, node_id: &str, last_seen: i64) -> StoreResult<bool> {
        let mut tx = self.pool().begin().await?;
        let delete = self.sql(
            "DELETE FROM nodes WHERE node_id = ? AND last_seen = ? \
             AND NOT EXISTS (SELECT 1 FROM shard_map WHERE owner = ?) \
             AND NOT EXISTS (SELECT 1 FROM master_lease WHERE holder = ?)",
        );
        let deleted = sqlx::query(&delete)
            .bind(node_id)
            .bind(last_seen)
            .bind(node_id)
            .bind(node_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        let observations = self.sql("DELETE FROM heartbeat_observations WHERE node_id = ? OR master_id = ?");
        sqlx::query(&observations).bind(node_id).bind(node_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every registered node and the database clock.
    pub async fn nodes(&self) -> StoreResult<(i64, Vec<NodeRecord>)> {
        let now = self.now_ms().await?;
        let rows = sqlx::query(
            "SELECT node_id, role, instance_id, control_addr, version, pid, started_at, last_seen \
             FROM nodes ORDER BY role, node_id",
        )
        .fetch_all(self.pool())
        .await?;
        let nodes = rows
            .iter()
            .map(|r| {
                Ok(NodeRecord {
                    node_id: r.text(0)?,
                    role: r.text(1)?,
                    instance_id: r.text(2)?,
                    control_addr: r.text(3)?,
                    version: r.text(4)?,
                    pid: r.try_get(5)?,
                    started_at: r.try_get(6)?,
                    last_seen: r.try_get(7)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((now, nodes))
    }

    /// Records that `node_id` (process `instance_id`) answered `master_id` just now.
    pub async fn record_heartbeat(
        &self,
        master_id: &str,
        node_id: &str,
        instance_id: &str,
        rtt_us: i64,
    ) -> StoreResult<()> {
        let update = self.sql(
            "UPDATE heartbeat_observations SET instance_id = ?, last_ok_at = {now}, rtt_us = ? \
             WHERE master_id = ? AND node_id = ?",
        );
        let updated = sqlx::query(&update)
            .bind(instance_id)
            .bind(rtt_us)
            .bind(master_id)
            .bind(node_id)
            .execute(self.pool())
            .await?
            .rows_affected();
        if updated == 0 {
            let insert = self.sql(
                "{insert_ignore} INTO heartbeat_observations (master_id, node_id, instance_id, \
                 last_ok_at, rtt_us) VALUES (?, ?, ?, {now}, ?)",
            );
            sqlx::query(&insert)
                .bind(master_id)
                .bind(node_id)
                .bind(instance_id)
                .bind(rtt_us)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }

    /// Every master's latest heartbeat answer per coreapp.
    pub async fn heartbeat_observations(&self) -> StoreResult<Vec<HeartbeatObservation>> {
        let rows =
            sqlx::query("SELECT master_id, node_id, instance_id, last_ok_at, rtt_us FROM heartbeat_observations")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok(HeartbeatObservation {
                    master_id: r.text(0)?,
                    node_id: r.text(1)?,
                    instance_id: r.text(2)?,
                    last_ok_at: r.try_get(3)?,
                    rtt_us: r.try_get(4)?,
                })
            })
            .collect()
    }
}
