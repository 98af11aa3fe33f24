//! Policy plugins uploaded to the cluster: one row per kind, so that a
//! plugin uploaded through any webapp reaches every node, which polls the
//! digests and loads what changed.

use super::dialect::RowText;
use super::{Store, StoreResult};
use sqlx::Row;

/// A stored plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlugin {
    /// `router`, `authorizer` or `health-policy`.
    pub kind: String,
    /// Name given at upload.
    pub name: String,
    /// Version given at upload.
    pub version: String,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// The component.
    pub component: Vec<u8>,
    /// Database-clock upload time, unix ms.
    pub uploaded_at: i64,
}

impl Store {
    /// Stores (or replaces) the plugin of `plugin.kind`.
    pub async fn put_plugin(&self, plugin: &StoredPlugin) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        let delete = self.sql("DELETE FROM plugins WHERE kind = ?");
        sqlx::query(&delete).bind(&plugin.kind).execute(&mut *tx).await?;
        let insert = self.sql(
            "INSERT INTO plugins (kind, name, version, sha256, component, uploaded_at) VALUES (?, ?, ?, ?, ?, {now})",
        );
        sqlx::query(&insert)
            .bind(&plugin.kind)
            .bind(&plugin.name)
            .bind(&plugin.version)
            .bind(&plugin.sha256)
            .bind(&plugin.component)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the plugin of `kind` (the cluster goes back to the default); false when none was stored.
    pub async fn delete_plugin(&self, kind: &str) -> StoreResult<bool> {
        let sql = self.sql("DELETE FROM plugins WHERE kind = ?");
        Ok(sqlx::query(&sql).bind(kind).execute(self.pool()).await?.rows_affected() > 0)
    }

    /// Kind and digest of every stored plugin: cheap to poll.
    pub async fn plugin_digests(&self) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT kind, sha256 FROM plugins ORDER BY kind").fetch_all(self.pool()).await?;
        rows.iter().map(|r| Ok((r.text(0)?, r.text(1)?))).collect()
    }

    /// The stored plugin of `kind`.
    pub async fn plugin(&self, kind: &str) -> StoreResult<Option<StoredPlugin>> {
        let sql = self.sql("SELECT kind, name, version, sha256, component, uploaded_at FROM plugins WHERE kind = ?");
        let row = sqlx::query(&sql).bind(kind).fetch_optional(self.pool()).await?;
        row.map(|r| {
            Ok(StoredPlugin {
                kind: r.text(0)?,
                name: r.text(1)?,
                version: r.text(2)?,
                sha256: r.text(3)?,
                component: r.try_get(4)?,
                uploaded_at: r.try_get(5)?,
            })
        })
        .transpose()
    }
}
