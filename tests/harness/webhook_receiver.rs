//! A webhook receiver for the cluster tests: records every callback POSTed
//! to it with its arrival time, and can be told to fail (answer 500) for a
//! while, as a receiver that is down or broken would.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One POST that reached the receiver.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// When it arrived.
    pub at: Instant,
    /// When it arrived on the wall clock (unix ms), to compare with the sim's.
    pub wall_ms: i64,
    /// The JSON body.
    pub body: Value,
    /// Whether the receiver took it (200) or failed it (500).
    pub accepted: bool,
}

#[derive(Default)]
struct Shared {
    deliveries: Mutex<Vec<Delivery>>,
    failing: AtomicBool,
}

/// A running receiver; dropping it stops it.
pub struct WebhookReceiver {
    /// The URL to put in `webhooks.url`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookReceiver {
    /// Starts a receiver on a free loopback port.
    pub async fn start() -> WebhookReceiver {
        let shared = Arc::new(Shared::default());
        let app = Router::new().route("/hook", post(receive)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("receiver binds");
        let url = format!("http://{}/hook", listener.local_addr().expect("receiver addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookReceiver { url, shared, task }
    }

    /// While `failing`, every callback is answered 500 (and recorded as such).
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Every POST so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.deliveries.lock().expect("receiver lock").clone()
    }

    /// The bodies the receiver accepted.
    pub fn accepted(&self) -> Vec<Value> {
        self.deliveries().into_iter().filter(|d| d.accepted).map(|d| d.body).collect()
    }

    /// `(message id, status)` of every accepted status callback, duplicates kept.
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.accepted()
            .iter()
            .flat_map(|b| b["statuses"].as_array().cloned().unwrap_or_default())
            .map(|s| (s["id"].as_str().unwrap_or("").to_string(), s["status"].as_str().unwrap_or("").to_string()))
            .collect()
    }

    /// The inbound messages of every accepted callback, duplicates kept.
    pub fn inbound(&self) -> Vec<Value> {
        self.accepted().iter().flat_map(|b| b["messages"].as_array().cloned().unwrap_or_default()).collect()
    }

    /// Waits until `done` holds for the receiver's accepted callbacks; panics
    /// naming `what` after `timeout`.
    pub async fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&WebhookReceiver) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> StatusCode {
    let accepted = !shared.failing.load(Ordering::SeqCst);
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let delivery = Delivery { at: Instant::now(), wall_ms, body, accepted };
    shared.deliveries.lock().expect("receiver lock").push(delivery);
    if accepted {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}
