//! The coreapp's shard leases: claim the shards a master assigned to this
//! node, renew them, and grant each shard worker the right to use its
//! session until `sent + session_usable`, where `sent` is when the last
//! successful renewal was *sent* (before any queueing in the pool), so a
//! slow or paused database round trip can only shorten the grant. Beside
//! each shard's worker runs the shard's callback delivery, started and
//! stopped with it.

use super::callbacks::{CallbackPoster, ShardCallbacks};
use super::link_fetch::LinkFetcher;
use super::quiet::UpstreamQuiet;
use super::session::{LeaseGrant, SessionTarget};
use super::shard_worker::{ShardWorker, WorkerSignals};
use crate::cluster::live_settings::LiveSettings;
use crate::cluster::Timing;
use crate::control::HeldShard;
use crate::media_dir::MediaDir;
use crate::node::NodeIdentity;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Least time between two keeper passes that wake-ups trigger.
pub const POKE_SPACING: Duration = Duration::from_millis(50);

struct Held {
    epoch: i64,
    grant: watch::Sender<LeaseGrant>,
    signals: WorkerSignals,
    worker: JoinHandle<()>,
    callbacks: JoinHandle<()>,
}

/// What the shard workers and callback deliveries of the node share.
#[derive(Clone)]
pub struct ShardServices {
    /// The media directory.
    pub media: MediaDir,
    /// Fetches media links.
    pub links: LinkFetcher,
    /// Posts callbacks under the node's limit, and counts them.
    pub callbacks: CallbackPoster,
}

/// What the control API reads and pokes.
#[derive(Clone, Default)]
pub struct KeeperHandle {
    held: Arc<Mutex<HashMap<u32, (i64, WorkerSignals)>>>,
    poke: Arc<Notify>,
}

impl KeeperHandle {
    /// Shards held right now.
    pub fn held_shards(&self) -> Vec<HeldShard> {
        let held = self.held.lock().expect("keeper state lock");
        let mut shards: Vec<HeldShard> = held
            .iter()
            .map(|(shard, (epoch, s))| HeldShard {
                shard: *shard,
                epoch: *epoch,
                session_open: s.session_open.load(Ordering::Relaxed),
                session_down_ms: u64::try_from(s.session_down_for().as_millis()).unwrap_or(u64::MAX),
                frames_skipped: s.frames_skipped.load(Ordering::Relaxed),
            })
            .collect();
        shards.sort_by_key(|s| s.shard);
        shards
    }

    /// New messages for `shard`: wake its worker, or check for a new
    /// assignment. Wake-ups coalesce, and the keeper looks at most once per
    /// [`POKE_SPACING`], so a flood of them costs next to nothing.
    pub fn wake(&self, shard: u32) {
        match self.held.lock().expect("keeper state lock").get(&shard) {
            Some((_, signals)) => signals.wake.notify_one(),
            None => self.poke.notify_one(),
        }
    }
}

/// Claims, renews and releases this coreapp's shard leases.
pub struct LeaseKeeper {
    /// Database.
    pub store: Store,
    /// This process.
    pub identity: NodeIdentity,
    /// Settings in force.
    pub settings: LiveSettings,
    /// Upstream address, account and shard count for the sessions.
    pub upstream: String,
    /// Account number.
    pub account: String,
    /// Shard count.
    pub shards: u32,
    /// Longest inbound upstream frame.
    pub max_frame_bytes: usize,
    /// Shared with the control API.
    pub handle: KeeperHandle,
    /// Shared by the shard workers and callback deliveries.
    pub services: ShardServices,
    held: HashMap<u32, Held>,
    quiet: UpstreamQuiet,
}

impl LeaseKeeper {
    /// A keeper that holds nothing yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        identity: NodeIdentity,
        settings: LiveSettings,
        upstream: String,
        account: String,
        shards: u32,
        max_frame_bytes: usize,
        services: ShardServices,
    ) -> LeaseKeeper {
        LeaseKeeper {
            store,
            identity,
            settings,
            upstream,
            account,
            shards,
            max_frame_bytes,
            handle: KeeperHandle::default(),
            services,
            held: HashMap::new(),
            quiet: UpstreamQuiet::default(),
        }
    }

    /// Renews and claims every `renew_every`, or at once when poked.
    pub async fn run(&mut self) {
        loop {
            let timing = self.settings.timing();
            let next_claim = self.tick(&timing).await;
            let mut pause = timing.renew_every;
            if let Some(wait) = next_claim {
                pause = pause.min(wait);
            }
            let passed = Instant::now();
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.handle.poke.notified() => {
                    tokio::time::sleep_until(passed + POKE_SPACING).await;
                }
            }
        }
    }

    /// One pass; returns how long until a pending claim becomes possible.
    async fn tick(&mut self, timing: &Timing) -> Option<Duration> {
        self.renew_all(timing).await;
        let map = match tokio::time::timeout(db_call_timeout(timing), self.store.shard_map()).await {
            Ok(Ok(map)) => map,
            Ok(Err(e)) => {
                tracing::debug!("cannot read the shard map: {e}");
                return None;
            }
            Err(_) => return None,
        };
        let mut next_claim: Option<Duration> = None;
        for row in &map.rows {
            let mine = row.owner == self.identity.node_id;
            if let Some(held) = self.held.get(&row.shard) {
                if !mine || row.epoch != held.epoch || row.owner_instance != self.identity.instance_id {
                    self.drop_shard(row.shard, "reassigned by the master").await;
                }
                continue;
            }
            if !mine || !row.owner_instance.is_empty() {
                continue;
            }
            if row.not_before > map.now {
                let wait = Duration::from_millis((row.not_before - map.now).unsigned_abs());
                next_claim = Some(next_claim.map_or(wait, |w| w.min(wait)));
                continue;
            }
            let sent = Instant::now();
            match self
                .store
                .claim_shard(
                    row.shard,
                    row.epoch,
                    &self.identity.node_id,
                    &self.identity.instance_id,
                    timing.shard_lease_ttl,
                )
                .await
            {
                Ok(true) => self.start_shard(row.shard, row.epoch, sent + timing.session_usable),
                Ok(false) => {}
                Err(e) => tracing::warn!("cannot claim shard {}: {e}", row.shard),
            }
        }
        next_claim
    }

    async fn renew_all(&mut self, timing: &Timing) {
        let shards: Vec<(u32, i64)> = self.held.iter().map(|(s, h)| (*s, h.epoch)).collect();
        for (shard, epoch) in shards {
            let sent = Instant::now();
            let renewal = self.store.renew_shard(shard, epoch, &self.identity.instance_id, timing.shard_lease_ttl);
            match tokio::time::timeout(db_call_timeout(timing), renewal).await {
                Ok(Ok(true)) => {
                    if let Some(held) = self.held.get(&shard) {
                        held.grant.send_modify(|g| g.usable_until = sent + timing.session_usable);
                    }
                }
                Ok(Ok(false)) => {
                    self.drop_shard(shard, "lease lost: the shard was reassigned").await;
                }
                Ok(Err(e)) => tracing::warn!("cannot renew shard {shard} (epoch {epoch}): {e}"),
                Err(_) => tracing::warn!("renewing shard {shard} (epoch {epoch}) timed out"),
            }
        }
    }

    fn start_shard(&mut self, shard: u32, epoch: i64, usable_until: Instant) {
        tracing::info!("claimed shard {shard} with epoch {epoch}: now its primary coreapp");
        let (grant, grant_rx) = watch::channel(LeaseGrant { epoch, usable_until, revoked: false });
        let signals = WorkerSignals::default();
        let worker = ShardWorker {
            store: self.store.clone(),
            target: SessionTarget {
                upstream: self.upstream.clone(),
                account: self.account.clone(),
                shard,
                shards: self.shards,
                node: self.identity.node_id.clone(),
            },
            grant: grant_rx,
            signals: signals.clone(),
            quiet: self.quiet.clone(),
            settings: self.settings.clone(),
            max_frame_bytes: self.max_frame_bytes,
            media: self.services.media.clone(),
            links: self.services.links.clone(),
        };
        let callbacks = ShardCallbacks {
            store: self.store.clone(),
            shard,
            settings: self.settings.clone(),
            poster: self.services.callbacks.clone(),
            wake: signals.callbacks.clone(),
            grant: grant.subscribe(),
        };
        let worker = tokio::spawn(worker.run());
        let callbacks = tokio::spawn(callbacks.run());
        self.handle.held.lock().expect("keeper state lock").insert(shard, (epoch, signals.clone()));
        self.held.insert(shard, Held { epoch, grant, signals, worker, callbacks });
    }

    /// Revokes a shard's grant and waits until its worker has closed the session.
    async fn drop_shard(&mut self, shard: u32, why: &str) -> Option<i64> {
        let held = self.held.remove(&shard)?;
        self.handle.held.lock().expect("keeper state lock").remove(&shard);
        tracing::warn!("giving up shard {shard} (epoch {}): {why}", held.epoch);
        held.grant.send_modify(|g| g.revoked = true);
        // Posts in flight are abandoned; their callbacks stay pending for the next holder.
        held.callbacks.abort();
        held.signals.wake.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(2), held.worker).await;
        Some(held.epoch)
    }

    /// Closes every session, then hands the shards back for reassignment as
    /// soon as the upstream has surely closed them: at once after a confirmed
    /// `bye`, after the upstream's timeout otherwise. A session that did not
    /// finish closing keeps its shard until the lease expires.
    pub async fn release_all(&mut self) {
        let shards: Vec<u32> = self.held.keys().copied().collect();
        for shard in shards {
            if let Some(epoch) = self.drop_shard(shard, "stopping").await {
                let Some(quiet) = self.quiet.remaining(shard) else {
                    tracing::warn!("shard {shard} (epoch {epoch}) is not released: its session is still closing");
                    continue;
                };
                match self.store.release_shard(shard, epoch, &self.identity.instance_id, quiet).await {
                    Ok(true) => tracing::info!("released shard {shard} (epoch {epoch}), claimable in {quiet:?}"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!("could not release shard {shard}: {e}"),
                }
            }
        }
    }
}

/// How long one lease call may take before the keeper moves on. A slow
/// renewal is safe whatever it takes (the grant counts from when it was
/// sent), so this only bounds how long the loop can be stuck; half the usable
/// window lets a loaded database answer without costing the session.
fn db_call_timeout(timing: &Timing) -> Duration {
    timing.renew_every.max(timing.session_usable / 2)
}
