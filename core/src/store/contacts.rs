//! Contact checks (`POST /v1/contacts`): the cache of results every webapp
//! answers from, and the queue of checks waiting for a shard's primary
//! coreapp to ask the upstream.
//!
//! A webapp queues the inputs it has no fresh result for on the shard the
//! router picks for them; the shard's primary takes them with
//! [`Store::pending_contact_checks`] and records the answers with
//! [`Store::record_contact_results`], which the waiting webapps then find in
//! the cache. Results are stamped and aged on the database clock.

use super::dialect::RowText;
use super::{Store, StoreError, StoreResult};
use sqlx::Row;

/// How long a result answers for its input without a new check: 7 days, in ms.
pub const CONTACT_RESULT_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Inputs per statement, well under every engine's limit on placeholders.
const INPUTS_PER_QUERY: usize = 500;

/// Whether an input is a WhatsApp user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactStatus {
    /// A WhatsApp user; the result carries the `wa_id`.
    Valid,
    /// Not a WhatsApp user, or not a phone number.
    Invalid,
}

impl ContactStatus {
    /// The on-prem (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactStatus::Valid => "valid",
            ContactStatus::Invalid => "invalid",
        }
    }

    fn from_stored(status: &str) -> StoreResult<ContactStatus> {
        match status {
            "valid" => Ok(ContactStatus::Valid),
            "invalid" => Ok(ContactStatus::Invalid),
            other => Err(StoreError::Corrupt(format!("unknown contact status {other:?}"))),
        }
    }
}

/// The result of checking one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRow {
    /// The input as the API caller wrote it.
    pub input: String,
    /// What the check found.
    pub status: ContactStatus,
    /// The WhatsApp id, for a valid input.
    pub wa_id: Option<String>,
    /// Database-clock time of the check, unix ms; set by
    /// [`Store::record_contact_results`].
    pub checked_at: i64,
}

impl Store {
    /// The results for `inputs` checked within the last `max_age_ms`
    /// (database clock); inputs without one are absent.
    pub async fn cached_contacts(&self, inputs: &[String], max_age_ms: i64) -> StoreResult<Vec<ContactRow>> {
        let mut found = Vec::new();
        for chunk in inputs.chunks(INPUTS_PER_QUERY) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = self.sql(&format!(
                "SELECT input, status, wa_id, checked_at FROM contacts \
                 WHERE checked_at > {{now}} - ? AND input IN ({placeholders})"
            ));
            let mut query = sqlx::query(&sql).bind(max_age_ms);
            for input in chunk {
                query = query.bind(input);
            }
            for r in query.fetch_all(self.pool()).await? {
                found.push(ContactRow {
                    input: r.text(0)?,
                    status: ContactStatus::from_stored(&r.text(1)?)?,
                    wa_id: r.try_get(2)?,
                    checked_at: r.try_get(3)?,
                });
            }
        }
        Ok(found)
    }

    /// Queues a check of each input on its shard, in one transaction; an
    /// input already queued keeps its place.
    pub async fn request_contact_checks(&self, checks: &[(String, u32)]) -> StoreResult<()> {
        if checks.is_empty() {
            return Ok(());
        }
        let sql = self.sql("{insert_ignore} INTO contact_checks (input, shard, requested_at) VALUES (?, ?, {now})");
        let mut tx = self.pool().begin().await?;
        for (input, shard) in checks {
            sqlx::query(&sql).bind(input).bind(i64::from(*shard)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The oldest inputs waiting for a check on `shard`, at most `limit`.
    pub async fn pending_contact_checks(&self, shard: u32, limit: u32) -> StoreResult<Vec<String>> {
        let sql = self.sql("SELECT input FROM contact_checks WHERE shard = ? ORDER BY requested_at, input LIMIT ?");
        let rows = sqlx::query(&sql).bind(i64::from(shard)).bind(i64::from(limit)).fetch_all(self.pool()).await?;
        rows.iter().map(|r| r.text(0)).collect()
    }

    /// Stores check results, replacing older ones, and takes their inputs off
    /// the queue, in one transaction. Each result is stamped with the
    /// database clock, whatever its `checked_at`.
    pub async fn record_contact_results(&self, results: &[ContactRow]) -> StoreResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        let forget = self.sql("DELETE FROM contacts WHERE input = ?");
        let insert = self.sql("INSERT INTO contacts (input, status, wa_id, checked_at) VALUES (?, ?, ?, {now})");
        let dequeue = self.sql("DELETE FROM contact_checks WHERE input = ?");
        let mut tx = self.pool().begin().await?;
        for result in results {
            sqlx::query(&forget).bind(&result.input).execute(&mut *tx).await?;
            sqlx::query(&insert)
                .bind(&result.input)
                .bind(result.status.as_str())
                .bind(result.wa_id.as_deref())
                .execute(&mut *tx)
                .await?;
            sqlx::query(&dequeue).bind(&result.input).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
