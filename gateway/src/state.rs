//! What every handler shares: the store, the node clients, the policies and
//! the per-process tables. Handlers and middleware depend on this module;
//! it depends on none of them.

use crate::login_limits::{LoginLimits, LoginThrottle};
use crate::metrics::GatewayMetrics;
use crate::outbox_writer::OutboxWriter;
use crate::routing::ShardRouter;
use crate::token_cache::TokenCache;
use shardgate_core::control::ControlClient;
use shardgate_core::media_dir::MediaDir;
use shardgate_core::policy::{AuthorizationPolicy, RoutingPolicy};
use shardgate_core::store::Store;
use shardgate_plugins::PluginHost;
use std::sync::Arc;

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The cluster's database.
    pub store: Store,
    /// The media directory every node shares.
    pub media: MediaDir,
    /// `WA_API_KEY`, accepted on health, metrics and stats.
    pub api_key: Option<Arc<str>>,
    /// This webapp's node id.
    pub node_id: Arc<str>,
    /// The one client for node control APIs.
    pub control: ControlClient,
    /// Shard choice (the routing policy) and owner wake-ups.
    pub shards: ShardRouter,
    /// Who may make which request: the authorizer plugin in production.
    pub authorizer: Arc<dyn AuthorizationPolicy>,
    /// This process's plugins: listed, uploaded and reset through `/v1/plugins`.
    pub plugins: PluginHost,
    /// The registry behind `GET /metrics`.
    pub metrics: GatewayMetrics,
    /// The login budgets of client addresses and user names.
    pub login_throttle: Arc<LoginThrottle>,
    /// The users of recently seen bearer tokens.
    pub tokens: TokenCache,
    /// Stores accepted messages, many per transaction.
    pub outbox: OutboxWriter,
}

impl AppState {
    /// State for a webapp `node_id` over `store` and `media`, calling the
    /// nodes through `control`, whose authorization and routing are the
    /// running plugins of `plugins` (the handles follow every load, reset and
    /// unload). Starts the outbox writer: call it on a Tokio runtime.
    pub fn new(
        store: Store,
        media: MediaDir,
        control: ControlClient,
        api_key: Option<String>,
        node_id: impl Into<Arc<str>>,
        plugins: PluginHost,
    ) -> AppState {
        AppState {
            shards: ShardRouter::new(store.clone(), control.clone(), plugins.router()),
            authorizer: plugins.authorizer(),
            outbox: OutboxWriter::start(store.clone()),
            store,
            media,
            api_key: api_key.filter(|k| !k.is_empty()).map(Arc::from),
            node_id: node_id.into(),
            control,
            plugins,
            metrics: GatewayMetrics::new(),
            login_throttle: Arc::new(LoginThrottle::new(&LoginLimits::default())),
            tokens: TokenCache::default(),
        }
    }

    /// The same state with the login budgets `limits` instead of the defaults.
    pub fn with_login_limits(self, limits: &LoginLimits) -> AppState {
        AppState { login_throttle: Arc::new(LoginThrottle::new(limits)), ..self }
    }

    /// The same state answering with `router` and `authorizer` instead of the
    /// plugins (the native rules, for the benchmarks' baseline). `/v1/plugins`
    /// still manages the host, which then decides nothing.
    pub fn with_policies(self, router: Arc<dyn RoutingPolicy>, authorizer: Arc<dyn AuthorizationPolicy>) -> AppState {
        AppState { shards: ShardRouter::new(self.store.clone(), self.control.clone(), router), authorizer, ..self }
    }
}
