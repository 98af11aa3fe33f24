//! Media named by `link`: the coreapp fetches the link once, streams it into
//! the media directory, records it (origin `link`), and the message then
//! names the stored medium by id, like an uploaded one.
//!
//! Bounded every way: http and https only, at most [`LINK_MEDIA_CAP`] bytes
//! (streamed, never held in memory), [`FETCH_TIMEOUT`] for the whole fetch,
//! and at most [`FETCHES_AT_ONCE`] fetches in the whole node. A fetch holds
//! up only the shard worker that waits for it; the upstream session keeps
//! answering pings meanwhile (its I/O task does that on its own).

use crate::callback_payload::error;
use crate::media_dir::MediaDir;
use crate::store::media::{MediaOrigin, MediaRecord};
use crate::store::{Store, StoreError};
use crate::upstream::protocol::UpstreamError;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Largest medium fetched from a link, as `POST /v1/media` takes.
pub const LINK_MEDIA_CAP: u64 = 64 * 1024 * 1024;
/// Longest a fetch may take, connecting included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for the connection alone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Fetches in progress in the node at once; more wait their turn.
pub const FETCHES_AT_ONCE: usize = 4;

/// Fetches media links into the media directory; cheap to clone.
#[derive(Clone)]
pub struct LinkFetcher {
    http: reqwest::Client,
    media: MediaDir,
    store: Store,
    slots: Arc<Semaphore>,
}

impl LinkFetcher {
    /// A fetcher writing into `media` and recording in `store`.
    pub fn new(store: Store, media: MediaDir) -> LinkFetcher {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client builds");
        LinkFetcher { http, media, store, slots: Arc::new(Semaphore::new(FETCHES_AT_ONCE)) }
    }

    /// Fetches `link` and records it; the id of the stored medium, or the
    /// on-prem error that fails the message. `Err` only when the database
    /// could not record it (the message then waits for another round).
    pub async fn fetch(&self, link: &str) -> Result<Result<String, UpstreamError>, StoreError> {
        let url = match reqwest::Url::parse(link) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            Ok(_) => return Ok(Err(download_error(link, "only http and https links are fetched"))),
            Err(e) => return Ok(Err(download_error(link, &format!("not a URL ({e})")))),
        };
        let _slot = self.slots.acquire().await.expect("the fetch slots are never closed");
        let fetched = match tokio::time::timeout(FETCH_TIMEOUT, self.download(url)).await {
            Ok(Ok(fetched)) => fetched,
            Ok(Err(why)) => return Ok(Err(download_error(link, &why))),
            Err(_) => {
                let why = format!("no complete answer within {} s", FETCH_TIMEOUT.as_secs());
                return Ok(Err(download_error(link, &why)));
            }
        };
        if let Err(e) = self.store.insert_media(&fetched).await {
            if let Ok(id) = fetched.id.parse() {
                let _ = self.media.remove(&id).await;
            }
            return Err(e);
        }
        tracing::debug!("fetched {} bytes of {} from {link} as medium {}", fetched.size, fetched.mime_type, fetched.id);
        Ok(Ok(fetched.id))
    }

    /// Streams the body of `url` into the media directory.
    async fn download(&self, url: reqwest::Url) -> Result<MediaRecord, String> {
        let response = self.http.get(url).send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the server answered {status}"));
        }
        if response.content_length().is_some_and(|n| n > LINK_MEDIA_CAP) {
            return Err(format!("the medium is over the limit of {LINK_MEDIA_CAP} bytes"));
        }
        let mime_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or("application/octet-stream")
            .to_string();
        let body = futures::stream::unfold(Some(response), |response| async move {
            let mut response = response?;
            match response.chunk().await {
                Ok(Some(chunk)) => Some((Ok::<Bytes, String>(chunk), Some(response))),
                Ok(None) => None,
                Err(e) => Some((Err(describe(&e)), None)),
            }
        });
        let stored = self.media.store_stream(body, LINK_MEDIA_CAP).await.map_err(|e| e.to_string())?;
        Ok(MediaRecord {
            id: stored.id.to_string(),
            mime_type,
            sha256: stored.sha256,
            size: i64::try_from(stored.size).unwrap_or(i64::MAX),
            origin: MediaOrigin::Link,
            created_at: 0,
        })
    }
}

/// The error that fails a message whose link could not be fetched.
fn download_error(link: &str, why: &str) -> UpstreamError {
    error(1014, "Media download error", format!("cannot fetch {link}: {why}"))
}

/// A reqwest error with its causes, which name what really went wrong.
pub(super) fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::CONTENT_TYPE;
    use axum::http::StatusCode;

    async fn links_server() -> String {
        let app = axum::Router::new()
            .route("/photo.png", axum::routing::get(|| async { ([(CONTENT_TYPE, "image/png; q=1")], "png bytes") }))
            .route("/gone", axum::routing::get(|| async { StatusCode::NOT_FOUND }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    #[tokio::test]
    async fn a_fetched_link_is_stored_and_recorded_and_a_failed_one_says_why() {
        let dir = std::env::temp_dir().join(format!("shardgate-links-{}", uuid::Uuid::new_v4().simple()));
        let store = crate::testing::sqlite_cluster_store(&dir, 1).await.unwrap();
        let media = MediaDir::create(dir.join("media")).unwrap();
        let fetcher = LinkFetcher::new(store.clone(), media.clone());
        let base = links_server().await;

        let id = fetcher.fetch(&format!("{base}/photo.png")).await.unwrap().unwrap();
        let record = store.media(&id).await.unwrap().unwrap();
        assert_eq!((record.mime_type.as_str(), record.size, record.origin), ("image/png", 9, MediaOrigin::Link));
        assert_eq!(record.sha256, crate::digest::sha256_hex(b"png bytes"));
        assert_eq!(std::fs::read(media.path(&id.parse().unwrap())).unwrap(), b"png bytes");

        let gone = fetcher.fetch(&format!("{base}/gone")).await.unwrap().unwrap_err();
        assert_eq!(gone.code, 1014);
        assert!(gone.details.unwrap().contains("404"));
        let ftp = fetcher.fetch("ftp://example.com/x").await.unwrap().unwrap_err();
        assert!(ftp.details.unwrap().contains("only http and https"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
