//! The coreapp role: secondary until a master assigns it a shard; then it
//! claims the shard lease, holds the shard's one upstream session, and sends
//! the shard's outbox. It keeps serving while every master is down, because
//! its lease lives in the database, not in a master.
//!
//! - [`lease_keeper`]: claims and renews shard leases and grants their use.
//! - [`session`]: the upstream session and the self-fence that closes it in time.
//! - [`quiet`]: when a shard's next session may open, whatever ended the last.
//! - [`frame_codec`]: upstream line framing that skips oversized or garbled frames.
//! - [`shard_worker`]: runs one shard's session, round after round.
//! - [`outbox_sender`]: a batch of the outbox on the wire: media first, then the messages.
//! - [`send_window`]: the messages a session has out awaiting their acks, and when they go back.
//! - [`message_media`]: where a message names media, by id or link.
//! - [`link_fetch`]: fetching media links into the media directory.
//! - [`media_upload`]: uploading a medium over the session, streamed from its file.
//! - [`contact_checks`]: asking the contact checks queued on the shard.
//! - [`session_reports`]: what the session reported, recorded with its callbacks.
//! - [`inbound_media`]: keeping the media of inbound messages.
//! - [`callbacks`]: delivering the shard's callbacks to the webhook receiver.
//! - [`callback_poster`]: the client, limit and counters every shard's delivery shares.

pub mod callback_poster;
pub mod callbacks;
pub mod contact_checks;
pub mod frame_codec;
pub mod inbound_media;
pub mod lease_keeper;
pub mod link_fetch;
pub mod media_upload;
pub mod message_media;
pub mod outbox_sender;
pub mod quiet;
pub mod send_window;
pub mod session;
pub mod session_reports;
pub mod shard_worker;

use crate::cluster::live_settings::{raise_session_timeout, LiveSettings};
use crate::config::{log_ignored_official_env, DbConfig};
use crate::control::{NodeStatus, Wake};
use crate::control_auth::{require_cluster_secret, ClusterSecretArgs, ControlGuard};
use crate::media_dir::{MediaDir, MediaDirArgs};
use crate::node::{shutdown_signal, wait_for_schema, NodeArgs, NodeIdentity};
use crate::store::Store;
use anyhow::Context;
use axum::extract::State;
use axum::middleware;
use axum::routing::{get, post};
use axum::{Json, Router};
use callbacks::{CallbackCounts, CallbackPoster};
use lease_keeper::{KeeperHandle, LeaseKeeper, ShardServices};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Settings of a coreapp node.
#[derive(Debug, Clone, clap::Args)]
pub struct CoreappConfig {
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub cluster: ClusterSecretArgs,
    #[command(flatten)]
    pub media: MediaDirArgs,
    /// `host:port` of the upstream messaging network (the upstream-sim in development).
    #[arg(long, env = "SHARDGATE_UPSTREAM", default_value = "127.0.0.1:5222")]
    pub upstream: String,
    /// Seconds the upstream keeps a silent session open, a fact about the network; the
    /// cluster's `upstream_session_timeout` is raised to it and this node never uses less.
    /// Unset: the cluster's value (seeded by the masters' own flag).
    #[arg(long, env = "SHARDGATE_UPSTREAM_SESSION_TIMEOUT")]
    pub upstream_session_timeout: Option<f64>,
    /// Longest inbound upstream frame in bytes; a longer one is skipped and counted
    /// (the session stays up).
    #[arg(long, env = "SHARDGATE_UPSTREAM_MAX_FRAME_BYTES", default_value = "4194304")]
    pub upstream_max_frame_bytes: usize,
}

struct CoreappNode {
    identity: NodeIdentity,
    keeper: KeeperHandle,
    settings: LiveSettings,
    callbacks: CallbackPoster,
    started: Instant,
}

impl CoreappNode {
    fn status(&self) -> NodeStatus {
        let shards = self.keeper.held_shards();
        // Connected: a primary whose every shard has its session open.
        let connected = !shards.is_empty() && shards.iter().all(|s| s.session_open);
        NodeStatus {
            node_id: self.identity.node_id.clone(),
            instance_id: self.identity.instance_id.clone(),
            role: "coreapp".into(),
            gateway_status: if connected { "connected" } else { "disconnected" }.into(),
            version: crate::VERSION.into(),
            image_version: crate::image_version(),
            pid: std::process::id(),
            shards,
            master_epoch: None,
            settings_version: self.settings.current().version,
            uptime_s: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// Runs a coreapp node until it is asked to stop.
pub async fn run(config: CoreappConfig) -> anyhow::Result<()> {
    log_ignored_official_env();
    let secret = config.cluster.require().map_err(anyhow::Error::msg)?;
    config.node.validate().map_err(anyhow::Error::msg)?;
    let media_path = config.media.resolve(&config.db.data_dir);
    let media = MediaDir::create(&media_path)
        .with_context(|| format!("cannot use the media directory {} (WA_MEDIA_DIR)", media_path.display()))?;
    let store = Store::connect(&config.db).await.context("cannot open the database (WA_DB_*)")?;
    wait_for_schema(&store, "coreapp").await?;
    let listener = tokio::net::TcpListener::bind(config.node.control_listen)
        .await
        .with_context(|| format!("cannot listen on {} (SHARDGATE_CONTROL_LISTEN)", config.node.control_listen))?;
    let control_addr = config.node.advertised_control_addr(listener.local_addr()?).map_err(anyhow::Error::msg)?;
    let identity = NodeIdentity::new(config.node.node_id.clone(), &control_addr);
    store.register_node(&identity.record("coreapp", &control_addr)).await?;
    let cluster = loop {
        if let Some(info) = store.cluster_info().await? {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(floor) = config.upstream_session_timeout {
        raise_session_timeout(&store, floor).await?;
    }
    let settings = LiveSettings::start(store.clone(), config.upstream_session_timeout).await?;
    let services = ShardServices {
        media: media.clone(),
        links: link_fetch::LinkFetcher::new(store.clone(), media),
        callbacks: CallbackPoster::new(),
    };
    let callbacks = services.callbacks.clone();
    let mut keeper = LeaseKeeper::new(
        store.clone(),
        identity.clone(),
        settings.clone(),
        config.upstream.clone(),
        cluster.account,
        cluster.shards,
        config.upstream_max_frame_bytes,
        services,
    );
    let node = Arc::new(CoreappNode {
        identity: identity.clone(),
        keeper: keeper.handle.clone(),
        settings: settings.clone(),
        callbacks: callbacks.clone(),
        started: Instant::now(),
    });
    let app = Router::new()
        .route("/control/status", get(|State(n): State<Arc<CoreappNode>>| async move { Json(n.status()) }))
        .route("/control/callbacks", get(|State(n): State<Arc<CoreappNode>>| async move { Json(n.callbacks.counts()) }))
        .route(
            "/control/wake",
            post(|State(n): State<Arc<CoreappNode>>, Json(wake): Json<Wake>| async move {
                n.keeper.wake(wake.shard);
            }),
        )
        .with_state(node)
        .layer(middleware::from_fn_with_state(ControlGuard::new(secret), require_cluster_secret));
    let server =
        tokio::spawn(crate::http_server::serve(listener, app, crate::http_server::ConnectionLimits::default()));
    identity.announce_control("coreapp", &control_addr);
    tracing::info!("coreapp {} is secondary; control on {control_addr}", identity.node_id);
    let liveness = tokio::spawn(write_liveness(store.clone(), identity.clone(), settings.clone()));
    let counts = tokio::spawn(log_callback_counts(callbacks));
    tokio::select! {
        _ = keeper.run() => {}
        _ = shutdown_signal() => tracing::info!("coreapp stopping: closing sessions and releasing shards"),
        r = server => {
            // Without its control API the node would look dead while holding
            // sessions; close them and exit rather than linger.
            tracing::error!("control server stopped: {r:?}");
        }
    }
    liveness.abort();
    counts.abort();
    let _ = liveness.await;
    // Before the shards go: a master that sees them released must not pick
    // this node again. Failing that (the database is down), the masters find
    // out after unhealthy_interval, as for any node that went silent.
    if let Err(e) = store.mark_node_leaving(&identity.node_id, &identity.instance_id).await {
        tracing::warn!("cannot mark this node as leaving: {e}");
    }
    keeper.release_all().await;
    Ok(())
}

/// DB-based monitoring: a liveness write every `db_update_interval`.
async fn write_liveness(store: Store, identity: NodeIdentity, mut settings: LiveSettings) {
    loop {
        match store.touch_node(&identity.node_id, &identity.instance_id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!("another process registered as node {}; node ids must be unique", identity.node_id)
            }
            Err(e) => tracing::warn!("cannot write liveness: {e}"),
        }
        // A shorter db_update_interval takes effect at once: the masters judge
        // this node by the new one from the moment they see it.
        tokio::select! {
            _ = tokio::time::sleep(settings.timing().db_update) => {}
            _ = settings.changed() => {}
        }
    }
}

/// One line a minute with the node's callback counters, when they changed.
async fn log_callback_counts(callbacks: CallbackPoster) {
    let mut last = CallbackCounts::default();
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let now = callbacks.counts();
        let settled = |c: CallbackCounts| (c.delivered, c.retried, c.dropped);
        if settled(now) != settled(last) {
            tracing::info!(
                "callbacks since start: {} delivered, {} retried, {} dropped; {} in flight",
                now.delivered,
                now.retried,
                now.dropped,
                now.in_flight
            );
            last = now;
        }
    }
}
