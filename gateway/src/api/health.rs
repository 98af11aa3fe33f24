//! `GET /v1/health`: the cluster-shaped on-prem health, one entry per master
//! and coreapp keyed by its control address, from the nodes' own answers.
//!
//! A node that does not answer within the timeout is listed with
//! `"gateway_status":"unreachable"` and the role it registered with
//! (`master` or `coreapp`): without an answer, whether a master is primary
//! or secondary is unknown, and guessing would mislead an operator.

use crate::auth::Caller;
use crate::cluster_view;
use crate::error::ApiError;
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
            let entry = match view.reachable() {
                Some(status) => NodeHealth { gateway_status: status.gateway_status.clone(), role: status.role.clone() },
                None => NodeHealth { gateway_status: "unreachable".to_string(), role: view.record.role.clone() },
            };
            (view.record.control_addr, entry)
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
    /// `connected`, `disconnected` or `unreachable`.
    pub gateway_status: String,
    /// `primary_master`, `secondary_master` or `coreapp`; the registered role when unreachable.
    pub role: String,
}
