//! The control API every master and coreapp serves (coreapp port 6252): the
//! status a node reports, the heartbeat masters send, and the wake-up the
//! gateway sends after it stores a message. [`ControlClient`] is the one
//! HTTP client for it, and adds the cluster secret to every call
//! (see [`crate::control_auth`]).

use crate::control_auth::{ClusterSecret, SECRET_ENV};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A shard held by a coreapp, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldShard {
    /// Shard number.
    pub shard: u32,
    /// Fencing epoch of the lease it holds.
    pub epoch: i64,
    /// Whether its upstream session is open right now.
    pub session_open: bool,
    /// Milliseconds the shard has been held without an open session (0 while open).
    #[serde(default)]
    pub session_down_ms: u64,
    /// Inbound frames skipped as oversized or unreadable since the shard was claimed.
    #[serde(default)]
    pub frames_skipped: u64,
}

/// What a node says about itself, on `GET /control/status` and in answer to heartbeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Stable node id.
    pub node_id: String,
    /// Random id of this process; a new one means the node restarted.
    pub instance_id: String,
    /// `primary_master`, `secondary_master`, `coreapp` or `webapp`.
    pub role: String,
    /// `connected` when the node holds an open upstream session (coreapp) or
    /// reaches the database (master); `disconnected` otherwise.
    pub gateway_status: String,
    /// Shardgate version.
    pub version: String,
    /// Tag of the container image it runs in, if any (absent from nodes
    /// older than this field).
    #[serde(default)]
    pub image_version: Option<String>,
    /// OS process id.
    pub pid: u32,
    /// Shards held (coreapps).
    pub shards: Vec<HeldShard>,
    /// Master lease epoch (primary master only).
    pub master_epoch: Option<i64>,
    /// Settings version in force on the node.
    pub settings_version: i64,
    /// Seconds since the process started.
    pub uptime_s: f64,
}

/// Body of `POST /control/wake`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wake {
    /// The shard that has new messages.
    pub shard: u32,
}

/// Why a control call failed; the master tells a dead process from a silent one.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens at the address: the process is gone.
    #[error("connection refused: no process listens at {0}")]
    Refused(String),
    /// No answer in time: the process may be paused or cut off.
    #[error("no answer from {0} in time")]
    Timeout(String),
    /// The node turned the call away (401): its cluster secret differs from ours.
    /// It is alive, but as good as silent to this caller.
    #[error("{0} rejected our cluster secret: {SECRET_ENV} must be the same on every node")]
    Unauthorized(String),
    /// Any other failure.
    #[error("control call to {addr} failed: {reason}")]
    Other {
        /// Address called.
        addr: String,
        /// What went wrong.
        reason: String,
    },
}

/// HTTP client for node control APIs; every call carries the cluster secret.
#[derive(Clone)]
pub struct ControlClient {
    http: reqwest::Client,
}

impl ControlClient {
    /// A client with keep-alive connections and no proxy that authenticates
    /// every call with `secret`.
    pub fn new(secret: &ClusterSecret) -> ControlClient {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, secret.header_value());
        let http = reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .expect("HTTP client builds");
        ControlClient { http }
    }

    /// Asks a node for its status (this is also the heartbeat).
    pub async fn status(&self, addr: &str, timeout: Duration) -> Result<NodeStatus, ControlError> {
        let url = format!("http://{addr}/control/status");
        let response = self.http.get(url).timeout(timeout).send().await.map_err(|e| classify(addr, e))?;
        check_authorized(addr, &response)?;
        response.json().await.map_err(|e| classify(addr, e))
    }

    /// Tells a coreapp that a shard has new messages; best effort.
    pub async fn wake(&self, addr: &str, shard: u32, timeout: Duration) -> Result<(), ControlError> {
        let url = format!("http://{addr}/control/wake");
        let response =
            self.http.post(url).json(&Wake { shard }).timeout(timeout).send().await.map_err(|e| classify(addr, e))?;
        check_authorized(addr, &response)
    }
}

fn check_authorized(addr: &str, response: &reqwest::Response) -> Result<(), ControlError> {
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Err(ControlError::Unauthorized(addr.to_string()));
    }
    Ok(())
}

fn classify(addr: &str, e: reqwest::Error) -> ControlError {
    if e.is_timeout() {
        return ControlError::Timeout(addr.to_string());
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return ControlError::Refused(addr.to_string());
            }
        }
        source = err.source();
    }
    ControlError::Other { addr: addr.to_string(), reason: e.to_string() }
}
