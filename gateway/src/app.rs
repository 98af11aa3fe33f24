//! The router and the layers every request passes, assembled in one place.

use crate::api;
use crate::auth;
use crate::error;
use crate::extract::JSON_BODY_LIMIT;
use crate::login_limits::{LoginLimits, LoginThrottle};
use crate::metrics::GatewayMetrics;
use crate::request_head;
use crate::routing::ShardRouter;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post, put};
use axum::Router;
use shardgate_core::control::ControlClient;
use shardgate_core::policy::{AuthorizationPolicy, RoutingPolicy};
use shardgate_core::store::Store;
use shardgate_plugins::PluginHost;
use std::sync::Arc;
use tower_http::trace::TraceLayer;

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The cluster's database.
    pub store: Store,
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
}

impl AppState {
    /// State for a webapp `node_id` over `store`, calling the nodes through
    /// `control`, whose authorization and routing are the running plugins of
    /// `plugins` (the handles follow every load, reset and unload).
    pub fn new(
        store: Store,
        control: ControlClient,
        api_key: Option<String>,
        node_id: impl Into<Arc<str>>,
        plugins: PluginHost,
    ) -> AppState {
        AppState {
            shards: ShardRouter::new(store.clone(), control.clone(), plugins.router()),
            authorizer: plugins.authorizer(),
            store,
            api_key: api_key.filter(|k| !k.is_empty()).map(Arc::from),
            node_id: node_id.into(),
            control,
            plugins,
            metrics: GatewayMetrics::new(),
            login_throttle: Arc::new(LoginThrottle::new(&LoginLimits::default())),
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

/// The REST API. axum routes first (an unknown path gets the on-prem 404),
/// then a request passes, outermost first:
/// 1. tracing;
/// 2. the request-head limits (URI 414, headers 431, in the on-prem format);
/// 3. the on-prem error format for anything axum answers by itself (405);
/// 4. the body-size limit (enforced as the body is read; 64 KiB, but 16 MiB
///    for a plugin upload);
/// 5. authentication: the credentials become a caller, bad ones a 401;
/// 6. authorization: the authorizer plugin's verdict on that caller and request
///    (both on every route but login; a wrong method is refused after them);
/// 7. the endpoint's handler; `POST /v1/messages` asks the router plugin for
///    the shard, stores the message in its outbox and wakes the shard's owner.
///    Login spends the budgets of `login_limits` before it hashes anything.
pub fn router(state: AppState) -> Router {
    let authenticated = Router::new()
        .route("/v1/messages", post(api::messages::send))
        .route("/v1/users/logout", post(api::logout::logout))
        .route("/v1/health", get(api::health::health))
        .route("/v1/support", get(api::support::support))
        .route("/metrics", get(api::metrics::metrics))
        .route(
            "/v1/settings/application",
            get(api::settings::get).patch(api::settings::patch).delete(api::settings::reset),
        )
        .route("/v1/plugins", get(api::plugins::list))
        .route(
            "/v1/plugins/{kind}",
            put(api::plugins::upload)
                .layer(DefaultBodyLimit::max(api::plugins::COMPONENT_LIMIT))
                .delete(api::plugins::remove),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authorize))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .route("/v1/users/login", post(api::login::login))
        .merge(authenticated)
        .fallback(error::no_such_endpoint)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn(error::onprem_format_for_stray_errors))
        .layer(middleware::from_fn(request_head::refuse_oversized_heads))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
