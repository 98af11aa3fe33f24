//! The media table: what is known of each file in the media directory
//! (`crate::media_dir`). The row is what the API answers with, so a medium
//! exists for the API exactly while its row does: a file is written before
//! its row, and its row is deleted before its file.

use super::dialect::RowText;
use super::{Store, StoreError, StoreResult};
use sqlx::Row;

/// How a medium came to be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaOrigin {
    /// `POST /v1/media`.
    Upload,
    /// Received with an inbound message.
    Inbound,
    /// Fetched from a message's `link`.
    Link,
}

impl MediaOrigin {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaOrigin::Upload => "upload",
            MediaOrigin::Inbound => "inbound",
            MediaOrigin::Link => "link",
        }
    }

    fn from_stored(origin: &str) -> StoreResult<MediaOrigin> {
        match origin {
            "upload" => Ok(MediaOrigin::Upload),
            "inbound" => Ok(MediaOrigin::Inbound),
            "link" => Ok(MediaOrigin::Link),
            other => Err(StoreError::Corrupt(format!("unknown media origin {other:?}"))),
        }
    }
}

/// A stored medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRecord {
    /// Media id, also its file name in the media directory.
    pub id: String,
    /// `Content-Type` it was stored with, and is served with.
    pub mime_type: String,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
    /// How it came to be stored.
    pub origin: MediaOrigin,
    /// Database-clock time it was stored, unix ms; set by [`Store::insert_media`].
    pub created_at: i64,
}

impl Store {
    /// Records a medium whose file is in place; `created_at` is stamped
    /// with the database clock, whatever `media` carries.
    pub async fn insert_media(&self, media: &MediaRecord) -> StoreResult<()> {
        let sql = self
            .sql("INSERT INTO media (id, mime_type, sha256, size, origin, created_at) VALUES (?, ?, ?, ?, ?, {now})");
        sqlx::query(&sql)
            .bind(&media.id)
            .bind(&media.mime_type)
            .bind(&media.sha256)
            .bind(media.size)
            .bind(media.origin.as_str())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The medium `id`, `None` when unknown.
    pub async fn media(&self, id: &str) -> StoreResult<Option<MediaRecord>> {
        let sql = self.sql("SELECT id, mime_type, sha256, size, origin, created_at FROM media WHERE id = ?");
        let row = sqlx::query(&sql).bind(id).fetch_optional(self.pool()).await?;
        row.map(|r| {
            Ok(MediaRecord {
                id: r.text(0)?,
                mime_type: r.text(1)?,
                sha256: r.text(2)?,
                size: r.try_get(3)?,
                origin: MediaOrigin::from_stored(&r.text(4)?)?,
                created_at: r.try_get(5)?,
            })
        })
        .transpose()
    }

    /// Forgets the medium `id`; false when it was unknown.
    pub async fn delete_media(&self, id: &str) -> StoreResult<bool> {
        let sql = self.sql("DELETE FROM media WHERE id = ?");
        Ok(sqlx::query(&sql).bind(id).execute(self.pool()).await?.rows_affected() > 0)
    }
}
