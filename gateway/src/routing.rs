//! Where a message (or a contact check) goes: its shard (the routing
//! policy, i.e. the router plugin, over the cluster's shard count) and, once
//! it is stored, a best-effort wake-up of that shard's owner.
//!
//! The wake only shortens the delay before the owner sends: the outbox in the
//! database is the real hand-off, so a failed or skipped wake loses nothing.
//! Wakes are coalesced per shard, so a burst of messages costs each owner one
//! call in flight plus at most one more, never one task per message.

use crate::error::{ApiError, ErrorKind};
use shardgate_core::control::ControlClient;
use shardgate_core::policy::{Route, RouteRequest, RoutingPolicy};
use shardgate_core::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a looked-up shard owner address is trusted.
const OWNER_CACHE_TTL: Duration = Duration::from_millis(200);
/// How long a wake call may take before it is given up.
const WAKE_TIMEOUT: Duration = Duration::from_millis(200);
/// Shortest time between two wakes of one shard's owner. Under load the
/// owner is busy sending and finds new rows without being told; waking it
/// for every message would cost a control call per message on both nodes.
/// A message arriving at an idle owner is still woken for at once.
const WAKE_SPACING: Duration = Duration::from_millis(5);
/// How long a read shard count routes messages before it is read again.
/// Safe at any length: the outbox writer checks the count a message was
/// routed over against the stored one in the transaction that stores it.
const SHARD_COUNT_TTL: Duration = Duration::from_secs(1);

/// Chooses shards and wakes their owners; cheap to clone.
#[derive(Clone)]
pub struct ShardRouter {
    store: Store,
    control: ControlClient,
    policy: Arc<dyn RoutingPolicy>,
    owners: Arc<tokio::sync::Mutex<OwnerCache>>,
    shard_count: Arc<Mutex<Option<(u32, Instant)>>>,
    wakes: Arc<Mutex<HashMap<u32, WakeState>>>,
}

/// Where the router put a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    /// Its shard.
    pub shard: u32,
    /// The shard count it was routed over.
    pub shards: u32,
}

/// Control addresses of the shard owners, as of `read_at`.
#[derive(Default)]
struct OwnerCache {
    read_at: Option<Instant>,
    addr_of_shard: HashMap<u32, String>,
}

/// A wake in flight for a shard, and whether another is owed after it.
struct WakeState {
    again: bool,
}

impl ShardRouter {
    /// A router over `store` that asks `policy` for shards.
    pub fn new(store: Store, control: ControlClient, policy: Arc<dyn RoutingPolicy>) -> ShardRouter {
        ShardRouter {
            store,
            control,
            policy,
            owners: Arc::default(),
            shard_count: Arc::default(),
            wakes: Arc::default(),
        }
    }

    /// The shard of `message` under the routing policy, and the shard count
    /// it was routed over (read at most [`SHARD_COUNT_TTL`] ago); a refusal
    /// is a 400 (1009) carrying the policy's reason.
    ///
    /// The policy call is synchronous, on this worker thread; the plugin host
    /// bounds it by its deadline and answers a failed call with the native rule.
    /// A recipient routed with a stale count could land on two shards and
    /// lose its ordering, so the message must be stored with the count
    /// (see [`crate::outbox_writer`]), which refuses it if the count changed.
    pub async fn shard_of(&self, message: &RouteRequest) -> Result<Routed, ApiError> {
        let cached = *self.shard_count.lock().expect("shard count lock");
        let shards = match cached {
            Some((shards, read_at)) if read_at.elapsed() < SHARD_COUNT_TTL => shards,
            _ => {
                let shards = self.shard_count().await?;
                *self.shard_count.lock().expect("shard count lock") = Some((shards, Instant::now()));
                shards
            }
        };
        Ok(Routed { shard: self.route(message, shards)?, shards })
    }

    /// The shards of several requests (a contact check's inputs), under one
    /// reading of the shard count.
    pub async fn shards_of(&self, messages: &[RouteRequest]) -> Result<Vec<u32>, ApiError> {
        let shards = self.shard_count().await?;
        messages.iter().map(|message| self.route(message, shards)).collect()
    }

    async fn shard_count(&self) -> Result<u32, ApiError> {
        let info = self.store.cluster_info().await?.ok_or_else(|| {
            ApiError::new(
                ErrorKind::ServiceNotReady,
                "the cluster has no shard count yet: start a master so that it sets up the cluster",
            )
        })?;
        Ok(info.shards)
    }

    fn route(&self, message: &RouteRequest, shards: u32) -> Result<u32, ApiError> {
        match self.policy.route(message, shards) {
            // The plugin host already checks the range; a policy put in by
            // other code is held to the same contract.
            Route::Shard(shard) if shard < shards.max(1) => Ok(shard),
            Route::Shard(shard) => Err(ApiError::internal(format!(
                "the routing policy answered shard {shard} of a cluster of {shards} shards"
            ))),
            Route::Refuse(reason) => {
                Err(ApiError::invalid(format!("the router refused {} ({}): {reason}", message.recipient, message.kind)))
            }
        }
    }

    /// Tells the owner of `shard` that it has new messages, in the background.
    pub fn wake_owner(&self, shard: u32) {
        {
            let mut wakes = self.wakes.lock().expect("wake table lock");
            if let Some(state) = wakes.get_mut(&shard) {
                state.again = true;
                return;
            }
            wakes.insert(shard, WakeState { again: false });
        }
        let router = self.clone();
        tokio::spawn(async move {
            loop {
                let woken = Instant::now();
                router.wake_once(shard).await;
                tokio::time::sleep_until((woken + WAKE_SPACING).into()).await;
                let mut wakes = router.wakes.lock().expect("wake table lock");
                let state = wakes.get_mut(&shard).expect("in-flight wake is registered");
                if state.again {
                    state.again = false;
                } else {
                    wakes.remove(&shard);
                    return;
                }
            }
        });
    }

    async fn wake_once(&self, shard: u32) {
        let addr = match self.owner_addr(shard).await {
            Ok(Some(addr)) => addr,
            Ok(None) => return, // no owner now: the next primary reads the outbox when it starts
            Err(e) => {
                tracing::debug!(shard, "cannot look up the shard owner to wake it: {e}");
                return;
            }
        };
        if let Err(e) = self.control.wake(&addr, shard, WAKE_TIMEOUT).await {
            tracing::debug!(shard, "wake of the shard owner failed; it will find the message by polling: {e}");
        }
    }

    /// The control address of the node the shard map names as the shard's owner.
    async fn owner_addr(&self, shard: u32) -> Result<Option<String>, shardgate_core::store::StoreError> {
        let mut cache = self.owners.lock().await;
        if cache.read_at.is_none_or(|at| at.elapsed() > OWNER_CACHE_TTL) {
            let map = self.store.shard_map().await?;
            let (_, nodes) = self.store.nodes().await?;
            cache.addr_of_shard = map
                .rows
                .iter()
                .filter(|row| !row.owner.is_empty())
                .filter_map(|row| {
                    let node = nodes.iter().find(|n| n.node_id == row.owner)?;
                    Some((row.shard, node.control_addr.clone()))
                })
                .collect();
            cache.read_at = Some(Instant::now());
        }
        Ok(cache.addr_of_shard.get(&shard).cloned())
    }
}
