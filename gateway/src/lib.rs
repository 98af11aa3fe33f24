//! Shardgate webapp: the on-prem v1 REST API in front of the cluster.
//!
//! - [`app`]: the router and its layers, assembled in one function ([`router`]);
//!   the only module that knows the handlers.
//! - [`api`]: one file per endpoint, each as request type, handler, response type.
//! - [`state`]: [`AppState`], what every handler and middleware shares.
//! - [`views`]: JSON shapes and formats several endpoints answer with (`meta`,
//!   on-prem timestamps, a plugin's view).
//! - [`auth`]: passwords, bearer tokens, the API key, and the two auth layers:
//!   who is calling (authentication), then whether they may (the authorizer plugin).
//! - [`routing`]: a message's shard (the router plugin), and the wake-up of that shard's owner.
//! - [`outbox_writer`]: group commit of accepted messages (one transaction
//!   for everything that arrived during the previous commit).
//! - [`token_cache`]: the users of bearer tokens seen in the last second.
//! - [`metrics`]: the Prometheus registry behind `GET /metrics`.
//! - [`cluster_view`]: the fan-out to every node's control API (health, support).
//! - [`node_health`]: what is really the case with each node (healthy, gone,
//!   unreachable, paused, stale), for `/v1/health` and `shardgate status`.
//! - [`extract`]: the JSON body extractor that turns bad bodies into on-prem errors.
//! - [`request_head`]: the URI and header size limits, refused in the on-prem format.
//! - [`login_limits`]: the login budgets per client address and per user name.
//! - [`error`]: the one error type, in the on-prem format, with the code table.
//!
//! Dependencies point one way, with no cycle: `app` → `api` → `auth` →
//! `state` → (`routing`, `outbox_writer`, `token_cache`, `login_limits`,
//! `metrics`) → `error`; `views`,
//! `extract`, `cluster_view` and `request_head` sit beside them and import
//! nothing above. Who is calling is core's `Principal` (in the
//! [`auth::Caller`] extractor); the users table's role text maps to it in
//! `UserRole` alone.
//!
//! The webapp holds no cluster state of its own: messages go durably into the
//! shard's outbox in the database and the shard's primary coreapp sends them,
//! and media live in the media directory every node mounts, so any number of
//! webapps can run, and one can die at any time.
//!
//! Authorization and routing are policies (`shardgate_core::policy`) answered
//! by the WebAssembly plugins of a [`PluginHost`]; the built-in rules run as
//! plugins too, and a plugin that fails a call is answered for by the native
//! rule. Plugins uploaded through `PUT /v1/plugins/{kind}` are stored in the
//! database, from which every node loads them.

pub mod api;
pub mod app;
pub mod auth;
pub mod cluster_view;
pub mod error;
pub mod extract;
pub mod login_limits;
pub mod metrics;
pub mod node_health;
pub mod outbox_writer;
pub mod request_head;
pub mod routing;
pub mod state;
pub mod token_cache;
pub mod views;

pub use app::router;
pub use state::AppState;

use anyhow::Context;
use serde_json::json;
use shardgate_core::control::ControlClient;
use shardgate_core::http_server::{self, ConnectionLimits};
use shardgate_core::media_dir::{MediaDir, MediaDirArgs};
use shardgate_core::node::{wait_for_schema, NodeIdentity};
use shardgate_core::store::Store;
use shardgate_plugins::{HostConfig, PluginHost};
use std::net::SocketAddr;
use std::time::Duration;

/// How often the webapp writes its database liveness (shown by `shardgate status`).
const LIVENESS_EVERY: Duration = Duration::from_secs(30);

/// Start-up settings of the webapp role.
#[derive(Debug, Clone, clap::Args)]
pub struct WebappConfig {
    /// The shared database.
    #[command(flatten)]
    pub db: shardgate_core::config::DbConfig,
    /// The media directory every node shares.
    #[command(flatten)]
    pub media: MediaDirArgs,
    /// Address the REST API listens on.
    #[arg(long, env = "WEBAPP_LISTEN", default_value = "0.0.0.0:9090")]
    pub listen: SocketAddr,
    /// API key accepted as `Authorization: Apikey <key>` on health, metrics and stats.
    #[arg(long, env = "WA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Node id (defaults to the API address, host:port).
    #[arg(long, env = "SHARDGATE_NODE_ID")]
    pub node_id: Option<String>,
    /// The cluster secret its wake-ups and status calls carry.
    #[command(flatten)]
    pub cluster: shardgate_core::control_auth::ClusterSecretArgs,
    /// Connection cap and timeouts of the REST port.
    #[command(flatten)]
    pub connections: ConnectionLimits,
    /// Login attempt budgets per client address and per user name.
    #[command(flatten)]
    pub login: login_limits::LoginLimits,
}

/// Runs a webapp until ctrl-c or SIGTERM, with a plugin host of its own
/// that runs the default plugins (nothing loads uploaded ones into it).
pub async fn run(config: WebappConfig) -> anyhow::Result<()> {
    let plugins = PluginHost::new(HostConfig::default()).context("cannot start the plugin host")?;
    run_with(config, plugins).await
}

/// Runs a webapp until ctrl-c or SIGTERM, asking `plugins` for its
/// authorization and routing policies. Keeping the host in line with the
/// plugins stored in the database is the caller's job.
pub async fn run_with(config: WebappConfig, plugins: PluginHost) -> anyhow::Result<()> {
    shardgate_core::config::log_ignored_official_env();
    let secret = config.cluster.require().map_err(anyhow::Error::msg)?;
    let store = Store::connect(&config.db).await.context("cannot connect to the database")?;
    let media =
        MediaDir::create(config.media.resolve(&config.db.data_dir)).context("cannot open the media directory")?;
    wait_for_schema(&store, "webapp").await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let api_addr = listener.local_addr()?;
    let reachable = shardgate_core::node::reachable_addr(api_addr);
    let identity = NodeIdentity::new(config.node_id, &reachable);
    store.register_node(&identity.record("webapp", &reachable)).await.context("cannot register this webapp")?;
    auth::ensure_default_admin(&store).await.context("cannot create the default admin")?;
    tokio::spawn(write_liveness(store.clone(), identity.clone()));

    let control = ControlClient::new(&secret);
    let state = AppState::new(store, media, control, config.api_key, identity.node_id.as_str(), plugins);
    let app = router(state.with_login_limits(&config.login));
    tracing::info!(node_id = %identity.node_id, "webapp serving the REST API on {api_addr}");
    shardgate_core::ready::announce(&json!({
        "role": "webapp",
        "node_id": identity.node_id,
        "api_addr": api_addr.to_string(),
        "pid": std::process::id(),
    }));
    // The server gives every request its peer address (`ConnectInfo`): what
    // the authorizer and the login budgets see as the client's address.
    http_server::serve_until(listener, app, config.connections, shutdown_signal())
        .await
        .context("the REST API server failed")?;
    tracing::info!(node_id = %identity.node_id, "webapp stopped");
    Ok(())
}

async fn write_liveness(store: Store, identity: NodeIdentity) {
    loop {
        tokio::time::sleep(LIVENESS_EVERY).await;
        match store.touch_node(&identity.node_id, &identity.instance_id).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                node_id = %identity.node_id,
                "another process registered under this node id; give each webapp its own SHARDGATE_NODE_ID"
            ),
            Err(e) => tracing::debug!("cannot write liveness: {e}"),
        }
    }
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
