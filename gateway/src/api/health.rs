//! `GET /v1/health`: the cluster-shaped on-prem health, one entry per master
//! and coreapp keyed by its control address, from the nodes' own answers.
//!
//! A node that answers and refreshes its record shows its own
//! `gateway_status` (`connected` or `disconnected`). Any other node shows the
//! verdict of [`crate::node_health`] instead (`gone`, `unreachable`, `paused`
//! or `stale`), the same word `shardgate status` prints, with the role it
//! registered with (`master` or `coreapp`): without an answer, whether a
//! master is primary or secondary is unknown, and guessing would mislead an
//! operator.

use crate::auth::Caller;
use crate::cluster_view;
use crate::error::ApiError;
use crate::node_health::Health;
use crate::state::AppState;
use crate::views::Meta;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use std::collections::BTreeMap;

/// Asks every master and coreapp for its status, concurrently.
pub async fn health(State(state): State<AppState>, _caller: Caller) -> Result<Json<HealthResponse>, ApiError> {
    let views = cluster_view::survey(&state.store, &state.control).await?;
    let health = views
        .into_iter()
        .map(|view| {
            // Only a node that answers and is fresh speaks for itself.
            let gateway_status = match view.reachable() {
                Some(status) if matches!(view.health, Health::Healthy | Health::Unhealthy) => {
                    status.gateway_status.clone()
                }
                _ => view.health.to_string(),
            };
            let role = view.reachable().map_or(&view.record.role, |status| &status.role).clone();
            (view.record.control_addr, NodeHealth { gateway_status, role })
        })
        .collect();
    Ok(Json(HealthResponse { health, meta: Meta::current() }))
}

/// The answer: `{"health":{"host:port":{"gateway_status","role"}},"meta":{...}}`.
#[derive(Debug, Serialize)]
pub struct HealthResponse {
    /// One entry per node, keyed by its control address.
    pub health: BTreeMap<String, NodeHealth>,
    /// API status and version.
    pub meta: Meta,
}

/// One node's health.
#[derive(Debug, Serialize)]
pub struct NodeHealth {
    /// `connected` or `disconnected` as the node reports it; otherwise the
    /// verdict on it: `gone`, `unreachable`, `paused` or `stale` (`healthy`
    /// or `unhealthy` for a live node that gave no status, e.g. one with another cluster secret).
    pub gateway_status: String,
    /// `primary_master`, `secondary_master` or `coreapp`; the registered role when it gave no status.
    pub role: String,
}
