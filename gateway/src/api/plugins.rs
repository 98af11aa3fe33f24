//! `GET /v1/plugins`, `PUT /v1/plugins/{kind}?name=..&version=..` and
//! `DELETE /v1/plugins/{kind}`: the policy plugins (admin only, as the
//! authorizer decides: the default one lets only admins through).
//!
//! An upload is loaded into this webapp's plugin host first, so that a
//! component that is not a valid plugin of its kind (garbage, truncated, a
//! core module, another world, a start that traps) is refused with the
//! host's reason before anything is stored, and the running plugin stays.
//! Only then is it stored in the database, from which every node's plugin
//! sync loads it. The `health-policy` kind runs on masters; a webapp loads it
//! to validate it (its own host holds one, unused).
//!
//! `DELETE` removes the stored plugin (every node goes back to the default)
//! and resets this webapp's plugin of that kind at once. It answers 404 when
//! no plugin of that kind is stored: what runs without being stored (a
//! plugin directory's) is the plugin sync's to manage.

use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;
use crate::views::{system_timestamp, Meta, PluginView};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use shardgate_core::digest::sha256_hex;
use shardgate_core::store::plugins::StoredPlugin;
use shardgate_plugins::{Blame, PluginKind, RetiredPlugin};

/// Largest component an upload may carry (enforced by `DefaultBodyLimit` in `app.rs`).
pub const COMPONENT_LIMIT: usize = 16 << 20;

/// `GET`: the running plugin of each kind, the last ones that stopped
/// running, and the digests of those stored for the cluster.
pub async fn list(State(state): State<AppState>) -> Result<Json<PluginsResponse>, ApiError> {
    let stored = state.store.plugin_digests().await?;
    Ok(Json(PluginsResponse {
        plugins: state.plugins.plugins().into_iter().map(PluginView::from).collect(),
        retired: state.plugins.retired().into_iter().map(RetiredView::from).collect(),
        stored: stored.into_iter().map(|(kind, sha256)| StoredDigest { kind, sha256 }).collect(),
        meta: Meta::current(),
    }))
}

/// The query of an upload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The plugin's name: 1 to 64 letters, digits and `. _ - +`.
    pub name: Option<String>,
    /// Its version, with the same characters.
    pub version: Option<String>,
}

/// `PUT`: loads the component in the body here, then stores it for every node.
pub async fn upload(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LoadedResponse>, ApiError> {
    let kind = parse_kind(&kind)?;
    let Query(query) = query.map_err(query_refused)?;
    let name =
        query.name.ok_or_else(|| ApiError::missing("the query parameter name is required: ?name=..&version=.."))?;
    let version = query
        .version
        .ok_or_else(|| ApiError::missing("the query parameter version is required: ?name=..&version=.."))?;
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let essence = content_type.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence != "application/wasm" && essence != "application/octet-stream" {
            return Err(ApiError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "the body must be the component's bytes sent with Content-Type: application/wasm (or \
                     application/octet-stream), not {content_type:?}"
                ),
            ));
        }
    }
    let component = body.map_err(body_unreadable)?;
    if component.is_empty() {
        return Err(ApiError::missing("the body must be the component's bytes; it is empty"));
    }

    let previous = state.plugins.plugin(kind);
    // Compiling takes milliseconds of CPU: off the async workers.
    let host = state.plugins.clone();
    let (label, bytes) = ((name.clone(), version.clone()), component.clone());
    let loaded = tokio::task::spawn_blocking(move || host.load(kind, &label.0, &label.1, &bytes))
        .await
        .map_err(ApiError::internal)?;
    let info = loaded.map_err(|e| match e.blame() {
        Blame::Guest => {
            ApiError::invalid(format!("the {kind} plugin was not loaded, and the running one is unchanged: {e}"))
        }
        Blame::Host => ApiError::new(
            ErrorKind::ServiceNotReady,
            format!("the {kind} plugin was not loaded, and the running one is unchanged; retry later: {e}"),
        ),
    })?;

    let stored = StoredPlugin {
        kind: kind.as_str().to_string(),
        name,
        version,
        sha256: sha256_hex(&component),
        component: component.to_vec(),
        uploaded_at: 0,
    };
    if let Err(e) = state.store.put_plugin(&stored).await {
        // Not stored, so no other node runs it: this one should not either.
        // Only the default can be put back here; any other plugin comes back
        // with the plugin sync, which follows the database.
        if previous.default {
            state.plugins.reset(kind);
        }
        return Err(e.into());
    }
    tracing::info!(plugin.kind = %kind, plugin.name = %info.name, plugin.version = %info.version,
        sha256 = %info.sha256, "plugin uploaded and stored; every node loads it");
    Ok(Json(LoadedResponse { plugins: vec![PluginView::from(info)], meta: Meta::current() }))
}

/// `DELETE`: removes the stored plugin of a kind and goes back to the default here.
pub async fn remove(State(state): State<AppState>, Path(kind): Path<String>) -> Result<Json<LoadedResponse>, ApiError> {
    let kind = parse_kind(&kind)?;
    if !state.store.delete_plugin(kind.as_str()).await? {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("no {kind} plugin is uploaded to the cluster: there is nothing to delete"),
        ));
    }
    if !state.plugins.plugin(kind).default {
        state.plugins.reset(kind);
    }
    tracing::info!(plugin.kind = %kind, "plugin deleted; every node goes back to the default {kind} plugin");
    Ok(Json(LoadedResponse { plugins: vec![PluginView::from(state.plugins.plugin(kind))], meta: Meta::current() }))
}

fn parse_kind(kind: &str) -> Result<PluginKind, ApiError> {
    kind.parse().map_err(|e: String| ApiError::new(ErrorKind::NotFound, format!("there is no /v1/plugins/{kind}: {e}")))
}

fn query_refused(rejection: QueryRejection) -> ApiError {
    let message = rejection.body_text();
    if message.contains("unknown field") {
        ApiError::new(ErrorKind::UnknownParameter, format!("{message}; the query takes name and version"))
    } else {
        ApiError::invalid(message)
    }
}

fn body_unreadable(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the component is over the limit of {COMPONENT_LIMIT} bytes for an upload"),
        )
    } else {
        ApiError::new(ErrorKind::InvalidRequest, format!("the body could not be read: {rejection}"))
    }
}

/// The answer of `GET`: `{"plugins":[...],"retired":[...],"stored":[...],"meta":{...}}`.
#[derive(Debug, Serialize)]
pub struct PluginsResponse {
    /// The running plugin of each kind on this webapp: router, authorizer, health-policy.
    pub plugins: Vec<PluginView>,
    /// The last plugins that stopped running here (replaced, reset, or unloaded for failing), oldest first.
    pub retired: Vec<RetiredView>,
    /// The plugins uploaded for the cluster: a kind listed here whose running
    /// plugin has another digest is not loaded yet, or was unloaded for failing.
    pub stored: Vec<StoredDigest>,
    /// API status and version.
    pub meta: Meta,
}

/// The answer of `PUT` and `DELETE`: `{"plugins":[<the running plugin of that kind>],"meta":{...}}`.
#[derive(Debug, Serialize)]
pub struct LoadedResponse {
    /// The plugin that now runs on this webapp.
    pub plugins: Vec<PluginView>,
    /// API status and version.
    pub meta: Meta,
}

/// A plugin stored for the cluster.
#[derive(Debug, Serialize)]
pub struct StoredDigest {
    /// Its kind.
    pub kind: String,
    /// SHA-256 of the component, hex.
    pub sha256: String,
}

/// A plugin that stopped running here.
#[derive(Debug, Serialize)]
pub struct RetiredView {
    /// Its last state.
    #[serde(flatten)]
    pub plugin: PluginView,
    /// When it stopped, `YYYY-MM-DD HH:MM:SS+00:00`.
    pub retired_at: String,
    /// Why.
    pub reason: String,
    /// Whether the host unloaded it for failing.
    pub unloaded_for_failures: bool,
}

impl From<RetiredPlugin> for RetiredView {
    fn from(retired: RetiredPlugin) -> RetiredView {
        RetiredView {
            plugin: PluginView::from(retired.info),
            retired_at: system_timestamp(retired.retired_at),
            reason: retired.reason,
            unloaded_for_failures: retired.unloaded_for_failures,
        }
    }
}
