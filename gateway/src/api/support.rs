//! `GET /v1/support`: per-node debug information (role, shards held, epochs,
//! version, pid, settings version, uptime) from the nodes' own answers, this
//! webapp's identity, and the plugins it runs.

use crate::auth::Caller;
use crate::cluster_view::{self, NodeView};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::PluginView;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use shardgate_core::control::HeldShard;

/// Asks every master and coreapp for its status, concurrently.
pub async fn support(State(state): State<AppState>, _caller: Caller) -> Result<Json<SupportResponse>, ApiError> {
    let views = cluster_view::survey(&state.store, &state.control).await?;
    Ok(Json(SupportResponse {
        support: Support {
            nodes: views.into_iter().map(NodeSupport::from).collect(),
            webapp: WebappSupport {
                node_id: state.node_id.to_string(),
                version: shardgate_core::VERSION,
                image_version: shardgate_core::image_version(),
                pid: std::process::id(),
            },
            plugins: state.plugins.plugins().into_iter().map(PluginView::from).collect(),
        },
    }))
}

/// The answer: `{"support":{"nodes":[...],"webapp":{...},"plugins":[...]}}`.
#[derive(Debug, Serialize)]
pub struct SupportResponse {
    /// The report.
    pub support: Support,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct Support {
    /// Every master and coreapp.
    pub nodes: Vec<NodeSupport>,
    /// The webapp that answered.
    pub webapp: WebappSupport,
    /// The running plugin of each kind on the webapp that answered, as `GET /v1/plugins` lists them.
    pub plugins: Vec<PluginView>,
}

/// One master or coreapp. Fields only the node can tell are empty when it
/// did not answer; `error` then says why.
#[derive(Debug, Serialize)]
pub struct NodeSupport {
    /// Node id.
    pub node_id: String,
    /// Role as reported, or as registered when unreachable.
    pub role: String,
    /// Control address.
    pub address: String,
    /// Whether it answered.
    pub reachable: bool,
    /// Shards it holds.
    pub shards: Vec<HeldShard>,
    /// Master lease epoch (primary master only).
    pub master_epoch: Option<i64>,
    /// Shardgate version.
    pub version: String,
    /// Tag of the container image it runs in; unknown when it did not answer.
    pub image_version: Option<String>,
    /// OS process id.
    pub pid: i64,
    /// Settings version in force on it.
    pub settings_version: Option<i64>,
    /// Seconds since it started.
    pub uptime_s: Option<f64>,
    /// Database-clock time of its last liveness write, unix ms.
    pub last_seen_ms: i64,
    /// Why it could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<NodeView> for NodeSupport {
    fn from(view: NodeView) -> NodeSupport {
        let record = view.record;
        match view.status {
            Ok(status) => NodeSupport {
                node_id: record.node_id,
                role: status.role,
                address: record.control_addr,
                reachable: true,
                shards: status.shards,
                master_epoch: status.master_epoch,
                version: status.version,
                image_version: status.image_version,
                pid: i64::from(status.pid),
                settings_version: Some(status.settings_version),
                uptime_s: Some(status.uptime_s),
                last_seen_ms: record.last_seen,
                error: None,
            },
            Err(e) => NodeSupport {
                node_id: record.node_id,
                role: record.role,
                address: record.control_addr,
                reachable: false,
                shards: Vec::new(),
                master_epoch: None,
                version: record.version,
                image_version: None,
                pid: record.pid,
                settings_version: None,
                uptime_s: None,
                last_seen_ms: record.last_seen,
                error: Some(e.to_string()),
            },
        }
    }
}

/// The webapp that answered.
#[derive(Debug, Serialize)]
pub struct WebappSupport {
    /// Node id.
    pub node_id: String,
    /// Shardgate version.
    pub version: &'static str,
    /// Tag of the container image it runs in, if any.
    pub image_version: Option<String>,
    /// OS process id.
    pub pid: u32,
}
