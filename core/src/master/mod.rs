//! The master role: elect one primary master through the database lease,
//! heartbeat every coreapp, and let the primary keep every shard served.
//!
//! - [`election`]: the master lease loop and the role it yields.
//! - [`decision`]: the pure per-cycle decision (keep, reassign, stuck).
//! - [`monitor`]: heartbeats to the coreapps and the observations they leave.
//! - [`cycle`]: the primary's cycle that reads the cluster, decides, applies and logs one line.

pub mod cycle;
pub mod decision;
pub mod election;
pub mod monitor;

use crate::cluster::live_settings::{raise_session_timeout, LiveSettings};
use crate::cluster::{Settings, SettingsPatch, Timing};
use crate::config::{log_ignored_official_env, DbConfig};
use crate::control::{ControlClient, NodeStatus};
use crate::control_auth::{require_cluster_secret, ClusterSecretArgs, ControlGuard};
use crate::node::{shutdown_signal, NodeArgs, NodeIdentity};
use crate::policy::HealthPolicy;
use crate::store::shard_map::ClusterInfo;
use crate::store::{schema, Store};
use anyhow::Context;
use axum::{extract::State, middleware, routing::get, Json, Router};
use election::MasterRole;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// Shard counts the multiconnect deployment allows.
pub const ALLOWED_SHARDS: [u32; 6] = [1, 2, 4, 8, 16, 32];

/// Settings of a master node.
#[derive(Debug, Clone, clap::Args)]
pub struct MasterConfig {
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub cluster: ClusterSecretArgs,
    /// Shard count when the cluster is first created: 1, 2, 4, 8, 16 or 32.
    #[arg(long, env = "SHARDGATE_SHARDS", default_value = "1", value_parser = parse_shards)]
    pub shards: u32,
    /// The account (phone number) whose upstream sessions the coreapps hold.
    #[arg(long, env = "WA_ACCOUNT_NUMBER", default_value = "15550000000")]
    pub account: String,
    /// Initial `heartbeat_interval` in seconds, written only when no settings are stored yet.
    #[arg(long)]
    pub heartbeat_interval: Option<f64>,
    /// Initial `unhealthy_interval` in seconds, written only when no settings are stored yet.
    #[arg(long)]
    pub unhealthy_interval: Option<f64>,
    /// Initial `db_update_interval` in seconds, written only when no settings are stored yet.
    #[arg(long)]
    pub db_update_interval: Option<f64>,
    /// Seconds the upstream keeps a silent session open: a fact about the network, not a
    /// tunable. The cluster's `upstream_session_timeout` is raised to it, never below.
    #[arg(long, env = "SHARDGATE_UPSTREAM_SESSION_TIMEOUT", default_value = "10")]
    pub upstream_session_timeout: f64,
}

fn parse_shards(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if ALLOWED_SHARDS.contains(&n) => Ok(n),
        _ => Err(format!("the shard count must be one of 1, 2, 4, 8, 16, 32, not {s:?}")),
    }
}

impl MasterConfig {
    /// The settings to seed a new cluster with, validated.
    pub fn initial_settings(&self) -> anyhow::Result<Settings> {
        let patch = SettingsPatch {
            heartbeat_interval: self.heartbeat_interval,
            unhealthy_interval: self.unhealthy_interval,
            db_update_interval: self.db_update_interval,
            upstream_session_timeout: Some(self.upstream_session_timeout),
            ..SettingsPatch::default()
        };
        Settings::default().patched(&patch).map_err(|e| anyhow::anyhow!("invalid initial setting {e}"))
    }
}

/// Shared state of a running master, read by its control API.
struct MasterNode {
    identity: NodeIdentity,
    role: watch::Receiver<MasterRole>,
    db_ok: AtomicBool,
    settings_version: AtomicI64,
    started: Instant,
}

impl MasterNode {
    fn status(&self) -> NodeStatus {
        let role = self.role.borrow().clone();
        let (role_name, master_epoch) = match role.acting_auth() {
            Some(auth) => ("primary_master", Some(auth.epoch)),
            None => ("secondary_master", None),
        };
        NodeStatus {
            node_id: self.identity.node_id.clone(),
            instance_id: self.identity.instance_id.clone(),
            role: role_name.into(),
            gateway_status: if self.db_ok.load(Ordering::Relaxed) { "connected" } else { "disconnected" }.into(),
            version: crate::VERSION.into(),
            image_version: crate::image_version(),
            pid: std::process::id(),
            shards: Vec::new(),
            master_epoch,
            settings_version: self.settings_version.load(Ordering::Relaxed),
            uptime_s: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// Runs a master node until it is asked to stop; `health` judges suspect coreapps.
pub async fn run(config: MasterConfig, health: Arc<dyn HealthPolicy>) -> anyhow::Result<()> {
    log_ignored_official_env();
    let secret = config.cluster.require().map_err(anyhow::Error::msg)?;
    let initial = config.initial_settings()?;
    config.node.validate().map_err(anyhow::Error::msg)?;
    let store = Store::connect(&config.db).await.context("cannot open the database (WA_DB_*)")?;
    store.bootstrap().await.context("cannot create the master lease table")?;
    store.check_not_newer().await?;
    let listener = tokio::net::TcpListener::bind(config.node.control_listen)
        .await
        .with_context(|| format!("cannot listen on {} (SHARDGATE_CONTROL_LISTEN)", config.node.control_listen))?;
    let control_addr = config.node.advertised_control_addr(listener.local_addr()?).map_err(anyhow::Error::msg)?;
    let identity = NodeIdentity::new(config.node.node_id.clone(), &control_addr);

    let (timing_tx, timing_rx) = watch::channel(initial.timing()?);
    let (role_tx, role_rx) = watch::channel(MasterRole::Secondary);
    let election =
        tokio::spawn(election::run_election(store.clone(), identity.node_id.clone(), timing_rx.clone(), role_tx));
    let node = Arc::new(MasterNode {
        identity: identity.clone(),
        role: role_rx.clone(),
        db_ok: AtomicBool::new(true),
        settings_version: AtomicI64::new(0),
        started: Instant::now(),
    });
    let app = Router::new()
        .route("/control/status", get(|State(n): State<Arc<MasterNode>>| async move { Json(n.status()) }))
        .with_state(node.clone())
        .layer(middleware::from_fn_with_state(ControlGuard::new(secret.clone()), require_cluster_secret));
    let server =
        tokio::spawn(crate::http_server::serve(listener, app, crate::http_server::ConnectionLimits::default()));
    identity.announce_control("master", &control_addr);
    tracing::info!("master {} listening for control on {control_addr}", identity.node_id);

    let mut master_loop = MasterLoop {
        store: store.clone(),
        identity,
        control_addr,
        config,
        initial,
        node,
        role: role_rx.clone(),
        timing_tx,
        monitor: monitor::Monitor::new(ControlClient::new(&secret)),
        health,
        taken_over_epoch: None,
        registered: false,
        last_touch: None,
        cycle_log: cycle::CycleLog::default(),
    };
    tokio::select! {
        _ = master_loop.run() => {}
        _ = shutdown_signal() => tracing::info!("master stopping"),
        r = server => anyhow::bail!("control server stopped: {r:?}"),
    }
    election.abort();
    let role = role_rx.borrow().clone();
    election::step_down(&store, &role).await;
    Ok(())
}

/// The master's periodic work: take over when elected, heartbeat the
/// coreapps, and run the primary's cycle.
struct MasterLoop {
    store: Store,
    identity: NodeIdentity,
    control_addr: String,
    config: MasterConfig,
    initial: Settings,
    node: Arc<MasterNode>,
    role: watch::Receiver<MasterRole>,
    timing_tx: watch::Sender<Timing>,
    monitor: monitor::Monitor,
    health: Arc<dyn HealthPolicy>,
    taken_over_epoch: Option<i64>,
    registered: bool,
    last_touch: Option<Instant>,
    cycle_log: cycle::CycleLog,
}

impl MasterLoop {
    async fn run(&mut self) {
        let mut live: Option<LiveSettings> = None;
        loop {
            let role = self.role.borrow().clone();
            if let Some(auth) = role.acting_auth() {
                if self.taken_over_epoch != Some(auth.epoch) {
                    match self.take_over().await {
                        Ok(()) => self.taken_over_epoch = Some(auth.epoch),
                        Err(e) => tracing::error!("primary master cannot take over yet: {e:#}"),
                    }
                }
            }
            if live.is_none() {
                live = self.start_when_schema_ready().await;
            }
            let timing = *self.timing_tx.borrow();
            if let Some(live) = &live {
                let current = live.current();
                self.node.settings_version.store(current.version, Ordering::Relaxed);
                self.timing_tx.send_if_modified(|t| {
                    let changed = *t != current.timing;
                    *t = current.timing;
                    changed
                });
                self.touch(&timing).await;
                let coreapps = self.monitor.heartbeat_all(&self.store, &self.identity.node_id, &timing).await;
                match &coreapps {
                    Ok(_) => self.node.db_ok.store(true, Ordering::Relaxed),
                    Err(e) => {
                        self.node.db_ok.store(false, Ordering::Relaxed);
                        tracing::warn!("master cannot read the cluster: {e}");
                    }
                }
                // Clone the role out: a watch borrow held across an await
                // would block the election task's next update.
                let role = self.role.borrow().clone();
                if let (Some(auth), Ok(coreapps)) = (role.acting_auth(), coreapps) {
                    if self.taken_over_epoch == Some(auth.epoch) {
                        let outcome = cycle::run_cycle(
                            &self.store,
                            auth,
                            &self.role,
                            &coreapps,
                            &self.monitor,
                            &timing,
                            self.health.as_ref(),
                        )
                        .await;
                        self.cycle_log.log(&self.identity.node_id, auth.epoch, outcome);
                    }
                }
            }
            tokio::time::sleep(timing.heartbeat).await;
        }
    }

    /// First steps of a new primary: schema, cluster facts, settings seed.
    async fn take_over(&mut self) -> anyhow::Result<()> {
        let applied = self.store.migrate().await?;
        if !applied.is_empty() {
            tracing::info!("primary master applied schema migrations {applied:?}");
        }
        let wanted = ClusterInfo { shards: self.config.shards, account: self.config.account.clone() };
        let info = self.store.init_cluster(&wanted).await?;
        if info != wanted {
            tracing::info!(
                "cluster already set up with {} shard(s) for account {}; --shards/--account only apply to a new cluster",
                info.shards,
                info.account
            );
        }
        if self.store.settings_version().await? == 0 {
            let doc = serde_json::to_string(&self.initial)?;
            if self.store.write_settings(0, &doc).await?.is_some() {
                tracing::info!("seeded the cluster settings: {doc}");
            }
        }
        // A failure here is a misconfiguration the settings loader reports
        // on every cycle; the lease duties above must not wait for it.
        if let Err(e) = raise_session_timeout(&self.store, self.config.upstream_session_timeout).await {
            tracing::error!("{e:#}");
        }
        Ok(())
    }

    /// Registers the node and starts following the settings once the schema is there.
    async fn start_when_schema_ready(&mut self) -> Option<LiveSettings> {
        match self.store.schema_version().await {
            Ok(v) if v == schema::latest_version() => {}
            _ => return None,
        }
        if !self.registered {
            let record = self.identity.record("master", &self.control_addr);
            if let Err(e) = self.store.register_node(&record).await {
                tracing::warn!("master cannot register yet: {e}");
                return None;
            }
            self.registered = true;
        }
        match LiveSettings::start(self.store.clone(), Some(self.config.upstream_session_timeout)).await {
            Ok(live) => Some(live),
            Err(e) => {
                tracing::warn!("master cannot load the settings yet: {e}");
                None
            }
        }
    }

    /// Writes database liveness every `db_update_interval`.
    async fn touch(&mut self, timing: &Timing) {
        if self.last_touch.is_some_and(|t| t.elapsed() < timing.db_update) {
            return;
        }
        if let Ok(true) = self.store.touch_node(&self.identity.node_id, &self.identity.instance_id).await {
            self.last_touch = Some(Instant::now());
        }
    }
}
