//! Keeps a node's plugin host in step with the cluster: every second it
//! compares what should run for each kind with what runs, and loads or
//! resets. What should run, in order of precedence:
//! 1. the plugin uploaded to the cluster (`PUT /v1/plugins/{kind}`, stored in
//!    the database, so every node follows it);
//! 2. `<plugins-dir>/<kind>.wasm` on this node, picked up when it changes;
//! 3. the built-in default component.
//!
//! A plugin the host unloaded for failing repeatedly is not loaded again
//! until different bytes are uploaded, so a broken plugin cannot flap.

use shardgate_core::cluster::Settings;
use shardgate_core::digest::sha256_hex;
use shardgate_core::store::Store;
use shardgate_plugins::{PluginHost, PluginKind};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

/// How often the node compares the wanted plugins with the running ones.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Where one kind's plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    /// Uploaded to the cluster, with this digest.
    Cluster(String),
    /// A file of the plugins directory, with these bytes.
    File { path: PathBuf, bytes: Vec<u8>, sha256: String },
    /// The built-in component.
    Default,
}

/// Follows the cluster's plugins (and `plugins_dir`) for `kinds`, forever.
pub async fn follow(store: Store, host: PluginHost, kinds: Vec<PluginKind>, plugins_dir: Option<PathBuf>) {
    let mut refused: HashSet<String> = HashSet::new();
    let mut settings_version = -1;
    loop {
        if let Err(e) = sync_once(&store, &host, &kinds, plugins_dir.as_ref(), &mut refused).await {
            tracing::debug!("plugin sync skipped: {e}");
        }
        share_settings(&store, &host, &mut settings_version).await;
        tokio::time::sleep(SYNC_EVERY).await;
    }
}

/// One comparison; loads or resets what differs.
async fn sync_once(
    store: &Store,
    host: &PluginHost,
    kinds: &[PluginKind],
    plugins_dir: Option<&PathBuf>,
    refused: &mut HashSet<String>,
) -> anyhow::Result<()> {
    let uploaded: HashMap<String, String> = store.plugin_digests().await?.into_iter().collect();
    let unloaded: HashSet<String> =
        host.retired().into_iter().filter(|r| r.unloaded_for_failures).map(|r| r.info.sha256).collect();
    for &kind in kinds {
        let wanted = match uploaded.get(kind.as_str()) {
            Some(sha) => Wanted::Cluster(sha.clone()),
            None => match read_file(plugins_dir, kind) {
                Some((path, bytes)) => Wanted::File { sha256: sha256_hex(&bytes), path, bytes },
                None => Wanted::Default,
            },
        };
        let running = host.plugin(kind);
        match wanted {
            Wanted::Default if !running.default => {
                tracing::info!("{} plugin {} removed: back to the default", kind.as_str(), running.name);
                host.reset(kind);
            }
            Wanted::Default => {}
            Wanted::Cluster(sha) | Wanted::File { sha256: sha, .. }
                if sha == running.sha256 || unloaded.contains(&sha) || refused.contains(&sha) => {}
            Wanted::Cluster(sha) => {
                let Some(stored) = store.plugin(kind.as_str()).await? else { continue };
                if let Err(e) = host.load(kind, &stored.name, &stored.version, &stored.component) {
                    tracing::error!(
                        "uploaded {} plugin {} {} cannot load: {e}",
                        kind.as_str(),
                        stored.name,
                        stored.version
                    );
                    refused.insert(sha);
                }
            }
            Wanted::File { path, bytes, sha256 } => {
                let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                match host.load(kind, &name, &format!("file-{}", &sha256[..12]), &bytes) {
                    Ok(_) => tracing::info!("loaded {} plugin from {}", kind.as_str(), path.display()),
                    Err(e) => {
                        tracing::error!("{} cannot load as the {} plugin: {e}", path.display(), kind.as_str());
                        refused.insert(sha256);
                    }
                }
            }
        }
    }
    Ok(())
}

/// `<dir>/<kind>.wasm`, if there is one.
fn read_file(dir: Option<&PathBuf>, kind: PluginKind) -> Option<(PathBuf, Vec<u8>)> {
    let path = dir?.join(format!("{}.wasm", kind.as_str()));
    std::fs::read(&path).ok().map(|bytes| (path, bytes))
}

/// Gives the plugins the settings in force, as JSON texts, when they change.
async fn share_settings(store: &Store, host: &PluginHost, known: &mut i64) {
    let Ok(version) = store.settings_version().await else { return };
    if version == *known {
        return;
    }
    let settings = match store.settings_doc().await {
        Ok(Some((_, doc))) => Settings::from_stored(&doc).unwrap_or_default(),
        Ok(None) => Settings::default(),
        Err(_) => return,
    };
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&settings) {
        host.set_settings(fields.into_iter().map(|(k, v)| (k, v.to_string())).collect());
        *known = version;
    }
}
