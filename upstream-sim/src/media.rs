//! Media uploads and the network's media store.
//!
//! A coreapp uploads a medium as `MediaChunk`s on a session, in order: each
//! chunk's offset must equal the bytes received so far, the total stays
//! within [`MAX_MEDIA_BYTES`], and the last chunk's arrival checks the
//! SHA-256 of the whole. The upload then ends in `MediaStored` (the account's
//! store now knows the id) or `MediaRefused`. Only a running hash is kept per
//! upload, and only metadata per stored medium, so memory stays small
//! whatever is uploaded. What each session sent of each medium is counted for
//! the inspection API: tests check that a medium's bytes went once per session.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shardgate_core::upstream::protocol::{ServerFrame, UpstreamError};

/// Largest medium the network takes: the API's 64 MB and a little room.
pub const MAX_MEDIA_BYTES: u64 = 65 * 1024 * 1024;

/// One decoded `MediaChunk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The coreapp's media id.
    pub media_id: String,
    /// The medium's MIME type.
    pub mime_type: String,
    /// The SHA-256 the whole medium must hash to, hex.
    pub sha256: String,
    /// Where this chunk starts.
    pub offset: u64,
    /// The bytes, or why `data` was no base64.
    pub data: Result<Vec<u8>, String>,
    /// Whether this chunk ends the upload.
    pub last: bool,
}

/// A medium in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredMedium {
    mime_type: String,
    sha256: String,
    size: u64,
    stored_at_ms: i64,
}

/// An upload under way on one session.
#[derive(Debug, Clone)]
enum Upload {
    Receiving(Receiving),
    /// Refused; later chunks of it are ignored until one starts over at offset 0.
    Refused,
}

/// The running state of an upload: what it announced and what came so far.
#[derive(Debug, Clone)]
struct Receiving {
    mime_type: String,
    sha256: String,
    hash: Sha256,
    received: u64,
}

impl Receiving {
    /// The upload once `chunk` is taken, or why the chunk ends it.
    fn take(previous: Option<Receiving>, chunk: &Chunk) -> Result<Receiving, String> {
        let mut upload = match previous {
            None if chunk.offset != 0 => return Err(format!("first chunk at offset {}, not 0", chunk.offset)),
            None if chunk.mime_type.trim().is_empty() => return Err("mime_type is empty".into()),
            None => Receiving {
                mime_type: chunk.mime_type.clone(),
                sha256: chunk.sha256.clone(),
                hash: Sha256::new(),
                received: 0,
            },
            Some(upload) if chunk.offset != upload.received => {
                return Err(format!("chunk at offset {} but {} bytes received", chunk.offset, upload.received))
            }
            Some(upload) if upload.mime_type != chunk.mime_type || upload.sha256 != chunk.sha256 => {
                return Err("mime_type or sha256 changed during the upload".into())
            }
            Some(upload) => upload,
        };
        let data = chunk.data.as_ref().map_err(|why| format!("data is not base64: {why}"))?;
        upload.received += data.len() as u64;
        if upload.received > MAX_MEDIA_BYTES {
            return Err(format!("larger than {MAX_MEDIA_BYTES} bytes"));
        }
        upload.hash.update(data);
        Ok(upload)
    }

    /// The medium once all bytes came, or why it is refused.
    fn finish(self, now_ms: i64) -> Result<StoredMedium, String> {
        let actual = format!("{:x}", self.hash.finalize());
        if self.received == 0 {
            return Err("the medium is empty".into());
        }
        if !actual.eq_ignore_ascii_case(self.sha256.trim()) {
            return Err(format!("the bytes hash to {actual}, not {}", self.sha256));
        }
        Ok(StoredMedium { mime_type: self.mime_type, sha256: actual, size: self.received, stored_at_ms: now_ms })
    }
}

/// What one session sent of one medium, as `GET /sim/media` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaSessionRecord {
    /// The session.
    pub session: String,
    /// Chunks received.
    pub chunks: u64,
    /// Bytes received, refused uploads included.
    pub bytes: u64,
    /// Uploads that ended in `MediaStored`.
    pub uploads: u64,
    /// Uploads that ended in `MediaRefused`.
    pub refused: u64,
}

/// One medium of one account, as `GET /sim/media` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    /// The uploading account.
    pub account: String,
    /// The coreapp's media id.
    pub media_id: String,
    /// Whether the store has it (a message may use it).
    pub stored: bool,
    /// Its MIME type, once stored.
    pub mime_type: Option<String>,
    /// Its SHA-256, hex, once stored.
    pub sha256: Option<String>,
    /// Its size in bytes, once stored.
    pub size: Option<u64>,
    /// When the latest upload of it completed.
    pub stored_at_ms: Option<i64>,
    /// What each session sent of it, in the order of their first chunks.
    pub sessions: Vec<MediaSessionRecord>,
}

/// A refused upload, as `GET /sim/media` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRefusal {
    /// The uploading account.
    pub account: String,
    /// The session it came on.
    pub session: String,
    /// The coreapp's media id.
    pub media_id: String,
    /// Why it was refused.
    pub reason: String,
    /// When.
    pub at_ms: i64,
}

/// Uploads under way, the store, and the record of who sent what.
#[derive(Debug, Default)]
pub struct MediaStore {
    /// (session, media id) → the upload under way.
    uploads: HashMap<(String, String), Upload>,
    /// (account, media id) → metadata.
    stored: HashMap<(String, String), StoredMedium>,
    /// (account, media id) → what each session sent.
    sent: BTreeMap<(String, String), Vec<MediaSessionRecord>>,
    refusals: Vec<MediaRefusal>,
}

impl MediaStore {
    /// Takes one chunk from `session` of `account`. Returns the answer when the
    /// upload ended (`MediaStored` or `MediaRefused`), `None` while it goes on
    /// or when the chunk belongs to an upload already refused.
    pub fn receive_chunk(&mut self, account: &str, session: &str, chunk: Chunk, now_ms: i64) -> Option<ServerFrame> {
        let sent = self.sent_by(account, &chunk.media_id, session);
        sent.chunks += 1;
        sent.bytes += chunk.data.as_ref().map_or(0, |d| d.len() as u64);
        let key = (session.to_owned(), chunk.media_id.clone());
        let previous = match self.uploads.remove(&key) {
            Some(Upload::Refused) if chunk.offset != 0 => {
                self.uploads.insert(key, Upload::Refused);
                return None;
            }
            Some(Upload::Receiving(upload)) => Some(upload),
            Some(Upload::Refused) | None => None,
        };
        let finished = match Receiving::take(previous, &chunk) {
            Ok(upload) if !chunk.last => {
                self.uploads.insert(key, Upload::Receiving(upload));
                return None;
            }
            Ok(upload) => upload.finish(now_ms),
            Err(reason) => Err(reason),
        };
        match finished {
            Ok(medium) => {
                self.sent_by(account, &chunk.media_id, session).uploads += 1;
                let sha256 = medium.sha256.clone();
                self.stored.insert((account.to_owned(), chunk.media_id.clone()), medium);
                Some(ServerFrame::MediaStored { media_id: chunk.media_id, sha256 })
            }
            Err(reason) => Some(self.refuse(account, session, &chunk, reason, now_ms)),
        }
    }

    /// Drops the uploads under way on a session that closed.
    pub fn forget_session(&mut self, session: &str) {
        self.uploads.retain(|(holder, _), _| holder != session);
    }

    /// The failure of a message of `account` that names `media_id`, when the
    /// store does not have it.
    pub fn require(&self, account: &str, media_id: &str) -> Result<(), UpstreamError> {
        if self.stored.contains_key(&(account.to_owned(), media_id.to_owned())) {
            return Ok(());
        }
        Err(UpstreamError {
            code: 1006,
            title: "Resource not found".into(),
            details: Some(format!("media {media_id:?} was never uploaded by this account")),
        })
    }

    /// Every medium any session sent, by account and media id.
    pub fn records(&self) -> Vec<MediaRecord> {
        self.sent
            .iter()
            .map(|((account, media_id), sessions)| {
                let stored = self.stored.get(&(account.clone(), media_id.clone()));
                MediaRecord {
                    account: account.clone(),
                    media_id: media_id.clone(),
                    stored: stored.is_some(),
                    mime_type: stored.map(|m| m.mime_type.clone()),
                    sha256: stored.map(|m| m.sha256.clone()),
                    size: stored.map(|m| m.size),
                    stored_at_ms: stored.map(|m| m.stored_at_ms),
                    sessions: sessions.clone(),
                }
            })
            .collect()
    }

    /// Every refused upload, oldest first.
    pub fn refusals(&self) -> Vec<MediaRefusal> {
        self.refusals.clone()
    }

    /// Uploads that ended in `MediaStored`.
    pub fn uploads_stored(&self) -> u64 {
        self.sent.values().flatten().map(|s| s.uploads).sum()
    }

    /// Uploads that ended in `MediaRefused`.
    pub fn uploads_refused(&self) -> u64 {
        self.refusals.len() as u64
    }

    fn sent_by(&mut self, account: &str, media_id: &str, session: &str) -> &mut MediaSessionRecord {
        let sessions = self.sent.entry((account.to_owned(), media_id.to_owned())).or_default();
        match sessions.iter().position(|s| s.session == session) {
            Some(index) => &mut sessions[index],
            None => {
                sessions.push(MediaSessionRecord { session: session.to_owned(), ..Default::default() });
                sessions.last_mut().expect("just pushed")
            }
        }
    }

    fn refuse(&mut self, account: &str, session: &str, chunk: &Chunk, reason: String, now_ms: i64) -> ServerFrame {
        tracing::info!(%account, %session, media_id = %chunk.media_id, %reason, "media upload refused");
        self.uploads.insert((session.to_owned(), chunk.media_id.clone()), Upload::Refused);
        self.sent_by(account, &chunk.media_id, session).refused += 1;
        self.refusals.push(MediaRefusal {
            account: account.to_owned(),
            session: session.to_owned(),
            media_id: chunk.media_id.clone(),
            reason: reason.clone(),
            at_ms: now_ms,
        });
        ServerFrame::MediaRefused { media_id: chunk.media_id.clone(), reason }
    }
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offset: u64, data: &[u8], sha256: &str, last: bool) -> Chunk {
        Chunk {
            media_id: "m1".into(),
            mime_type: "image/jpeg".into(),
            sha256: sha256.into(),
            offset,
            data: Ok(data.to_vec()),
            last,
        }
    }

    fn refused(frame: Option<ServerFrame>) -> String {
        match frame {
            Some(ServerFrame::MediaRefused { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn chunks_in_order_with_the_right_hash_store_the_medium_for_the_account() {
        let mut store = MediaStore::default();
        let sha = sha256_hex(b"hello world");
        assert_eq!(store.receive_chunk("a", "s-1", chunk(0, b"hello ", &sha, false), 1), None);
        let done = store.receive_chunk("a", "s-1", chunk(6, b"world", &sha, true), 2);

        assert_eq!(done, Some(ServerFrame::MediaStored { media_id: "m1".into(), sha256: sha.clone() }));
        assert_eq!(store.require("a", "m1"), Ok(()));
        assert_eq!(store.require("b", "m1").unwrap_err().code, 1006, "media belong to the uploading account");
        let record = &store.records()[0];
        assert_eq!(
            (record.size, record.sha256.as_deref(), record.stored_at_ms),
            (Some(11), Some(sha.as_str()), Some(2))
        );
        let sent = &record.sessions[0];
        assert_eq!((sent.session.as_str(), sent.chunks, sent.bytes, sent.uploads), ("s-1", 2, 11, 1));
    }

    #[test]
    fn a_chunk_out_of_order_is_refused_and_the_rest_of_that_upload_ignored() {
        let mut store = MediaStore::default();
        let sha = sha256_hex(b"abcdef");
        store.receive_chunk("a", "s-1", chunk(0, b"abc", &sha, false), 1);

        assert!(refused(store.receive_chunk("a", "s-1", chunk(4, b"def", &sha, false), 2)).contains("offset 4"));
        assert_eq!(store.receive_chunk("a", "s-1", chunk(7, b"g", &sha, true), 3), None, "one refusal per upload");
        assert!(store.require("a", "m1").is_err());
        let again = store.receive_chunk("a", "s-1", chunk(0, b"abcdef", &sha, true), 4);
        assert!(matches!(again, Some(ServerFrame::MediaStored { .. })), "starting over at 0 works: {again:?}");
        assert_eq!(store.uploads_refused(), 1);
    }

    #[test]
    fn a_first_chunk_past_zero_is_refused() {
        let mut store = MediaStore::default();
        assert!(refused(store.receive_chunk("a", "s-1", chunk(5, b"x", "00", true), 1)).contains("offset 5"));
    }

    #[test]
    fn bytes_that_do_not_hash_to_the_announced_sha256_are_refused() {
        let mut store = MediaStore::default();
        let reason = refused(store.receive_chunk("a", "s-1", chunk(0, b"abc", &sha256_hex(b"abd"), true), 1));
        assert!(reason.contains("hash"), "{reason}");
        assert!(store.require("a", "m1").is_err());
        assert_eq!(store.refusals()[0].session, "s-1");
    }

    #[test]
    fn an_upload_past_the_size_cap_is_refused() {
        let mut store = MediaStore::default();
        let mb = vec![7u8; 1024 * 1024];
        for i in 0..65 {
            assert_eq!(store.receive_chunk("a", "s-1", chunk(i * mb.len() as u64, &mb, "x", false), 1), None);
        }
        let reason = refused(store.receive_chunk("a", "s-1", chunk(65 * mb.len() as u64, b"x", "x", false), 2));
        assert!(reason.contains("larger than"), "{reason}");
    }

    #[test]
    fn undecodable_data_is_refused() {
        let mut store = MediaStore::default();
        let bad = Chunk { data: Err("invalid byte".into()), ..chunk(0, b"", "x", true) };
        assert!(refused(store.receive_chunk("a", "s-1", bad, 1)).contains("base64"));
    }

    #[test]
    fn uploads_count_per_session_and_a_closed_session_forgets_its_partial_upload() {
        let mut store = MediaStore::default();
        let sha = sha256_hex(b"abc");
        store.receive_chunk("a", "s-1", chunk(0, b"abc", &sha, true), 1);
        store.receive_chunk("a", "s-2", chunk(0, b"ab", &sha, false), 2);
        store.forget_session("s-2");
        assert!(refused(store.receive_chunk("a", "s-2", chunk(2, b"c", &sha, true), 3)).contains("offset 2"));
        store.receive_chunk("a", "s-3", chunk(0, b"abc", &sha, true), 4);

        let sessions: Vec<_> =
            store.records()[0].sessions.iter().map(|s| (s.session.clone(), s.uploads, s.bytes)).collect();
        assert_eq!(sessions, vec![("s-1".into(), 1, 3), ("s-2".into(), 0, 3), ("s-3".into(), 1, 3)]);
        assert_eq!(store.uploads_stored(), 2);
    }
}
