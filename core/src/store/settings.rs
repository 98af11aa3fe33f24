//! The application settings: one JSON document with a version that every
//! node polls, so a change reaches the whole cluster within one poll.

use super::dialect::RowText;
use super::{Store, StoreResult};
use sqlx::Row;

impl Store {
    /// The stored settings document and its version; `None` before the first write.
    pub async fn settings_doc(&self) -> StoreResult<Option<(i64, String)>> {
        let row = sqlx::query("SELECT version, doc FROM settings WHERE id = 1").fetch_optional(self.pool()).await?;
        row.map(|r| Ok((r.try_get(0)?, r.text(1)?))).transpose()
    }

    /// The stored settings version, 0 before the first write; cheap to poll.
    pub async fn settings_version(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT version FROM settings WHERE id = 1").fetch_optional(self.pool()).await?;
        Ok(match row {
            Some(r) => r.try_get(0)?,
            None => 0,
        })
    }

    /// Replaces the document if it is still at `expected_version`; returns the
    /// new version, or `None` when someone else wrote first.
    pub async fn write_settings(&self, expected_version: i64, doc: &str) -> StoreResult<Option<i64>> {
        let written = if expected_version == 0 {
            let sql = self.sql("{insert_ignore} INTO settings (id, doc, version) VALUES (1, ?, 1)");
            self.changed_one_row(sqlx::query(&sql).bind(doc)).await?
        } else {
            let sql = self.sql("UPDATE settings SET doc = ?, version = version + 1 WHERE id = 1 AND version = ?");
            self.changed_one_row(sqlx::query(&sql).bind(doc).bind(expected_version)).await?
        };
        Ok(written.then_some(expected_version + 1))
    }
}
