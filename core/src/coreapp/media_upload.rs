//! Uploading a stored medium over the shard's session: its file is read in
//! [`MEDIA_CHUNK_BYTES`] pieces, each sent as a `media_chunk` only once the
//! socket has taken the previous few (see
//! [`UpstreamSession::send_media_chunk`]), so an upload never sits in memory
//! whole. The upstream answers the last chunk with `media_stored` or
//! `media_refused`; the shard worker waits for that answer with the rest of
//! the session's events.

use crate::callback_payload::error;
use crate::coreapp::session::UpstreamSession;
use crate::media_dir::{MediaDir, MediaId};
use crate::store::{Store, StoreResult};
use crate::upstream::protocol::{ClientFrame, UpstreamError, MEDIA_CHUNK_BYTES};
use base64::Engine;
use tokio::io::AsyncReadExt;

/// How an upload began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStart {
    /// Every chunk is queued; the answer comes as a session event.
    Sent,
    /// The medium cannot be sent (unknown, its file gone or unreadable):
    /// the messages that use it fail with this error.
    Unavailable(UpstreamError),
    /// The session closed under the upload.
    SessionClosed,
}

/// Sends the medium `id` over `session` as chunks.
pub async fn upload(store: &Store, media: &MediaDir, session: &UpstreamSession, id: &str) -> StoreResult<UploadStart> {
    let gone = || UploadStart::Unavailable(error(1006, "Resource not found", format!("there is no medium {id}")));
    let Some(record) = store.media(id).await? else { return Ok(gone()) };
    let Ok(media_id) = id.parse::<MediaId>() else { return Ok(gone()) };
    let unreadable = |e: &dyn std::fmt::Display| {
        UploadStart::Unavailable(error(1014, "Internal error", format!("medium {id}: {e}")))
    };
    let mut file = match media.open(&media_id).await {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(gone()),
        Err(e) => return Ok(unreadable(&e)),
    };
    let size = match file.metadata().await {
        Ok(meta) => meta.len(),
        Err(e) => return Ok(unreadable(&e)),
    };
    let mut buffer = vec![0u8; MEDIA_CHUNK_BYTES];
    let mut offset = 0u64;
    loop {
        let filled = match read_full(&mut file, &mut buffer).await {
            Ok(n) => n,
            Err(e) => return Ok(unreadable(&e)),
        };
        let last = filled < buffer.len() || offset + filled as u64 >= size;
        let chunk = ClientFrame::MediaChunk {
            media_id: id.to_string(),
            mime_type: record.mime_type.clone(),
            sha256: record.sha256.clone(),
            offset,
            data: base64::engine::general_purpose::STANDARD.encode(&buffer[..filled]),
            last,
        };
        if !session.send_media_chunk(chunk).await {
            return Ok(UploadStart::SessionClosed);
        }
        offset += filled as u64;
        if last {
            return Ok(UploadStart::Sent);
        }
    }
}

/// Reads until `buffer` is full or the file ends; how many bytes it read.
async fn read_full(file: &mut tokio::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
