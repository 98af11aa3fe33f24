//! The router and the layers every request passes, assembled in one place.

use crate::api;
use crate::auth;
use crate::error;
use crate::extract::JSON_BODY_LIMIT;
use crate::routing::ShardRouter;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use shardgate_core::control::ControlClient;
use shardgate_core::store::Store;
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
    /// Shard choice and owner wake-ups.
    pub shards: ShardRouter,
}

impl AppState {
    /// State for a webapp `node_id` over `store`.
    pub fn new(store: Store, api_key: Option<String>, node_id: impl Into<Arc<str>>) -> AppState {
        let control = ControlClient::new();
        AppState {
            shards: ShardRouter::new(store.clone(), control.clone()),
            store,
            api_key: api_key.filter(|k| !k.is_empty()).map(Arc::from),
            node_id: node_id.into(),
            control,
        }
    }
}

/// The REST API. axum routes first, then a request passes, outermost first:
/// 1. tracing;
/// 2. the on-prem error format for anything axum answers by itself (404, 405);
/// 3. the body-size limit (enforced as [`crate::extract::ApiJson`] reads the body);
/// 4. the auth layer, on every route but login (a wrong method is refused after it);
/// 5. the endpoint's handler.
pub fn router(state: AppState) -> Router {
    let authenticated = Router::new()
        .route("/v1/messages", post(api::messages::send))
        .route("/v1/health", get(api::health::health))
        .route("/v1/support", get(api::support::support))
        .route(
            "/v1/settings/application",
            get(api::settings::get)
                .patch(api::settings::patch)
                .delete(api::settings::reset),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/v1/users/login", post(api::login::login))
        .merge(authenticated)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn(error::onprem_format_for_stray_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
