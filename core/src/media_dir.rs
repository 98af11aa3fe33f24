//! The media directory (`WA_MEDIA_DIR`): uploaded, fetched and inbound media
//! files, one per [`MediaId`], in one directory that every node mounts (NFS
//! in production), so that any webapp serves any medium.
//!
//! - Names are [`MediaId`]s, which only parse from UUIDs: no id a client sends
//!   can name a path outside the directory.
//! - A file is written under a temporary name in the same directory, synced,
//!   then renamed into place: readers never see half a file, and an upload
//!   that fails, is refused or is abandoned leaves nothing behind.
//! - Bodies are streamed to disk with their SHA-256 computed on the way, so
//!   memory does not grow with the size of a medium.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::fmt;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncWriteExt, BufWriter};

/// How much of a medium is buffered before it is written out.
const WRITE_BUFFER: usize = 256 * 1024;
/// Prefix of files still being written; never a valid [`MediaId`].
const PARTIAL_PREFIX: &str = ".partial-";

/// Where the media directory is: `--media-dir` / `WA_MEDIA_DIR`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MediaDirArgs {
    /// The media directory shared by every node (`/usr/local/wamedia` in the
    /// official containers); `<data dir>/media` when unset.
    #[arg(long = "media-dir", env = "WA_MEDIA_DIR")]
    pub media_dir: Option<PathBuf>,
}

impl MediaDirArgs {
    /// The configured directory, or `media` under `data_dir`.
    pub fn resolve(&self, data_dir: &Path) -> PathBuf {
        self.media_dir.clone().unwrap_or_else(|| data_dir.join("media"))
    }
}

/// The id of a stored medium: a UUID, written in its hyphenated lower-case form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaId(uuid::Uuid);

impl MediaId {
    /// A fresh random id.
    pub fn random() -> MediaId {
        MediaId(uuid::Uuid::new_v4())
    }
}

impl std::str::FromStr for MediaId {
    type Err = String;

    /// Only the 36-character hyphenated form, in either case: one spelling
    /// per medium, and nothing but hex digits and hyphens reaches a path.
    fn from_str(s: &str) -> Result<MediaId, String> {
        let refused = || format!("{s:?} is not a media id (a UUID such as 4b5bf27b-8672-4d55-bc21-d096dc200d0f)");
        if s.len() != 36 {
            return Err(refused());
        }
        uuid::Uuid::try_parse(s).map(MediaId).map_err(|_| refused())
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

/// Why a medium could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The body is longer than the cap; nothing was kept.
    #[error("the medium is over the limit of {cap} bytes")]
    TooLarge {
        /// The cap, in bytes.
        cap: u64,
    },
    /// The body could not be read to its end (the client went away).
    #[error("the body could not be read: {0}")]
    Body(String),
    /// The directory or a file in it could not be used.
    #[error("{action} {}: {error}", .path.display())]
    Io {
        /// What was being done, e.g. `cannot write`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why it failed.
        error: std::io::Error,
    },
}

/// A medium just written: its id, the SHA-256 of its bytes (hex) and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Its name in the directory.
    pub id: MediaId,
    /// SHA-256 of the content, 64 lowercase hex digits.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// The media directory; cheap to clone.
#[derive(Debug, Clone)]
pub struct MediaDir {
    dir: PathBuf,
}

impl MediaDir {
    /// The media directory at `dir`, created when missing.
    pub fn create(dir: impl Into<PathBuf>) -> Result<MediaDir, MediaError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|error| MediaError::Io {
            action: "cannot create",
            path: dir.clone(),
            error,
        })?;
        Ok(MediaDir { dir })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.dir
    }

    /// Where the medium `id` is (whether or not it exists).
    pub fn path(&self, id: &MediaId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// Writes `body` as a new medium of at most `cap` bytes. On any failure,
    /// and when the caller stops polling (a client that hangs up), the
    /// partial file is removed.
    pub async fn store_stream<S, E>(&self, body: S, cap: u64) -> Result<StoredFile, MediaError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: fmt::Display,
    {
        let id = MediaId::random();
        let partial = PartialFile(Some(self.dir.join(format!("{PARTIAL_PREFIX}{id}"))));
        let io = |action| {
            let path = partial.path().to_path_buf();
            move |error| MediaError::Io { action, path, error }
        };
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(partial.path())
            .await
            .map_err(io("cannot create"))?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| MediaError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > cap {
                return Err(MediaError::TooLarge { cap });
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(io("cannot write"))?;
        }
        out.flush().await.map_err(io("cannot write"))?;
        // Synced before the rename, so that a renamed file is a whole one even
        // after a power cut.
        out.into_inner().sync_all().await.map_err(io("cannot sync"))?;
        let target = self.path(&id);
        tokio::fs::rename(partial.path(), &target).await.map_err(io("cannot rename into place"))?;
        partial.keep();
        self.sync_dir().await;
        Ok(StoredFile { id, sha256: hex::encode(hasher.finalize()), size })
    }

    /// Writes `bytes` as a new medium (inbound media, fetched links).
    pub async fn store_bytes(&self, bytes: &[u8]) -> Result<StoredFile, MediaError> {
        let body = futures::stream::once(async { Ok::<_, Infallible>(Bytes::copy_from_slice(bytes)) });
        self.store_stream(body, u64::MAX).await
    }

    /// The medium `id` opened for reading; `None` when there is no such file.
    pub async fn open(&self, id: &MediaId) -> Result<Option<tokio::fs::File>, MediaError> {
        let path = self.path(id);
        match tokio::fs::File::open(&path).await {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(MediaError::Io { action: "cannot open", path, error }),
        }
    }

    /// Removes the medium `id`; false when there was no such file.
    pub async fn remove(&self, id: &MediaId) -> Result<bool, MediaError> {
        let path = self.path(id);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(MediaError::Io { action: "cannot remove", path, error }),
        }
    }

    /// Makes a rename durable. Best effort: some file systems cannot sync a
    /// directory, and the file itself is already synced.
    async fn sync_dir(&self) {
        let dir = self.dir.clone();
        let synced = tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all()).await;
        if let Ok(Err(e)) = synced {
            tracing::debug!("cannot sync the media directory {}: {e}", self.dir.display());
        }
    }
}

/// A file being written; removed when dropped unless kept. Dropping is also
/// what happens when an upload's future is abandoned, hence a guard and not
/// an explicit cleanup on each error path.
struct PartialFile(Option<PathBuf>);

impl PartialFile {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("a partial file has a path until it is kept")
    }

    /// The file was renamed into place: nothing to remove.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // A blocking unlink in a destructor: one syscall, and a drop
            // cannot await.
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("cannot remove the partial medium {}: {e}", path.display());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> MediaDir {
        MediaDir::create(std::env::temp_dir().join(format!("shardgate-media-{}", uuid::Uuid::new_v4().simple())))
            .unwrap()
    }

    fn files(dir: &MediaDir) -> Vec<String> {
        std::fs::read_dir(dir.root()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn only_hyphenated_uuids_are_media_ids() {
        let id: MediaId = "4B5BF27B-8672-4D55-BC21-D096DC200D0F".parse().unwrap();
        assert_eq!(id.to_string(), "4b5bf27b-8672-4d55-bc21-d096dc200d0f");
        for hostile in
            ["../etc/passwd", "..", "", "4b5bf27b86724d55bc21d096dc200d0f", "{4b5bf27b-8672-4d55-bc21-d096dc200d0f}"]
        {
            assert!(hostile.parse::<MediaId>().is_err(), "{hostile:?}");
        }
        assert!(format!("{PARTIAL_PREFIX}{id}").parse::<MediaId>().is_err());
    }

    #[tokio::test]
    async fn stored_stream_has_its_digest_and_size_and_reads_back() {
        let dir = temp_dir();
        let chunks = vec![Ok::<_, Infallible>(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"c"))];
        let stored = dir.store_stream(futures::stream::iter(chunks), 3).await.unwrap();
        assert_eq!(stored.size, 3);
        assert_eq!(stored.sha256, crate::digest::sha256_hex(b"abc"));
        assert_eq!(std::fs::read(dir.path(&stored.id)).unwrap(), b"abc");
        assert!(dir.open(&stored.id).await.unwrap().is_some());
        assert_eq!(files(&dir), vec![stored.id.to_string()]);
        assert!(dir.remove(&stored.id).await.unwrap());
        assert!(!dir.remove(&stored.id).await.unwrap());
        assert!(dir.open(&stored.id).await.unwrap().is_none());
        std::fs::remove_dir_all(dir.root()).unwrap();
    }

    #[tokio::test]
    async fn over_the_cap_or_broken_bodies_leave_no_file() {
        let dir = temp_dir();
        let long = futures::stream::iter(vec![Ok::<_, Infallible>(Bytes::from_static(b"abcd"))]);
        assert!(matches!(dir.store_stream(long, 3).await, Err(MediaError::TooLarge { cap: 3 })));
        let broken = futures::stream::iter(vec![Ok(Bytes::from_static(b"ab")), Err("connection reset")]);
        assert!(matches!(dir.store_stream(broken, 100).await, Err(MediaError::Body(_))));
        // An upload abandoned half way (a client that stalls, then its
        // request is dropped) is cleaned up too.
        let stalled = futures::stream::iter(vec![Ok::<_, Infallible>(Bytes::from_static(b"partial"))])
            .chain(futures::stream::pending());
        let abandoned = tokio::time::timeout(std::time::Duration::from_millis(50), dir.store_stream(stalled, u64::MAX));
        assert!(abandoned.await.is_err());
        assert!(files(&dir).is_empty(), "{:?}", files(&dir));
        std::fs::remove_dir_all(dir.root()).unwrap();
    }

    #[tokio::test]
    async fn stored_bytes_round_trip() {
        let dir = temp_dir();
        let stored = dir.store_bytes(b"inbound").await.unwrap();
        assert_eq!(std::fs::read(dir.path(&stored.id)).unwrap(), b"inbound");
        std::fs::remove_dir_all(dir.root()).unwrap();
    }
}
