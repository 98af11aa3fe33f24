//! What the callback deliveries of all shards share in a node: one HTTP
//! client, the node-wide limit on posts in flight
//! (`webhooks.max_concurrent_requests`, resized when the setting changes),
//! and the delivery counters the control API reports
//! (`GET /control/callbacks`).

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Longest a receiver may take to answer a callback.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of a receiver's answer read (so that its connection can be reused).
const ANSWER_READ_LIMIT: usize = 64 * 1024;

/// Delivery counters of the node, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallbackCounts {
    /// Callbacks the receiver took.
    pub delivered: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Callbacks given up after a failed attempt (`callback_persist=false`).
    pub dropped: u64,
    /// Posts in flight now.
    pub in_flight: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) delivered: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) in_flight: AtomicU64,
}

/// A semaphore whose size follows `webhooks.max_concurrent_requests`.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    permits: Arc<Semaphore>,
    size: Mutex<usize>,
}

impl ConcurrencyLimit {
    /// A limit of `size` at once.
    pub fn new(size: usize) -> ConcurrencyLimit {
        ConcurrencyLimit { permits: Arc::new(Semaphore::new(size)), size: Mutex::new(size) }
    }

    /// Changes the limit. A smaller one takes effect as posts in flight end:
    /// the surplus permits are taken out as they come back.
    pub fn resize(&self, size: usize) {
        let mut current = self.size.lock().expect("limit lock");
        if size > *current {
            self.permits.add_permits(size - *current);
        } else if size < *current {
            let surplus = u32::try_from(*current - size).unwrap_or(u32::MAX);
            let permits = self.permits.clone();
            tokio::spawn(async move {
                if let Ok(taken) = permits.acquire_many_owned(surplus).await {
                    taken.forget();
                }
            });
        }
        *current = size;
    }

    /// Waits for room for one more post.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        self.permits.clone().acquire_owned().await.expect("the limit is never closed")
    }
}

/// What every shard's delivery shares in the node: the HTTP client (one
/// pool, at most `MAX_CONCURRENT_CALLBACKS` idle connections per receiver),
/// the concurrency limit and the counters. Cheap to clone.
#[derive(Clone)]
pub struct CallbackPoster {
    http: reqwest::Client,
    pub(super) limit: Arc<ConcurrencyLimit>,
    pub(super) counters: Arc<Counters>,
}

impl Default for CallbackPoster {
    fn default() -> Self {
        CallbackPoster::new()
    }
}

impl CallbackPoster {
    /// A poster with the default limit until the settings say otherwise.
    pub fn new() -> CallbackPoster {
        let max = crate::cluster::messaging_settings::MAX_CONCURRENT_CALLBACKS as usize;
        let http = reqwest::Client::builder()
            .connect_timeout(POST_TIMEOUT)
            .pool_max_idle_per_host(max)
            .pool_idle_timeout(Duration::from_secs(60))
            // A redirect would turn the POST into a GET that "delivers" nothing.
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .build()
            .expect("HTTP client builds");
        let default = crate::cluster::messaging_settings::WebhookSettings::default().max_concurrent_requests;
        CallbackPoster { http, limit: Arc::new(ConcurrencyLimit::new(default as usize)), counters: Arc::default() }
    }

    /// The node's delivery counters.
    pub fn counts(&self) -> CallbackCounts {
        let c = &self.counters;
        CallbackCounts {
            delivered: c.delivered.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            in_flight: c.in_flight.load(Ordering::Relaxed),
        }
    }

    /// Posts `payload` to `url`; `Err` says why it was not delivered.
    pub(super) async fn post(&self, url: &str, payload: String) -> Result<(), String> {
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(payload)
            .timeout(POST_TIMEOUT)
            .send()
            .await
            .map_err(|e| super::link_fetch::describe(&e))?;
        let status = response.status();
        let mut response = response;
        let mut read = 0;
        while read < ANSWER_READ_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_limit_grows_at_once_and_shrinks_as_permits_come_back() {
        let limit = ConcurrencyLimit::new(2);
        let a = limit.acquire().await;
        let b = limit.acquire().await;
        limit.resize(3);
        let c = limit.acquire().await;
        limit.resize(1);
        drop((a, b, c));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(limit.permits.available_permits(), 1);
    }
}
