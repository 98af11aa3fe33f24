//! Reading the inbound messages the coreapps stored (`messages` writes
//! them): what `PUT /v1/messages/{id}` needs to mark one as read on the
//! shard that received it.

use super::dialect::RowText;
use super::messages::InboundMessage;
use super::{Store, StoreError, StoreResult};
use sqlx::Row;

impl Store {
    /// The inbound message `id`, `None` when no such message was received.
    pub async fn inbound_message(&self, id: &str) -> StoreResult<Option<InboundMessage>> {
        let sql = self.sql("SELECT id, sender, body, timestamp_s, shard FROM inbound_messages WHERE id = ?");
        let row = sqlx::query(&sql).bind(id).fetch_optional(self.pool()).await?;
        row.map(|r| {
            Ok(InboundMessage {
                id: r.text(0)?,
                sender: r.text(1)?,
                body: r.text(2)?,
                timestamp_s: r.try_get(3)?,
                shard: u32::try_from(r.try_get::<i64, _>(4)?)
                    .map_err(|_| StoreError::Corrupt("an inbound message has a negative shard".into()))?,
            })
        })
        .transpose()
    }
}
